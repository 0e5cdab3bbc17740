"""check_layer / check_loss / check_model: a user's own layer, loss and model, proven or caught."""

import numpy as np
import pytest

from conftest import has_reference
from npdl import backend, layers as L, losses as F
from npdl.gradcheck import CASES, GradientCheckError, check_layer, check_loss, check_model
from npdl.layers import Layer
from npdl.models import Sequential

AUTODIFF = tuple(r for r in ("torch", "jax") if has_reference(r))


class TanhAffine(Layer, register=False):
    """A user's layer: ``y = tanh(x W + b)``, written as array-API code."""

    def __init__(self, n_in, n_out, seed=0):
        super().__init__()
        g = backend.Generator("cpu", seed)
        self.params = {"W": g.normal((n_in, n_out), std=0.5), "b": g.normal((n_out,), std=0.5)}

    def forward(self, x, training=False):
        xp = backend.namespace(x, self.params["W"])
        y = xp.tanh(x @ self.params["W"] + self.params["b"])
        self.cache = (x, y)
        return y

    def backward(self, dy):
        x, y = self.cache
        xp = backend.namespace(dy)
        da = dy * (1.0 - y * y)
        self.grads["W"] = x.T @ da
        self.grads["b"] = xp.sum(da, axis=0)
        return da @ self.params["W"].T


class WrongSignBias(TanhAffine, register=False):
    """The same layer with one wrong sign: ``db = -sum(da)``."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.grads["b"] = -self.grads["b"]
        return dx


class ScatterScale(Layer, register=False):
    """Writes its output in place column by column (JAX cannot run it; autograd can)."""

    def __init__(self):
        super().__init__()
        self.params = {"s": np.array([0.5, -1.5, 2.0])}

    def forward(self, x, training=False):
        xp = backend.namespace(x, self.params["s"])
        y = xp.zeros_like(x)
        for j in range(int(x.shape[1])):
            y[:, j] = x[:, j] * x[:, j] * self.params["s"][j]
        self.cache = x
        return y

    def backward(self, dy):
        x = self.cache
        xp = backend.namespace(dy)
        self.grads["s"] = xp.sum(dy * x * x, axis=0)
        return dy * 2.0 * x * self.params["s"]


class NumpyTanh(Layer, register=False):
    """Calls NumPy directly: only finite differences can check it."""

    def forward(self, x, training=False):
        self.cache = np.tanh(x)
        return self.cache

    def backward(self, dy):
        return dy * (1.0 - self.cache ** 2)


def _x(shape, seed=1):
    return backend.Generator("cpu", seed).normal(shape, dtype="float64")


def test_a_correct_layer_passes_every_reference():
    report = check_layer(TanhAffine(4, 3), _x((5, 4)))
    assert report.ok, str(report)
    assert report.ran("numeric")
    assert [r.autodiff for r in report.records if r.wrt == "W"] == list(AUTODIFF or (None,))
    assert {r.wrt for r in report.records} == {"x", "W", "b"}
    for r in report.records:
        assert r.dtype == "float64" and r.backend == "numpy" and r.numeric_rel_err < 1e-8 and not r.worst
        assert r.autodiff is None or r.autodiff_rel_err < 1e-12
    assert "TanhAffine" in str(report) and "0 failed" in str(report)
    assert report.raise_for_failure() is report


def test_one_wrong_sign_fails_naming_the_parameter_and_the_worst_index():
    layer, x = WrongSignBias(4, 3), _x((5, 4))
    report = check_layer(layer, x)
    assert not report.ok
    assert {r.wrt for r in report.failed} == {"b"} and all(r.passed for r in report.records if r.wrt != "b")
    # db = sum_n dy[n] (1 - y[n]^2), with dy drawn as documented (Generator(seed).normal); the
    # sign error doubles every entry's mismatch, so the worst index is the largest |db| entry
    W, b = layer.params["W"], layer.params["b"]
    y = np.tanh(x @ W + b)
    dy = backend.Generator("cpu", 0).normal(y.shape, dtype="float64")
    db = (dy * (1 - y * y)).sum(axis=0)
    worst = int(np.argmax(np.abs(db)))
    for r in report.failed:
        assert r.worst[0]["index"] == (worst,)
        assert r.worst[0]["analytic"] == pytest.approx(-db[worst])
        assert r.worst[0]["expected"] == pytest.approx(db[worst])
        assert r.worst[0]["reference"] == (r.autodiff or "numeric")
    text = str(report)
    assert "the gradient of b is wrong" in text and f"({worst},)" in text and "FAIL" in text
    with pytest.raises(GradientCheckError, match="gradient of b is wrong") as info:
        report.raise_for_failure()
    assert isinstance(info.value, AssertionError)


def test_the_users_layer_is_left_untouched_and_a_float32_layer_is_checked_in_float64():
    layer = L.Dense(4, 3, activation="tanh", rng=backend.Generator("cpu", 2))  # float32
    before = {k: v.copy() for k, v in layer.params.items()}
    report = check_layer(layer, _x((5, 4)).astype("float32"))
    assert report.ok, str(report)
    assert {r.dtype for r in report.records} == {"float64"}
    for k, v in layer.params.items():
        assert v.dtype == np.float32 and np.array_equal(v, before[k])
    assert layer.cache is None and not layer.grads


def test_float32_check_uses_float32_tolerances():
    report = check_layer(TanhAffine(3, 2), _x((4, 3)), dtype="float32", references=("numeric",))
    assert report.ok, str(report)
    assert report.tolerances["numeric"] == 1e-2 and {r.dtype for r in report.records} == {"float32"}


def test_in_place_writes_jax_says_why_and_torch_still_differentiates():
    if "jax" not in AUTODIFF:
        pytest.skip("JAX is not installed")
    report = check_layer(ScatterScale(), _x((4, 3)))
    assert report.ok, str(report)
    assert not report.ran("jax") and "in place" in report.references["jax"]
    assert report.ran("torch") == ("torch" in AUTODIFF)
    assert {r.autodiff for r in report.records} == ({"torch"} if "torch" in AUTODIFF else {None})


def test_a_forward_outside_the_array_api_is_checked_by_finite_differences_only():
    report = check_layer(NumpyTanh(), _x((3, 4)))
    assert report.ok and report.ran("numeric")
    assert [(r.wrt, r.autodiff) for r in report.records] == [("x", None)]
    for ref in AUTODIFF:
        assert report.references[ref].startswith("not run: ")


def test_a_crashing_backward_is_a_failed_report_not_an_exception():
    class Broken(TanhAffine, register=False):
        def backward(self, dy):
            raise RuntimeError("not written yet")

    report = check_layer(Broken(3, 2), _x((4, 3)))
    assert not report.ok and all("not written yet" in r.error for r in report.records)
    assert "not written yet" in str(report)
    with pytest.raises(ValueError, match="unknown reference"):
        check_layer(TanhAffine(3, 2), _x((4, 3)), references=("numeric", "tensorflow"))


def test_a_missing_parameter_gradient_is_reported():
    class Forgetful(TanhAffine, register=False):
        def backward(self, dy):
            dx = super().backward(dy)
            del self.grads["b"]
            return dx

    report = check_layer(Forgetful(3, 2), _x((4, 3)))
    assert not report.ok and "no gradient in layer.grads for 'b'" in str(report)


# ------------------------------------------------------------------------------- losses, models

class HalfSquared(F.Loss):
    """A user's loss: ``0.5 * mean((p - t)^2)``."""

    def forward(self, pred, target):
        xp = backend.namespace(pred, target)
        self.cache = (pred - target, int(pred.shape[0]) * int(pred.shape[1]))
        return 0.5 * xp.sum(self.cache[0] * self.cache[0]) / self.cache[1]

    def backward(self, dloss=1.0):
        diff, size = self.cache
        return dloss * diff / size


class HalfSquaredWrongSign(HalfSquared):
    def backward(self, dloss=1.0):
        diff, size = self.cache
        return dloss * -diff / size


def test_check_loss_passes_a_correct_loss_and_catches_a_wrong_sign():
    pred, target = _x((4, 3), 3), _x((4, 3), 4)
    good = check_loss(HalfSquared(), pred, target)
    assert good.ok, str(good)
    assert [r.wrt for r in good.records] == ["y_pred"] * max(1, len(AUTODIFF))
    bad = check_loss(HalfSquaredWrongSign(), pred, target)
    assert not bad.ok and "the gradient of y_pred is wrong" in str(bad)


def test_check_loss_on_labels_and_by_name():
    logits = _x((5, 4), 5)
    labels = backend.Generator("cpu", 6).integers(0, 4, (5,))
    assert check_loss(F.SoftmaxCrossEntropy(), logits, labels).ok
    assert check_loss("mse", logits, _x((5, 4), 7)).ok


def test_check_model_names_every_parameter_and_catches_a_wrong_layer():
    x, y = _x((6, 4), 8), backend.Generator("cpu", 9).integers(0, 3, (6,))
    model = Sequential([TanhAffine(4, 5, seed=1), L.Dense(5, 3, dtype="float64", rng=backend.Generator("cpu", 3))])
    model.compile("softmax_cross_entropy", "sgd")
    report = check_model(model, x, y)
    assert report.ok, str(report)
    assert {r.wrt for r in report.records} == {"x", "0.W", "0.b", "1.W", "1.b"}
    bad = Sequential([WrongSignBias(4, 5, seed=1), L.Dense(5, 3, dtype="float64", rng=backend.Generator("cpu", 3))])
    report = check_model(bad, x, y, loss="softmax_cross_entropy")
    assert {r.wrt for r in report.failed} == {"0.b"}
    with pytest.raises(ValueError, match="compile"):
        check_model(Sequential([TanhAffine(4, 5)]), x, y)


# ------------------------------------------------------------------- npdl's own layers and losses
D = "float64"
#: the autodiff references that run each forward where not both do (each report says why the other did not):
#: sigmoid adds to tanh's output in place, which autograd needs; the recurrences, the 'same' paddings and
#: the pools write into arrays in place or read ``x.device``, which JAX cannot; the noise of a layer in
#: training mode only finite differences can repeat
EXPECTED = {
    **dict.fromkeys(("Sigmoid", "Dense[sigmoid]", "TiedAutoencoder"), {"jax"}),
    **dict.fromkeys(("Conv2D[stride2_same]", "MaxPool2D", "AvgPool2D", "LSTM", "LSTM+TimeDistributed"), {"torch"}),
    **dict.fromkeys(("Dropout", "MaskingNoise", "GaussianNoise"), set()),
}


def _away(x):
    return np.where(x >= 0, x + 0.1, x - 0.1)


def _labels(g, n, k):
    return g.integers(0, k, (n,))


def _permuted(g, shape):  # well-separated values: no window of a max pool holds a near-tie
    return (g.permutation(int(np.prod(shape))).astype(D) * 0.1 - 0.05 * np.prod(shape)).reshape(shape)


#: name -> (what to call, builder(g) -> arguments); every layer and loss ``npdl gradcheck`` covers
OWN = {
    "Dense": ("layer", lambda g: (L.Dense(5, 3, dtype=D, rng=g), g.normal((4, 5), dtype=D))),
    "Dense[no_bias]": ("layer", lambda g: (L.Dense(4, 2, bias=False, dtype=D, rng=g), g.normal((3, 4), dtype=D))),
    "Dense[sigmoid]": ("layer", lambda g: (L.Dense(5, 3, activation="sigmoid", dtype=D, rng=g),
                                           g.normal((4, 5), dtype=D))),
    "Dense[tanh]": ("layer", lambda g: (L.Dense(5, 3, activation="tanh", dtype=D, rng=g), g.normal((4, 5), dtype=D))),
    "Sigmoid": ("layer", lambda g: (L.Sigmoid(), g.normal((4, 6), dtype=D))),
    "Tanh": ("layer", lambda g: (L.Tanh(), g.normal((4, 6), dtype=D))),
    "ReLU": ("layer", lambda g: (L.ReLU(), _away(g.normal((4, 6), dtype=D)))),
    "LeakyReLU": ("layer", lambda g: (L.LeakyReLU(0.1), _away(g.normal((4, 6), dtype=D)))),
    "ELU": ("layer", lambda g: (L.ELU(), _away(g.normal((4, 6), dtype=D)))),
    "Softmax": ("layer", lambda g: (L.Softmax(), g.normal((4, 6), dtype=D))),
    "Dropout": ("train", lambda g: (L.Dropout(0.5), g.normal((4, 6), dtype=D))),
    "Flatten": ("layer", lambda g: (L.Flatten(), g.normal((2, 3, 2, 2), dtype=D))),
    "TiedAutoencoder": ("layer", lambda g: (L.TiedAutoencoder(6, 4, dtype=D, rng=g), g.uniform((4, 6), dtype=D))),
    "Autoencoder": ("layer", lambda g: (L.Autoencoder(6, 4, encoder="tanh", decoder="linear", dtype=D, rng=g),
                                        g.normal((4, 6), dtype=D))),
    "StackedTiedAutoencoder": ("layer", lambda g: (L.StackedTiedAutoencoder((6, 4, 3), encoder="tanh", dtype=D, rng=g),
                                                   g.normal((4, 6), dtype=D))),
    "MaskingNoise": ("train", lambda g: (L.MaskingNoise(0.3), g.normal((4, 6), dtype=D))),
    "GaussianNoise": ("train", lambda g: (L.GaussianNoise(0.3), g.normal((4, 6), dtype=D))),
    "Conv2D": ("layer", lambda g: (L.Conv2D(2, 3, 3, dtype=D, rng=g), g.normal((2, 2, 5, 6), dtype=D))),
    "Conv2D[stride2_same]": ("layer", lambda g: (L.Conv2D(2, 3, 3, stride=2, padding="same", dtype=D, rng=g),
                                                 g.normal((2, 2, 7, 6), dtype=D))),
    "MaxPool2D": ("layer", lambda g: (L.MaxPool2D(3, 2, "same"), _permuted(g, (2, 2, 6, 5)))),
    "AvgPool2D": ("layer", lambda g: (L.AvgPool2D(3, 2, "same"), g.normal((2, 2, 6, 5), dtype=D))),
    "ChannelBias": ("layer", lambda g: (L.ChannelBias(3, dtype=D), g.normal((2, 3, 4, 5), dtype=D))),
    "SimpleRNN": ("layer", lambda g: (L.SimpleRNN(2, 3, dtype=D, rng=g), g.normal((3, 4, 2), dtype=D))),
    "LSTM": ("layer", lambda g: (L.LSTM(2, 3, return_sequences=True, dtype=D, rng=g), g.normal((3, 4, 2), dtype=D))),
    "TimeDistributed": ("layer", lambda g: (L.TimeDistributed(L.Dense(2, 2, dtype=D, rng=g)),
                                            g.normal((3, 4, 2), dtype=D))),
    "ConvPoolDense": ("model", lambda g: (
        Sequential([L.Conv2D(1, 2, 3, dtype=D, rng=g), L.MaxPool2D(2), L.Flatten(), L.Dense(8, 3, dtype=D, rng=g)]),
        g.normal((2, 1, 6, 6), dtype=D), _labels(g, 2, 3), "softmax_cross_entropy")),
    "LSTM+TimeDistributed": ("model", lambda g: (
        Sequential([L.LSTM(1, 3, return_sequences=True, dtype=D, rng=g),
                    L.TimeDistributed(L.Dense(3, 2, dtype=D, rng=g))]),
        g.normal((3, 4, 1), dtype=D), g.normal((3, 4, 2), dtype=D), "mse")),
    "SoftmaxCrossEntropy": ("loss", lambda g: (F.SoftmaxCrossEntropy(), g.normal((5, 4), dtype=D), _labels(g, 5, 4))),
    "NegativeLogLikelihood": ("loss", lambda g: (F.NegativeLogLikelihood(),
                                                 L.softmax_forward(g.normal((5, 4), dtype=D))[0],
                                                 _labels(g, 5, 4))),
    "MeanSquaredError": ("loss", lambda g: (F.MeanSquaredError(), g.normal((4, 3), dtype=D),
                                            g.normal((4, 3), dtype=D))),
    "BinaryCrossEntropyWithLogits": ("loss", lambda g: (F.BinaryCrossEntropyWithLogits(),
                                                        g.normal((4, 3), std=2.0, dtype=D),
                                                        g.uniform((4, 3), dtype=D))),
    "BinaryCrossEntropy": ("loss", lambda g: (F.BinaryCrossEntropy(), g.uniform((4, 3), 0.05, 0.95, dtype=D),
                                              g.uniform((4, 3), dtype=D))),
    "ReconstructionCrossEntropy": ("loss", lambda g: (F.ReconstructionCrossEntropy(),
                                                      g.uniform((4, 6), 0.05, 0.95, dtype=D),
                                                      g.uniform((4, 6), dtype=D))),
    "ReconstructionCrossEntropyWithLogits": ("loss", lambda g: (F.ReconstructionCrossEntropyWithLogits(),
                                                                g.normal((4, 6), std=2.0, dtype=D),
                                                                g.uniform((4, 6), dtype=D))),
}


def test_every_layer_and_loss_npdl_gradcheck_covers_is_here():
    covered = {name.split("[")[0] for name in OWN}
    assert {c.name.split("[")[0] for c in CASES.values() if c.group != "penalty"} <= covered


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OWN))
def test_npdls_own_layers_and_losses(name):
    kind, build = OWN[name]
    args = build(backend.Generator("cpu", 7))
    if kind == "model":
        report = check_model(*args[:3], loss=args[3])
    elif kind == "loss":
        report = check_loss(*args)
    else:
        report = check_layer(*args, training=kind == "train")
    assert report.ok, str(report)
    assert report.ran("numeric")
    ran = {r for r in AUTODIFF if report.ran(r)}
    assert ran == EXPECTED.get(name, set(AUTODIFF)) & set(AUTODIFF), report.references
