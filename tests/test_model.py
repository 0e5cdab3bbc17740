"""Sequential: learning, summary, freezing, prediction, state, devices, penalties, the fit loop."""

import numpy as np
import pytest

import npdl
from npdl import backend
from npdl.errors import DTypeError, LabelError, ShapeError
from npdl.layers import Dense, Dropout, ReLU, Tanh
from npdl.models import Sequential, parameter_counts
from npdl.optim import SGD, Adam, Momentum
from npdl.optim.base import total_gradient
from npdl.training import Callback, TrainingDivergedError, progress


def xor_data(n=400, seed=0):
    """Noisy XOR: four Gaussian blobs, label = (x0 > 0) xor (x1 > 0). Not linearly separable."""
    rng = np.random.default_rng(seed)
    centers = rng.integers(0, 2, size=(n, 2)) * 2 - 1
    x = (centers + 0.25 * rng.normal(size=(n, 2))).astype("float32")
    y = (centers[:, 0] != centers[:, 1]).astype("int64")
    return x, y


def mlp(device="cpu", seed=0, hidden=16, dropout=None, dtype=None):
    npdl.manual_seed(seed)
    layers = [Dense(2, hidden, dtype=dtype), Tanh()]
    if dropout:
        layers.append(Dropout(dropout))
    layers.append(Dense(hidden, 2, dtype=dtype))
    return Sequential(layers, name="xor").to(device)


def host(a):
    return np.array(backend.to_numpy(a))


# ----------------------------------------------------------------------- learning


def test_mlp_learns_xor(device):
    x, y = xor_data()
    model = mlp(device).compile("softmax_cross_entropy", Adam(lr=0.05))
    history = model.fit(x, y, epochs=30, batch_size=20, verbose=0, rng=backend.Generator(device, 0))
    assert history.loss[-1] < 0.5 * history.loss[0]
    scores = model.evaluate(x, y)
    assert scores["accuracy"] >= 0.98, scores
    assert set(scores) == {"loss", "accuracy"}


def test_linear_model_cannot_learn_xor():
    """The XOR test above can fail: without a hidden layer the same data stays near chance."""
    x, y = xor_data()
    npdl.manual_seed(0)
    model = Sequential([Dense(2, 2)]).compile("softmax_cross_entropy", Adam(lr=0.05))
    model.fit(x, y, epochs=30, batch_size=20, verbose=0)
    assert model.evaluate(x, y)["accuracy"] < 0.8


# ------------------------------------------------------------------------- summary


def test_summary_counts_784_500_10():
    model = Sequential([Dense(784, 500), Tanh(), Dense(500, 10)], name="mlp")
    text = model.summary()
    assert "Total params: 397,510" in text
    assert "Trainable params: 397,510" in text and "Non-trainable params: 0" in text
    assert "(None, 500)" in text and "(None, 10)" in text and "392,500" in text and "5,010" in text
    assert parameter_counts(model) == (397510, 0)
    model.freeze(0)
    assert parameter_counts(model) == (5010, 392500)
    assert "Non-trainable params: 392,500" in model.summary()
    assert str(model) == model.summary()


def test_summary_with_explicit_input_shape_and_flatten():
    model = Sequential([npdl.Flatten(), Dense(784, 10)], input_shape=(28, 28))
    assert "(None, 784)" in model.summary()


# ------------------------------------------------------------------------- freezing


def test_freeze_keeps_params_while_others_change(device):
    x, y = xor_data(64)
    model = mlp(device)
    model.compile("softmax_cross_entropy", Momentum(lr=0.1))
    model.freeze(0)
    before = {k: host(v) for k, v in model.state_dict().items()}
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    after = {k: host(v) for k, v in model.state_dict().items()}
    assert np.array_equal(before["0.W"], after["0.W"]) and np.array_equal(before["0.b"], after["0.b"])
    assert not np.array_equal(before["2.W"], after["2.W"])


def test_frozen_middle_layer_still_passes_gradient_down(device):
    x, y = xor_data(64)
    npdl.manual_seed(0)
    model = Sequential([Dense(2, 8), Tanh(), Dense(8, 8), Tanh(), Dense(8, 2)]).to(device)
    model.compile("softmax_cross_entropy", SGD(lr=0.1))
    model.freeze(2)
    before = {k: host(v) for k, v in model.state_dict().items()}
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    after = {k: host(v) for k, v in model.state_dict().items()}
    assert np.array_equal(before["2.W"], after["2.W"])
    assert not np.array_equal(before["0.W"], after["0.W"])  # got gradient through the frozen layer


def test_frozen_bottom_layer_is_not_backpropagated():
    x, y = xor_data(32)
    model = mlp().compile("softmax_cross_entropy", SGD(lr=0.1))
    model.freeze(0)

    def fail(dy):
        raise AssertionError("backward of a frozen bottom layer should be skipped")

    model.layers[0].backward = fail
    model.layers[1].backward = fail  # parameter-free and below every trainable layer: skipped too
    model.train_step(x[:8], y[:8])
    model.unfreeze(0)
    with pytest.raises(AssertionError, match="frozen bottom"):
        model.train_step(x[:8], y[:8])


# ------------------------------------------------------------------------- prediction


def test_predict_in_batches_equals_one_forward(device):
    x, _ = xor_data(103)
    model = mlp(device, dropout=0.5)
    full = host(model.forward(device.asarray(x), training=False))
    batched = model.predict(x, batch_size=10)
    assert backend.device_of(batched) == device
    np.testing.assert_allclose(host(batched), full, rtol=1e-6, atol=1e-6)
    assert all(layer.cache is None for layer in model.layers)


# ------------------------------------------------------------------------- state


def test_state_dict_round_trip(device):
    x, _ = xor_data(20)
    a, b = mlp(device, seed=1), mlp(device, seed=2)
    assert not np.array_equal(host(a.predict(x)), host(b.predict(x)))
    state = a.state_dict()
    assert sorted(state) == ["0.W", "0.b", "2.W", "2.b"]
    b.load_state_dict(state)
    assert np.array_equal(host(a.predict(x)), host(b.predict(x)))
    state["0.W"] += 1.0  # a copy: changing it does not touch the model
    assert not np.array_equal(host(state["0.W"]), host(a.layers[0].params["W"]))


def test_load_state_dict_refuses_mismatches_and_changes_nothing():
    model, other = mlp(hidden=16), mlp(hidden=8)
    before = {k: host(v) for k, v in model.state_dict().items()}
    with pytest.raises(ShapeError, match="'0.W' has shape"):
        model.load_state_dict(other.state_dict())
    state = {k: host(v) for k, v in model.state_dict().items()}
    with pytest.raises(ShapeError, match="missing"):
        model.load_state_dict({k: v for k, v in state.items() if k != "2.b"})
    state["2.b"] = state["2.b"].astype("float64")
    state["0.W"] = state["0.W"] + 1
    with pytest.raises(DTypeError, match="never casts"):
        model.load_state_dict(state)
    for k, v in model.state_dict().items():
        assert np.array_equal(host(v), before[k])  # all checks run before the first copy


def test_config_round_trip_keeps_architecture_and_trainable_flags():
    model = mlp(dropout=0.3)
    model.freeze(0)
    clone = Sequential.from_config(model.get_config())
    assert [type(layer) for layer in clone] == [type(layer) for layer in model]
    assert [layer.trainable for layer in clone] == [layer.trainable for layer in model]
    assert clone.layers[2].rate == 0.3
    clone.load_state_dict(model.state_dict())
    x, _ = xor_data(10)
    assert np.array_equal(host(clone.predict(x)), host(model.predict(x)))


def test_to_strict_and_back_gives_same_predictions():
    x, y = xor_data(50)
    model = mlp("cpu").compile("softmax_cross_entropy", Momentum(lr=0.1))
    model.fit(x, y, epochs=1, batch_size=10, verbose=0)  # optimizer now has velocity slots
    on_cpu = host(model.predict(x))
    model.to("strict")
    assert backend.device_of(model.layers[0].params["W"]) == backend.get_device("strict")
    np.testing.assert_allclose(host(model.predict(x)), on_cpu, rtol=1e-6, atol=1e-6)
    model.fit(x, y, epochs=1, batch_size=10, verbose=0)  # optimizer state followed the model
    on_strict = host(model.predict(x))
    model.to("cpu")
    np.testing.assert_allclose(host(model.predict(x)), on_strict, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------- penalties


@pytest.mark.parametrize("l2,l1", [(0.05, 0.0), (0.0, 0.03), (0.05, 0.03)])
def test_penalty_gradient_matches_finite_differences(l2, l1):
    """Gradient used for the step == central differences of (data loss + penalty), float64."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3))
    y = rng.integers(0, 2, size=6)
    npdl.manual_seed(3)
    model = Sequential([Dense(3, 4, dtype="float64"), Tanh(), Dense(4, 2, dtype="float64")])
    for layer in (model.layers[0], model.layers[2]):  # non-zero biases: they must get no penalty
        layer.params["b"][...] = rng.normal(size=layer.params["b"].shape)
    model.compile("softmax_cross_entropy", SGD(lr=0.0), l2=l2, l1=l1)

    def objective():
        data = float(model.loss.forward(model.forward(x), y))
        weights = [model.layers[0].params["W"], model.layers[2].params["W"]]
        return data + l2 * sum((W ** 2).sum() for W in weights) + l1 * sum(np.abs(W).sum() for W in weights)

    reported = float(model.train_step(x, y))  # lr=0: computes every gradient, moves nothing
    assert reported == pytest.approx(objective(), rel=1e-12)
    params, grads, _, pens = model.step_inputs()  # what the optimizer's step received
    for index in (0, 2):
        layer = model.layers[index]
        for name, p in layer.params.items():
            key = f"{index}.{name}"
            used = total_gradient(params[key], grads[key], *pens.get(key, (0.0, 0.0)))
            numeric = np.zeros_like(p)
            for i in np.ndindex(p.shape):
                old = p[i]
                p[i] = old + 1e-6
                up = objective()
                p[i] = old - 1e-6
                down = objective()
                p[i] = old
                numeric[i] = (up - down) / 2e-6
            np.testing.assert_allclose(used, numeric, rtol=1e-6, atol=1e-8, err_msg=key)


def test_penalty_is_part_of_reported_loss():
    x, y = xor_data(40)
    plain = mlp(seed=5).compile("softmax_cross_entropy", SGD(lr=0.0))
    penalised = mlp(seed=5).compile("softmax_cross_entropy", SGD(lr=0.0), l2=0.1)
    w = sum(float((host(p) ** 2).sum()) for k, p in plain.state_dict().items() if k.endswith("W"))
    assert penalised.evaluate(x, y)["loss"] == pytest.approx(plain.evaluate(x, y)["loss"] + 0.1 * w, rel=1e-5)


# ------------------------------------------------------------------------- the fit loop


def test_fit_reads_the_device_a_few_times_per_epoch_not_per_batch(monkeypatch):
    x, y = xor_data(1000)
    model = mlp().compile("softmax_cross_entropy", SGD(lr=0.1))
    calls = {"n": 0}
    real_to_float, real_to_numpy = backend.to_float, backend.to_numpy

    def counting(real):
        def wrapper(*a, **k):
            calls["n"] += 1
            return real(*a, **k)
        return wrapper

    monkeypatch.setattr(progress, "REFRESH_SECONDS", 3600.0)  # no mid-epoch refresh in this test
    monkeypatch.setattr(backend, "to_float", counting(real_to_float))
    monkeypatch.setattr(backend, "to_numpy", counting(real_to_numpy))
    epochs, batches_per_epoch = 3, 100
    model.fit(x, y, epochs=epochs, batch_size=10, validation_data=(x[:100], y[:100]), verbose=0)
    # per fit: one label check; per epoch: one read of the training sums, one label check and one
    # read for validation. Per batch would be >= 300.
    assert 0 < calls["n"] <= 2 + 3 * epochs < batches_per_epoch


def test_fit_moves_data_to_the_device_once_not_per_batch(monkeypatch):
    x, y = xor_data(1000)
    model = mlp("strict").compile("softmax_cross_entropy", SGD(lr=0.1))
    calls = {"n": 0}
    real = backend.Device.asarray

    def counting(self, *a, **k):
        calls["n"] += 1
        return real(self, *a, **k)

    monkeypatch.setattr(backend.Device, "asarray", counting)
    model.fit(x, y, epochs=2, batch_size=10, verbose=0, rng=backend.Generator("cpu", 0))
    # x and y once, then one shuffling permutation per epoch; 100 batches per epoch
    assert calls["n"] == 2 + 2


def test_backward_returns_the_input_gradient_only_when_asked():
    x, y = xor_data(8)
    model = mlp().compile("softmax_cross_entropy", SGD(lr=0.0))
    model.loss.forward(model.forward(x, training=True), y)
    dout = model.loss.backward(1.0)
    assert model.backward(dout) is None
    dx = model.backward(dout, input_grad=True)
    assert dx.shape == x.shape and dx.dtype == np.float32


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_loss_raises_naming_the_epoch(monkeypatch):
    x, y = xor_data(100)
    x[45, 0] = np.nan  # batch 5 (1-based) of every epoch with batch_size=10 and no shuffling
    model = mlp().compile("softmax_cross_entropy", SGD(lr=0.1))
    with pytest.raises(TrainingDivergedError, match=r"epoch 1\b") as info:
        model.fit(x, y, epochs=3, batch_size=10, shuffle=False, verbose=0)
    assert info.value.epoch == 1 and info.value.first_batch <= 5 <= info.value.last_batch
    # reading at every batch (refresh interval 0) pins the batch exactly
    monkeypatch.setattr(progress, "REFRESH_SECONDS", 0.0)
    model = mlp().compile("softmax_cross_entropy", SGD(lr=0.1))
    with pytest.raises(TrainingDivergedError, match=r"batches 5\.\.5 of 10") as info:
        model.fit(x, y, epochs=3, batch_size=10, shuffle=False, verbose=0)
    assert (info.value.epoch, info.value.first_batch, info.value.last_batch) == (1, 5, 5)


class PoisonAtEpoch(Callback):
    """Puts a NaN into the first weight when ``epoch`` (0-based) begins."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.layers[0].params["W"][0, 0] = float("nan")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_in_a_later_epoch_names_that_epoch():
    x, y = xor_data(100)
    model = mlp().compile("softmax_cross_entropy", SGD(lr=0.1))
    with pytest.raises(TrainingDivergedError, match=r"epoch 3\b"):
        model.fit(x, y, epochs=5, batch_size=10, verbose=0, callbacks=[PoisonAtEpoch(2)])
    assert len(model.history) == 2


def test_history_fields():
    x, y = xor_data(100)
    model = mlp().compile("softmax_cross_entropy", Momentum(lr=0.1), metrics=["accuracy", "error"])
    history = model.fit(x, y, epochs=3, batch_size=10, validation_data=(x, y), verbose=0)
    assert set(history.history) == {"loss", "accuracy", "error", "val_loss", "val_accuracy", "val_error",
                                    "lr", "seconds"}
    assert history.epoch == [0, 1, 2] and all(len(v) == 3 for v in history.history.values())
    assert history.lr == [0.1] * 3 and all(s > 0 for s in history.seconds)
    assert set(history.metrics) == {"accuracy", "error"} and set(history.val_metrics) == {"accuracy", "error"}
    for acc, err in zip(history["accuracy"], history["error"]):
        assert acc + err == pytest.approx(1.0, abs=1e-6)
    assert history.val_loss[-1] == pytest.approx(model.evaluate(x, y)["loss"], rel=1e-6)


def test_one_summary_line_per_epoch_when_not_a_terminal(capsys):
    x, y = xor_data(40)
    model = mlp().compile("softmax_cross_entropy", SGD(lr=0.1))
    model.fit(x, y, epochs=2, batch_size=10, verbose=1)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith("Epoch 1/2 - loss=") and "accuracy=" in lines[0]
    model.fit(x, y, epochs=2, batch_size=10, verbose=0)
    assert capsys.readouterr().out == ""


def test_regression_has_no_metrics_and_refuses_accuracy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0]], dtype="float32")) + 0.5
    npdl.manual_seed(0)
    model = Sequential([Dense(2, 1)]).compile("mse", SGD(lr=0.1))
    history = model.fit(x, y, epochs=20, batch_size=8, verbose=0)
    assert set(history.history) == {"loss", "lr", "seconds"}
    assert history.loss[-1] < 1e-3
    with pytest.raises(ValueError, match="classifier"):
        Sequential([Dense(2, 1)]).compile("mse", SGD(lr=0.1), metrics=["accuracy"])


def test_fit_checks_labels_once_and_refuses_silent_casts():
    x, y = xor_data(40)
    model = mlp().compile("softmax_cross_entropy", SGD(lr=0.1))
    bad = y.copy()
    bad[33] = 2
    with pytest.raises(LabelError, match="0..1"):
        model.fit(x, bad, verbose=0)
    with pytest.raises(DTypeError):
        model.fit(x.astype("float64"), y, verbose=0)
    with pytest.raises(ShapeError, match="examples"):
        model.fit(x, y[:-1], verbose=0)
    assert model.loss.check_range is True  # switched off only during fit


class StopAfter(Callback):
    def __init__(self, batches):
        super().__init__()
        self.batches, self.seen = batches, 0

    def on_batch_end(self, batch, logs=None):
        assert "loss" in logs and logs["size"] > 0
        self.seen += 1
        if self.seen == self.batches:
            self.model.stop_training = True


def test_stop_training_from_a_batch_callback_stops_mid_epoch():
    x, y = xor_data(100)
    model = mlp().compile("softmax_cross_entropy", SGD(lr=0.1))
    history = model.fit(x, y, epochs=5, batch_size=10, verbose=0, callbacks=[StopAfter(13)])
    assert model.optimizer.iterations == 13 and len(history) == 2


def test_relu_model_trains_on_strict_with_dropout():
    x, y = xor_data(200)
    npdl.manual_seed(0)
    model = Sequential([Dense(2, 32), ReLU(), Dropout(0.2), Dense(32, 2)]).to("strict")
    model.compile("softmax_cross_entropy", Adam(lr=0.02))
    model.fit(x, y, epochs=20, batch_size=20, verbose=0)
    assert model.evaluate(x, y)["accuracy"] > 0.95
