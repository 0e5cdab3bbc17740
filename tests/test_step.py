"""One training step, proven: every term of every parameter's update, on every path.

For each layer type that has parameters, each optimizer, each combination of penalty,
decay and clipping, and gradients applied from their factors (``fuse_products``) or
formed, ``model.train_step`` must move the parameters exactly as a plain float64
step written here from formed gradients does:

    G = dL/dp + l1 sign(p) + 2 l2 p       (weights only for the penalties)
    G <- G * clip / max(|G|_global, clip)  (with clipping)
    p <- p (1 - lr wd)                     (weights only, decoupled decay)
    p <- rule(p, G)

The data gradient ``dL/dp`` comes from a second copy of the model's layers (their
backward passes are proven against finite differences and JAX elsewhere); the update
arithmetic below is independent of npdl's optimizers.
"""

from __future__ import annotations

import numpy as np
import pytest

from npdl import backend
from npdl.deferred import ProductGrad
from npdl.layers import (LSTM, Autoencoder, ChannelBias, Conv2D, Dense, Flatten, SimpleRNN, StackedTiedAutoencoder,
                         TiedAutoencoder, TimeDistributed)
from npdl.losses import MeanSquaredError
from npdl.models import Sequential
from npdl.optim import SGD, Adam, Momentum, Nesterov, RMSprop

LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "rmsprop": 0.01, "adam": 0.01}
HYPER = {"momentum": {"momentum": 0.9}, "nesterov": {"momentum": 0.8}, "rmsprop": {"rho": 0.9, "eps": 1e-7},
         "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-7}}
OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "rmsprop": RMSprop, "adam": Adam}
#: name -> (l1, l2, weight_decay, clip_norm)
TERMS = {"plain": (0.0, 0.0, 0.0, None), "l1": (0.02, 0.0, 0.0, None), "l2": (0.0, 0.05, 0.0, None),
         "l1+l2": (0.02, 0.05, 0.0, None), "decay": (0.0, 0.0, 0.3, None), "clip": (0.0, 0.03, 0.0, 0.05)}


def _layers(kind, seed):
    g = backend.Generator("cpu", seed)
    d = "float64"
    if kind == "dense":
        return [Dense(4, 3, dtype=d, rng=g)], (5, 4)
    if kind == "dense_batch1":  # one example: the factors are a rank-1 update
        return [Dense(4, 3, dtype=d, rng=g)], (1, 4)
    if kind == "mlp":
        return [Dense(4, 5, activation="sigmoid", dtype=d, rng=g), Dense(5, 3, dtype=d, rng=g)], (5, 4)
    if kind == "conv":
        return [Conv2D(2, 3, 3, padding=1, dtype=d, rng=g), Flatten()], (2, 2, 4, 4)
    if kind == "conv_channel_bias":
        return [Conv2D(1, 2, 3, bias=False, dtype=d, rng=g), ChannelBias(2, dtype=d), Flatten()], (2, 1, 5, 5)
    if kind == "tied_autoencoder":
        return [TiedAutoencoder(6, 4, dtype=d, rng=g)], (5, 6)
    if kind == "autoencoder":
        return [Autoencoder(6, 4, dtype=d, rng=g)], (5, 6)
    if kind == "stacked_tied_autoencoder":
        return [StackedTiedAutoencoder([6, 4, 3], dtype=d, rng=g)], (5, 6)
    if kind == "simple_rnn":
        return [SimpleRNN(3, 4, dtype=d, rng=g)], (2, 5, 3)
    if kind == "lstm":
        return [LSTM(3, 4, dtype=d, rng=g)], (2, 5, 3)
    if kind == "time_distributed":
        return [SimpleRNN(3, 4, return_sequences=True, dtype=d, rng=g),
                TimeDistributed(Dense(4, 2, dtype=d, rng=g))], (2, 5, 3)
    raise ValueError(kind)


KINDS = ("dense", "dense_batch1", "mlp", "conv", "conv_channel_bias", "tied_autoencoder", "autoencoder", "stacked_tied_autoencoder",
         "simple_rnn", "lstm", "time_distributed")


def _named(layers):
    """``{"i.k": (layer, k)}`` for every parameter, as the model names them."""
    return {f"{i}.{k}": (layer, k) for i, layer in enumerate(layers) for k in layer.params}


def _data_gradients(layers, x, target):
    """``{name: dL/dp}`` (formed, float64) of the mean squared error from the layers' own backward passes."""
    model = Sequential(layers)
    loss = MeanSquaredError()
    loss.forward(model.forward(x, training=True), target)
    model.backward(loss.backward(1.0))
    return {name: np.array(np.asarray(layer.grads[k]), dtype=np.float64) for name, (layer, k) in _named(layers).items()}


class ReferenceStep:
    """The step written out from formed gradients, with its own state."""

    def __init__(self, opt, l1, l2, wd, clip):
        self.opt, self.l1, self.l2, self.wd, self.clip = opt, l1, l2, wd, clip
        self.lr, self.h = LR[opt], HYPER.get(opt, {})
        self.state: dict = {}
        self.t = 0

    def __call__(self, layers, grads):
        weights = {f"{i}.{k}" for i, layer in enumerate(layers) for k in layer.weight_names if k in layer.params}
        params = {name: layer.params[k] for name, (layer, k) in _named(layers).items()}
        G = {}
        for name, p in params.items():
            G[name] = grads[name].copy()
            if name in weights:
                G[name] += self.l1 * np.sign(p) + 2.0 * self.l2 * p
        if self.clip is not None:
            norm = np.sqrt(sum(float(np.sum(g * g)) for g in G.values()))
            assert norm > self.clip, "the clipping case must clip"
            G = {k: g * (self.clip / max(norm, self.clip)) for k, g in G.items()}
        self.t += 1
        lr, h = self.lr, self.h
        for name, p in params.items():
            g = G[name]
            if name in weights and self.wd:
                p *= 1.0 - lr * self.wd
            if self.opt == "sgd":
                p -= lr * g
            elif self.opt in ("momentum", "nesterov"):
                v = self.state.setdefault(name, np.zeros_like(p))
                v[...] = h["momentum"] * v - lr * g
                p += (h["momentum"] * v - lr * g) if self.opt == "nesterov" else v
            elif self.opt == "rmsprop":
                v = self.state.setdefault(name, np.zeros_like(p))
                v[...] = h["rho"] * v + (1 - h["rho"]) * g * g
                p -= lr * g / (np.sqrt(v) + h["eps"])
            else:
                m = self.state.setdefault("m" + name, np.zeros_like(p))
                v = self.state.setdefault("v" + name, np.zeros_like(p))
                m[...] = h["beta1"] * m + (1 - h["beta1"]) * g
                v[...] = h["beta2"] * v + (1 - h["beta2"]) * g * g
                m_hat, v_hat = m / (1 - h["beta1"] ** self.t), v / (1 - h["beta2"] ** self.t)
                p -= lr * m_hat / (np.sqrt(v_hat) + h["eps"])


def _batches(kind, shape, out_shape, steps):
    rng = np.random.default_rng(hash(kind) % 2**32)
    return [(rng.normal(size=shape), rng.normal(size=out_shape)) for _ in range(steps)]


@pytest.mark.parametrize("fuse", [True, False], ids=["factors", "formed"])
@pytest.mark.parametrize("terms", list(TERMS))
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("kind", KINDS)
def test_train_step_applies_every_term(kind, opt, terms, fuse):
    l1, l2, wd, clip = TERMS[terms]
    layers, in_shape = _layers(kind, 7)
    ref_layers, _ = _layers(kind, 7)
    model = Sequential(layers)
    optimizer = OPTIMIZERS[opt](lr=LR[opt], weight_decay=wd, clip_norm=clip, **HYPER.get(opt, {}))
    optimizer.fuse_products = fuse
    model.compile("mse", optimizer, l1=l1, l2=l2)
    out_shape = model.forward(np.zeros(in_shape)).shape
    reference = ReferenceStep(opt, l1, l2, wd, clip)
    for step, (x, target) in enumerate(_batches(kind, in_shape, out_shape, 3), start=1):
        reference(ref_layers, _data_gradients(ref_layers, x, target))
        model.train_step(x, target)
        if fuse and opt == "sgd" and clip is None:  # the factors path was taken: products left unformed
            products = [g for layer in layers for g in layer.grads.values() if isinstance(g, ProductGrad)]
            assert all(not g.is_formed for g in products)
        if step in (1, 3):
            expected = {name: layer.params[k] for name, (layer, k) in _named(ref_layers).items()}
            for name, (layer, k) in _named(layers).items():
                got, want = layer.params[k], expected[name]
                tol = 1e-12 * max(1.0, float(np.max(np.abs(want))))
                assert np.max(np.abs(got - want)) <= tol, (f"{kind}/{opt}/{terms}/{'fused' if fuse else 'formed'}: "
                                                           f"{name} after step {step} off by "
                                                           f"{np.max(np.abs(got - want)):.3g}")


def test_the_reported_loss_includes_the_penalties():
    layers, in_shape = _layers("conv_channel_bias", 3)
    model = Sequential(layers)
    model.compile("mse", SGD(lr=0.1), l1=0.02, l2=0.05)
    rng = np.random.default_rng(0)
    x = rng.normal(size=in_shape)
    target = rng.normal(size=model.forward(x).shape)
    W = layers[0].params["W"].copy()
    expected = np.mean((model.forward(x) - target) ** 2) + 0.02 * np.abs(W).sum() + 0.05 * (W ** 2).sum()
    assert float(model.train_step(x, target)) == pytest.approx(expected, rel=1e-12)


def test_a_deferred_gradient_reads_as_the_formed_array():
    rng = np.random.default_rng(1)
    layer = Dense(4, 3, dtype="float64", rng=backend.Generator("cpu", 1))
    x, dy = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    layer.forward(x, training=True)
    layer.backward(dy)
    g = layer.grads["W"]
    assert isinstance(g, ProductGrad) and not g.is_formed
    np.testing.assert_allclose(np.asarray(g), x.T @ dy, rtol=1e-13, atol=0)
    np.testing.assert_allclose(g * 2.0 - x.T @ dy, x.T @ dy, rtol=1e-13, atol=0)
    assert float(np.linalg.norm(g)) == pytest.approx(float(np.linalg.norm(x.T @ dy)), rel=1e-13)
    g *= 0.5  # in place, as clipping does: the formed array is what counts from then on
    assert g.is_formed
    np.testing.assert_allclose(np.asarray(g), 0.5 * (x.T @ dy), rtol=1e-13, atol=0)


def test_a_refused_step_changes_nothing():
    layers, in_shape = _layers("mlp", 5)
    model = Sequential(layers)
    model.compile("mse", SGD(lr=0.1), l2=0.05)
    rng = np.random.default_rng(2)
    x = rng.normal(size=in_shape)
    target = rng.normal(size=(5, 3))
    model.loss.forward(model.forward(x, training=True), target)
    model.backward(model.loss.backward(1.0))
    params, grads, decay, pens = model.step_inputs()
    before = {k: v.copy() for k, v in params.items()}
    grads["1.b"] = np.zeros(4)  # the wrong shape
    with pytest.raises(Exception, match="shape"):
        model.optimizer.step(params, grads, decay, pens)
    assert all(np.array_equal(before[k], params[k]) for k in params)


# ------------------------------------------------------------------ npdl gradcheck --step

@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp", "tied_da", "sda", "stacked_tied_ae", "conv", "rnn", "lstm"])
def test_step_gradient_matches_finite_differences_and_jax(name):
    from npdl.gradcheck import check_step

    pytest.importorskip("jax")
    records = check_step(name)
    assert records and all(r.autodiff == "jax" for r in records)
    assert all(r.passed for r in records), [(r.wrt, r.numeric_rel_err, r.autodiff_rel_err) for r in records]


def test_step_check_fails_when_a_penalty_term_is_dropped(monkeypatch):
    from npdl.gradcheck import step

    real = step.total_gradient
    monkeypatch.setattr(step, "total_gradient", lambda p, g, l1=0.0, l2=0.0: real(p, g, l1, 0.0))  # no L2 term
    records = step.check_step("mlp", autodiff="none")
    failed = {r.wrt for r in records if not r.passed}
    assert failed == {"0.W", "1.W"}  # the weights fail, the biases (no penalty) still pass
