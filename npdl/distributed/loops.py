"""``fit`` and evaluation of a data-parallel model: the one-process loops of :mod:`npdl.training.loop`,
with every batch sharded over the ranks and every number reduced.

What is the same on every rank, so that no rank ever waits for another that decided otherwise:

* the batches and their order: every rank holds the whole data set and the same shuffling
  generator (the same seed; rank 0's when none is given), so it draws the same permutation
  and takes its rows of each global batch (:func:`npdl.distributed.shard_bounds`);
* the numbers read back: the batch loss comes reduced with the gradients; metrics are summed
  on each rank's shard and reduced when read; validation is sharded and reduced
  (:func:`evaluate_means`), so callbacks (the patience rule, early stopping) see identical
  logs and decide alike;
* the decisions: after every batch one small message agrees on ``stop_training`` (any rank's
  callback may set it) and on whether to read the running loss now (rank 0's progress clock),
  so the divergence check runs at the same batch everywhere and raises on every rank together.

Only rank 0 shows progress. At each epoch's end the ranks check that their parameters are
still equal (:meth:`DataParallel.check_in_sync`).
"""

from __future__ import annotations

import math
import os
import time

from .. import backend
from ..training import loop
from ..training import progress as progress_mod
from ..training.callbacks import CallbackList
from ..training.history import History
from .errors import DistributedError


def _host_means(dp, global_sums: dict, local_sums: dict, names: list, seen: int) -> dict:
    """``{"loss": ..., <metric>: ...}`` host means: the loss sum is already global, the metric sums are
    this rank's (reduced here, one message)."""
    loss = loop.read_scalars(global_sums)["loss"]
    local = loop.read_scalars(local_sums)
    reduced = dp.comm.host_sum([local.get(k, 0.0) for k in names])
    means = {"loss": loss / seen}
    means.update({k: v / seen for k, v in zip(names, reduced)})
    return means


def evaluate_means(dp, x, y, batch_size=256, metrics=None, drop_last=False) -> dict:
    """:func:`npdl.training.loop.evaluate_means` over the ranks: each scores its contiguous share of the
    examples (the whole batches with ``drop_last``), and the sums are reduced in one message."""
    model = dp.model
    batch_size = loop._check_batch_size(batch_size)
    device = model.device
    x, y = loop.to_model_device(device, x, "the evaluation data x"), loop.to_model_device(device, y,
                                                                                        "the evaluation data y")
    names = model.metric_names(metrics)
    n = loop.check_targets(model, x, y)
    n = loop._batches(n, batch_size, drop_last)[-1][1]
    lo, hi = dp.shard(n)
    sums = {}
    with loop.fast_labels(model.loss):
        for start in range(lo, hi, batch_size):
            stop = min(start + batch_size, hi)
            xb, yb = x[start:stop, ...], y[start:stop, ...]
            out = model.forward(xb, training=False)
            loop._accumulate(sums, "loss", model.loss.forward(out, yb) * (stop - start))
            for name, value in model.batch_metrics(out, yb, names).items():
                loop._accumulate(sums, name, value * (stop - start))
    model.clear_caches()
    params = list(model.parameters().values())
    xp = device.xp
    dtype = params[0].dtype if params else xp.float32
    keys = ["loss"] + names
    total = xp.stack([xp.asarray(sums[k], dtype=dtype) if k in sums else xp.zeros((), dtype=dtype) for k in keys])
    dp.comm.allreduce_sum(total)
    means = {k: total[i] / n for i, k in enumerate(keys)}
    penalty = model.penalty_value()
    if penalty is not None:
        means["loss"] = means["loss"] + penalty
    return means


def _run_epoch(dp, x, y, n, batch_size, shuffle, rng, epoch, epochs, callbacks, verbose, drop_last):
    """One epoch of sharded steps; returns the host means of loss and metrics over the examples seen."""
    model, comm = dp.model, dp.comm
    xp = backend.namespace(x)
    batches = loop._batches(n, batch_size, drop_last)
    order = model.device.asarray(rng.permutation(n)) if shuffle else None
    names = model.metric_names()
    bar = progress_mod.EpochProgress(epoch, epochs, len(batches), verbose)
    global_sums, local_sums, seen, checked = {}, {}, 0, 0
    try:
        for batch, (start, stop) in enumerate(batches):
            size = stop - start
            lo, hi = dp.shard(size)
            if order is None:
                xb, yb = x[start + lo:start + hi, ...], y[start + lo:start + hi, ...]
            else:
                idx = order[start + lo:start + hi]
                xb, yb = xp.take(x, idx, axis=0), xp.take(y, idx, axis=0)
            loss, out = dp.train_shard(xb, yb, size, lo)
            loop._accumulate(global_sums, "loss", loss * size)
            if out is not None:
                for name, value in model.batch_metrics(out, yb).items():
                    loop._accumulate(local_sums, name, value * (hi - lo))
            seen += size
            callbacks.on_batch_end(batch, {"loss": loss, "size": size})
            stop_now, due = comm.agree_max([int(bool(model.stop_training)), int(bar.due())])
            model.stop_training = bool(stop_now)
            running = None
            if due:
                running = _host_means(dp, global_sums, local_sums, names, seen)
                if not math.isfinite(running["loss"]):
                    raise loop._diverged(epoch, running["loss"], checked, batch, len(batches))
                checked = batch + 1
            bar.step(running)
            if model.stop_training:
                break
        means = _host_means(dp, global_sums, local_sums, names, seen)
        if not math.isfinite(means["loss"]):
            raise loop._diverged(epoch, means["loss"], checked, batch, len(batches))
    except BaseException:
        bar.close()
        raise
    return means, bar


def fit(dp, x, y, epochs=1, batch_size=32, validation_data=None, callbacks=(), shuffle=True, verbose=1,
        initial_epoch=0, rng=None, history=None, validation_batch_size=256, drop_last=False,
        diagnostics=None) -> History:
    """:meth:`Sequential.fit` as one rank of a data-parallel job (see the module docstring).

    ``batch_size`` is the *global* batch: each step trains on ``batch_size`` examples in all,
    split over the ranks. ``verbose`` applies on rank 0; the others are silent.
    ``diagnostics`` are not available here (a :class:`DistributedError` says so).
    """
    model, comm = dp.model, dp.comm
    if diagnostics is not None:
        raise DistributedError("fit(diagnostics=...) records one process's gradients; run it without "
                               "distributed training (the gradients are the same)")
    x, y, val, n, batch_size = loop.fit_inputs(model, x, y, epochs, batch_size, validation_data, initial_epoch)
    device = model.device
    if rng is None:  # every rank must shuffle alike: rank 0's seed
        rng = backend.Generator(device, comm.share(int.from_bytes(os.urandom(8), "little") >> 1))
    verbose = int(verbose) if comm.rank == 0 else 0
    model.fit_rng = rng
    history = history if history is not None else History()
    model.history = history
    steps = len(loop._batches(n, batch_size, drop_last))
    callbacks = CallbackList(callbacks, model, {"epochs": int(epochs), "steps": steps, "batch_size": batch_size,
                                                "samples": n, "initial_epoch": int(initial_epoch),
                                                "verbose": verbose, "rank": comm.rank, "ranks": comm.size})
    model.stop_training = False
    logs = {}
    with loop.fast_labels(model.loss):
        callbacks.on_train_begin()
        for epoch in range(int(initial_epoch), int(epochs)):
            started = time.perf_counter()
            callbacks.on_epoch_begin(epoch)
            lr = float(model.optimizer.current_lr())
            logs, bar = _run_epoch(dp, x, y, n, batch_size, shuffle, rng, epoch, int(epochs), callbacks, verbose,
                                   drop_last)
            if val is not None:
                val_means = loop.read_scalars(evaluate_means(dp, val[0], val[1], validation_batch_size))
                if not math.isfinite(val_means["loss"]):  # reduced: every rank raises here together
                    bar.close()
                    raise loop._diverged_validation(epoch, val_means["loss"])
                logs.update({f"val_{k}": v for k, v in val_means.items()})
            logs["lr"] = lr
            logs["seconds"] = time.perf_counter() - started
            dp.check_in_sync(f"after epoch {epoch + 1}")
            bar.close(logs)
            history.append(epoch, logs)
            callbacks.on_epoch_end(epoch, logs)
            model.stop_training = bool(comm.agree_max([int(bool(model.stop_training))])[0])
            if model.stop_training:
                break
        callbacks.on_train_end(logs)
    return history
