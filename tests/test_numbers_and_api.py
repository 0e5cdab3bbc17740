"""The API's edges: non-finite outputs and losses, empty batches and sets, backward before forward,
upstream gradients of the wrong shape, a batch size larger than the data."""

import re
import warnings

import numpy as np
import pytest

import npdl
from npdl import backend
from npdl.errors import NpdlError, ShapeError
from npdl.layers.base import BackwardBeforeForwardError
from npdl.losses.metrics import accuracy, zero_one_error
from npdl.training import PatienceEarlyStopping, TrainingDivergedError


def blobs(n=40, seed=0, dtype=np.float32):
    """Three well-separated Gaussian blobs in 4-D, labels 0..2."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 4)) + np.eye(4)[y] * 3
    return x.astype(dtype), y.astype(np.int64)


def net(seed=0, lr=0.1, **compile_kw):
    rng = backend.Generator("cpu", seed)
    model = npdl.Sequential([npdl.Dense(4, 8, rng=rng), npdl.Tanh(), npdl.Dense(8, 3, rng=rng)], name="net")
    return model.compile("softmax_cross_entropy", npdl.optim.SGD(lr=lr), **compile_kw)


def params(model):
    return {k: backend.to_numpy(v).copy() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------ non-finite predictions


def test_a_nan_row_is_always_an_error(device):
    scores = device.asarray(np.array([[np.nan, np.nan, np.nan], [0.0, np.inf, 1.0], [np.nan, 2.0, 0.0],
                                      [0.1, 3.0, 0.2]], np.float32))
    labels = device.asarray(np.array([0, 1, 1, 1]))
    # rows 0-2 hold NaN/inf (argmax would pick label 0, 1, 1 for them), row 3 is right
    assert float(backend.to_numpy(zero_one_error(scores, labels))) == pytest.approx(0.75)
    assert float(backend.to_numpy(accuracy(scores, labels))) == pytest.approx(0.25)


def test_evaluate_scores_nan_inputs_as_wrong():
    model = net()
    x = np.full((6, 4), np.nan, np.float32)
    scores = model.evaluate(x, np.zeros(6, np.int64), metrics=["error", "accuracy"])
    assert scores["error"] == 1.0 and scores["accuracy"] == 0.0 and np.isnan(scores["loss"])


def test_empty_scores_are_refused():
    with pytest.raises(ShapeError, match="no rows to score"):
        zero_one_error(np.zeros((0, 3), np.float32), np.zeros(0, np.int64))


def test_nan_validation_loss_stops_fit_with_the_divergence_error():
    x, y = blobs()
    xv = x[:8].copy()
    xv[3, 1] = np.nan
    model = net()
    with pytest.raises(TrainingDivergedError, match=r"epoch 1: the validation loss is nan") as info:
        model.fit(x, y, epochs=3, batch_size=8, validation_data=(xv, y[:8]), verbose=0)
    assert info.value.epoch == 1 and len(model.history) == 0  # no epoch was recorded with it


def test_patience_never_keeps_a_nan_model_as_best():
    x, y = blobs()
    xv = x[:8].copy()
    xv[0, 0] = np.nan
    stopper = PatienceEarlyStopping((xv, y[:8]), patience=50, validation_frequency=2)
    with pytest.raises(TrainingDivergedError, match=r"validation loss is nan at minibatch 2 .*no best model yet"):
        net().fit(x, y, epochs=3, batch_size=8, callbacks=[stopper], verbose=0)
    assert stopper.best_iteration is None and stopper.best_state is None and stopper.validations == []


# ------------------------------------------------------------------ a training step on NaN


def test_train_step_default_returns_nan_and_fit_raises():
    """Documented default: no host read per step, so the NaN goes into the parameters; fit notices."""
    x, y = blobs(8)
    x[2, 0] = np.nan
    model = net()
    loss = model.train_step(x, y)
    assert np.isnan(float(backend.to_numpy(loss)))
    assert np.isnan(params(model)["0.W"]).any()
    with pytest.raises(TrainingDivergedError, match="epoch 1"):
        net().fit(x, y, epochs=1, batch_size=4, verbose=0)


@pytest.mark.parametrize("where", ["step", "compile"])
def test_check_finite_refuses_the_step_and_keeps_the_parameters(where):
    x, y = blobs(8)
    x[5, 3] = np.nan
    model = net(check_finite=where == "compile")
    before = params(model)
    with pytest.raises(TrainingDivergedError, match=r"net\.train_step: the loss of this batch is nan.*not taken"):
        model.train_step(x, y, check_finite=True) if where == "step" else model.train_step(x, y)
    after = params(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert all(layer.cache is None for layer in model.layers)
    model.train_step(x[:4], y[:4])  # a clean batch still trains
    assert not np.array_equal(before["0.W"], params(model)["0.W"])


def test_check_finite_in_fit_names_the_exact_batch():
    x, y = blobs(16)
    x[9, 0] = np.nan  # batch 3 of 4 without shuffling
    model = net(check_finite=True)
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, batch 3 of 4") as info:
        model.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    assert (info.value.first_batch, info.value.last_batch) == (3, 3)
    assert np.isfinite(params(model)["0.W"]).all()


# --------------------------------------------------------------------------- empty things


def test_empty_batch_is_a_shape_error_naming_the_model():
    with pytest.raises(ShapeError, match=r"net\.train_step: the batch is empty .*\(0, 4\)"):
        net().train_step(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))


@pytest.mark.parametrize("use_patience", [False, True])
def test_empty_validation_set_fails_before_the_first_step(monkeypatch, use_patience):
    x, y = blobs()
    model = net()
    steps = []
    real = model.train_batch
    monkeypatch.setattr(model, "train_batch", lambda *a, **k: steps.append(1) or real(*a, **k))
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    kw = ({"callbacks": [PatienceEarlyStopping(empty, patience=10)]} if use_patience
          else {"validation_data": empty})
    with pytest.raises(ShapeError, match="validation_data is empty"):
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, **kw)
    assert steps == []


def test_empty_test_set_of_patience_and_bad_validation_labels_fail_before_training():
    x, y = blobs()
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    with pytest.raises(ShapeError, match="test_data is empty"):
        net().fit(x, y, epochs=1, verbose=0, callbacks=[PatienceEarlyStopping((x, y), empty, patience=10)])
    with pytest.raises(npdl.errors.LabelError, match=r"validation_data: .*labels must be in 0\.\.2.*0\.\.7"):
        net().fit(x, y, epochs=1, verbose=0, validation_data=(x[:4], np.array([0, 7, 1, 2])))


# ------------------------------------------------------------------- backward, every layer


def rand(shape, seed=4):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _layers():
    rng = backend.Generator("cpu", 0)
    x2, x3, x4 = rand((3, 6), 1), rand((2, 4, 6), 2), rand((2, 3, 8, 8), 3)
    return [
        (npdl.Dense(6, 5, rng=rng), x2), (npdl.Tanh(), x2), (npdl.ReLU(), x2), (npdl.Softmax(), x2),
        (npdl.Dropout(0.5, rng=rng), x2), (npdl.Conv2D(3, 4, 3, rng=rng), x4), (npdl.MaxPool2D(2), x4),
        (npdl.Flatten(), x4), (npdl.SimpleRNN(6, 5, rng=rng), x3),
        (npdl.LSTM(6, 5, return_sequences=True, rng=rng), x3), (npdl.TimeDistributed(npdl.Dense(6, 2, rng=rng)), x3),
    ]


@pytest.mark.parametrize("index", range(11))
def test_backward_before_forward_and_wrong_dy_are_npdl_errors(index):
    layer, x = _layers()[index]
    who = f"{type(layer).__name__} '{layer.name}'"
    with pytest.raises(BackwardBeforeForwardError, match=rf"{who}: backward called before forward"):
        layer.backward(rand((3, 5)))
    shape = tuple(layer.forward(x, training=True).shape)
    wrong = rand(shape[:-1] + (shape[-1] + 1,))
    shapes = rf"{re.escape(str(shape))}, got {re.escape(str(wrong.shape))}"
    with pytest.raises(ShapeError, match=rf"{who}: dy must have the shape .*{shapes}"):
        layer.backward(wrong)
    with pytest.raises(ShapeError, match=rf"{who}: dy must have the shape"):
        layer.backward(rand((1,) + shape[1:]))  # would broadcast silently in an elementwise backward
    assert tuple(layer.backward(rand(shape)).shape) == x.shape  # the right shape still works after a refusal


def test_backward_after_the_caches_were_cleared():
    model = net()
    out = model.forward(blobs(8)[0], training=True)
    model.clear_caches()
    with pytest.raises(BackwardBeforeForwardError, match="cache was cleared") as info:
        model.backward(rand(tuple(out.shape)))
    assert isinstance(info.value, NpdlError)


def test_a_subclass_defined_later_is_checked_too():
    class Scale(npdl.layers.Layer, register=False):
        def forward(self, x, training=False):
            self.cache = 2.0
            return 2.0 * x

        def backward(self, dy):
            return self.cache * dy

    layer = Scale()
    with pytest.raises(BackwardBeforeForwardError):
        layer.backward(rand((2,)))
    layer.forward(rand((2, 3)))
    with pytest.raises(ShapeError, match=r"Scale 'scale': dy .*\(2, 3\), got \(3,\)"):
        layer.backward(rand((3,)))


# ------------------------------------------------------------------------- batch size


def test_a_batch_larger_than_the_data_is_said_once_per_fit():
    x, y = blobs(10)
    with pytest.warns(UserWarning, match=r"net\.fit: batch_size=64 is larger than the 10 training examples") as got:
        net().fit(x, y, epochs=3, batch_size=64, verbose=0)
    assert len([w for w in got if "batch_size" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net().fit(x, y, epochs=1, batch_size=10, verbose=0)
