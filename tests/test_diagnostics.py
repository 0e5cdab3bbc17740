"""Gradient-flow diagnostics: the recorded numbers against direct computations, training unchanged by
them, the step grid, every recipe loop reached, and the TensorBoard event files."""

import json

import numpy as np
import pytest

from npdl.diagnostics import Diagnostics, DiagnosticsError
from npdl.diagnostics.probe import SATURATION_MARGIN, output_activation, saturated_fraction
from npdl.layers import Dense, ReLU, Sigmoid, Tanh
from npdl.layers.autoencoder import TiedAutoencoder
from npdl.models import Sequential
from npdl.optim import SGD, Adam
from npdl.recipes import get_recipe, train

from helpers import tiny_images


def by_key(records):
    return {(r["layer"], r["quantity"]): r["value"] for r in records}


def two_layer_mlp(seed=0, optimizer=None):
    rng = np.random.default_rng(seed)
    model = Sequential([Dense(6, 5, activation="tanh", dtype="float64"), Dense(5, 4, dtype="float64")])
    for layer in model.layers:  # random, not zero, biases: every norm and ratio is defined
        layer.params["W"][...] = rng.standard_normal(layer.params["W"].shape)
        layer.params["b"][...] = 0.1 * rng.standard_normal(layer.params["b"].shape)
    return model.compile("softmax_cross_entropy", optimizer or SGD(lr=0.1))


def batch(seed=1, n=7):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)), rng.integers(0, 4, n)


def test_one_step_matches_norms_computed_by_hand():
    """Dense(tanh) -> Dense, softmax cross-entropy, SGD: every recorded number from NumPy by hand."""
    model = two_layer_mlp()
    x, t = batch()
    W0, b0, W1, b1 = (np.array(model.layers[i].params[k]) for i in (0, 1) for k in ("W", "b"))
    diag = Diagnostics(every=1)
    diag.probe(model, x, t)
    got = by_key(diag.last)

    h = np.tanh(x @ W0 + b0)                                          # (N, 5), layer 0's output
    z = h @ W1 + b1                                                   # (N, 4)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(4)[t]) / len(x)                                  # dL/dz of the mean cross-entropy
    dW1, db1, dh = h.T @ dz, dz.sum(0), dz @ W1.T
    da = dh * (1 - h ** 2)
    dW0, db0 = x.T @ da, da.sum(0)
    expected = {("0.dense", "activation_mean"): h.mean(), ("0.dense", "activation_std"): h.std(),
                ("0.dense", "saturation"): np.mean(np.abs(h) >= 1 - SATURATION_MARGIN),
                ("1.dense", "activation_mean"): z.mean(), ("1.dense", "activation_std"): z.std(),
                ("1.dense", "grad_norm/input"): np.linalg.norm(dh),
                ("0.dense", "grad_norm/W"): np.linalg.norm(dW0), ("0.dense", "grad_norm/b"): np.linalg.norm(db0),
                ("1.dense", "grad_norm/W"): np.linalg.norm(dW1), ("1.dense", "grad_norm/b"): np.linalg.norm(db1)}
    for (layer, name), before, grad in (((0, "W"), W0, dW0), ((0, "b"), b0, db0), ((1, "W"), W1, dW1),
                                        ((1, "b"), b1, db1)):
        label = f"{layer}.dense"
        expected[(label, f"weight_norm/{name}")] = np.linalg.norm(before)
        # plain SGD: the update is -lr * grad, so |dW| / |W| = 0.1 |grad| / |W|
        expected[(label, f"update_ratio/{name}")] = 0.1 * np.linalg.norm(grad) / np.linalg.norm(before)
        after = np.array(model.layers[layer].params[name])
        assert np.linalg.norm(after - before) / np.linalg.norm(before) == pytest.approx(
            got[(label, f"update_ratio/{name}")], rel=1e-12)
    assert got.keys() == expected.keys()  # no input gradient for the first layer: none is computed
    for key, value in expected.items():
        assert got[key] == pytest.approx(float(value), rel=1e-10, abs=1e-14), key
    # and what the layers hold: the gradients of that step, formed from their factors
    for i, k in ((0, "W"), (1, "W"), (1, "b")):
        assert got[(f"{i}.dense", f"grad_norm/{k}")] == pytest.approx(
            np.linalg.norm(np.asarray(model.layers[i].grads[k])), rel=1e-12)


def test_a_two_product_gradient_and_clipping_adam():
    """A tied autoencoder's dW is a sum of two products; Adam with clipping scales the gradients in
    place: the recorded norm is that of the whole data gradient, before clipping."""
    rng = np.random.default_rng(3)
    ae = TiedAutoencoder(8, 3, "sigmoid", "sigmoid", dtype="float64", rng=None)
    model = Sequential([ae]).compile("mse", Adam(lr=0.01, clip_norm=1e-6))
    x = rng.random((5, 8))
    diag = Diagnostics(every=1)
    diag.probe(model, x, x)
    got = by_key(diag.last)
    g = ae.grads["W"]
    assert len(g.pairs) == 2
    A1, B1 = g.pairs[0]
    A2, B2 = g.pairs[1]
    assert got[("0.tiedautoencoder", "grad_norm/W")] == pytest.approx(np.linalg.norm(A1.T @ B1 + A2.T @ B2), rel=1e-12)
    assert got[("0.tiedautoencoder", "grad_norm/W")] > 1e-3  # far above the clipped norm
    assert output_activation(ae) == "sigmoid" and 0.0 <= got[("0.tiedautoencoder", "saturation")] <= 1.0


def test_training_is_bit_identical_with_diagnostics_and_hooks_are_removed(tmp_path):
    x, t = batch(n=40)
    plain, watched = two_layer_mlp(), two_layer_mlp()
    h1 = plain.fit(x, t, epochs=2, batch_size=8, verbose=0, shuffle=False)
    diag = Diagnostics(tmp_path / "d.jsonl", every=3)
    h2 = watched.fit(x, t, epochs=2, batch_size=8, verbose=0, shuffle=False, diagnostics=diag)
    assert h1.loss == h2.loss
    for a, b in zip(plain.layers, watched.layers):
        for k in a.params:
            assert np.array_equal(a.params[k], b.params[k]), k
        assert not {"forward", "backward"} & set(vars(b))
    assert "step" not in vars(watched.optimizer)
    records = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert sorted({r["step"] for r in records}) == [0, 3, 6, 9]  # 10 steps, every 3rd from the first
    assert {r["model"] for r in records} == {"sequential"}


def test_a_loop_of_its_own_uses_the_stepper():
    model = two_layer_mlp()
    diag = Diagnostics(every=2)
    step = diag.stepper(model)
    steps = []
    for i in range(5):
        diag.last = []
        step(*batch(seed=i))
        steps.append(diag.last[0]["step"] if diag.last else None)
    assert steps == [0, None, 2, None, 4]


def test_saturated_fraction_per_activation():
    m = SATURATION_MARGIN
    y = np.array([m / 2, 0.5, 1 - m / 2, 0.3])
    assert saturated_fraction(y, "sigmoid") == pytest.approx(0.5)
    assert saturated_fraction(np.array([-1 + m / 2, 0.0, 0.5, 1 - m / 4]), "tanh") == pytest.approx(0.5)
    assert saturated_fraction(np.array([0.0, 2.0, 0.0, 0.0]), "relu") == pytest.approx(0.75)
    assert [output_activation(layer) for layer in (Sigmoid(), Tanh(), ReLU(), Dense(2, 2), Dense(2, 2,
            activation="relu"))] == ["sigmoid", "tanh", "relu", None, "relu"]
    with pytest.raises(ValueError):
        saturated_fraction(y, "elu")


def test_zero_weights_and_bad_settings():
    model = Sequential([Dense(6, 4, init="zeros", dtype="float64")]).compile("softmax_cross_entropy", SGD(lr=0.1))
    diag = Diagnostics(every=1)
    diag.probe(model, *batch())
    got = by_key(diag.last)
    assert got[("0.dense", "weight_norm/W")] == 0.0 and got[("0.dense", "update_ratio/W")] is None
    assert json.dumps(diag.last)  # strict JSON: no NaN
    for every in (0, -1, 1.5, True):
        with pytest.raises(DiagnosticsError):
            Diagnostics(every=every)


@pytest.mark.parametrize("name, options, models", [
    ("mlp", {}, {"mlp"}),
    ("sda", {"pretrain_epochs": 1}, {"sda-pretrain-0", "sda-pretrain-1", "sda-pretrain-2", "sda"}),
    ("autoencoder2d", {}, {"autoencoder2d"}),
    ("lstm-regressor", {}, {"lstm-regressor"}),
])
def test_every_kind_of_recipe_records(tmp_path, name, options, models):
    """The runner's fit, the autoencoders' own runs (several fits) and a step loop of its own."""
    data = {} if name == "lstm-regressor" else tiny_images()
    epochs = 3 if name == "lstm-regressor" else 1
    train(get_recipe(name), epochs=epochs, batch_size=20, out=str(tmp_path), verbose=0, data=data, diagnostics=2,
          recipe_options=options, report=False)
    records = [json.loads(line) for line in (tmp_path / "diagnostics.jsonl").read_text().splitlines()]
    assert {r["model"] for r in records} == models
    assert any(r["quantity"] == "grad_norm/W" and r["value"] > 0 for r in records)
    saved = json.loads(str(np.load(tmp_path / "model.npz")["extra"]))
    assert "diagnostics" not in json.dumps(saved)


def test_tensorboard_event_files_hold_scalars_histograms_and_images(tmp_path):
    pytest.importorskip("tensorboardX")
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    pytest.importorskip("matplotlib")
    train(get_recipe("autoencoder2d"), epochs=2, batch_size=20, out=str(tmp_path), verbose=0, data=tiny_images(),
          tensorboard=True, report=False)
    assert not (tmp_path / "diagnostics.jsonl").exists()  # TensorBoard alone: no diagnostics file
    acc = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"autoencoder2d/epoch/loss", "autoencoder2d/0.dense/grad_norm/W"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("autoencoder2d/epoch/loss")] == [1, 2]
    assert [e.step for e in acc.Scalars("autoencoder2d/0.dense/grad_norm/W")] == [0]  # every 100 of 6 steps
    assert {"autoencoder2d/0.dense/W", "autoencoder2d/7.dense/W/gradient"} <= set(tags["histograms"])
    assert {"codes", "reconstructions", "curves"} <= set(tags["images"])


def test_diagnostics_need_a_run_folder():
    with pytest.raises(Exception, match="need --out"):
        train(get_recipe("and-gate"), epochs=1, verbose=0, diagnostics=5)
