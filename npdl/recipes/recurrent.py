"""Recurrent reproductions: the Keras tutorials' RNN classifier and LSTM regressor (Morvan Zhou's
Keras tutorial series, "RNN Classifier" and "RNN LSTM Regressor").

Both train for a number of *steps* (``train_on_batch`` calls in the originals), not epochs:
``--epochs N`` sets the number of training steps here, and the result's ``epochs`` field
counts steps. Both clip the gradients by global norm (``CLIP_NORM``, the recurrent
examples' default; the originals did not clip) before the Adam update.

* ``rnn-mnist``: each MNIST image is a sequence of its 28 rows (28 time steps of 28 pixels
  in [0, 1]); SimpleRNN with 50 tanh cells -> Dense(10) softmax, Adam lr 0.001, batches of
  50 taken in order from the 60,000 training images (wrapping around), 4001 steps; the test
  cost and accuracy on the 10,000 test images every 500 steps (``extra["test_accuracy"]``).
  ``test_error`` is 1 - the accuracy after the last step.
* ``lstm-regressor``: sin(x) in, cos(x) out. Step ``k``'s batch holds 50 windows of 20
  consecutive points, ``xs = (start + arange(20 * 50)).reshape(50, 20) / (10 pi)`` with
  ``start = 20 k`` (so row ``n`` of batch ``k + 1`` continues row ``n`` of batch ``k``, which
  is what makes ``stateful`` meaningful). LSTM(20 cells, every step, stateful) ->
  TimeDistributed(Dense(1)), MSE, Adam lr 0.006, 501 steps. The pictures show each step's
  prediction from its training forward pass (before the update). The tutorial instead calls
  ``model.predict`` on the batch after training on it, for its live plot; on a stateful
  Keras layer that advances the state a second time, so the next batch starts from the
  state after window ``k`` seen twice, not once. ``extra["predict_each_step"] = True`` on the
  recipe reproduces that (measured: the cost still falls, but the pictured windows, which then
  start from the wrong state, fit visibly worse). The training cost
  every 10 steps is in ``extra["costs"]``; ``train_loss`` is the last step's cost. With
  ``out`` and matplotlib, ``predictions.png`` shows target and predicted curves of the first
  window at several steps (the tutorial's animation frames).

Files with ``out``: ``history.csv`` (one row per recorded step), ``model.npz`` (rebuilds
without code) and the pictures. These step-based runs do not resume.
"""

from __future__ import annotations

import math
import os
import time

from .. import backend
from ..datasets import load_mnist
from ..distributed import attach_if
from ..layers import LSTM, Dense, SimpleRNN, TimeDistributed
from ..models import Sequential
from ..optim import Adam
from ..training import save_checkpoint
from .base import Recipe, register
from .runner import HISTORY, MODEL, RunError, RunResult

#: global-norm gradient clipping used by default in the recurrent examples
CLIP_NORM = 5.0
RNN_EVAL_EVERY = 500
LSTM_TIME_STEPS, LSTM_COST_EVERY = 20, 10
LSTM_FRAME_STEPS = (0, 20, 50, 100, 200, 300, 400, 500)


def _picture(fn, *args, **kw):
    """Call a :mod:`npdl.plots` function; None (skipped) without matplotlib."""
    try:
        from .. import plots
        return getattr(plots, fn)(*args, **kw)
    except ImportError:
        return None


def _write_rows(path, header, rows):
    with open(path + ".tmp", "w") as f:
        f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join("" if v is None else repr(v) for v in row) + "\n")
    os.replace(path + ".tmp", path)


def _no_resume(recipe, resume):
    if resume:
        raise RunError(f"npdl train {recipe.name}: this step-based recipe does not resume; run it again without "
                       "--resume (it is short)")


def _finish(recipe, model, device, steps, started, out, train_loss, test_error=None, test_loss=None, extra=None,
            header=(), rows=(), pictures=()):
    result = RunResult(model=recipe.name, device=device.name, epochs=steps, seconds=time.perf_counter() - started,
                       train_loss=train_loss, valid_error=None, test_error=test_error, test_loss=test_loss, out=out)
    result.extra.update({"steps": steps, "clip_norm": model.optimizer.clip_norm, **(extra or {})})
    if out:
        _write_rows(os.path.join(out, HISTORY), header, rows)
        save_checkpoint(os.path.join(out, MODEL), model, model.optimizer, None, steps, None,
                        {"recipe": recipe.name, "result": {k: v for k, v in result.as_dict().items() if k != "extra"}})
        result.extra["pictures"] = [p for p in pictures if p]
    return result


# ------------------------------------------------------------------ Keras RNN classifier


def mnist_rows(options) -> dict:
    """60,000 / 10,000 MNIST images as sequences of rows: (N, 28, 28), 28 steps of 28 pixels in [0, 1]."""
    d = load_mnist("keras", data_dir=options.get("data_dir"), dtype=options.get("dtype", "float32"), flatten=False)
    return {k: (x.reshape(x.shape[0], 28, 28), y) for k, (x, y) in d.items()}


def build_rnn_mnist(options, device, rng):
    """SimpleRNN(28 -> 50, tanh, last state) -> Dense(50 -> 10) -> softmax cross-entropy; Adam, clipped."""
    dtype = options.get("dtype")
    model = Sequential([SimpleRNN(28, options.get("units", 50), dtype=dtype, device=device, rng=rng),
                        Dense(options.get("units", 50), 10, dtype=dtype, device=device, rng=rng)], name="rnn-mnist")
    return model.compile("softmax_cross_entropy", Adam(lr=options["lr"], clip_norm=options.get("clip_norm", CLIP_NORM)),
                         metrics=["accuracy"])


def _run_rnn_mnist(recipe, options, device, data, out, resume, verbose):
    """Morvan's ``RNN_classifier_example.py``: ``train_on_batch`` on consecutive batches (wrapping at the
    end of the training set), the test cost and accuracy every 500 steps."""
    _no_resume(recipe, resume)
    started = time.perf_counter()
    model = build_rnn_mnist(options, device, backend.Generator(device, options["seed"]))
    diagnostics = options.get("diagnostics")
    train_batch = model.train_batch if diagnostics is None else diagnostics.stepper(model)
    parallel = attach_if(model, options)  # data-parallel: each rank trains on its rows of every batch
    train_batch = train_batch if parallel is None else parallel.train_batch
    x_train, y_train = device.asarray(data["train"][0]), device.asarray(data["train"][1])
    x_test, y_test = data["test"]
    steps, batch_size = options["epochs"], options["batch_size"]
    every = int(recipe.extra.get("eval_every", RNN_EVAL_EVERY))
    n, start = int(x_train.shape[0]), 0
    rows, accuracy, scores, window, since = [], {}, None, None, 0
    for step in range(steps):
        loss, _ = train_batch(x_train[start:start + batch_size, ...], y_train[start:start + batch_size])
        window = loss if window is None else window + loss  # summed on the device: no sync per step
        since += 1
        start += batch_size
        if start >= n:
            start = 0
        if step % every == 0 or step == steps - 1:
            scores = model.evaluate(x_test, y_test, batch_size=1000, metrics=["accuracy"])
            train_loss = backend.to_float(window) / since
            window, since = None, 0
            accuracy[step] = scores["accuracy"]
            rows.append((step, train_loss, scores["loss"], scores["accuracy"]))
            if diagnostics is not None:
                diagnostics.log_scalars(model.name, step, {"train_loss": train_loss, "test_loss": scores["loss"],
                                                           "test_accuracy": scores["accuracy"]})
            if verbose:
                print(f"step {step}: train cost {train_loss:.4f}, test cost {scores['loss']:.4f}, "
                      f"test accuracy {scores['accuracy']:.4f}", flush=True)
    pictures = []
    if out:
        pictures.append(_picture("line_curves", {"test accuracy": [r[3] for r in rows]},
                                 os.path.join(out, "accuracy.png"), xlabel=f"evaluation (every {every} steps)",
                                 ylabel="test accuracy", title=recipe.name))
    return _finish(recipe, model, device, steps, started, out, rows[-1][1], 1.0 - scores["accuracy"], scores["loss"],
                   {"test_accuracy": accuracy}, ("step", "train_loss", "test_loss", "test_accuracy"), rows, pictures)


register(Recipe(
    "rnn-mnist", "Keras RNN classifier: MNIST rows as 28 steps, SimpleRNN 50 tanh, softmax 10",
    "Morvan's Keras tutorial (RNN classifier): Adam lr 0.001, batch 50, 4001 steps, test accuracy every 500 "
    "steps; about 93% (0.9329 at step 3500)",
    mnist_rows, build_rnn_mnist, epochs=4001, batch_size=50, lr=0.001, shuffle=False, run=_run_rnn_mnist,
    extra={"eval_every": RNN_EVAL_EVERY}))


# ------------------------------------------------------------------- Keras LSTM regressor


def sine_batch(device, start, time_steps=LSTM_TIME_STEPS, batch_size=50, dtype="float32"):
    """Morvan's ``get_batch``: ``xs = arange(start, start + T B).reshape(B, T) / (10 pi)``, input
    ``sin(xs)`` and target ``cos(xs)`` as (B, T, 1) arrays on ``device``; returns ``(seq, res, xs)``."""
    xp = device.xp
    xs = xp.reshape(xp.arange(start, start + time_steps * batch_size, dtype=xp.float64),
                    (batch_size, time_steps)) / (10.0 * math.pi)
    cast = backend.float_dtype(xp, dtype)
    seq = xp.astype(xp.reshape(xp.sin(xs), (batch_size, time_steps, 1)), cast)
    res = xp.astype(xp.reshape(xp.cos(xs), (batch_size, time_steps, 1)), cast)
    return seq, res, xs


def no_data(options) -> dict:
    """The regressor makes its batches as it goes (:func:`sine_batch`)."""
    return {}


def build_lstm_regressor(options, device, rng):
    """LSTM(1 -> 20, every step, stateful) -> TimeDistributed(Dense(20 -> 1)), MSE, Adam (clipped)."""
    dtype, units = options.get("dtype"), options.get("units", 20)
    model = Sequential([LSTM(1, units, return_sequences=True, stateful=True, dtype=dtype, device=device, rng=rng),
                        TimeDistributed(Dense(units, 1, dtype=dtype, device=device, rng=rng))],
                       name="lstm-regressor")
    return model.compile("mse", Adam(lr=options["lr"], clip_norm=options.get("clip_norm", CLIP_NORM)))


def _run_lstm_regressor(recipe, options, device, data, out, resume, verbose):
    """Morvan's ``RNN_LSTM_regressor_example.py``: one new batch per step, ``train_on_batch`` then
    ``predict`` on it, the cost printed every 10 steps."""
    _no_resume(recipe, resume)
    started = time.perf_counter()
    model = build_lstm_regressor(options, device, backend.Generator(device, options["seed"]))
    diagnostics = options.get("diagnostics")
    train_batch = model.train_batch if diagnostics is None else diagnostics.stepper(model)
    # data-parallel: each rank trains on its rows of every batch, and its stateful LSTM keeps those rows' state
    parallel = attach_if(model, options)
    train_batch = train_batch if parallel is None else parallel.train_batch
    steps, batch_size = options["epochs"], options["batch_size"]
    T = int(recipe.extra.get("time_steps", LSTM_TIME_STEPS))
    predict_each_step = bool(recipe.extra.get("predict_each_step", False))
    frame_steps = set(recipe.extra.get("frame_steps", LSTM_FRAME_STEPS)) | {steps - 1}
    rows, costs, frames, last = [], {}, [], None
    for step in range(steps):
        seq, res, xs = sine_batch(device, step * T, T, batch_size, options["dtype"])
        cost, pred = train_batch(seq, res)  # pred: this step's prediction, made before the update
        if predict_each_step:  # the tutorial's model.predict for its plot: it advances the state a second time
            pred = model.predict(seq if parallel is None else parallel.local(seq), batch_size=batch_size)
        if step % LSTM_COST_EVERY == 0 or step == steps - 1:
            last = backend.to_float(cost)
            costs[step] = last
            rows.append((step, last))
            if diagnostics is not None:
                diagnostics.log_scalars(model.name, step, {"train_loss": last})
            if verbose:
                print(f"step {step}: train cost {last:.6f}", flush=True)
        if step in frame_steps and pred is not None:  # None: this rank's share of the batch is empty
            frames.append((step, backend.to_numpy(xs[0, ...]), backend.to_numpy(res[0, :, 0]),
                           backend.to_numpy(pred[0, :, 0])))
    pictures = []
    if out:
        pictures.append(_picture("sequence_frames", frames, os.path.join(out, "predictions.png"),
                                 title=f"{recipe.name}: cos(x) (red) and the LSTM's prediction from sin(x) (dashed)"))
        pictures.append(_picture("line_curves", {"train cost": [c for _, c in rows]}, os.path.join(out, "cost.png"),
                                 xlabel=f"step / {LSTM_COST_EVERY}", ylabel="MSE", title=recipe.name))
    recent = [c for s, c in rows if s >= steps - 50]
    return _finish(recipe, model, device, steps, started, out, last, extra={
        "costs": costs, "mean_cost_last_50_steps": sum(recent) / len(recent)}, header=("step", "train_loss"),
        rows=rows, pictures=pictures)


register(Recipe(
    "lstm-regressor", "Keras LSTM regressor: sin(x) -> cos(x), 20 steps, stateful LSTM 20, per-step Dense(1)",
    "Morvan's Keras tutorial (RNN LSTM regressor): batch 50, Adam lr 0.006, 501 steps, cost every 10 steps; "
    "the predicted curve follows cos(x) (animation frames)",
    no_data, build_lstm_regressor, epochs=501, batch_size=50, lr=0.006, classifier=False, shuffle=False,
    run=_run_lstm_regressor, extra={"time_steps": LSTM_TIME_STEPS, "frame_steps": LSTM_FRAME_STEPS,
                                     "predict_each_step": False}))
