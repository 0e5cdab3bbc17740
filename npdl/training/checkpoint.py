"""Checkpoints: everything needed to resume training exactly, in ONE ``.npz`` file.

Members of the archive (all readable with ``np.load(path)``, no pickle):

* ``__format__`` = ``"npdl-checkpoint"`` and ``__version__`` = :data:`FORMAT_VERSION`;
* ``model_config`` (JSON: :meth:`Sequential.get_config`) and ``compile_config``
  (JSON: loss, metrics, L1/L2 -- or ``null`` for an uncompiled model);
* ``param/<name>`` for every parameter (``param/0.W``, ``param/0.b``, ...);
* ``optimizer`` (JSON: class, config, iterations, slot names) and ``slot/<name>``;
* ``rng`` (JSON: the shuffling generator's state and every layer generator's
  state, e.g. Dropout masks), ``epoch`` (epochs completed), ``history`` and
  ``extra`` (JSON).

Arrays come to the host with ``backend.to_numpy`` when saving and go to the
model's device when loading, so a checkpoint written on a GPU loads on the CPU
and vice versa. The file is written atomically: a temporary file in the same
directory is written, flushed and fsynced, then renamed over the target with
``os.replace`` -- a crash mid-write leaves the previous checkpoint untouched.

This module imports NumPy: it is file I/O, like the dataset readers.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from .. import backend
from ..errors import NpdlError
from .errors import CheckpointError
from .history import History

FORMAT_TAG = "npdl-checkpoint"
FORMAT_VERSION = 1


def _json(value, what: str) -> np.ndarray:
    try:
        return np.array(json.dumps(value, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot save the {what} in a checkpoint: it is not JSON-serialisable ({exc}); "
                              "e.g. a lambda learning-rate schedule -- use an npdl.optim schedule class") from exc


def write_arrays(path: str, arrays: dict) -> None:
    """``np.savez`` into a temp file beside ``path``, fsync, then ``os.replace`` it over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable; not every platform can open a directory
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def read_arrays(path) -> dict:
    """The arrays of a plain ``.npz`` written by :func:`write_arrays` (no pickles)."""
    with np.load(os.fspath(path), allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


def save_checkpoint(path, model, optimizer=None, rng=None, epoch=0, history=None, extra=None) -> str:
    """Write ``model`` (config + parameters + layer generators), ``optimizer`` state, the
    shuffling generator ``rng``, the number of completed ``epoch``\\ s, ``history`` and any
    JSON-able ``extra`` to ``path`` (exactly that name). Returns ``path``."""
    path = os.fspath(path)
    arrays = {"__format__": np.array(FORMAT_TAG), "__version__": np.array(FORMAT_VERSION, dtype=np.int64),
              "model_config": _json(model.get_config(), "model config"),
              "compile_config": _json(model.compile_config(), "compile config"),
              "epoch": np.array(int(epoch), dtype=np.int64),
              "rng": _json({"fit": None if rng is None else rng.get_state(), "layers": model.get_rng_state()},
                           "generator states"),
              "history": _json(None if history is None else history.to_dict(), "history"),
              "extra": _json(extra, "extra")}
    for name, value in model.state_dict(copy=False).items():
        arrays[f"param/{name}"] = backend.to_numpy(value)
    meta = None
    if optimizer is not None:
        state = optimizer.state_dict()
        meta = {"class": state["class"], "config": state["config"], "iterations": int(state["iterations"]),
                "slots": sorted(state["slots"])}
        for name, value in state["slots"].items():
            arrays[f"slot/{name}"] = backend.to_numpy(value)
    arrays["optimizer"] = _json(meta, "optimizer state")
    write_arrays(path, arrays)
    return path


def read_checkpoint(path) -> dict:
    """Read and validate a checkpoint into host data (NumPy arrays and plain dicts).

    Raises :class:`CheckpointError` for a truncated or corrupt file, an ``.npz``
    that is not an npdl checkpoint, or another format version.
    """
    path = os.fspath(path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not hasattr(archive, "files"):  # a bare .npy array
            raise CheckpointError(f"{path} holds a single array, not an npdl checkpoint (an .npz archive)")
        with archive:
            if "__format__" not in archive.files or str(archive["__format__"]) != FORMAT_TAG:
                raise CheckpointError(f"{path} is not an npdl checkpoint (no '__format__' = '{FORMAT_TAG}' "
                                      f"member; it holds {sorted(archive.files)[:8]})")
            version = int(archive["__version__"])
            if version != FORMAT_VERSION:
                raise CheckpointError(f"{path} is an npdl checkpoint of format version {version}, but this npdl "
                                      f"reads version {FORMAT_VERSION}; load it with the npdl that wrote it")
            # read every member now: a damaged member fails here, not halfway through a restore
            members = {name: archive[name] for name in archive.files}
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise CheckpointError(f"{path} cannot be read as an npdl checkpoint (truncated or corrupt: {exc})") from exc

    def load_json(name):
        return json.loads(str(members[name]))

    optimizer = load_json("optimizer")
    if optimizer is not None:
        optimizer["slots"] = {name: members[f"slot/{name}"] for name in optimizer["slots"]}
    return {"path": path, "format_version": version,
            "model_config": load_json("model_config"), "compile_config": load_json("compile_config"),
            "params": {k[len("param/"):]: v for k, v in members.items() if k.startswith("param/")},
            "optimizer": optimizer, "rng": load_json("rng"), "epoch": int(members["epoch"]),
            "history": History.from_dict(load_json("history")), "extra": load_json("extra")}


def _load_params(model, checkpoint) -> None:
    try:
        model.load_state_dict(checkpoint["params"])
    except (NpdlError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{checkpoint['path']}: its parameters do not fit this model: {exc}") from exc


def restore(model, optimizer=None, rng=None, checkpoint=None) -> dict:
    """Put a checkpoint (a path or a :func:`read_checkpoint` dict) into existing objects.

    Loads the parameters and layer generators into ``model`` (on its device), the
    optimizer state into ``optimizer`` and the shuffling state into ``rng`` (a
    :class:`npdl.backend.Generator`), each when given. Returns the checkpoint dict.
    """
    if not isinstance(checkpoint, dict):
        checkpoint = read_checkpoint(checkpoint)
    _load_params(model, checkpoint)
    model.set_rng_state(checkpoint["rng"].get("layers") or {})
    saved = checkpoint["optimizer"]
    if optimizer is not None and saved is not None:
        if saved["class"] != type(optimizer).__name__:
            raise CheckpointError(f"{checkpoint['path']} holds {saved['class']} state; it cannot be loaded into "
                                  f"{type(optimizer).__name__}")
        device = model.device
        optimizer.load_state_dict({"class": saved["class"], "config": saved["config"],
                                   "iterations": saved["iterations"],
                                   "slots": {k: device.asarray(v) for k, v in saved["slots"].items()}})
        optimizer.to(device)
    fit_state = checkpoint["rng"].get("fit")
    if rng is not None and fit_state is not None:
        rng.set_state(fit_state)
    return checkpoint


def load_checkpoint(path, model=None, device=None) -> dict:
    """Read ``path`` and restore it.

    With ``model`` the parameters (and layer generators) go into it, on its device;
    without, a model is rebuilt from the saved config on ``device`` (CPU by default)
    and, when the checkpoint has a compile config and optimizer state, compiled with
    the saved loss and a rebuilt optimizer. Returns the checkpoint dict with
    ``model``, ``optimizer`` (or None), ``rng`` (a Generator on the model's device
    holding the saved shuffling state, or None), ``epoch`` and ``history`` added,
    ready for ``model.fit(..., initial_epoch=ck["epoch"], rng=ck["rng"], history=ck["history"])``.
    """
    from ..models import Sequential  # the model package imports this module's siblings; import late

    checkpoint = read_checkpoint(path)
    optimizer = None
    if model is None:
        model = Sequential.from_config(checkpoint["model_config"], device=device)
        saved, compile_config = checkpoint["optimizer"], checkpoint["compile_config"]
        if compile_config is not None and saved is not None:
            from ..optim import optimizer_from_config

            model.compile(optimizer=optimizer_from_config(saved["class"], saved["config"]), **compile_config)
    optimizer = model.optimizer
    fit_state = checkpoint["rng"].get("fit")
    rng = backend.Generator(model.device, fit_state.get("seed")) if fit_state is not None else None
    restore(model, optimizer, rng, checkpoint)
    checkpoint.update(model=model, optimizer=optimizer, rng=rng)
    return checkpoint
