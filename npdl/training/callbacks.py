"""Callbacks: code that runs at fixed points of :meth:`Sequential.fit`.

Hooks (all optional): ``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``,
``on_batch_end(batch, logs)``, ``on_epoch_end(epoch, logs)``, ``on_train_end(logs)``.
Epochs and batches are 0-based (the progress bar prints them 1-based). Epoch
logs hold host floats (``loss``, metrics, ``val_*``, ``lr``, ``seconds``); batch
logs hold the batch's loss as a 0-d *device* array plus its ``size``, because
reading it would synchronise with a GPU every step -- read it only when needed.
A callback stops training by setting ``self.model.stop_training = True``; the
loop checks it after every batch and after every epoch.

The Theano tutorials' patience rule lives in :mod:`npdl.training.patience`.
"""

from __future__ import annotations

import csv
import math
import os
import warnings

from .checkpoint import save_checkpoint


class Callback:
    """Base class: every hook does nothing. ``self.model`` and ``self.params``
    (``epochs``, ``steps``, ``batch_size``, ``samples``, ``initial_epoch``, ``verbose``) are set by fit."""

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params: dict):
        self.params = dict(params)

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass


class CallbackList:
    """Calls each hook on every callback, in the order given."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks or ())
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be npdl.training.Callback instances, got {type(cb).__name__}")
            cb.set_model(model)
            cb.set_params(params)

    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_batch_end(self, batch, logs=None):
        for cb in self.callbacks:
            cb.on_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)


def _mode_for(monitor: str, mode: str) -> str:
    """``"min"`` or ``"max"``; ``"auto"`` maximises accuracies and minimises everything else."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    return "max" if monitor.endswith(("accuracy", "acc")) else "min"


def _monitored(logs, monitor, who):
    if monitor not in (logs or {}):
        raise KeyError(f"{who}: cannot monitor {monitor!r}: the epoch logs have {sorted(logs or {})} "
                       "(val_* keys need validation_data)")
    return float(logs[monitor])


class EarlyStopping(Callback):
    """Keras-style early stopping, checked once per epoch.

    Stops when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs in a row. With ``restore_best=True`` the parameters of the
    best epoch are copied (on the device) when seen and put back at the end of
    training, so the model ends at its best epoch rather than its last.
    """

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto", restore_best=False):
        super().__init__()
        self.monitor, self.patience, self.min_delta = monitor, int(patience), abs(float(min_delta))
        self.mode = _mode_for(monitor, mode)
        self.restore_best = bool(restore_best)

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch = 0, None, None
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_state = None

    def _improved(self, value) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        value = _monitored(logs, self.monitor, "EarlyStopping")
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = self.model.state_dict(copy=True)
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)


class ModelCheckpoint(Callback):
    """Save a checkpoint (:func:`npdl.training.save_checkpoint`) at the end of each epoch.

    ``path`` may hold ``{epoch}`` (1-based, the number of epochs done) and any log
    key, e.g. ``"ckpt-{epoch:03d}-{val_loss:.3f}.npz"``. With ``monitor`` and
    ``save_best_only`` it saves only when the monitored value improves. The file
    holds the model, its optimizer, the shuffling generator and the history, so
    ``Sequential.load_checkpoint`` resumes training exactly. A diverged state is
    never written: a NaN loss stops fit before this runs, and non-finite logs or
    parameters skip the save with a warning, so the last good file stays.
    """

    def __init__(self, path, monitor=None, save_best_only=False, mode="auto", extra=None):
        super().__init__()
        if save_best_only and monitor is None:
            raise ValueError("ModelCheckpoint: save_best_only needs a monitor, e.g. monitor='val_loss'")
        self.path, self.monitor, self.save_best_only, self.extra = os.fspath(path), monitor, save_best_only, extra
        self.mode = _mode_for(monitor or "loss", mode)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.saved: list[str] = []

    def _finite_state(self, logs) -> bool:
        if any(isinstance(v, float) and not math.isfinite(v) for v in (logs or {}).values()):
            return False
        return self.model.parameters_finite()

    def on_epoch_end(self, epoch, logs=None):
        if not self._finite_state(logs):
            warnings.warn(f"ModelCheckpoint: epoch {epoch + 1} has non-finite loss or parameters; "
                          "not saving, the previous checkpoint is kept", RuntimeWarning, stacklevel=2)
            return
        if self.monitor is not None:
            value = _monitored(logs, self.monitor, "ModelCheckpoint")
            improved = value < self.best if self.mode == "min" else value > self.best
            if improved:
                self.best = value
            elif self.save_best_only:
                return
        path = self.path.format(epoch=epoch + 1, **(logs or {}))
        save_checkpoint(path, self.model, optimizer=self.model.optimizer, rng=self.model.fit_rng,
                        epoch=epoch + 1, history=self.model.history, extra=self.extra)
        self.saved.append(path)


class CSVLogger(Callback):
    """Append one CSV row per epoch (``epoch`` 0-based, then the epoch logs), flushed at once so
    a crash loses nothing already logged. ``append=True`` continues an existing file (resume)."""

    def __init__(self, path, append=False, separator=","):
        super().__init__()
        self.path, self.append, self.separator = os.fspath(path), bool(append), separator
        self.keys = None

    def on_train_begin(self, logs=None):
        resume = self.append and os.path.exists(self.path) and os.path.getsize(self.path) > 0
        self.keys = None
        if resume:
            with open(self.path, newline="") as f:
                header = next(csv.reader(f, delimiter=self.separator), None)
            self.keys = header[1:] if header else None
        self._file = open(self.path, "a" if resume else "w", newline="")
        self._writer = csv.writer(self._file, delimiter=self.separator)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = list(logs)
            self._writer.writerow(["epoch"] + self.keys)
        self._writer.writerow([epoch] + [repr(float(logs[k])) if k in logs else "" for k in self.keys])
        self._file.flush()

    def on_train_end(self, logs=None):
        self._file.close()


class LearningRateScheduler(Callback):
    """Set the optimizer's base rate at the start of each epoch: ``lr = fn(epoch, lr)`` (epoch 0-based).

    ``fn`` gets the current base rate (``optimizer.lr``) and returns the new one, as
    Keras's callback does. A per-iteration schedule on the optimizer still applies on top.
    """

    def __init__(self, fn, verbose=0):
        super().__init__()
        self.fn, self.verbose = fn, int(verbose)

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        lr = float(self.fn(int(epoch), float(optimizer.lr)))
        if not math.isfinite(lr) or lr < 0:
            raise ValueError(f"LearningRateScheduler: fn returned lr={lr!r} for epoch {epoch}; it must be finite "
                             "and >= 0")
        optimizer.lr = lr
        if self.verbose:
            print(f"Epoch {epoch + 1}: learning rate set to {lr:.6g}")
