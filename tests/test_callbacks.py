"""Callbacks: the Theano patience rule, Keras-style early stopping, CSV logging, LR schedules."""

import csv
import math
import random

import numpy as np
import pytest

import npdl
from npdl import backend
from npdl.layers import Dense, Tanh
from npdl.models import Sequential
from npdl.optim import SGD, Momentum
from npdl.training import (Callback, CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint,
                           PatienceEarlyStopping, PatienceRule, read_checkpoint)


def blobs(n=200, seed=0):
    """Two separable Gaussian blobs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    x = (rng.normal(size=(n, 2)) + 3.0 * (y[:, None] * 2 - 1)).astype("float32")
    return x, y.astype("int64")


def model(seed=0, lr=0.1):
    npdl.manual_seed(seed)
    return Sequential([Dense(2, 8), Tanh(), Dense(8, 2)]).compile("softmax_cross_entropy", SGD(lr=lr))


def host(a):
    return np.array(backend.to_numpy(a))


# ------------------------------------------------------------------ the patience rule


def tutorial_loop(curve, patience, n_train_batches, n_epochs=10 ** 6,
                  patience_increase=2, improvement_threshold=0.995):
    """The Theano tutorials' loop (logistic_sgd.py / mlp.py), transcribed line by line, with the
    validation loss taken from ``curve`` instead of a model. Returns (stop iter, best, best iter)."""
    validation_frequency = min(n_train_batches, patience // 2)
    best_validation_loss, best_iter = np.inf, None
    done_looping, epoch, seen = False, 0, 0
    while epoch < n_epochs and not done_looping:
        epoch = epoch + 1
        for minibatch_index in range(n_train_batches):
            iter = (epoch - 1) * n_train_batches + minibatch_index  # noqa: A001 (the tutorial's name)
            if (iter + 1) % validation_frequency == 0:
                if seen == len(curve):
                    return None, best_validation_loss, best_iter
                this_validation_loss = curve[seen]
                seen += 1
                if this_validation_loss < best_validation_loss:
                    if this_validation_loss < best_validation_loss * improvement_threshold:
                        patience = max(patience, iter * patience_increase)
                    best_validation_loss = this_validation_loss
                    best_iter = iter
            if patience <= iter:
                done_looping = True
                break
    return iter, best_validation_loss, best_iter


def test_patience_rule_extends_on_significant_improvement():
    rule = PatienceRule(patience=10)
    # significant improvements up to iteration 6 raise patience to 6 * 2 = 12, then nothing improves
    curve = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4] + [0.4] * 20
    assert rule.run(curve) == 12
    assert (rule.best, rule.best_iteration, rule.patience) == (0.4, 6, 12)


def test_insignificant_improvement_becomes_best_but_buys_no_patience():
    # 0.999 is better than 1.0 but by less than 0.5 %: new best, patience stays 10
    small = PatienceRule(patience=10)
    assert small.run([1.0] * 8 + [0.999] + [1.0] * 20) == 10
    assert (small.best, small.best_iteration, small.patience) == (0.999, 8, 10)
    big = PatienceRule(patience=10)
    assert big.run([1.0] * 8 + [0.9] + [1.0] * 20) == 16  # 8 * 2
    assert big.patience == 16


def test_validation_frequency_is_the_tutorials():
    assert PatienceRule(5000).validation_frequency(2500) == 2500  # MNIST, batch 20: once per epoch
    assert PatienceRule(5000).validation_frequency(83) == 83
    assert PatienceRule(10).validation_frequency(100) == 5
    assert PatienceRule(1).validation_frequency(100) == 1  # floored: never a modulo by zero


def test_patience_rule_agrees_with_the_tutorial_loop_on_random_curves():
    rng = random.Random(0)
    stopped = 0
    for trial in range(300):
        patience, n_batches = rng.choice([4, 10, 30, 100]), rng.choice([1, 3, 7, 50])
        value, curve = 1.0, []
        for _ in range(200):
            value *= rng.choice([1.0, 1.0, 1.001, 0.999, 0.98, 0.9])
            curve.append(value)
        rule = PatienceRule(patience)
        frequency = rule.validation_frequency(n_batches)
        expected_stop, expected_best, expected_best_iter = tutorial_loop(curve, patience, n_batches)
        assert rule.run(curve, frequency) == expected_stop, trial
        assert (rule.best, rule.best_iteration) == (expected_best, expected_best_iter), trial
        stopped += expected_stop is not None
    assert stopped > 100  # the comparison covered many early stops


class FakeValidation(PatienceEarlyStopping):
    """Patience early stopping fed a scripted validation curve instead of evaluating the model."""

    def __init__(self, curve, **kw):
        super().__init__(validation_data=blobs(10), **kw)
        self.curve, self.calls = list(curve), 0

    def _score(self, data):
        if data is self._test:
            return 100.0 + self.calls  # the test score recorded at each new best
        self.calls += 1
        return self.curve[self.calls - 1]


def test_patience_early_stopping_stops_fit_at_the_rules_iteration():
    x, y = blobs(100)
    m = model()
    curve = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4] + [0.4] * 100
    cb = FakeValidation(curve, test_data=blobs(10), patience=10, validation_frequency=1, restore_best=False)
    m.fit(x, y, epochs=50, batch_size=10, verbose=0, callbacks=[cb])
    assert cb.stopped_iteration == 12 and m.optimizer.iterations == 13  # iterations 0..12 were trained
    assert (cb.best_validation, cb.best_iteration, cb.test_score) == (0.4, 6, 107.0)
    assert [it for it, _ in cb.validations] == list(range(13))


def test_patience_early_stopping_default_frequency_and_restore_best():
    x, y = blobs(100)  # 10 batches per epoch; patience 10 -> validate every min(10, 5) = 5 batches
    m = model()
    snapshots = {}

    class Snapshot(Callback):
        def on_batch_end(self, batch, logs=None):
            snapshots[len(snapshots)] = {k: host(v) for k, v in self.model.state_dict().items()}

    curve = [1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    cb = FakeValidation(curve, patience=10)
    m.fit(x, y, epochs=50, batch_size=10, verbose=0, callbacks=[Snapshot(), cb])
    assert cb.frequency == 5 and [it for it, _ in cb.validations] == [4, 9, 14]
    assert cb.best_iteration == 9 and cb.patience == 18  # max(10, 9 * 2)
    assert cb.stopped_iteration == 18 and m.optimizer.iterations == 19  # stops once patience <= iter
    for k, v in m.state_dict().items():  # restored to the parameters right after iteration 9
        assert np.array_equal(host(v), snapshots[9][k])


def test_patience_early_stopping_on_real_validation_error():
    x, y = blobs(400)
    m = model(lr=0.5)
    cb = PatienceEarlyStopping((x[300:], y[300:]), test_data=(x[:100], y[:100]), patience=20)
    m.fit(x[:300], y[:300], epochs=100, batch_size=10, verbose=0, callbacks=[cb])
    assert cb.stopped_iteration is not None and m.optimizer.iterations < 100 * 30
    assert cb.best_validation <= 0.02 and cb.test_score is not None and cb.test_score <= 0.05
    assert m.evaluate(x[300:], y[300:], metrics=["error"])["error"] == pytest.approx(cb.best_validation)


# ------------------------------------------------------------------ Keras-style callbacks


class ScriptedValLoss(Callback):
    """Overwrites ``val_loss`` in the epoch logs (callbacks after it see the scripted value)
    and records the parameters at each epoch's end."""

    def __init__(self, curve):
        super().__init__()
        self.curve, self.states = curve, []

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.curve[epoch]
        self.states.append({k: host(v) for k, v in self.model.state_dict().items()})


@pytest.mark.parametrize("restore_best", [False, True])
def test_early_stopping(restore_best):
    x, y = blobs(60)
    m = model()
    script = ScriptedValLoss([1.0, 0.5, 0.6, 0.55, 0.4, 0.3])
    stopper = EarlyStopping(patience=2, restore_best=restore_best)
    history = m.fit(x, y, epochs=6, batch_size=10, verbose=0, callbacks=[script, stopper])
    assert len(history) == 4 and stopper.stopped_epoch == 3 and stopper.best_epoch == 1
    expected = script.states[1] if restore_best else script.states[3]
    for k, v in m.state_dict().items():
        assert np.array_equal(host(v), expected[k])


def test_early_stopping_min_delta_and_missing_key():
    x, y = blobs(60)
    stopper = EarlyStopping(patience=1, min_delta=0.2)
    history = model().fit(x, y, epochs=5, batch_size=10, verbose=0,
                          callbacks=[ScriptedValLoss([1.0, 0.9, 0.85, 0.8, 0.7]), stopper])
    assert len(history) == 2  # 0.9 is not 0.2 better than 1.0
    with pytest.raises(KeyError, match="val_loss"):
        model().fit(x, y, epochs=1, verbose=0, callbacks=[EarlyStopping()])


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    x, y = blobs(60)
    path = tmp_path / "log.csv"
    history = model().fit(x, y, epochs=3, batch_size=10, validation_data=(x, y), verbose=0,
                          callbacks=[CSVLogger(path)])
    rows = list(csv.DictReader(open(path)))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    assert [float(r["val_loss"]) for r in rows] == history.val_loss
    history.to_csv(tmp_path / "history.csv")
    again = list(csv.DictReader(open(tmp_path / "history.csv")))
    assert [float(r["loss"]) for r in again] == history.loss
    # resuming appends under the same header
    model().fit(x, y, epochs=1, verbose=0, callbacks=[CSVLogger(path, append=True)])
    assert len(list(csv.DictReader(open(path)))) == 4


def test_learning_rate_scheduler_sets_the_rate_each_epoch():
    x, y = blobs(40)
    m = model()
    m.compile("softmax_cross_entropy", Momentum(lr=0.4))
    history = m.fit(x, y, epochs=3, batch_size=10, verbose=0,
                    callbacks=[LearningRateScheduler(lambda epoch, lr: lr / 2)])
    assert history.lr == [0.2, 0.1, 0.05] and m.optimizer.lr == 0.05
    with pytest.raises(ValueError, match="finite"):
        m.fit(x, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: math.nan)])


def test_model_checkpoint_save_best_only(tmp_path):
    x, y = blobs(60)
    script = ScriptedValLoss([1.0, 0.5, 0.7, 0.4, 0.9])
    saver = ModelCheckpoint(str(tmp_path / "best-{epoch}.npz"), monitor="val_loss", save_best_only=True)
    model().fit(x, y, epochs=5, batch_size=10, verbose=0, callbacks=[script, saver])
    assert [p.rsplit("/", 1)[1] for p in saver.saved] == ["best-1.npz", "best-2.npz", "best-4.npz"]
    assert read_checkpoint(saver.saved[-1])["epoch"] == 4
    with pytest.raises(ValueError, match="monitor"):
        ModelCheckpoint(tmp_path / "x.npz", save_best_only=True)


def test_callbacks_must_be_callback_instances():
    x, y = blobs(20)
    with pytest.raises(TypeError, match="Callback"):
        model().fit(x, y, batch_size=10, verbose=0, callbacks=[lambda: None])
