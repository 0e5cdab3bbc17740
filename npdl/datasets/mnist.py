"""MNIST, as the classic tutorials split it, from whatever copy is at hand.

:func:`load_mnist` finds the files (see :mod:`.locate` for the search order),
downloads them into the cache if none are found, verifies the IDX files
against their known SHA-256, and returns NumPy arrays:

* ``split="dlt"`` -- the Theano DeepLearningTutorials split: the first 50,000
  training images for training, the last 10,000 for validation, the 10,000 test
  images for testing (keys ``"train"``, ``"valid"``, ``"test"``).
* ``split="keras"`` -- all 60,000 for training, 10,000 for testing (``"train"``, ``"test"``).

The parsed uint8 arrays are cached in-process per file (path, size and
modification time), so a second call skips reading, gunzipping and hashing,
and a replaced file is read afresh.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from ..backend import resolve_float
from . import archives, locate
from .checksums import verify_content
from .download import download_mnist
from .errors import DatasetError
from .idx import IMAGES_MAGIC, LABELS_MAGIC, parse_idx, read_file_bytes

SPLITS = ("dlt", "keras")

#: how many of the last training images the "dlt" split holds out for validation
DLT_VALID = 10_000


@functools.lru_cache(maxsize=8)
def _read_verified(path: str, size: int, mtime_ns: int, magic: int, expected) -> np.ndarray:
    """One IDX file, checked against ``expected`` = (sha256, size) or None, parsed (read-only uint8).

    Keyed by size and mtime as well as the path, so the cache never serves a
    file that has changed on disk; failures are not cached, so they are re-checked.
    """
    data = read_file_bytes(path)
    dims = (None, 28, 28) if magic == IMAGES_MAGIC else (None,)
    # parsed first, so a file of the wrong kind (labels where images belong) is called that, not "truncated"
    array = parse_idx(data, path, magic, dims)
    if expected is not None:
        verify_content(path, data, *expected,
                       hint="delete it (it will be downloaded again) or replace it with a good copy")
    return array


def read_mnist_idx(path, name: str) -> np.ndarray:
    """IDX file ``path`` holding MNIST part ``name`` (e.g. ``"t10k-labels-idx1-ubyte"``), verified."""
    path = os.path.abspath(path)
    stat = os.stat(path)
    magic = IMAGES_MAGIC if "images" in name else LABELS_MAGIC
    return _read_verified(path, stat.st_size, stat.st_mtime_ns, magic, locate.CHECKSUMS.get(name))


def _read_source(source: locate.Source):
    """``(train, test, n_valid)`` from one found copy: ``train``/``test`` are ``(x, y)`` uint8, images
    (N, 28, 28); ``n_valid`` is the size of the file's own validation part (Theano's pickle), else None."""
    if source.kind == "npz":
        return (*archives.read_npz(source.paths["file"]), None)
    if source.kind == "pkl":
        (xt, yt), (xv, yv), test = archives.read_pkl_parts(source.paths["file"])
        return (np.concatenate([xt, xv]), np.concatenate([yt, yv])), test, len(xv)
    arrays = {name: read_mnist_idx(path, name) for name, path in source.paths.items()}
    parts = []
    for prefix in ("train", "t10k"):
        x, y = arrays[f"{prefix}-images-idx3-ubyte"], arrays[f"{prefix}-labels-idx1-ubyte"]
        if len(x) != len(y):
            raise DatasetError(f"{source.paths[f'{prefix}-images-idx3-ubyte']} holds {len(x)} images but "
                               f"{source.paths[f'{prefix}-labels-idx1-ubyte']} holds {len(y)} labels")
        parts.append((x, y))
    return (*parts, None)


def _file_source(file) -> locate.Source:
    """The copy in one archive named by the user (``file=``), its kind told by its name."""
    path = os.path.abspath(os.path.expanduser(os.fspath(file)))
    if not os.path.isfile(path):
        raise DatasetError(f"file {os.fspath(file)!r} is not a file; pass the path of an .npz archive in Keras's "
                           "layout or a .pkl/.pkl.gz pickle in the Theano tutorials' layout")
    lower = os.path.basename(path).lower()
    if lower.endswith(".npz"):
        kind = "npz"
    elif lower.endswith((".pkl", ".pkl.gz")):
        kind = "pkl"
    else:
        raise DatasetError(f"{path}: cannot tell the layout from the name; file= takes an .npz archive "
                           "(Keras's arrays x_train, y_train, x_test, y_test) or a .pkl/.pkl.gz pickle (the "
                           "Theano tutorials' (train, valid, test))")
    return locate.Source(kind, os.path.dirname(path), "file argument", {"file": path})


def _not_found_message(searched, download_error) -> str:
    names = ", ".join(n + ".gz" for n in locate.IDX_NAMES)
    lines = [f"MNIST not found. Looked for {names} (or the same without .gz; or {locate.NPZ_NAME} "
             f"or {locate.PKL_NAME}) in:"]
    lines += [f"  - {d} ({where}): {account}" for where, d, account in searched]
    if not os.environ.get(locate.ENV_VAR):
        lines.append(f"  (${locate.ENV_VAR} is not set)")
    lines.append(f"Download failed: {download_error}" if download_error else
                 "Downloading was turned off (download=False).")
    lines.append(f"Put the four files in one of these folders, e.g. {locate.cache_dir()}, or set "
                 f"{locate.ENV_VAR} to the folder that holds them, or pass data_dir=.")
    return "\n".join(lines)


def load_mnist_raw(data_dir=None, download: bool = True, file=None):
    """``((x_train, y_train), (x_test, y_test))``: uint8 images (N, 28, 28) and uint8 labels, read-only.

    The arrays may be shared with the in-process cache; copy them before writing.
    ``file`` reads one archive instead of searching (see :func:`load_mnist`).
    """
    train, test, _ = _load_raw(data_dir, download, file)
    return train, test


def _load_raw(data_dir, download, file):
    """:func:`load_mnist_raw`'s two parts and the source's own validation size (or None)."""
    if file is not None:
        return _read_source(_file_source(file))
    if data_dir is not None and not os.path.isdir(data_dir):
        raise DatasetError(f"data_dir {os.fspath(data_dir)!r} is not a folder; pass the folder holding "
                           f"{', '.join(n + '.gz' for n in locate.IDX_NAMES)}")
    source, searched = locate.find_source(data_dir)
    download_error = None
    if source is None and download:
        try:
            download_mnist(locate.cache_dir())
            source, searched = locate.find_source(data_dir)
        except DatasetError as exc:
            download_error = exc
    if source is None:
        raise DatasetError(_not_found_message(searched, download_error)) from download_error
    return _read_source(source)


def split_dlt(train, test, n_valid: int | None = None) -> dict:
    """The DeepLearningTutorials split: the last ``n_valid`` (default 10,000) training images become "valid"."""
    n_valid = DLT_VALID if n_valid is None else n_valid
    (x, y), n = train, len(train[0])
    if not 0 < n_valid < n:
        raise DatasetError(f"cannot hold out {n_valid} validation images from a training set of {n}")
    return {"train": (x[:n - n_valid], y[:n - n_valid]), "valid": (x[n - n_valid:], y[n - n_valid:]), "test": test}


def _finish(x, y, dtype, normalize: bool, flatten: bool):
    n, rows, cols = x.shape
    x = x.reshape(n, rows * cols) if flatten else x.reshape(n, 1, rows, cols)
    if normalize:
        # one pass, no uint8 -> float temporary; the same values as x.astype(dtype) / 255
        x = np.divide(x, np.dtype(dtype).type(255), dtype=dtype)
    else:
        x = x.copy()  # the cached arrays are read-only and shared
    return x, y.astype(np.int64)


def load_mnist(split="dlt", data_dir=None, dtype="float32", normalize=True, flatten=True, download=True,
               file=None) -> dict:
    """MNIST as a dict of ``(x, y)`` NumPy pairs.

    ``split``: ``"dlt"`` gives ``"train"`` (50,000), ``"valid"`` (10,000),
    ``"test"`` (10,000); ``"keras"`` gives ``"train"`` (60,000), ``"test"`` (10,000).
    A Theano-layout pickle keeps its own validation part as ``"valid"``.

    ``x`` is ``dtype`` (float32 or float64) in [0, 1] (pixel / 255), or the raw
    uint8 bytes when ``normalize=False`` (``dtype`` is then ignored); shape
    (N, 784) when ``flatten`` else (N, 1, 28, 28) (NCHW). ``y`` is int64 (N,).

    Files are looked for in ``data_dir``, then ``$NPDL_DATA_DIR``, then
    ``$XDG_CACHE_HOME/npdl/mnist`` (``~/.cache/npdl/mnist``), and downloaded there
    when absent and ``download`` is true. Raises :class:`DatasetError` naming the
    file for a corrupt or truncated file, or naming every folder searched when
    nothing is found.

    ``file`` reads one archive of your own instead of searching: an ``.npz`` in Keras's
    layout or a ``.pkl``/``.pkl.gz`` in the Theano tutorials' layout. Every part must
    hold examples, with images of the right shape and dtype and labels 0..9; a file named
    ``mnist.npz`` or ``mnist.pkl.gz`` must also be the published file (its counts and its
    checksum are checked), wherever it is found.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}; use one of {', '.join(map(repr, SPLITS))}")
    dtype = resolve_float(dtype) if normalize else None
    train, test, n_valid = _load_raw(data_dir, download, file)
    parts = split_dlt(train, test, n_valid) if split == "dlt" else {"train": train, "test": test}
    return {key: _finish(x, y, dtype, normalize, flatten) for key, (x, y) in parts.items()}


def mnist_files_status(data_dir=None) -> dict:
    """Where the MNIST files are, for diagnostics (nothing is read, verified or downloaded).

    Returns ``{"searched": [{"where", "dir", "found"}, ...] in search order,
    "files": {file name: path of its first copy, or None}, "source": the copy
    :func:`load_mnist` would use ({"kind", "dir", "where"}) or None, "env": the
    relevant environment variables}``.
    """
    return locate.files_status(data_dir)
