"""The analytic work counts (``layer.work``, :mod:`npdl.bench.work`) against a direct count: every layer,
loss and optimizer runs its real code on :class:`npdl.bench.counting.Counted` arrays, whose namespace
counts each operation it is asked for (2mnk per product, 1 per element otherwise), and the bytes
the caches keep are read off the arrays themselves."""

import numpy as np
import pytest

import npdl
from npdl import backend, kernels
from npdl.bench import counting
from npdl.bench.counting import Counted, Tally
from npdl.bench.work import loss_work
from npdl.deferred import ProductGrad
from npdl.layers import (ELU, LSTM, AvgPool2D, ChannelBias, Conv2D, Dense, Dropout, DropoutNoise, Flatten,
                         GaussianNoise, LeakyReLU, MaskingNoise, MaxPool2D, ReLU, Sigmoid, SimpleRNN, Softmax, Tanh,
                         TiedAutoencoder, TimeDistributed)
from npdl.layers.autoencoder import Autoencoder
from npdl.layers.stacked_autoencoder import StackedTiedAutoencoder

from helpers import arrays_in, union_bytes


@pytest.fixture
def counted(monkeypatch):
    """Counted arrays live on the CPU as far as the device checks are concerned."""
    real = backend.device_of

    def device_of(x):
        return backend.get_device("cpu") if isinstance(x, Counted) else real(x)

    monkeypatch.setattr(npdl.backend, "device_of", device_of)
    return device_of


def _rng():
    return np.random.default_rng(0)


def _to_counted(layer):
    for k in list(layer.params):  # in place: a wrapper shares its inner layer's dict
        layer.params[k] = Counted(backend.to_numpy(layer.params[k]))
    return layer


def count_layer(layer, shape, need_input_grad=True, dtype="float32"):
    """``(forward FLOPs, backward FLOPs)`` of the layer's real code on a random batch of ``shape``,
    the backward pass including every weight gradient formed."""
    _to_counted(layer)
    x = Counted(_rng().normal(size=shape).astype(dtype))
    with Tally() as fwd:
        y = layer.forward(x, training=True)
    layer.need_input_grad = need_input_grad
    dy = Counted(_rng().normal(size=y.shape).astype(dtype))  # random upstream gradient
    with Tally() as bwd:
        layer.backward(dy)
        for g in layer.grads.values():
            if isinstance(g, ProductGrad):
                g.form()
    return fwd.flops, bwd.flops


# ------------------------------------------------------------------------------ the counter
def test_the_counting_namespace_counts_products_elementwise_and_reductions():
    a, b = Counted(np.ones((3, 4))), Counted(np.ones((4, 5)))
    xp = backend.namespace(a)
    assert xp is counting.NAMESPACE
    with Tally() as t:
        c = a @ b                  # 2 * 3 * 4 * 5
        d = xp.tanh(c) * 2.0 + c   # 3 ops on 15 elements
        s = xp.sum(d, axis=0)      # reads 15
        e = xp.reshape(xp.permute_dims(d, (1, 0)), (15,))  # free
        d += 1.0                   # 15, in place
    assert t.flops == 120 + 45 + 15 + 15 and s.shape == (5,) and e.shape == (15,)
    assert float(d.a[0, 0]) == pytest.approx(np.tanh(4.0) * 2 + 4 + 1)  # computed, not only counted
    assert kernels.kernel_for("bias_activation.tanh", a) is None  # no kernel: the definitions run
    with pytest.raises(AttributeError):
        xp.fft  # an unknown function is refused, never counted as free


# ------------------------------------------------------------------------------ layers
LAYERS = {
    "dense-tanh": (lambda: Dense(7, 5, activation="tanh"), (6, 7)),
    "dense-sigmoid-nobias": (lambda: Dense(7, 5, activation="sigmoid", bias=False), (6, 7)),
    "dense-relu": (lambda: Dense(7, 5, activation="relu"), (6, 7)),
    "dense-leaky": (lambda: Dense(7, 5, activation="leaky_relu"), (6, 7)),
    "dense-elu": (lambda: Dense(7, 5, activation="elu"), (6, 7)),
    "dense-linear": (lambda: Dense(7, 5), (6, 7)),
    "sigmoid": (Sigmoid, (4, 9)), "tanh": (Tanh, (4, 3, 5)), "relu": (ReLU, (4, 9)),
    "leaky": (lambda: LeakyReLU(0.2), (4, 9)), "elu": (lambda: ELU(0.5), (4, 9)), "softmax": (Softmax, (4, 9)),
    "conv-valid": (lambda: Conv2D(3, 4, 3), (2, 3, 7, 6)),
    "conv-same-nobias": (lambda: Conv2D(2, 3, (3, 2), padding="same", bias=False), (2, 2, 5, 6)),
    "conv-stride2-pad1": (lambda: Conv2D(2, 3, 3, stride=2, padding=1), (2, 2, 7, 7)),
    "maxpool-valid": (lambda: MaxPool2D(2), (2, 3, 5, 6)),
    "maxpool-same-3": (lambda: MaxPool2D(3, strides=2, padding="same"), (2, 3, 7, 5)),
    "avgpool-same": (lambda: AvgPool2D(2, padding="same"), (2, 3, 5, 5)),
    "avgpool-valid-3": (lambda: AvgPool2D(3, strides=1), (2, 2, 5, 4)),
    "flatten": (Flatten, (2, 3, 4, 5)),
    "masking": (lambda: MaskingNoise(0.3), (4, 9)), "gaussian": (lambda: GaussianNoise(0.1), (4, 9)),
    "dropout-noise": (lambda: DropoutNoise(0.7), (4, 9)), "dropout": (lambda: Dropout(0.4), (4, 9)),
    "channel-bias": (lambda: ChannelBias(3), (2, 3, 4, 4)),
    "tied-sigmoid-linear": (lambda: TiedAutoencoder(8, 5, "sigmoid", "linear"), (6, 8)),
    "tied-elu-sigmoid": (lambda: TiedAutoencoder(8, 5, "elu", "sigmoid"), (6, 8)),
    "tied-leaky-tanh": (lambda: TiedAutoencoder(8, 5, "leaky_relu", "tanh"), (6, 8)),
    "untied-relu-linear": (lambda: Autoencoder(8, 5, "relu", "linear"), (6, 8)),
    "rnn-tanh": (lambda: SimpleRNN(3, 5), (4, 6, 3)),
    "rnn-sigmoid-seq-trunc": (lambda: SimpleRNN(3, 5, "sigmoid", return_sequences=True, bptt_truncate=2), (4, 7, 3)),
    "rnn-linear-seq-f1": (lambda: SimpleRNN(1, 4, "linear", return_sequences=True), (3, 5, 1)),
    "rnn-relu-trunc": (lambda: SimpleRNN(3, 5, "relu", bptt_truncate=3), (4, 7, 3)),
    "lstm": (lambda: LSTM(3, 4), (5, 6, 3)),
    "lstm-seq-f1": (lambda: LSTM(1, 4, return_sequences=True), (5, 6, 1)),
    "lstm-seq-trunc-nobias": (lambda: LSTM(3, 4, return_sequences=True, bptt_truncate=2, bias=False), (5, 7, 3)),
    "lstm-trunc": (lambda: LSTM(2, 3, bptt_truncate=4), (2, 9, 2)),
    "time-distributed": (lambda: TimeDistributed(Dense(4, 3)), (2, 5, 4)),
    "stacked-elu": (lambda: StackedTiedAutoencoder([9, 6, 4]), (5, 9)),
    "stacked-relu-sigmoid-out-3": (lambda: StackedTiedAutoencoder([9, 6, 5, 3], "relu", "leaky_relu", "sigmoid"),
                                   (4, 9)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("need_input_grad", [True, False])
def test_layer_work_is_the_count_of_its_code(counted, name, need_input_grad):
    make, shape = LAYERS[name]
    layer = make()
    expected = layer.work(shape, need_input_grad)
    assert count_layer(layer, shape, need_input_grad) == (expected["forward"], expected["backward"])


def test_float64_layers_count_the_same_and_keep_twice_the_bytes(counted):
    shape = (4, 6, 3)
    w32, w64 = LSTM(3, 5).work(shape), LSTM(3, 5, dtype="float64").work(shape)
    assert (w64["forward"], w64["backward"]) == (w32["forward"], w32["backward"])
    assert w64["kept_bytes"] == 2 * w32["kept_bytes"]
    assert count_layer(LSTM(3, 5, dtype="float64"), shape, dtype="float64") == (w64["forward"], w64["backward"])


# ------------------------------------------------------------------------------ kept bytes


@pytest.fixture
def definitions():
    kernels.use("off")  # the caches the definitions keep
    yield
    kernels.use(None)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_kept_bytes_are_what_the_cache_holds(definitions, name):
    make, shape = LAYERS[name]
    layer = make()
    x = _rng().normal(size=shape).astype("float32")
    y = layer.forward(x, training=True)
    params = [id(p) for p in layer.params.values()]
    caches = [layer.cache, getattr(getattr(layer, "layer", None), "cache", None)]  # a wrapper's inner layer
    kept = [a for a in arrays_in(caches, []) if id(a) not in params and not any(
        np.shares_memory(a, p) for p in layer.params.values())]
    w = layer.work(shape)
    assert w.get("keeps_input", False) == any(np.shares_memory(a, x) for a in kept)
    assert w.get("keeps_output", False) == any(np.shares_memory(a, y) for a in kept)
    if w.get("view"):
        assert np.shares_memory(x, y)
    expected = w.get("kept_bytes", 0) + (x.nbytes if w.get("keeps_input") else 0) \
        + (y.nbytes if w.get("keeps_output") else 0)
    assert union_bytes(kept) == expected


# ------------------------------------------------------------------------------ losses
LOSSES = [("softmax_cross_entropy", (6, 5), "labels"), ("mse", (6, 3, 2), "float"),
          ("reconstruction_cross_entropy_logits", (6, 7), "unit"), ("reconstruction_cross_entropy", (6, 7), "prob"),
          (npdl.losses.MeanSquaredError(reduction="batch_mean"), (6, 4), "float"),
          (npdl.losses.MeanSquaredError(reduction="sum"), (6, 4), "float"),
          (npdl.losses.BinaryCrossEntropyWithLogits(), (6, 4), "unit"),
          (npdl.losses.BinaryCrossEntropy(reduction="sum"), (6, 4), "prob"),
          (npdl.losses.NegativeLogLikelihood(), (6, 5), "probs-labels"),
          (npdl.losses.NegativeLogLikelihood(eps=1e-6), (6, 5), "probs-labels")]


@pytest.mark.parametrize("spec, shape, kind", LOSSES)
def test_loss_work_is_the_count_of_its_code(counted, spec, shape, kind):
    loss = npdl.losses.get_loss(spec)
    loss.check_range = False  # the labels' range check (off in benchmarks) reads integers: not counted
    rng = _rng()
    pred = rng.normal(size=shape)
    if kind in ("prob", "probs-labels"):
        pred = np.exp(pred) / np.exp(pred).sum(axis=-1, keepdims=True)
    target = {"labels": lambda: rng.integers(0, shape[1], shape[0]), "float": lambda: rng.normal(size=shape),
              "unit": lambda: rng.uniform(size=shape), "prob": lambda: rng.uniform(size=shape),
              "probs-labels": lambda: rng.integers(0, shape[1], shape[0])}[kind]()
    target = target if target.dtype.kind == "i" else target.astype("float32")
    with Tally() as fwd:
        loss.forward(Counted(pred.astype("float32")), Counted(target))
    with Tally() as bwd:
        loss.backward(1.0)
    expected = loss_work(loss, shape)
    assert (fwd.flops, bwd.flops) == (expected["forward"], expected["backward"])
