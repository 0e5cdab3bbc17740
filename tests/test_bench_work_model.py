"""A whole training step's work (:func:`npdl.bench.work.model_work`, :func:`workload_work`) against a direct
count of the step's code on :class:`npdl.bench.counting.Counted` arrays, and its bytes against the
arrays a real step holds."""

import numpy as np
import pytest

import npdl
from npdl import backend, kernels
from npdl.bench import parse
from npdl.bench.counting import Counted, Tally
from npdl.bench.work import batch_shapes, model_work, workload_model, workload_work
from npdl.deferred import formed
from npdl.layers import (LSTM, Conv2D, Dense, Flatten, MaskingNoise, MaxPool2D, ReLU, SimpleRNN, Tanh, TiedAutoencoder,
                         TimeDistributed)
from npdl.models import Sequential
from npdl.optim import SGD, Adam, Momentum, Nesterov, RMSprop

from helpers import arrays_in, union_bytes


@pytest.fixture
def counted(monkeypatch):
    real = backend.device_of
    monkeypatch.setattr(npdl.backend, "device_of",
                        lambda x: backend.get_device("cpu") if isinstance(x, Counted) else real(x))


def _batch(model, x_shape, target):
    rng = np.random.default_rng(1)
    x = rng.uniform(size=x_shape).astype("float32")
    if target == "labels":
        y = rng.integers(0, 3, x_shape[0])
    elif target == "inputs":
        y = x
    else:
        y = rng.normal(size=target).astype("float32")
    return x, y


def _model(layers, loss="softmax_cross_entropy", optimizer=None, **compile_kw):
    rng = backend.Generator("cpu", 0)
    model = Sequential([make(rng) for make in layers])
    model.compile(loss, optimizer() if optimizer else SGD(lr=0.1), metrics=(), **compile_kw)  # a fresh one
    if hasattr(model.loss, "check_range"):
        model.loss.check_range = False
    return model


MODELS = {
    "mlp": ([lambda r: Dense(7, 6, rng=r, activation="tanh"), lambda r: Dense(6, 3, rng=r)], (5, 7), "labels", {}),
    "conv": ([lambda r: Conv2D(1, 2, 3, rng=r), lambda r: MaxPool2D(2), lambda r: Tanh(),
              lambda r: Conv2D(2, 3, 3, padding="same", rng=r), lambda r: ReLU(), lambda r: MaxPool2D(2, padding="same"),
              lambda r: Flatten(), lambda r: Dense(12, 4, rng=r, activation="relu"), lambda r: Dense(4, 3, rng=r)],
             (2, 1, 9, 9), "labels", {}),
    "da": ([lambda r: MaskingNoise(0.2, rng=backend.Generator("cpu", 5)),
            lambda r: TiedAutoencoder(8, 5, "sigmoid", "linear", rng=r)], (4, 8), "inputs",
           {"loss": "reconstruction_cross_entropy_logits"}),
    "rnn": ([lambda r: SimpleRNN(3, 5, rng=r), lambda r: Dense(5, 3, rng=r)], (4, 6, 3), "labels", {}),
    "lstm": ([lambda r: LSTM(1, 4, return_sequences=True, rng=r), lambda r: TimeDistributed(Dense(4, 1, rng=r))],
             (3, 5, 1), (3, 5, 1), {"loss": "mse"}),
    "momentum-l1-l2": ([lambda r: Dense(7, 6, rng=r, activation="sigmoid"), lambda r: Dense(6, 3, rng=r)], (5, 7),
                       "labels", {"optimizer": lambda: Momentum(0.1), "l1": 1e-3, "l2": 1e-2}),
    "nesterov-decay": ([lambda r: Dense(7, 6, rng=r, activation="relu"), lambda r: Dense(6, 3, rng=r)], (5, 7),
                       "labels", {"optimizer": lambda: Nesterov(0.1, weight_decay=0.01)}),
    "rmsprop-clip": ([lambda r: Dense(7, 6, rng=r, activation="elu"), lambda r: Dense(6, 3, rng=r)], (5, 7),
                     "labels", {"optimizer": lambda: RMSprop(0.01, clip_norm=0.5)}),
    "adamw-l2": ([lambda r: Conv2D(1, 2, 3, rng=r), lambda r: Flatten(), lambda r: Dense(98, 3, rng=r)], (2, 1, 9, 9),
                 "labels", {"optimizer": lambda: Adam(0.01, weight_decay=0.1), "l2": 1e-3}),
}


def _target_spec(target, x_shape):
    if target == "labels":
        return (x_shape[0],), 8
    if target == "inputs":
        return (0,), 4
    return target, 4


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_step_costs_what_model_work_counts(counted, name):
    layers, x_shape, target, kw = MODELS[name]
    model = _model(layers, **kw)
    model.freeze(0) if name == "mlp" else None  # the first layer frozen: backward stops above it
    expected = model_work(model, x_shape, *_target_spec(target, x_shape))
    model.optimizer.fuse_products = False  # every gradient formed, as counted (the same terms)
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        for k in list(inner.params):
            inner.params[k] = Counted(inner.params[k])
    x, y = _batch(model, x_shape, target)
    x = Counted(x)
    y = x if target == "inputs" else Counted(y)
    with Tally() as fwd:
        out = model.forward(x, training=True)
        loss = model.loss.forward(out, y)
        penalty = model.penalty_value()
        if penalty is not None:
            loss = loss + penalty
    with Tally() as rest:
        model.backward(model.loss.backward(1.0))
        params, grads, decay, pens = model.step_inputs()
        model.optimizer.step(params, grads, decay_names=decay, penalties=pens)
    assert fwd.flops == expected.forward
    assert rest.flops == expected.backward + expected.update
    with Tally() as whole:
        model.train_step(x, y)
    assert whole.flops == expected.flops


@pytest.mark.parametrize("family", ["mlp", "sda", "lenet", "kcnn", "da", "rnn", "lstm"])
def test_every_workload_counts_its_own_step(counted, family):
    """The benchmark workloads' counts (shared by npdl, PyTorch and JAX) against npdl's step on them."""
    w = parse(f"{family}_b2")
    model = workload_model(w)
    model.optimizer.fuse_products = False
    if hasattr(model.loss, "check_range"):
        model.loss.check_range = False  # as npdl bench steps run
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        for k in list(inner.params):
            inner.params[k] = Counted(inner.params[k])
    x_shape, y_shape, _ = batch_shapes(w)
    rng = np.random.default_rng(2)
    x = Counted(rng.uniform(size=x_shape).astype("float32"))
    y = x if family == "da" else Counted(rng.integers(0, 10, y_shape) if family != "lstm"
                                          else rng.normal(size=y_shape).astype("float32"))
    with Tally() as step:
        model.train_step(x, y)
    assert step.flops == workload_work(w).flops


def test_work_grows_with_the_batch_and_any_batch_can_be_counted():
    small, big = workload_work(parse("mlp_b20")), workload_work(parse("mlp_b100000000"))
    assert big.flops > 1e14 and big.bytes > 3e11  # counted, nothing of that size allocated
    assert big.parameter_bytes == small.parameter_bytes == 4 * (784 * 500 + 500 + 500 * 10 + 10)
    assert small.batch_bytes == 4 * 20 * 784 + 8 * 20


# ------------------------------------------------------------------------------ bytes
@pytest.fixture
def definitions():
    kernels.use("off")
    yield
    kernels.use(None)


@pytest.mark.parametrize("name", ["mlp", "conv", "da", "momentum-l1-l2", "adamw-l2"])
def test_step_bytes_are_the_arrays_a_step_holds(definitions, name):
    """Batch + parameters + formed gradients + optimizer state + every distinct cached activation."""
    layers, x_shape, target, kw = MODELS[name]
    model = _model(layers, **kw)
    x, y = _batch(model, x_shape, target)
    model.train_step(x, y)  # creates the optimizer's state
    out = model.forward(x, training=True)
    model.loss.forward(out, y)
    params = list(model.parameters().values())
    caches = arrays_in([layer.cache for layer in model.layers] + [model.loss.cache], [])
    activations = [a for a in caches if not any(np.shares_memory(a, p) for p in params + [x, y])]
    model.backward(model.loss.backward(1.0))
    grads = [backend.to_numpy(formed(g)) for g in model.step_inputs()[1].values()]
    state = list(model.optimizer._slots.values())
    direct = union_bytes([x] + ([] if y is x else [y])) + sum(p.nbytes for p in params) \
        + sum(g.nbytes for g in grads) + sum(s.nbytes for s in state) + union_bytes(activations)
    assert model_work(model, x_shape, *_target_spec(target, x_shape)).bytes == direct


def test_what_is_not_counted_says_so():
    class Square(npdl.layers.Layer):
        def forward(self, x, training=False):
            return x * x

    model = Sequential([Dense(3, 2), Square()])
    model.compile("mse", SGD(lr=0.1))
    with pytest.raises(NotImplementedError, match="Square"):
        model_work(model, (4, 3))

    class OwnRule(SGD):  # a rule of its own, written as _update: not counted
        def _update(self, name, p, g, lr, xp):
            p -= g * g * lr

    with pytest.raises(NotImplementedError, match="optimizer OwnRule"):
        model_work(Sequential([Dense(3, 2)]).compile("mse", OwnRule(0.1)), (4, 3))
    with pytest.raises(ValueError, match="compile"):
        model_work(Sequential([Dense(3, 2)]), (4, 3))
