"""Readers for the two single-file MNIST archives: Keras's ``mnist.npz`` and Theano's ``mnist.pkl.gz``.

Both come back in the form the IDX reader gives: ``((x_train, y_train), (x_test,
y_test))`` with uint8 images of shape (N, 28, 28) and uint8 labels, the 60,000
training images in their original order. The loader then splits and scales
them the same way whatever the source.

* ``mnist.npz`` (Keras): arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``, uint8.
* ``mnist.pkl.gz`` (the Theano DeepLearningTutorials): a Python 2 pickle of
  ``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))``, float32 images
  of 784 values and int64 labels, the first 50,000 training images then the last
  10,000. Its pixels are the raw bytes divided by 256 (so the largest is
  0.99609375, not 1.0); the reader recovers the exact bytes, so every source gives
  identical arrays. A pickle can run code, so it is read with an unpickler that
  admits only the NumPy array machinery.

Every part is checked before it is used, and a refusal names the file and the
part: images (N, 28, 28) or (N, 784) of the right dtype, labels (N,) integers in
0..9, and N >= 1. A file under a published name (``mnist.npz``, ``mnist.pkl.gz``)
must also have the published counts (:data:`PARTS`) and match the published
file's checksum (:data:`npdl.datasets.checksums.ARCHIVES`); a file of one's own,
under any other name, is checked for shapes, dtypes and labels only.
"""

from __future__ import annotations

import gzip
import importlib
import io
import os
import pickle
import zipfile
import zlib

import numpy as np

from .checksums import ARCHIVES, verify_archive
from .errors import DatasetError

#: the number of images in each part of the published files, by file name
PARTS = {
    "mnist.npz": {"train": 60_000, "test": 10_000},
    "mnist.pkl.gz": {"train": 50_000, "valid": 10_000, "test": 10_000},
}
#: the dtypes of the published files' (images, labels)
DTYPES = {"mnist.npz": ("uint8", "uint8"), "mnist.pkl.gz": ("float32", "int64")}

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("__builtin__", "bytes"), ("builtins", "bytes"),  # the empty data of an empty array (protocol 2)
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays and plain containers, and refuses any other global (no code runs)."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only NumPy arrays are expected")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]  # NumPy 2 renamed it; avoid the warning
        if module == "__builtin__":
            module = "builtins"  # Python 2's name
        return getattr(importlib.import_module(module), name)


def published_name(path) -> str | None:
    """The published archive ``path`` claims to be (its file name), or None for a file of one's own."""
    name = os.path.basename(os.fspath(path))
    return name if name in ARCHIVES else None


def _read_bytes(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise DatasetError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc


def _check(path, x, y, what, x_shape_tail, published=None):
    """Refuse images/labels that do not look like an MNIST part, naming the file and the part.

    ``published``: the file's published name, whose count and dtypes the part must then have."""
    path = os.fspath(path)
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise DatasetError(f"{path}: the {what} part is not a pair of arrays")
    if x.ndim != 1 + len(x_shape_tail) or x.shape[1:] != x_shape_tail:
        raise DatasetError(f"{path}: {what} images have shape {x.shape}, expected (N, "
                           + ", ".join(map(str, x_shape_tail)) + ")")
    if len(x) == 0:
        raise DatasetError(f"{path}: the {what} part is empty (0 images); every part needs examples")
    if y.ndim != 1 or len(y) != len(x):
        raise DatasetError(f"{path}: {what} labels have shape {y.shape}, expected ({len(x)},) to match the images")
    if y.dtype.kind not in "iu" or y.min() < 0 or y.max() > 9:
        raise DatasetError(f"{path}: {what} labels must be integers 0..9 (dtype {y.dtype}, "
                           f"range {y.min()}..{y.max()})")
    if published is not None:
        if len(x) != PARTS[published][what]:
            raise DatasetError(f"{path}: the {what} part holds {len(x)} images, but the published {published} "
                               f"holds {PARTS[published][what]}; the file is not the published one")
        for array, want, role in zip((x, y), DTYPES[published], ("images", "labels")):
            if array.dtype != np.dtype(want):
                raise DatasetError(f"{path}: {what} {role} are {array.dtype}, but the published {published} "
                                   f"holds {want}; the file is not the published one")


def read_npz(path):
    """Keras's ``mnist.npz`` as ``((x_train, y_train), (x_test, y_test))``, uint8."""
    raw = _read_bytes(path)
    try:
        archive = np.load(io.BytesIO(raw), allow_pickle=False)
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise DatasetError(f"cannot read {os.fspath(path)} as an .npz archive ({exc}); "
                           "it is probably truncated or corrupt") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(f"{os.fspath(path)} holds a single array, expected Keras's mnist.npz archive")
    try:
        with archive:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(archive.files)
            if missing:
                raise DatasetError(f"{os.fspath(path)} lacks the arrays {sorted(missing)} "
                                   f"(it has {sorted(archive.files)}); expected Keras's mnist.npz")
            parts = [(archive["x_train"], archive["y_train"]), (archive["x_test"], archive["y_test"])]
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"cannot read the arrays in {os.fspath(path)} ({exc}); "
                           "it is probably truncated or corrupt") from exc
    published = published_name(path)
    for (x, y), what in zip(parts, ("train", "test")):
        _check(path, x, y, what, (28, 28), published)
        if x.dtype != np.uint8:
            raise DatasetError(f"{os.fspath(path)}: {what} images are {x.dtype}, expected uint8")
    if published is not None:
        verify_archive(os.fspath(path), published, raw)
    return tuple((x, y.astype(np.uint8)) for x, y in parts)


def _to_bytes(path, x, what):
    """Float pixels in [0, 1) or [0, 1] back to the uint8 they were made from (x*256 or x*255)."""
    if x.dtype.kind != "f" or x.min() < 0 or x.max() > 1:
        raise DatasetError(f"{os.fspath(path)}: {what} images must be floats in [0, 1] "
                           f"(dtype {x.dtype}, range {x.min()}..{x.max()})")
    scaled = x.astype(np.float64) * 256
    if scaled.max() <= 255 and np.array_equal(scaled, np.round(scaled)):
        return scaled.astype(np.uint8)  # the Theano file: raw / 256, exactly
    return np.round(x.astype(np.float64) * 255).astype(np.uint8)


def read_pkl_parts(path):
    """The Theano tutorials' ``mnist.pkl.gz`` as its three parts ``(train, valid, test)``, each
    ``(x, y)`` with uint8 images (N, 28, 28) and uint8 labels, as the file splits them."""
    raw = _read_bytes(path)
    try:
        content = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        # latin1: the file was pickled by Python 2, whose byte strings hold the array data
        parts = _ArrayOnlyUnpickler(io.BytesIO(content), encoding="latin1").load()
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError, TypeError,
            AttributeError, IndexError) as exc:
        raise DatasetError(f"cannot read {os.fspath(path)} as the Theano mnist.pkl.gz ({exc}); "
                           "it is probably truncated, corrupt or another file") from exc
    if not (isinstance(parts, (tuple, list)) and len(parts) == 3
            and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in parts)):
        raise DatasetError(f"{os.fspath(path)} does not hold ((train_x, train_y), (valid_x, valid_y), "
                           "(test_x, test_y)) as the Theano mnist.pkl.gz does")
    published = published_name(path)
    out = []
    for (x, y), what in zip(parts, ("train", "valid", "test")):
        _check(path, x, y, what, (784,), published)
        out.append((_to_bytes(path, x, what).reshape(-1, 28, 28), y.astype(np.uint8)))
    if published is not None:
        verify_archive(os.fspath(path), published, raw)
    return tuple(out)


def read_pkl(path):
    """The Theano tutorials' ``mnist.pkl.gz`` as ``((x_train, y_train), (x_test, y_test))``, uint8.

    Train and valid are joined back into one training set (train came first); see
    :func:`read_pkl_parts` for the file's own split.
    """
    (xt, yt), (xv, yv), test = read_pkl_parts(path)
    return (np.concatenate([xt, xv]), np.concatenate([yt, yv])), test
