"""Readers for the two single-file MNIST archives: Keras's ``mnist.npz`` and Theano's ``mnist.pkl.gz``.

Both come back in the form the IDX reader gives: ``((x_train, y_train), (x_test,
y_test))`` with uint8 images of shape (N, 28, 28) and uint8 labels, the 60,000
training images in their original order. The loader then splits and scales
them the same way whatever the source.

* ``mnist.npz`` (Keras): arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``, uint8.
* ``mnist.pkl.gz`` (the Theano DeepLearningTutorials): a Python 2 pickle of
  ``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))``, float32 images
  of 784 values, the first 50,000 training images then the last 10,000. Its
  pixels are the raw bytes divided by 256 (so the largest is 0.99609375, not
  1.0); the reader recovers the exact bytes, so every source gives identical
  arrays. A pickle can run code, so it is read with an unpickler that admits
  only the NumPy array machinery.
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

from .errors import DatasetError

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays and plain containers, and refuses any other global (no code runs)."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only NumPy arrays are expected")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]  # NumPy 2 renamed it; avoid the warning
        return getattr(importlib.import_module(module), name)


def _check(path, x, y, what, x_shape_tail):
    """Refuse images/labels that do not look like an MNIST part, naming the file and the part."""
    path = os.fspath(path)
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise DatasetError(f"{path}: {what} is not a pair of arrays")
    if x.ndim != 1 + len(x_shape_tail) or x.shape[1:] != x_shape_tail:
        raise DatasetError(f"{path}: {what} images have shape {x.shape}, expected (N, "
                           + ", ".join(map(str, x_shape_tail)) + ")")
    if y.ndim != 1 or len(y) != len(x):
        raise DatasetError(f"{path}: {what} labels have shape {y.shape}, expected ({len(x)},) to match the images")
    if y.dtype.kind not in "iu" or (len(y) and (y.min() < 0 or y.max() > 9)):
        raise DatasetError(f"{path}: {what} labels must be integers 0..9 (dtype {y.dtype}, "
                           f"range {y.min() if len(y) else '-'}..{y.max() if len(y) else '-'})")


def read_npz(path):
    """Keras's ``mnist.npz`` as ``((x_train, y_train), (x_test, y_test))``, uint8."""
    try:
        archive = np.load(path, allow_pickle=False)
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
    for (x, y), what in zip(parts, ("train", "test")):
        _check(path, x, y, what, (28, 28))
        if x.dtype != np.uint8:
            raise DatasetError(f"{os.fspath(path)}: {what} images are {x.dtype}, expected uint8")
    return tuple((x, y.astype(np.uint8)) for x, y in parts)


def _to_bytes(path, x, what):
    """Float pixels in [0, 1) or [0, 1] back to the uint8 they were made from (x*256 or x*255)."""
    if x.dtype.kind != "f" or (x.size and (x.min() < 0 or x.max() > 1)):
        raise DatasetError(f"{os.fspath(path)}: {what} images must be floats in [0, 1] "
                           f"(dtype {x.dtype}, range {x.min() if x.size else '-'}..{x.max() if x.size else '-'})")
    scaled = x.astype(np.float64) * 256
    if scaled.size and scaled.max() <= 255 and np.array_equal(scaled, np.round(scaled)):
        return scaled.astype(np.uint8)  # the Theano file: raw / 256, exactly
    return np.round(x.astype(np.float64) * 255).astype(np.uint8)


def read_pkl(path):
    """The Theano tutorials' ``mnist.pkl.gz`` as ``((x_train, y_train), (x_test, y_test))``, uint8.

    Train and valid are joined back into the original 60,000 (train came first).
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        # latin1: the file was pickled by Python 2, whose byte strings hold the array data
        parts = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError, TypeError,
            AttributeError, IndexError) as exc:
        raise DatasetError(f"cannot read {os.fspath(path)} as the Theano mnist.pkl.gz ({exc}); "
                           "it is probably truncated, corrupt or another file") from exc
    if not (isinstance(parts, (tuple, list)) and len(parts) == 3
            and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in parts)):
        raise DatasetError(f"{os.fspath(path)} does not hold ((train_x, train_y), (valid_x, valid_y), "
                           "(test_x, test_y)) as the Theano mnist.pkl.gz does")
    out = []
    for (x, y), what in zip(parts, ("train", "valid", "test")):
        _check(path, x, y, what, (784,))
        out.append((_to_bytes(path, x, what).reshape(-1, 28, 28), y.astype(np.uint8)))
    (xt, yt), (xv, yv), test = out
    return (np.concatenate([xt, xv]), np.concatenate([yt, yv])), test
