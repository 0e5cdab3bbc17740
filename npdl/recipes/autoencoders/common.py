"""What the autoencoder recipes share: fitting on inputs as targets, the run's result, pictures.

Every autoencoder recipe trains on inputs as their own targets (``fit(x, x)``) or in several
phases, so each has its own ``run`` (see :class:`npdl.recipes.Recipe`) built from these pieces.
Pictures go through :mod:`npdl.plots` and are skipped (None) without matplotlib.
"""

from __future__ import annotations

import os
import time

from ... import backend, plots
from ...distributed import attach_if
from ...training import save_checkpoint
from ..runner import CURVES, HISTORY, MODEL, EpochCheckpoint, RunResult, restore_run, saved_options


def picture(fn, *args, **kw):
    """Call a :mod:`npdl.plots` function; None (skipped) without matplotlib."""
    try:
        return getattr(plots, fn)(*args, **kw)
    except ImportError:
        return None


def reconstruction_cost(model, x, batch_size=1000) -> float:
    """The model's loss on clean inputs (inference mode: no corruption) against themselves."""
    return model.evaluate(x, x, batch_size=batch_size)["loss"]


def fit_on_inputs(recipe, options, device, model, x_train, x_valid, out, resume, verbose, shuffle, drop_last=False):
    """``model.fit(x, x)`` with the runner's checkpoints and resume (data-parallel when
    ``options["distributed"]``); returns the History."""
    attach_if(model, options)
    fit_rng = backend.Generator(device, options["seed"] + 1)
    callbacks = []
    if out:
        callbacks.append(EpochCheckpoint(out, recipe.name, saved_options(options)))
    initial_epoch, history, resumed = 0, None, None
    if resume:
        ck = restore_run(model, out, recipe, options, None, fit_rng)
        initial_epoch, history, resumed = ck["epoch"], ck["history"], ck["epoch"]
    validation = None if x_valid is None else (x_valid, x_valid)
    history = model.fit(x_train, x_train, epochs=options["epochs"], batch_size=options["batch_size"],
                        validation_data=validation, callbacks=callbacks, shuffle=shuffle, verbose=verbose,
                        initial_epoch=min(initial_epoch, options["epochs"]), rng=fit_rng, history=history,
                        validation_batch_size=1000, drop_last=drop_last, diagnostics=options.get("diagnostics"))
    return history, resumed


def finish(recipe, options, device, model, history, started, out, result_extra, test_x=None, resumed=None,
           valid_error=None, test_error=None, pictures=()):
    """The run's :class:`RunResult` (reconstruction costs for an autoencoder, the errors given for a
    classifier); with ``out`` also ``model.npz``, ``history.csv`` and the pictures (curves first)."""
    train_loss = history.loss[-1] if len(history) else None
    test_loss = None if test_x is None else reconstruction_cost(model, test_x)
    result = RunResult(model=recipe.name, device=device.name, epochs=len(history),
                       seconds=time.perf_counter() - started, train_loss=train_loss, valid_error=valid_error,
                       test_error=test_error, test_loss=test_loss, resumed_from_epoch=resumed, out=out)
    result.extra.update({"reconstruction_cost": train_loss, "test_reconstruction_cost": test_loss}
                        if not recipe.classifier else {})
    result.extra.update(result_extra)
    if out:
        save_checkpoint(os.path.join(out, MODEL), model, model.optimizer, None, len(history), history,
                        {"recipe": recipe.name, "result": {k: v for k, v in result.as_dict().items()
                                                           if k != "extra"}})
        history.to_csv(os.path.join(out, HISTORY))
        written = [picture("training_curves", history, os.path.join(out, CURVES))]
        written += [p for p in pictures]
        result.extra["pictures"] = [p for p in written if p]
        result.extra["curves"] = written[0]
    return result


def reconstruction_picture(out, model, x_clean, x_corrupt_layer=None, n=10, shape=(28, 28), shift=0.0, name=None,
                           to_image=None):
    """original / corrupted / reconstructed rows for the first ``n`` examples."""
    xs = x_clean[:n]
    rows = [("original", backend.to_numpy(xs) + shift)]
    if x_corrupt_layer is not None:
        corrupted = x_corrupt_layer(xs, training=True)
        rows.append(("corrupted", backend.to_numpy(corrupted) + shift))
        recon = model.forward(corrupted)
    else:
        recon = model.forward(xs)
    recon = backend.to_numpy(to_image(recon) if to_image is not None else recon) + shift
    rows.append(("reconstructed", recon))
    model.clear_caches()
    return picture("image_rows", rows, os.path.join(out, name or "reconstructions.png"), image_shape=shape)


def encode_batched(ae, x, batch_size=1000):
    xp = backend.namespace(x)
    return xp.concat([ae.encode(x[i:i + batch_size]) for i in range(0, int(x.shape[0]), batch_size)], axis=0)
