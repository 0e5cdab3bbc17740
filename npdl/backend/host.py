"""Arrays of any library as NumPy arrays and Python floats, and their memory layout.

These need no :class:`~npdl.backend.devices.Device`: they look at the array itself.
"""

from __future__ import annotations

import array_api_compat
import numpy as np


def is_strict(x) -> bool:
    """Is ``x`` an array-api-strict array? (Checked by module, so the library need not be imported.)"""
    return type(x).__module__.startswith("array_api_strict")


def to_numpy(x) -> np.ndarray:
    """A NumPy copy (or view, on the CPU) of any array npdl handles."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if hasattr(x, "__dlpack__") and not isinstance(x, (list, tuple)):
        try:
            return np.from_dlpack(x)
        except (TypeError, RuntimeError, BufferError):
            pass
    return np.asarray(x)


def to_float(x) -> float:
    """A 0-d array (or scalar) as a Python float. On a GPU this waits for the device."""
    return float(to_numpy(x))


def row_major(x):
    """``x`` with C-contiguous (row-major) storage: ``x`` itself when it has it, else a copy.

    Array-API code has no notion of memory layout, but NumPy's and CuPy's elementwise
    loops slow down when one operand is row-major and another column-major (a transposed
    matrix product's result): a (20, 784) reconstruction cross-entropy took 0.061 ms on a
    column-major input against 0.035 ms row-major, and the copy 0.006 ms. The GPU kernels
    (``npdl.kernels.cuda``) take their inputs through it too: they index any strides, but
    every distinct layout is one more compilation. Libraries without the notion
    (array-api-strict: no ``flags``) get ``x`` back.
    """
    flags = getattr(x, "flags", None)
    # NumPy's and CuPy's copy() is row-major by default
    return x if flags is None or flags.c_contiguous else x.copy()
