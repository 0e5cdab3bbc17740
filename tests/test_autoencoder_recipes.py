"""Autoencoder recipes (da, sda, homl-*, autoencoder2d) on tiny data, their pictures, the da bench
workload, and the fused SGD update of a tied weight (a sum of two products)."""

import dataclasses
import json
import os

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import npdl
from npdl import backend, cli, kernels
from npdl.models import Sequential
from npdl.optim import SGD
from npdl.recipes import get_recipe, train

try:
    import matplotlib  # noqa: F401
    HAS_MPL = True
except ImportError:
    HAS_MPL = False


def tiny_images(n_train=100, n_valid=40, n_test=40, d=784, seed=0):
    """Ten prototypes in [0, 1] plus noise, clipped: separable, and valid autoencoder inputs."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((10, d)).astype(np.float32)

    def part(n):
        y = rng.integers(0, 10, n)
        return np.clip(prototypes[y] + 0.2 * rng.standard_normal((n, d)), 0, 1).astype(np.float32), y

    return {"train": part(n_train), "valid": part(n_valid), "test": part(n_test)}


@pytest.fixture(autouse=True)
def one_blas_thread():
    # small GEMMs on two threads of a busy machine are many times slower than on one
    with threadpool_limits(1, "blas"):
        yield


AUTOENCODERS = ["da", "da-0", "homl-ae", "homl-ae-1at1", "homl-ae-gaussian", "homl-ae-dropout", "autoencoder2d"]


@pytest.mark.parametrize("name", AUTOENCODERS)
def test_autoencoder_recipes_report_a_falling_reconstruction_cost(name, tmp_path):
    data = tiny_images()
    out = tmp_path / name
    result = train(get_recipe(name), epochs=3, batch_size=20, verbose=0, data=data, out=str(out))
    assert result.model == name and result.valid_error is None and result.test_error is None
    assert np.isfinite(result.train_loss) and np.isfinite(result.test_loss)
    assert result.extra["reconstruction_cost"] == result.train_loss
    assert result.extra["test_reconstruction_cost"] == result.test_loss
    assert {"history.csv", "model.npz"} <= set(os.listdir(out))
    json.dumps(result.as_dict())  # the --json record is plain data
    if name != "homl-ae-1at1":
        rows = (out / "history.csv").read_text().strip().splitlines()
        losses = [float(r.split(",")[1]) for r in rows[1:]]
        assert len(losses) == 3 and losses[-1] < losses[0], losses
    if HAS_MPL:
        assert all(os.path.getsize(p) > 0 for p in result.extra["pictures"])
        names = {os.path.basename(p) for p in result.extra["pictures"]}
        assert "curves.png" in names and "reconstructions.png" in names
        if name == "da":
            assert {"filters_corruption_30.png", "max_activation.png"} <= names
        if name == "da-0":
            assert "filters_corruption_0.png" in names
        if name == "autoencoder2d":
            assert "codes.png" in names


def test_da_resumes_bit_for_bit(tmp_path):
    data, recipe = tiny_images(), get_recipe("da")
    full = train(recipe, epochs=3, batch_size=20, verbose=0, data=data, out=str(tmp_path / "full"))
    train(recipe, epochs=1, batch_size=20, verbose=0, data=data, out=str(tmp_path / "cut"))
    resumed = train(recipe, epochs=3, batch_size=20, verbose=0, data=data, out=str(tmp_path / "cut"), resume=True)
    assert resumed.resumed_from_epoch == 1 and resumed.train_loss == full.train_loss


def test_sda_pretrains_on_shared_weights_then_finetunes(tmp_path):
    data = tiny_images()
    recipe = dataclasses.replace(get_recipe("sda"), extra={"hidden": (32, 32), "corruption": (0.1, 0.2),
                                                          "pretrain_lr": 0.01})
    result = train(recipe, epochs=2, batch_size=10, verbose=0, data=data, out=str(tmp_path))
    pre = result.extra["pretraining"]
    assert [p["layer"] for p in pre] == [0, 1] and [p["corruption"] for p in pre] == [0.1, 0.2]
    assert all(len(p["cost"]) == 2 and p["seconds"] > 0 for p in pre)
    assert result.extra["pretrain_epochs"] == 2 and result.epochs <= 2
    assert 0.0 <= result.valid_error <= 1.0 and 0.0 <= result.test_error <= 1.0
    assert result.test_error < 0.85  # ten separable prototypes: better than chance (0.9) after 2 epochs
    assert result.extra["validations"]  # the patience rule validated
    if HAS_MPL:
        assert {"pretraining.png", "curves.png"} <= {os.path.basename(p) for p in result.extra["pictures"]}


SDA_KILLED = r"""
import dataclasses, os, signal, sys
sys.path.insert(0, {tests!r})
from npdl.models import Sequential
from npdl.recipes import get_recipe, train
from npdl.training import Callback
from test_autoencoder_recipes import tiny_images


class Kill(Callback):
    def on_batch_end(self, batch, logs=None):
        if len(self.model.history) == {epoch} and batch == 2:  # mid-epoch, after {epoch} checkpoints
            os.kill(os.getpid(), signal.SIGKILL)


fit = Sequential.fit


def killing_fit(self, *args, callbacks=(), **kwargs):
    if self.name == {model!r}:
        callbacks = list(callbacks) + [Kill()]
    return fit(self, *args, callbacks=callbacks, **kwargs)


Sequential.fit = killing_fit
recipe = dataclasses.replace(get_recipe("sda"), extra={extra!r})
train(recipe, epochs=3, batch_size=10, verbose=0, data=tiny_images(), out={out!r})
"""

SDA_TINY = {"hidden": (32, 32), "corruption": (0.1, 0.2), "pretrain_lr": 0.01}


@pytest.mark.parametrize("model,epoch,phase", [("sda-pretrain-1", 1, "pretrain"), ("sda", 2, "finetune")])
def test_killed_sda_resumes_bit_for_bit(tmp_path, model, epoch, phase):
    """SIGKILL in the middle of layer 1's pretraining (or of the finetuning), then --resume: the same
    parameters, errors and costs as a run never stopped."""
    import subprocess
    import sys

    from npdl.training import read_checkpoint

    killed = tmp_path / "killed"
    code = SDA_KILLED.format(tests=os.path.dirname(os.path.abspath(__file__)), out=str(killed), model=model,
                             epoch=epoch, extra=SDA_TINY)
    # one BLAS thread there too, as in this process (the autouse fixture): bit-identical needs the same GEMMs
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == -9, done.stderr[-2000:]  # it really was killed
    recipe, data = dataclasses.replace(get_recipe("sda"), extra=SDA_TINY), tiny_images()
    resumed = train(recipe, epochs=3, batch_size=10, verbose=0, data=data, out=str(killed), resume=True)
    full = train(recipe, epochs=3, batch_size=10, verbose=0, data=data, out=str(tmp_path / "full"))
    where = resumed.extra["resumed_from"]
    assert where["phase"] == phase and where["epoch"] == epoch and where.get("layer", 1) == 1
    a, b = read_checkpoint(killed / "model.npz"), read_checkpoint(tmp_path / "full" / "model.npz")
    for name in b["params"]:
        assert np.array_equal(a["params"][name], b["params"][name]), name
    assert (resumed.valid_error, resumed.test_error, resumed.epochs) == (full.valid_error, full.test_error,
                                                                         full.epochs)
    assert [p["cost"] for p in resumed.extra["pretraining"]] == [p["cost"] for p in full.extra["pretraining"]]
    assert resumed.extra["validations"] == full.extra["validations"]


def test_sda_resume_refuses_other_settings_and_missing_files(tmp_path):
    recipe, data = dataclasses.replace(get_recipe("sda"), extra=SDA_TINY), tiny_images()
    with pytest.raises(Exception, match="no checkpoint"):
        train(recipe, epochs=2, batch_size=10, verbose=0, data=data, out=str(tmp_path), resume=True)
    train(recipe, epochs=2, batch_size=10, verbose=0, data=data, out=str(tmp_path))
    with pytest.raises(Exception, match="lr"):
        train(recipe, epochs=2, batch_size=10, lr=0.5, verbose=0, data=data, out=str(tmp_path), resume=True)
    os.remove(tmp_path / "checkpoint.npz")  # back to "pretraining done": --epochs 3 would change it
    with pytest.raises(Exception, match="same --epochs"):
        train(recipe, epochs=3, batch_size=10, verbose=0, data=data, out=str(tmp_path), resume=True)


def test_homl_pretrain_compares_three_classifiers():
    data = tiny_images()
    recipe = dataclasses.replace(get_recipe("homl-pretrain"), extra={"n_labeled": 50, "classifier_epochs": 5})
    result = train(recipe, epochs=1, batch_size=25, verbose=0, data=data)
    assert set(result.extra["classifiers"]) == {"frozen", "finetuned", "scratch"}
    assert result.valid_error == result.extra["classifiers"]["finetuned"]["valid_error"]
    for scores in result.extra["classifiers"].values():
        assert 0.0 <= scores["test_error"] <= 1.0


def test_cli_lists_the_autoencoder_recipes(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for name in ("da", "da-0", "sda", "homl-ae", "homl-ae-1at1", "homl-ae-gaussian", "homl-ae-dropout",
                 "homl-pretrain", "autoencoder2d"):
        assert f"  {name} " in out, name


@pytest.mark.mnist
def test_da_on_a_real_mnist_subset(mnist_dir, tmp_path):
    full = get_recipe("da").data({"data_dir": mnist_dir, "dtype": "float32"})
    data = {"train": (full["train"][0][:2000], full["train"][1][:2000]),
            "test": (full["test"][0][:500], full["test"][1][:500])}
    result = train(get_recipe("da"), epochs=2, verbose=0, data=data, out=str(tmp_path))
    # Theano's dA starts near 200 (summed over 784 pixels) and falls below 100 within 15 full epochs
    assert 60 < result.train_loss < 250 and result.test_loss < result.train_loss * 1.2


# ------------------------------------------------------------------------------ pictures

@pytest.mark.skipif(not HAS_MPL, reason="needs matplotlib")
def test_picture_functions_write_png_files(tmp_path):
    from npdl import plots

    rng = np.random.default_rng(0)
    paths = [plots.tile_images(rng.random((12, 784)), tmp_path / "tiles.png", title="filters"),
             plots.image_rows([("a", rng.random((3, 784))), ("b", rng.random((2, 784)))], tmp_path / "rows.png"),
             plots.code_scatter(rng.standard_normal((50, 2)), rng.integers(0, 10, 50), tmp_path / "codes.png"),
             plots.line_curves({"layer 0": [3, 2, 1], "layer 1": [2, 1.5]}, tmp_path / "lines.png")]
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_pictures_are_skipped_cleanly_without_matplotlib(monkeypatch, tmp_path):
    from npdl.recipes.autoencoders.common import picture

    def no_mpl():
        raise ImportError("plots need matplotlib")

    monkeypatch.setattr("npdl.plots._pyplot", no_mpl)
    assert picture("tile_images", np.zeros((2, 784)), tmp_path / "x.png") is None
    result = train(get_recipe("da"), epochs=1, batch_size=20, verbose=0, data=tiny_images(), out=str(tmp_path))
    assert result.extra["pictures"] == [] and result.extra["curves"] is None
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".png")]


def test_gradient_ascent_finds_an_input_that_excites_the_unit():
    from npdl.recipes.autoencoders import maximize_activation

    g = backend.Generator("cpu", 0)
    ae = npdl.TiedAutoencoder(16, 4, rng=g)
    encoder = Sequential(ae.encoder_layers())
    x0 = g.uniform((1, 16), 0.45, 0.55)
    x = maximize_activation(ae.encoder_layers(), 2, 16, steps=50, step_size=0.05)
    assert x.shape == (1, 16) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(encoder.forward(x)[0, 2]) > float(encoder.forward(x0)[0, 2]) + 0.05
    # the optimum of a sigmoid unit over the box: pixels with positive weight on, the others off
    w = backend.to_numpy(ae.params["W"])[:, 2]
    assert ((backend.to_numpy(x)[0] > 0.5) == (w > 0)).mean() > 0.9


# --------------------------------------------------------------------- fused tied update

def test_tied_backward_products_sum_to_dW():
    g = backend.Generator("cpu", 0)
    x, W = g.normal((5, 6), dtype="float64"), g.normal((6, 3), dtype="float64")
    b, bp = g.normal((3,), dtype="float64"), g.normal((6,), dtype="float64")
    z, cache = npdl.tied_autoencoder_forward(x, W, b, bp)
    dz = g.normal((5, 6), dtype="float64")
    dx, dW, db, dbp = npdl.tied_autoencoder_backward(dz, cache)
    dx2, pairs, db2, dbp2 = npdl.layers.tied_autoencoder_backward_products(dz, cache)
    assert len(pairs) == 2 and pairs[0][0] is x
    np.testing.assert_allclose(sum(A.T @ B for A, B in pairs), dW, rtol=1e-13)
    np.testing.assert_array_equal(dx, dx2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes", [(1, 1), (1, 3), (20, 20), (4, 7)])
def test_cpu_gemm_update_sum_matches_the_definition(sizes, dtype, monkeypatch):
    from npdl.kernels.numba import gemm_update as cpu
    from npdl.optim.sgd import gemm_update_sum

    monkeypatch.setattr(cpu, "SMALL_C", 0)  # the stacked-factor GEMM at this small size too

    rng = np.random.default_rng(sum(sizes))
    pairs = [(rng.standard_normal((n, 5)).astype(dtype), rng.standard_normal((n, 4)).astype(dtype)) for n in sizes]
    C = rng.standard_normal((5, 4)).astype(dtype)
    expected = gemm_update_sum.definition(C.copy(), pairs, -0.3, 0.9)
    np.testing.assert_allclose(expected, 0.9 * C - 0.3 * sum(A.T @ B for A, B in pairs), rtol=1e-5)
    out = cpu.gemm_update_sum(C, pairs, -0.3, 0.9)
    assert out is C and C.dtype == np.dtype(dtype)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(C, expected, rtol=tol, atol=tol)


def test_gemm_update_sum_on_every_backend(device):
    g = backend.Generator(device, 0)
    pairs = [(g.normal((2, 4), dtype="float64"), g.normal((2, 3), dtype="float64")),
             (g.normal((3, 4), dtype="float64"), g.normal((3, 3), dtype="float64"))]
    C = g.normal((4, 3), dtype="float64")
    expected = 0.5 * backend.to_numpy(C) - 2.0 * sum(backend.to_numpy(A).T @ backend.to_numpy(B) for A, B in pairs)
    from npdl.optim.sgd import gemm_update_sum

    assert gemm_update_sum(C, pairs, -2.0, 0.5) is C  # the kernel where one serves, else the definition
    np.testing.assert_allclose(backend.to_numpy(C), expected, rtol=1e-12)


def test_stacked_tied_autoencoder_layer():
    g = backend.Generator("cpu", 0)
    layer = npdl.layers.StackedTiedAutoencoder((12, 6, 3), rng=g)
    assert layer.weight_names == ("W0", "W1") and layer.parameter_count() == 12 * 6 + 6 * 3 + 6 + 3 + 12 + 6
    x = g.uniform((5, 12))
    z = layer(x)
    assert z.shape == (5, 12) and layer.encode(x).shape == (5, 3)
    assert layer.backward(g.normal((5, 12))).shape == (5, 12)
    assert {k for k, v in layer.grads.items() if v is not None} == set(layer.params)
    rebuilt = npdl.layer_from_config({"class": "StackedTiedAutoencoder", "config": layer.get_config()})
    assert rebuilt.get_config() == layer.get_config()
    hidden = layer.encoder_layers()
    np.testing.assert_allclose(Sequential(hidden)(x), layer.encode(x), rtol=1e-6)
    assert hidden[0].params["W"] is not layer.params["W0"]  # copies: each classifier starts from the same values


# ------------------------------------------------------------------------------ bench

def test_da_bench_workload(capsys):
    from npdl.bench import parse
    from npdl.bench.npdl_step import npdl_step

    w = parse("da_b2")
    assert w.family == "da" and w.sizes == (784, 1000) and w.spec["corruption"] == 0.1 and w.batch_size == 2
    step, sync = npdl_step(w, "cpu")
    step()
    sync()
    code = cli.main(["bench", "--workload", "da_b1,da_b3", "--json", "--min-seconds", "0.02"])
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert code == 0 and [r["workload"] for r in records] == ["da_b1", "da_b3"]


def test_da_bench_step_learns():
    from npdl.bench import parse
    from npdl.bench.autoencoder_step import build_autoencoder

    w = parse("da_b8")
    model = build_autoencoder(w)
    x = backend.Generator("cpu", 1).uniform((8, 784))
    losses = [float(model.train_step(x, x)) for _ in range(5)]
    assert losses[-1] < losses[0]
    assert not model[1].grads["W"].is_formed  # the two-product update ran from the factors


@pytest.mark.parametrize("impl", ["torch", "jax"])
def test_da_peer_steps_run(impl):
    pytest.importorskip(impl)
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    from npdl.bench import parse
    from peers import PEERS

    step, sync, version = PEERS["da"][impl](parse("da_b2"), "cpu")
    step()
    sync()
    assert impl in version
