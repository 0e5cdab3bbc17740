"""The training loop behind :meth:`Sequential.fit`, and batched evaluation / prediction.

What it does to stay fast on any device:

* ``x`` and ``y`` move to the model's device once, before the first epoch; each
  batch is then a slice (or, when shuffling, ``xp.take`` with a slice of a
  permutation drawn on the device), never a host-to-device copy.
* Losses and metrics are summed on the device as 0-d arrays. The host reads them
  (one stacked transfer) only every :data:`progress.REFRESH_SECONDS` and at the end
  of the epoch. On a GPU every read is a synchronisation, so nothing here reads
  per step.
* Class labels are range-checked once per call (one read), after which the loss's
  own per-batch range check (which would read min/max every batch) is switched off.

The divergence check rides on those reads: a running sum that is NaN or infinite
means some batch since the last good read produced it, so the error names the
epoch and that batch range (exact to the batch when reads are frequent enough).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings

from .. import backend
from ..errors import GPUOutOfMemoryError, LabelError, ShapeError
from ..losses.base import check_labels
from . import progress as progress_mod
from .callbacks import CallbackList
from .errors import TrainingDivergedError
from .history import History


# ------------------------------------------------------------------- host reads


def read_scalars(values: dict) -> dict:
    """``{name: 0-d device array}`` -> ``{name: float}`` in ONE device-to-host transfer."""
    if not values:
        return {}
    names = list(values)
    arrays = [v for v in values.values() if not isinstance(v, (int, float))]
    if not arrays:  # host numbers already (NumPy float64 arithmetic on 0-d arrays gives Python floats)
        return {k: float(v) for k, v in values.items()}
    xp = backend.namespace(*arrays)
    stacked = xp.stack([xp.asarray(values[k]) for k in names])
    host = backend.to_numpy(stacked)
    return {k: float(host[i]) for i, k in enumerate(names)}


def _accumulate(sums: dict, name: str, value) -> None:
    sums[name] = value if name not in sums else sums[name] + value


def _means(sums: dict, count: int) -> dict:
    """Running sums (device) -> means (host floats), in one read."""
    return {k: v / count for k, v in read_scalars(sums).items()}


# ------------------------------------------------------------------- out of memory

DATA_HINT = ("the whole array goes to the device at once, before the first batch, so a smaller batch size does not "
             "help here: keep the data on the host and pass slices of it (one fit/evaluate/predict call per slice), "
             "or move each batch with npdl.to_device(batch, device) and call model.train_step")


def to_model_device(device, array, what: str):
    """``device.asarray(array)``; running out of GPU memory names ``what`` and its size."""
    try:
        return device.asarray(array)
    except GPUOutOfMemoryError as exc:
        try:
            source = array if hasattr(array, "shape") and hasattr(array, "dtype") else backend.to_numpy(array)
            size = f" ({backend.describe_allocation(source.shape, source.dtype)})"
        except Exception:
            size = ""
        raise backend.out_of_memory(exc, f"moving {what}{size} to {device}", DATA_HINT) from exc


def _oom_in_batches(model, exc, what: str, batch_size: int) -> GPUOutOfMemoryError:
    """The error for running out of GPU memory in ``what``, naming the model and batch size."""
    model.clear_caches()  # free the activations, so a retry with a smaller batch can fit
    return backend.out_of_memory(exc, f"in {what} of model '{model.name}' (batch size {batch_size}) on {model.device}",
                                 "try a smaller batch size, or free GPU memory held by other arrays or processes")


# ------------------------------------------------------------------- target checks


def check_targets(model, x, y) -> int:
    """Check ``x``/``y`` once per call and return the number of examples.

    For classifiers the labels' range is read back here, once, so the per-batch
    losses and metrics can skip it (see :func:`fast_labels`).
    """
    n = int(x.shape[0])
    if n == 0:
        raise ShapeError(f"{model.name}: no examples to train or evaluate on (x has shape {tuple(x.shape)})")
    if int(y.shape[0]) != n:
        raise ShapeError(f"{model.name}: x has {n} examples but y has {int(y.shape[0])}; they must match")
    if not model.is_classifier:
        return n
    try:
        out = model.forward(x[:1, ...], training=False)
    except Exception as exc:
        if backend.is_out_of_memory(exc):
            raise _oom_in_batches(model, exc, "a one-example forward pass (checking the labels)", 1) from exc
        raise
    model.clear_caches()
    who = f"{model.name} ({type(model.loss).__name__})"
    check_labels(out, y[:1, ...], who, check_range=False)  # dtype, rank, device
    xp = backend.namespace(y)
    bounds = read_scalars({"lo": xp.min(y), "hi": xp.max(y)})
    k = int(out.shape[1])
    if bounds["lo"] < 0 or bounds["hi"] >= k:
        raise LabelError(f"{who}: labels must be in 0..{k - 1} for the model's {k} outputs, "
                         f"got values in {int(bounds['lo'])}..{int(bounds['hi'])}")
    return n


def check_held_out(model, x, y, what: str) -> int:
    """:func:`check_targets` for a held-out set (``what``: ``"validation_data"``, ``"test_data"``),
    run before training starts, so an empty or mislabelled set fails now, not after a whole epoch."""
    if int(x.shape[0]) == 0:
        raise ShapeError(f"{model.name}: {what} is empty (x has shape {tuple(int(d) for d in x.shape)}), so "
                         "there is nothing to score it on; pass a set with examples, or leave it out")
    try:
        return check_targets(model, x, y)
    except (ShapeError, LabelError) as exc:
        raise type(exc)(f"{what}: {exc}") from exc


@contextlib.contextmanager
def fast_labels(loss):
    """Switch off the loss's per-batch label range check (done once by :func:`check_targets`)."""
    had = hasattr(loss, "check_range")
    previous = getattr(loss, "check_range", None)
    if had:
        loss.check_range = False
    try:
        yield
    finally:
        if had:
            loss.check_range = previous


def _batches(n: int, batch_size: int, drop_last: bool = False):
    """``[(start, stop)]`` covering ``0..n``; ``drop_last`` leaves out a final partial batch, as the
    Theano tutorials do (``n_batches = n // batch_size``, for training and for scoring)."""
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    return [(start, min(start + batch_size, stop)) for start in range(0, stop, batch_size)]


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


# -------------------------------------------------------------- evaluate / predict


def evaluate_means(model, x, y, batch_size=256, metrics=None, drop_last=False) -> dict:
    """Mean loss (plus the weight penalty, as in training) and metrics over ``(x, y)``,
    as 0-d device arrays; nothing is read back except the one label check.
    ``drop_last`` scores only whole batches (see :func:`_batches`). A data-parallel model
    (``model.data_parallel``, :mod:`npdl.distributed`) scores its share and reduces over the ranks."""
    parallel = getattr(model, "data_parallel", None)
    if parallel is not None:
        return parallel.evaluate_means(x, y, batch_size, metrics, drop_last)
    batch_size = _check_batch_size(batch_size)
    device = model.device
    x, y = to_model_device(device, x, "the evaluation data x"), to_model_device(device, y, "the evaluation data y")
    names = model.metric_names(metrics)
    n = check_targets(model, x, y)
    sums = {}
    batches = _batches(n, batch_size, drop_last)
    n = batches[-1][1]
    with fast_labels(model.loss):
        try:
            for start, stop in batches:
                xb, yb = x[start:stop, ...], y[start:stop, ...]
                out = model.forward(xb, training=False)
                _accumulate(sums, "loss", model.loss.forward(out, yb) * (stop - start))
                for name, value in model.batch_metrics(out, yb, names).items():
                    _accumulate(sums, name, value * (stop - start))
        except Exception as exc:
            if backend.is_out_of_memory(exc):
                raise _oom_in_batches(model, exc, "evaluation", batch_size) from exc
            raise
    model.clear_caches()
    means = {k: v / n for k, v in sums.items()}
    penalty = model.penalty_value()
    if penalty is not None:
        means["loss"] = means["loss"] + penalty
    return means


def predict(model, x, batch_size=256):
    """Outputs for ``x`` in inference mode, batch by batch, concatenated on the model's device."""
    batch_size = _check_batch_size(batch_size)
    x = to_model_device(model.device, x, "the input x of predict")
    xp = backend.namespace(x)
    try:
        outs = [model.forward(x[start:stop, ...], training=False)
                for start, stop in _batches(int(x.shape[0]), batch_size)]
        if len(outs) > 1:
            outs = [xp.concat(outs, axis=0)]
    except Exception as exc:
        if backend.is_out_of_memory(exc):
            raise _oom_in_batches(model, exc, "predict", batch_size) from exc
        raise
    # caches hold every layer's activations: drop them so prediction keeps no memory alive
    model.clear_caches()
    if not outs:
        raise ShapeError(f"{model.name}.predict: x has no examples (shape {tuple(x.shape)})")
    return outs[0]


# ------------------------------------------------------------------------- fit


def _diverged(epoch, value, first, last, steps):
    return TrainingDivergedError(
        f"training diverged in epoch {epoch + 1}: the running loss became {value} somewhere in batches "
        f"{first + 1}..{last + 1} of {steps} (the loss is read from the device only every "
        f"{progress_mod.REFRESH_SECONDS:g} s and at the end of each epoch, so this is the narrowest range known). "
        "The parameters may now hold NaN/inf; checkpoints written at earlier epochs are intact. Try a smaller "
        "learning rate or clip_norm, and check the data for NaN/inf.", epoch + 1, first + 1, last + 1)


def _diverged_validation(epoch, value):
    return TrainingDivergedError(
        f"training diverged in epoch {epoch + 1}: the validation loss is {value} (a non-finite output is scored as "
        "an error, and a model that produces one is never kept as the best). The parameters may hold NaN/inf; "
        "checkpoints written at earlier epochs are intact. Try a smaller learning rate or clip_norm, and check the "
        "validation data for NaN/inf.", epoch + 1)


def _run_epoch(model, x, y, n, batch_size, shuffle, rng, epoch, epochs, callbacks, verbose, drop_last=False,
               train_batch=None):
    """Train one epoch; returns the host means of loss and metrics over the examples seen.
    ``train_batch`` replaces ``model.train_batch`` (a diagnosing step, see :func:`fit`)."""
    xp = backend.namespace(x)
    train_batch = model.train_batch if train_batch is None else train_batch
    batches = _batches(n, batch_size, drop_last)
    order = None
    if shuffle:
        # drawn on the generator's device, then moved (a no-op when it is the model's)
        order = model.device.asarray(rng.permutation(n))
    bar = progress_mod.EpochProgress(epoch, epochs, len(batches), verbose)
    sums, seen, checked = {}, 0, 0
    try:
        for batch, (start, stop) in enumerate(batches):
            if order is None:
                xb, yb = x[start:stop, ...], y[start:stop, ...]
            else:
                idx = order[start:stop]
                xb, yb = xp.take(x, idx, axis=0), xp.take(y, idx, axis=0)
            try:
                loss, out = train_batch(xb, yb)
            except TrainingDivergedError as exc:  # compile(check_finite=True): exact to the batch
                raise TrainingDivergedError(f"training diverged in epoch {epoch + 1}, batch {batch + 1} of "
                                            f"{len(batches)}: {exc}", epoch + 1, batch + 1, batch + 1) from exc
            size = stop - start
            _accumulate(sums, "loss", loss * size)
            for name, value in model.batch_metrics(out, yb).items():
                _accumulate(sums, name, value * size)
            seen += size
            callbacks.on_batch_end(batch, {"loss": loss, "size": size})  # device values: reading them syncs
            running = None
            if bar.due():
                running = _means(sums, seen)
                if not math.isfinite(running["loss"]):
                    raise _diverged(epoch, running["loss"], checked, batch, len(batches))
                checked = batch + 1
            bar.step(running)
            if model.stop_training:
                break
        means = _means(sums, seen)
        if not math.isfinite(means["loss"]):
            raise _diverged(epoch, means["loss"], checked, batch, len(batches))
    except BaseException:
        bar.close()
        raise
    return means, bar


def fit_inputs(model, x, y, epochs, batch_size, validation_data, initial_epoch):
    """``fit``'s checks before anything trains: ``(x, y, val, n, batch_size)`` on the model's device.

    The model is compiled, the batch size and epochs make sense, the data (and the validation
    data, if any) move to the model's device once and hold examples with labels the loss accepts.
    """
    model.require_compiled("fit")
    batch_size = _check_batch_size(batch_size)
    if int(initial_epoch) < 0 or int(epochs) < int(initial_epoch):
        raise ValueError(f"fit: need 0 <= initial_epoch <= epochs, got initial_epoch={initial_epoch}, "
                         f"epochs={epochs} (epochs is the index to stop at, as in Keras)")
    device = model.device
    x, y = to_model_device(device, x, "the training data x"), to_model_device(device, y, "the training data y")
    val = None
    if validation_data is not None:
        val = (to_model_device(device, validation_data[0], "the validation data x"),
               to_model_device(device, validation_data[1], "the validation data y"))
    n = check_targets(model, x, y)
    if val is not None:
        check_held_out(model, val[0], val[1], "validation_data")
    return x, y, val, n, batch_size


def fit(model, x, y, epochs=1, batch_size=32, validation_data=None, callbacks=(), shuffle=True,
        verbose=1, initial_epoch=0, rng=None, history=None, validation_batch_size=256, drop_last=False,
        diagnostics=None) -> History:
    """See :meth:`npdl.models.Sequential.fit`. ``diagnostics`` (a :class:`npdl.diagnostics.Diagnostics`)
    diagnoses every ``diagnostics.every`` steps and gets the epoch ends as a callback; without it
    the loop calls ``model.train_batch`` itself, with no test per step. A data-parallel model
    (``model.data_parallel``, :mod:`npdl.distributed`) runs its sharded loop instead."""
    parallel = getattr(model, "data_parallel", None)
    if parallel is not None:
        return parallel.fit(x, y, epochs, batch_size, validation_data, callbacks, shuffle, verbose, initial_epoch,
                            rng, history, validation_batch_size, drop_last, diagnostics)
    x, y, val, n, batch_size = fit_inputs(model, x, y, epochs, batch_size, validation_data, initial_epoch)
    device = model.device
    if batch_size > n:
        warnings.warn(f"{model.name}.fit: batch_size={batch_size} is larger than the {n} training examples, so each "
                      f"epoch is one batch of {n}", UserWarning, stacklevel=3)
    rng = rng if rng is not None else backend.default_generator(device)
    model.fit_rng = rng  # kept so ModelCheckpoint can save the shuffling state
    history = history if history is not None else History()
    model.history = history
    steps = len(_batches(n, batch_size, drop_last))
    train_batch = None
    if diagnostics is not None:  # once per fit: the steps themselves are not tested
        callbacks, train_batch = [*callbacks, diagnostics], diagnostics.stepper(model)
    callbacks = CallbackList(callbacks, model, {"epochs": int(epochs), "steps": steps, "batch_size": batch_size,
                                                "samples": n, "initial_epoch": int(initial_epoch),
                                                "verbose": int(verbose)})
    model.stop_training = False
    logs = {}
    with fast_labels(model.loss):
        callbacks.on_train_begin()
        for epoch in range(int(initial_epoch), int(epochs)):
            started = time.perf_counter()
            callbacks.on_epoch_begin(epoch)
            lr = float(model.optimizer.current_lr())  # the rate this epoch starts with
            logs, bar = _run_epoch(model, x, y, n, batch_size, shuffle, rng, epoch, int(epochs), callbacks,
                                   verbose, drop_last, train_batch)
            if val is not None:
                val_means = read_scalars(evaluate_means(model, val[0], val[1], validation_batch_size))
                if not math.isfinite(val_means["loss"]):
                    bar.close()
                    raise _diverged_validation(epoch, val_means["loss"])
                logs.update({f"val_{k}": v for k, v in val_means.items()})
            logs["lr"] = lr
            logs["seconds"] = time.perf_counter() - started
            bar.close(logs)
            history.append(epoch, logs)
            callbacks.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        callbacks.on_train_end(logs)
    return history
