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
and vice versa. The file is written atomically (:func:`atomic_write`): a temporary
file in the same directory is written, flushed and fsynced, then renamed over the
target with ``os.replace`` -- a crash or a full disk mid-write leaves the previous
checkpoint untouched, and a failed write is a :class:`FileWriteError` naming the file.
Files get the mode any new file gets (0644 under umask 022).

This module imports NumPy: it is file I/O, like the dataset readers.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import zipfile

import numpy as np

from .. import backend
from ..errors import NpdlError
from ..optim import optimizer_from_config
from .errors import CheckpointError, FileWriteError
from .history import History

#: the class that rebuilds a model from a checkpoint's ``model_config`` when no model is given
#: (:class:`npdl.models.Sequential` registers itself: the models build on this package, not the reverse)
MODEL_CLASS = None


def register_model_class(cls) -> type:
    """Make ``cls`` (with ``from_config(config, device=None)``) the class :func:`load_checkpoint` rebuilds."""
    global MODEL_CLASS
    MODEL_CLASS = cls
    return cls

FORMAT_TAG = "npdl-checkpoint"
FORMAT_VERSION = 1
#: the members every checkpoint of this format has, besides the parameters and the optimizer slots
MEMBERS = ("model_config", "compile_config", "epoch", "rng", "history", "extra", "optimizer")


def _json(value, what: str) -> np.ndarray:
    try:
        return np.array(json.dumps(value, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot save the {what} in a checkpoint: it is not JSON-serialisable ({exc}); "
                              "e.g. a lambda learning-rate schedule -- use an npdl.optim schedule class") from exc


def _temporary_beside(path: str) -> tuple[int, str]:
    """A new file ``.NAME.XXXXXXXXXXXX.tmp`` beside ``path``, opened for writing, and its name.

    Created as any file is (``0o666`` less the umask, so 0644 under umask 022), not 0600 as
    :func:`tempfile.mkstemp` would make it; where ``path`` exists its mode is kept."""
    directory, name = os.path.split(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    try:
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
    except OSError:  # no file there yet: the umask's mode stays
        pass
    return fd, tmp


def atomic_write(path, fill) -> None:
    """Write ``path`` all at once: ``fill(f)`` writes into a binary temporary file beside it,
    which is flushed, fsynced and renamed over ``path`` (``os.replace``).

    A crash or a failed write leaves the previous file as it was and no temporary file; a
    failed write (full disk, read-only folder, no permission) raises
    :class:`~npdl.training.errors.FileWriteError`, which names the file."""
    path = os.fspath(path)
    tmp = None
    try:
        fd, tmp = _temporary_beside(path)
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, FileWriteError):
            before = "the file that was there is unchanged" if os.path.exists(path) else "no earlier file was there"
            reason = exc.strerror or str(exc)
            raise FileWriteError(f"cannot write {path}: {reason}; {before}", exc.errno, path, reason) from exc
        raise
    directory = os.path.dirname(os.path.abspath(path))
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


def write_arrays(path: str, arrays: dict) -> None:
    """``np.savez`` the ``arrays`` into ``path`` with :func:`atomic_write` (all or nothing)."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


def write_text(path, text: str) -> None:
    """``text`` (UTF-8) into ``path`` with :func:`atomic_write` (all or nothing)."""
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


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

    missing = [name for name in MEMBERS if name not in members]
    if missing:
        raise CheckpointError(f"{path} is an npdl checkpoint without the member(s) {', '.join(missing)} (format "
                              f"{FORMAT_VERSION} has {', '.join(MEMBERS)}): it was cut down or assembled by hand; "
                              "use the file as npdl.training.save_checkpoint wrote it, or write it again")

    def load_json(name):
        try:
            return json.loads(str(members[name]))
        except ValueError as exc:
            raise CheckpointError(f"{path}: its member {name!r} is not valid JSON ({exc}); the file is damaged, "
                                  "use another checkpoint") from exc

    optimizer = load_json("optimizer")
    if optimizer is not None:
        lost = [name for name in optimizer["slots"] if f"slot/{name}" not in members]
        if lost:
            raise CheckpointError(f"{path}: its optimizer state lists slot(s) {', '.join(lost)} but the file has no "
                                  f"{', '.join('slot/' + n for n in lost)} member; it was cut down or assembled by "
                                  "hand: use the file as npdl.training.save_checkpoint wrote it")
        optimizer["slots"] = {name: members[f"slot/{name}"] for name in optimizer["slots"]}
    return {"path": path, "format_version": version,
            "model_config": load_json("model_config"), "compile_config": load_json("compile_config"),
            "params": {k[len("param/"):]: v for k, v in members.items() if k.startswith("param/")},
            "optimizer": optimizer, "rng": load_json("rng"), "epoch": int(members["epoch"]),
            "history": History.from_dict(load_json("history")), "extra": load_json("extra")}


def checkpoint_epoch(path) -> int | None:
    """The epochs completed when the checkpoint at ``path`` was written (only that member is
    read), or None where there is no readable checkpoint."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as archive:
            return int(archive["epoch"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, AttributeError, TypeError):
        return None


def _load_params(model, checkpoint) -> None:
    try:
        model.load_state_dict(checkpoint["params"])
    except (NpdlError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{checkpoint['path']}: its parameters do not fit this model: {exc}") from exc


# ------------------------------------------------- checkpoints of separate activation layers

#: activation layers that ``Dense(activation=...)`` now holds, with the parameters it assumes
_FOLDABLE = {"Sigmoid": ("sigmoid", {}), "Tanh": ("tanh", {}), "ReLU": ("relu", {}),
             "LeakyReLU": ("leaky_relu", {"alpha": 0.01}), "ELU": ("elu", {"alpha": 1.0})}


def _layer_entries(layers) -> list:
    """Layer configs as compared here: JSON-normalised (tuples are lists), without the layer names."""
    return [json.loads(json.dumps({"class": e.get("class"), "trainable": bool(e.get("trainable", True)),
                                   "config": {k: v for k, v in (e.get("config") or {}).items() if k != "name"}}))
            for e in layers]


def _folded_layout(model_config: dict, model) -> dict | None:
    """Old layer index -> index in ``model``, when ``model`` is the saved network with every activation
    layer that followed a plain Dense held by that Dense (``Dense(activation=...)``), else None.

    Until 2026-11-26 the recipes built ``Dense, Tanh`` where they now build ``Dense(activation="tanh")``,
    which renumbers the layers (and so the parameter names ``"2.W"`` -> ``"1.W"``); this lets their
    checkpoints resume. Nothing is guessed: the saved network with its activations folded must be
    ``model``'s, layer by layer (class, configuration, trainable), names aside.
    """
    mapping, expected, folded = {}, [], False
    for i, entry in enumerate(_layer_entries(model_config.get("layers", []))):
        activation, defaults = _FOLDABLE.get(entry["class"], (None, None))
        previous = expected[-1] if expected else None
        if (activation is not None and entry["config"] == defaults and previous is not None
                and previous["class"] == "Dense" and previous["config"].get("activation") in (None, "linear")):
            previous["config"]["activation"] = activation
            mapping[i] = len(expected) - 1
            folded = True
            continue
        mapping[i] = len(expected)
        expected.append(entry)
    if not folded or expected != _layer_entries(model.get_config()["layers"]):
        return None
    return mapping


def _renamed(names: dict, mapping: dict) -> dict:
    """``{"2.W": ...}`` -> ``{"1.W": ...}`` (and ``"m/2.W"`` -> ``"m/1.W"``) under an old -> new layer index map."""
    out = {}
    for key, value in names.items():
        prefix, _, rest = key.rpartition("/")
        index, _, param = rest.partition(".")
        new = f"{mapping[int(index)]}.{param}"
        new = f"{prefix}/{new}" if prefix else new
        if new in out:
            raise CheckpointError(f"renaming {key!r} to {new!r} would overwrite another array")
        out[new] = value
    return out


def with_folded_activations(checkpoint: dict, model) -> dict | None:
    """``checkpoint`` renamed to fit ``model`` when :func:`_folded_layout` applies, else None.

    The returned dict has ``"layer_map"`` (old -> new layer index) and ``"renamed_from"`` (the
    saved parameter names) for arrays saved beside it (a run's ``best.npz``: rename them with
    :func:`rename_parameters`)."""
    mapping = _folded_layout(checkpoint.get("model_config") or {}, model)
    if mapping is None:
        return None
    out = dict(checkpoint, params=_renamed(checkpoint["params"], mapping), layer_map=mapping,
               renamed_from=sorted(checkpoint["params"]))
    if checkpoint.get("optimizer") is not None:
        out["optimizer"] = dict(checkpoint["optimizer"], slots=_renamed(checkpoint["optimizer"]["slots"], mapping))
    rng = dict(checkpoint.get("rng") or {})
    rng["layers"] = {str(mapping[int(k)]): v for k, v in (rng.get("layers") or {}).items()}
    out["rng"] = rng
    return out


def rename_parameters(arrays: dict, checkpoint: dict) -> dict:
    """Parameter arrays saved with ``checkpoint`` (e.g. ``best.npz``), renamed as :func:`restore` renamed it.

    Only arrays under the checkpoint's saved names are renamed: a ``best.npz`` written after the
    resume already has the new names (a run stopped between writing it and the checkpoint)."""
    mapping = checkpoint.get("layer_map")
    if mapping is None or sorted(arrays) != checkpoint.get("renamed_from"):
        return arrays
    return _renamed(arrays, mapping)


def restore(model, optimizer=None, rng=None, checkpoint=None) -> dict:
    """Put a checkpoint (a path or a :func:`read_checkpoint` dict) into existing objects.

    Loads the parameters and layer generators into ``model`` (on its device), the
    optimizer state into ``optimizer`` and the shuffling state into ``rng`` (a
    :class:`npdl.backend.Generator`), each when given. Returns the checkpoint dict.
    A checkpoint of the same network written with its activations as layers of their
    own (see :func:`with_folded_activations`) is renamed to fit, and the returned dict
    is the renamed one.
    """
    if not isinstance(checkpoint, dict):
        checkpoint = read_checkpoint(checkpoint)
    try:
        _load_params(model, checkpoint)
    except CheckpointError:
        folded = with_folded_activations(checkpoint, model)
        if folded is None:
            raise
        checkpoint = folded
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
    checkpoint = read_checkpoint(path)
    optimizer = None
    if model is None:
        if MODEL_CLASS is None:
            raise CheckpointError(f"{path}: no model class is registered to rebuild the saved model; "
                                  "import npdl (or pass the model to load into)")
        model = MODEL_CLASS.from_config(checkpoint["model_config"], device=device)
        saved, compile_config = checkpoint["optimizer"], checkpoint["compile_config"]
        if compile_config is not None and saved is not None:
            model.compile(optimizer=optimizer_from_config(saved["class"], saved["config"]), **compile_config)
    optimizer = model.optimizer
    fit_state = checkpoint["rng"].get("fit")
    rng = backend.Generator(model.device, fit_state.get("seed")) if fit_state is not None else None
    checkpoint = restore(model, optimizer, rng, checkpoint)
    checkpoint.update(model=model, optimizer=optimizer, rng=rng)
    return checkpoint
