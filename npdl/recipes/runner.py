"""Train a recipe: checkpoints every epoch, resume, history, final scores, one result record.

Files written into ``out`` (when given):

* ``checkpoint.npz``: the resume point, rewritten atomically after every epoch
  (model, optimizer, generators, history, and the early-stopping state);
* ``best.npz``: the parameters at the best validation score so far (patience runs);
* ``history.csv``: one row per epoch, rewritten from the history each epoch, so a
  resumed run's file never has a duplicated or missing row;
* ``model.npz``: the final model (the best one for patience runs), a checkpoint
  that :func:`npdl.training.load_checkpoint` rebuilds without any code;
* ``curves.png``: loss and error per epoch, when matplotlib is installed;
* ``run.json``: the manifest (command, settings, versions, machine, start and end, status)
  and, while the run lasts, ``run.lock`` (:mod:`npdl.training.rundir`).

A failed write (full disk, read-only folder) stops the run with one
:class:`npdl.training.errors.FileWriteError` naming the file and the last good checkpoint.
"""

from __future__ import annotations

import numbers
import os
import time
from dataclasses import asdict, dataclass, field

from .. import backend
from ..errors import NpdlError
from ..training import Callback, PatienceEarlyStopping, read_checkpoint, restore, save_checkpoint
from ..training.checkpoint import read_arrays, rename_parameters, write_arrays
from ..training.rundir import BEST, CHECKPOINT, CURVES, HISTORY, MODEL, RunFolder
from ..diagnostics import session as diagnostics_session
from ..distributed import attach_if, is_writer
from .base import Recipe

#: seeds are 32-bit, 0 to MAX_SEED, as most tools take them; a run derives more generators from
#: ``seed + k`` (shuffling, noise), which NumPy's PCG64 and CuPy's generator take above 32 bits too
MAX_SEED = 2 ** 32 - 1

#: options that belong to this process, not to the run: never saved in a checkpoint
#: (``diagnostics`` is the open :class:`npdl.diagnostics.Diagnostics`, or None)
RUN_ONLY = ("data_dir", "diagnostics")


def saved_options(options) -> dict:
    """The run's options as its checkpoints keep them (JSON-able: without :data:`RUN_ONLY`)."""
    return {k: v for k, v in options.items() if k not in RUN_ONLY}


def train_subset(data, n, recipe) -> dict:
    """``data`` with its training set cut to the first ``n`` examples (None: as it is)."""
    if n is None:
        return data
    if "train" not in data:
        raise RunError(f"--subset: 'npdl train {recipe.name}' makes its own data as it trains; leave --subset out")
    x, y = data["train"]
    return {**data, "train": (x[:int(n)], y[:int(n)])}


class RunError(NpdlError):
    """A run that cannot start or go on (e.g. ``--resume`` without a checkpoint)."""


@dataclass
class RunResult:
    """What ``npdl train --json`` prints (errors are fractions; None where not defined)."""

    model: str
    device: str
    epochs: int
    seconds: float
    train_loss: float | None
    valid_error: float | None
    test_error: float | None
    test_loss: float | None = None
    best_epoch: int | None = None
    stopped_early: bool = False
    resumed_from_epoch: int | None = None
    out: str | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


class EpochCheckpoint(Callback):
    """After every epoch: ``checkpoint.npz`` (+ ``best.npz`` when the patience best moved) and ``history.csv``."""

    def __init__(self, out, recipe_name, options, patience=None, extra_fn=None):
        super().__init__()
        self.out, self.recipe_name, self.options, self.patience = out, recipe_name, options, patience
        self.extra_fn = extra_fn  # () -> dict of more JSON-able fields for the checkpoint's extra
        self._best_written = None

    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        if not model.parameters_finite():  # never overwrite the last good resume point
            return
        if self.patience is not None and self.patience.best_state is not None \
                and self.patience.best_state is not self._best_written:
            write_arrays(os.path.join(self.out, BEST),
                         {k: backend.to_numpy(v) for k, v in self.patience.best_state.items()})
            self._best_written = self.patience.best_state
        extra = {"recipe": self.recipe_name, "options": self.options,
                 "patience": None if self.patience is None else self.patience.state_dict()}
        if self.extra_fn is not None:
            extra.update(self.extra_fn())
        save_checkpoint(os.path.join(self.out, CHECKPOINT), model, model.optimizer, model.fit_rng, epoch + 1,
                        model.history, extra)
        model.history.to_csv(os.path.join(self.out, HISTORY) + ".tmp")
        os.replace(os.path.join(self.out, HISTORY) + ".tmp", os.path.join(self.out, HISTORY))


def check_checkpoint(path, recipe, options) -> dict:
    """Read the checkpoint at ``path`` and check this run (same recipe and settings) wrote it."""
    ck = read_checkpoint(path)
    saved = (ck.get("extra") or {})
    if saved.get("recipe") != recipe.name:
        raise RunError(f"--resume: {path} was written by 'npdl train {saved.get('recipe')}', not "
                       f"'npdl train {recipe.name}'")
    for key in ("lr", "batch_size", "seed", "dtype", "subset", "pretrain_epochs"):
        if key in saved.get("options", {}) and saved["options"][key] != options.get(key):
            raise RunError(f"--resume: {path} was trained with {key}={saved['options'][key]!r}, this run asks for "
                           f"{options.get(key)!r}; resume with the same settings")
    return ck


def restore_run(model, out, recipe, options, patience, fit_rng):
    """Check the checkpoint in ``out`` belongs to this run, then restore it into ``model``, its
    optimizer and ``fit_rng`` (in place). Returns the checkpoint dict."""
    path = os.path.join(out, CHECKPOINT)
    if not os.path.exists(path):
        raise RunError(f"--resume: no checkpoint at {path}; start without --resume (or point --out at the "
                       "folder of the run to continue)")
    ck = check_checkpoint(path, recipe, options)
    saved = ck.get("extra") or {}
    ck = restore(model, model.optimizer, fit_rng, ck)  # renamed, for a run saved with activation layers
    if patience is not None and saved.get("patience"):
        best = None
        best_path = os.path.join(out, BEST)
        if os.path.exists(best_path):
            best = {k: model.device.asarray(v) for k, v in rename_parameters(read_arrays(best_path), ck).items()}
        patience.resume_from(saved["patience"], best)
    return ck


def _final_scores(model, data, recipe, patience, batch_size=1000):
    """train loss (last epoch), valid/test error (the best model's, under patience) and test loss."""
    valid_error = test_error = test_loss = None
    if recipe.classifier:
        if patience is not None and patience.best_iteration is not None:
            valid_error, test_error = patience.best_validation, patience.test_score
        if valid_error is None and "valid" in data:
            valid_error = model.evaluate(*data["valid"], batch_size=batch_size, metrics=["error"])["error"]
        scores = model.evaluate(*data["test"], batch_size=batch_size, metrics=["error"])
        test_loss = scores["loss"]
        if test_error is None:
            test_error = scores["error"]
    else:
        test_loss = model.evaluate(*data["test"], batch_size=batch_size)["loss"]
    return valid_error, test_error, test_loss


def check_seed(seed) -> int:
    """``seed`` as an int, or a :class:`RunError` unless it is an integer from 0 to :data:`MAX_SEED`."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) <= MAX_SEED:
        raise RunError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    return int(seed)


def train(recipe: Recipe, device="cpu", epochs=None, batch_size=None, lr=None, seed=0, data_dir=None, out=None,
          resume=False, verbose=1, dtype="float32", data=None, patience_verbose=0, extra_callbacks=(),
          overwrite=False, command=None, diagnostics=None, tensorboard=None, subset=None, recipe_options=None,
          report=True, distributed=False) -> RunResult:
    """Train ``recipe`` with its published defaults (override any of ``epochs``, ``batch_size``, ``lr``).

    Looking inside (with ``out``): ``diagnostics=N`` records gradient flow every ``N`` steps into
    ``out/diagnostics.jsonl``, ``tensorboard`` (a folder, or True for ``out/tensorboard``) writes
    TensorBoard logs (:mod:`npdl.diagnostics`), and ``report`` writes ``out/report.html`` at the end
    when matplotlib is installed. ``subset=N`` trains on the first ``N`` training examples only;
    ``recipe_options`` adds a recipe's own options (``{"pretrain_epochs": 0}`` for ``sda``).

    ``data`` (a dict like ``recipe.data`` returns) replaces loading, e.g. a small
    subset in a test; ``extra_callbacks`` are added after the recipe's own. See the module
    docstring for the files written into ``out``: a folder that already holds a run is
    refused unless ``resume`` (continue it) or ``overwrite`` (delete the files npdl wrote
    there first), and a folder another run is using is refused. The run holds the folder
    while it trains and records itself in ``run.json`` (:mod:`npdl.training.rundir`), with
    ``command`` (default: this process's command line).

    ``distributed=True`` trains data-parallel over the ranks of the MPI job this process belongs
    to (:mod:`npdl.distributed`; ``batch_size`` stays the global batch): every rank runs the run,
    rank 0 alone prints and writes ``out`` (:func:`npdl.distributed.runs.prepare_run`).
    """
    started = time.perf_counter()
    seed = check_seed(seed)
    device = backend.get_device(device)
    options = {"lr": float(recipe.lr if lr is None else lr),
               "batch_size": int(recipe.batch_size if batch_size is None else batch_size),
               "epochs": int(recipe.epochs if epochs is None else epochs),
               "seed": seed, "dtype": backend.resolve_float(dtype), "data_dir": data_dir}
    if resume and not out:
        raise RunError("--resume needs --out DIR: the folder whose checkpoint.npz to continue from")
    if overwrite and not out:
        raise RunError("--overwrite needs --out DIR: the folder whose run to replace")
    if (diagnostics is not None or tensorboard) and not out:
        raise RunError("--diagnostics and --tensorboard need --out DIR: the run folder they write into")
    if subset is not None:
        if isinstance(subset, bool) or not isinstance(subset, numbers.Integral) or subset < 1:
            raise RunError(f"subset must be a positive number of training examples, got {subset!r}")
        options["subset"] = int(subset)
    options.update(recipe_options or {})
    if distributed:
        from ..distributed.runs import prepare_run

        out, verbose, report = prepare_run(options, out, resume, verbose, report,
                                           diagnostics is not None or bool(tensorboard))
        patience_verbose = patience_verbose if is_writer() else 0
    run = (recipe, device, options, data, resume, verbose, patience_verbose, extra_callbacks, started)
    if not out:
        return _train(*run, out=None)
    settings = {"recipe": recipe.name, "device": device.name, **options, "resume": bool(resume),
                "overwrite": bool(overwrite), "data": "loaded" if data is None else "given by the caller",
                "diagnostics": diagnostics, "tensorboard": tensorboard}
    with RunFolder(out, settings, resume=resume, overwrite=overwrite, command=command) as folder:
        options["diagnostics"] = diagnostics_session.open_for_run(out, diagnostics, tensorboard)
        try:
            result = _train(*run, out=out)
        except BaseException:
            diagnostics_session.close_for_run(options["diagnostics"])
            raise
        diagnostics_session.close_for_run(options["diagnostics"], result)
        folder.result = {k: v for k, v in result.as_dict().items() if k != "extra"}
    if report:  # after the run's folder is closed, so the page shows the finished run.json
        result.extra["report"] = diagnostics_session.report_for_run(out, {recipe.name: recipe.published})
    return result


def _train(recipe, device, options, data, resume, verbose, patience_verbose, extra_callbacks, started, out):
    """The run itself, once :func:`train` has checked the settings and holds the folder ``out``."""
    seed = options["seed"]
    data = train_subset(data if data is not None else recipe.data(options), options.get("subset"), recipe)
    from ..datasets.parts import check_parts
    check_parts(data, f"recipe {recipe.name!r}")  # an empty part fails here, not after an epoch of training
    if recipe.run is not None:
        return recipe.run(recipe, options, device, data, out, resume, verbose)
    model = recipe.build(options, device, backend.Generator(device, seed))
    attach_if(model, options)  # data-parallel when options["distributed"]
    fit_rng = backend.Generator(device, seed + 1)

    patience = None
    if recipe.patience is not None and "valid" in data:
        # scored in minibatches of the training size, so drop_last scores what the tutorials score
        patience = PatienceEarlyStopping(data["valid"], data.get("test"), patience=recipe.patience,
                                         restore_best=True, batch_size=options["batch_size"],
                                         drop_last=recipe.drop_last, verbose=patience_verbose)
    callbacks = [c for c in (patience,) if c is not None]
    if out:
        callbacks.append(EpochCheckpoint(out, recipe.name, saved_options(options), patience))
    callbacks += list(extra_callbacks)
    initial_epoch, history, resumed = 0, None, None
    if resume:
        ck = restore_run(model, out, recipe, options, patience, fit_rng)
        initial_epoch, history, resumed = ck["epoch"], ck["history"], ck["epoch"]
    validation = data.get("valid") if patience is None else None
    history = model.fit(*data["train"], epochs=options["epochs"], batch_size=options["batch_size"],
                        validation_data=validation, callbacks=callbacks, shuffle=recipe.shuffle, verbose=verbose,
                        initial_epoch=min(initial_epoch, options["epochs"]), rng=fit_rng, history=history,
                        validation_batch_size=1000, drop_last=recipe.drop_last,
                        diagnostics=options.get("diagnostics"))
    valid_error, test_error, test_loss = _final_scores(model, data, recipe, patience)
    seconds = time.perf_counter() - started
    result = RunResult(
        model=recipe.name, device=device.name, epochs=len(history), seconds=seconds,
        train_loss=history.loss[-1] if len(history) else None, valid_error=valid_error, test_error=test_error,
        test_loss=test_loss, stopped_early=bool(patience is not None and patience.stopped_iteration is not None),
        resumed_from_epoch=resumed, out=out)
    if patience is not None and patience.best_iteration is not None:
        result.best_epoch = patience.best_iteration // patience.n_train_batches + 1
    if not recipe.classifier:
        result.extra["params"] = {k: backend.to_numpy(v).ravel().tolist() for k, v in model.state_dict().items()}
    if out:
        save_checkpoint(os.path.join(out, MODEL), model, model.optimizer, None, len(history), history,
                        {"recipe": recipe.name, "result": {k: v for k, v in result.as_dict().items()
                                                           if k != "extra"}})
        result.extra["curves"] = _plot(history, os.path.join(out, CURVES))
    return result


def _plot(history, path):
    try:
        from ..plots import training_curves
    except ImportError:
        return None
    try:
        return training_curves(history, path)
    except ImportError:
        return None
