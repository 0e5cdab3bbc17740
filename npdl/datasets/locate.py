"""Where the MNIST files are looked for, and what counts as finding them.

Folders are searched in this order, and the first one holding a complete set
wins (files are never mixed across folders):

1. the ``data_dir`` argument,
2. ``$NPDL_DATA_DIR``,
3. the cache, ``$XDG_CACHE_HOME/npdl/mnist`` (default ``~/.cache/npdl/mnist``),
   which is also where downloads go.

Within a folder the four LeCun IDX files are preferred (``.gz`` or not, and the
``train-images.idx3-ubyte`` spelling some mirrors use); failing them Keras's
``mnist.npz``, then the Theano tutorials' ``mnist.pkl.gz``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ENV_VAR = "NPDL_DATA_DIR"

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
NPZ_NAME = "mnist.npz"
PKL_NAME = "mnist.pkl.gz"

#: SHA-256 and byte length of each file's *decompressed* content (the original LeCun files).
CHECKSUMS = {
    "train-images-idx3-ubyte": ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47040016),
    "train-labels-idx1-ubyte": ("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60008),
    "t10k-images-idx3-ubyte": ("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7840016),
    "t10k-labels-idx1-ubyte": ("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10008),
}


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/npdl/mnist``, or ``~/.cache/npdl/mnist`` when the variable is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "npdl" / "mnist"


def search_dirs(data_dir=None) -> list[tuple[str, Path]]:
    """``(where, folder)`` pairs in search order; a folder named twice is searched once."""
    candidates = []
    if data_dir is not None:
        candidates.append(("data_dir argument", Path(data_dir).expanduser()))
    if os.environ.get(ENV_VAR):
        candidates.append((f"${ENV_VAR}", Path(os.environ[ENV_VAR]).expanduser()))
    candidates.append(("cache", cache_dir()))
    seen, out = set(), []
    for where, path in candidates:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            out.append((where, path))
    return out


def idx_candidates(name: str) -> list[str]:
    """The file names ``name`` may have on disk, preferred first."""
    dotted = name.replace("-idx", ".idx")  # train-images.idx3-ubyte, as on some mirrors
    return [name + ".gz", name, dotted + ".gz", dotted]


def find_idx_file(directory, name: str) -> Path | None:
    """The path of IDX file ``name`` in ``directory`` (any accepted spelling), or None."""
    for candidate in idx_candidates(name):
        path = Path(directory) / candidate
        if path.is_file():
            return path
    return None


@dataclass
class Source:
    """A complete MNIST copy in one folder: ``kind`` is ``"idx"``, ``"npz"`` or ``"pkl"``."""

    kind: str
    directory: Path
    where: str
    paths: dict = field(default_factory=dict)  # IDX name -> path, or {"file": path}


def inspect_dir(where: str, directory) -> tuple[Source | None, str]:
    """The usable MNIST copy in ``directory`` (or None) and a one-line account of what is there."""
    directory = Path(directory)
    if not directory.is_dir():
        return None, "does not exist" if not directory.exists() else "is not a folder"
    found = {name: find_idx_file(directory, name) for name in IDX_NAMES}
    if all(found.values()):
        return Source("idx", directory, where, found), "complete IDX set"
    for kind, name in (("npz", NPZ_NAME), ("pkl", PKL_NAME)):
        if (directory / name).is_file():
            return Source(kind, directory, where, {"file": directory / name}), f"{name}"
    present = [n for n, p in found.items() if p]
    if not present:
        return None, "none of the files"
    missing = [n + ".gz" for n, p in found.items() if not p]
    return None, f"incomplete: has {', '.join(n + '.gz' for n in present)} but lacks {', '.join(missing)}"


def find_source(data_dir=None) -> tuple[Source | None, list[tuple[str, Path, str]]]:
    """The first complete MNIST copy in search order, and ``(where, folder, account)`` for each folder looked at."""
    searched = []
    for where, directory in search_dirs(data_dir):
        source, account = inspect_dir(where, directory)
        searched.append((where, directory, account))
        if source is not None:
            return source, searched
    return None, searched


def files_status(data_dir=None) -> dict:
    """Where each MNIST file is, for diagnostics; see :func:`npdl.datasets.mnist_files_status`."""
    dirs = search_dirs(data_dir)
    files = {}
    for name in IDX_NAMES + (NPZ_NAME, PKL_NAME):
        hit = None
        for _, directory in dirs:
            hit = find_idx_file(directory, name) if name in IDX_NAMES else \
                (directory / name if (directory / name).is_file() else None)
            if hit is not None:
                break
        files[name] = None if hit is None else str(hit)
    inspected = [(where, directory, *inspect_dir(where, directory)) for where, directory in dirs]
    source = next((s for _, _, s, _ in inspected if s is not None), None)
    return {
        "searched": [{"where": w, "dir": str(d), "found": account} for w, d, _, account in inspected],
        "files": files,
        "source": None if source is None else {"kind": source.kind, "dir": str(source.directory),
                                               "where": source.where},
        "env": {ENV_VAR: os.environ.get(ENV_VAR), "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME")},
    }
