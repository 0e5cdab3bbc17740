"""Proof of a whole training step's gradient: a model's loss, penalties included.

The layer checks (:mod:`.runner`) prove each backward pass on its own. This proves
what an optimizer step receives for a whole model: for every trainable parameter
``p`` of a small model of each family, the gradient

    G = dL/dp + l1 sign(p) + 2 l2 p       (L1/L2 on weights only)

that :meth:`npdl.models.Sequential.step_inputs` hands to the optimizer (the data
gradient from backpropagation through every layer, the penalties' gradients added as
the optimizer adds them, :func:`npdl.optim.base.total_gradient`), against

1. central finite differences of ``J = loss(model(x), y) + l1 sum|W| + l2 sum W^2``
   computed with npdl's forward passes, and
2. ``jax.grad`` of an independent JAX model of the same ``J``, composed from the
   per-layer JAX references of :mod:`.jax_ref` (textbook formulas, not npdl's code).
"""

from __future__ import annotations

from .. import backend
from ..layers import (LSTM, Conv2D, Dense, Flatten, MaxPool2D, SimpleRNN, StackedTiedAutoencoder,
                      TiedAutoencoder)
from ..models import Sequential
from ..optim import SGD
from ..optim.base import total_gradient
from . import jax_ref
from .numeric import relative_error
from .runner import AUTODIFF_TOL, BACKENDS, NUMERIC_TOL, Record, _reference


def _mlp(g, d):
    layers = [Dense(5, 4, activation="tanh", dtype=d, rng=g), Dense(4, 3, dtype=d, rng=g)]
    return layers, "softmax_cross_entropy", g.normal((6, 5), dtype=d), g.integers(0, 3, (6,))


def _tied_da(g, d):
    x = g.uniform((5, 6), low=0.05, high=0.95, dtype=d)
    return [TiedAutoencoder(6, 4, dtype=d, rng=g)], "reconstruction_cross_entropy", x, x


def _sda(g, d):
    layers = [Dense(6, 5, activation="sigmoid", dtype=d, rng=g), Dense(5, 4, activation="sigmoid", dtype=d, rng=g),
              Dense(4, 3, dtype=d, rng=g)]
    return layers, "softmax_cross_entropy", g.normal((5, 6), dtype=d), g.integers(0, 3, (5,))


def _stacked_tied(g, d):
    x = g.normal((5, 6), dtype=d)
    return [StackedTiedAutoencoder((6, 4, 3), encoder="tanh", dtype=d, rng=g)], "mse", x, x


def _conv(g, d):
    layers = [Conv2D(1, 2, 3, padding=1, dtype=d, rng=g), MaxPool2D(2), Flatten(), Dense(8, 3, dtype=d, rng=g)]
    return layers, "softmax_cross_entropy", g.normal((2, 1, 4, 4), dtype=d), g.integers(0, 3, (2,))


def _rnn(g, d):
    layers = [SimpleRNN(3, 4, dtype=d, rng=g), Dense(4, 2, dtype=d, rng=g)]
    return layers, "softmax_cross_entropy", g.normal((3, 5, 3), dtype=d), g.integers(0, 2, (3,))


def _lstm(g, d):
    layers = [LSTM(3, 4, dtype=d, rng=g), Dense(4, 2, dtype=d, rng=g)]
    return layers, "softmax_cross_entropy", g.normal((3, 5, 3), dtype=d), g.integers(0, 2, (3,))


#: name -> builder ``(Generator, dtype) -> (layers, loss name, x, y)``: one small model per family
STEP_MODELS = {"mlp": _mlp, "tied_da": _tied_da, "sda": _sda, "stacked_tied_ae": _stacked_tied, "conv": _conv,
               "rnn": _rnn, "lstm": _lstm}
#: the penalties every step check includes, so their gradients are checked too
L1, L2 = 0.01, 0.02


def build(name, device="cpu", seed=0):
    """The compiled float64 model ``name`` of :data:`STEP_MODELS` with its batch ``(model, x, y)``."""
    if name not in STEP_MODELS:
        raise KeyError(f"unknown step model {name!r}; choose from {', '.join(STEP_MODELS)}")
    g = backend.Generator(backend.get_device(device), seed)
    layers, loss, x, y = STEP_MODELS[name](g, "float64")
    model = Sequential(layers, name=name)
    model.compile(loss, SGD(lr=0.0), l1=L1, l2=L2)
    for layer in model.layers:  # non-zero biases, so a penalty wrongly applied to them shows
        for k, p in layer.params.items():
            if k not in layer.weight_names:
                p[...] = g.normal(tuple(p.shape), dtype="float64") * 0.1
    return model, x, y


def objective(model, x, y) -> float:
    """``J = loss(model(x), y) + penalties`` with npdl's forward passes (inference mode)."""
    value = model.loss.forward(model.forward(x), y)
    penalty = model.penalty_value()
    return backend.to_float(value if penalty is None else value + penalty)


def step_gradients(model, x, y) -> dict:
    """``{name: G}``: every term of every parameter's gradient, as the optimizer step receives them."""
    model.loss.forward(model.forward(x, training=True), y)
    model.backward(model.loss.backward(1.0))
    params, grads, _, pens = model.step_inputs()
    return {k: total_gradient(params[k], grads[k], *pens.get(k, (0.0, 0.0))) for k in params}


def numeric_gradients(model, x, y, eps=1e-6) -> dict:
    """``{name: dJ/dp}`` by central differences, element by element, in place on each parameter."""
    params, _, _, _ = model.step_inputs()
    out = {}
    for k, p in params.items():
        device = backend.device_of(p)
        host = backend.to_numpy(p).copy()
        grad = host * 0.0
        flat_host, flat_grad = host.reshape(-1), grad.reshape(-1)
        for i in range(flat_host.size):
            old = flat_host[i]
            for sign in (1.0, -1.0):
                flat_host[i] = old + sign * eps
                p[...] = device.asarray(host)
                flat_grad[i] += sign * objective(model, x, y) / (2.0 * eps)
            flat_host[i] = old
        p[...] = device.asarray(host)
        out[k] = grad
    return out


def _jax_layer(layer, jnp):
    """The JAX reference of one layer as ``f(x, params) -> y``, from :mod:`.jax_ref`'s tables."""
    kind, opt = type(layer).__name__, {}
    states = ()  # the recurrent layers' initial states, zeros as the layers start from
    if kind == "Dense":
        opt = {"activation": layer.activation}
    elif kind == "Conv2D":
        opt = {"stride": layer.stride, "padding": layer.padding, "activation": layer.activation}
    elif kind == "MaxPool2D":
        opt = layer.get_config()
    elif kind == "TiedAutoencoder":
        opt = {"encoder": layer.encoder, "decoder": layer.decoder}
    elif kind == "StackedTiedAutoencoder":
        opt = {"encoder": layer.encoder, "decoder": layer.decoder, "output": layer.output}
    elif kind in ("SimpleRNN", "LSTM"):
        opt = {"activation": getattr(layer, "activation", "tanh"), "return_sequences": layer.return_sequences}
        states = ("h0",) if kind == "SimpleRNN" else ("h0", "c0")
    fn = jax_ref.reference_fn(kind, opt)

    def run(x, params):
        zeros = {k: jnp.zeros((x.shape[0], layer.units), dtype=x.dtype) for k in states}
        return fn(x, **params, **zeros)
    return run


def jax_gradients(model, x, y) -> dict:
    """``{name: dJ/dp}`` by ``jax.grad`` of the model rebuilt from the per-layer JAX references."""
    jax = jax_ref._jax()
    jnp = jax.numpy
    layer_fns = [_jax_layer(layer, jnp) for layer in model.layers]
    loss_fn = jax_ref.reference_fn(type(model.loss).__name__, {})
    params, _, decay, pens = model.step_inputs()
    names = list(params)

    def J(*values):
        by_layer: dict = {}
        for name, v in zip(names, values):
            index, k = name.split(".", 1)
            by_layer.setdefault(int(index), {})[k] = v
        h = jax_ref.to_jax(x)
        for i, fn in enumerate(layer_fns):
            h = fn(h, by_layer.get(i, {}))
        total = loss_fn(h, jax_ref.to_jax(y))
        for name, v in zip(names, values):
            l1, l2 = pens.get(name, (0.0, 0.0))
            total = total + l1 * jnp.sum(jnp.abs(v)) + l2 * jnp.sum(v * v)
        return total

    grads = jax.grad(J, argnums=tuple(range(len(names))))(*(jax_ref.to_jax(params[k]) for k in names))
    return dict(zip(names, grads))


def check_step(name, backend_name="numpy", autodiff="jax", seed=0, numeric=True):
    """One :class:`~npdl.gradcheck.runner.Record` per parameter of step model ``name``."""
    device = backend.get_device(BACKENDS.get(backend_name, backend_name))
    model, x, y = build(name, device, seed)
    analytic = step_gradients(model, x, y)
    ref, _ = _reference(autodiff)
    num = numeric_gradients(model, x, y) if numeric else {}
    auto = jax_gradients(model, x, y) if ref is jax_ref else {}
    records = []
    for k, G in analytic.items():
        n_err = relative_error(G, device.asarray(num[k])) if numeric else None
        a_err = relative_error(G, device.asarray(backend.to_numpy(auto[k]))) if auto else None
        passed = (n_err is None or n_err <= NUMERIC_TOL) and (a_err is None or a_err <= AUTODIFF_TOL)
        records.append(Record(f"step:{name}", k, backend_name, "float64", n_err, "jax" if auto else None,
                              a_err, passed))
    return records
