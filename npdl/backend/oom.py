"""Recognising a GPU out-of-memory error and turning it into one that says what to try.

CuPy's own error is recognised without importing CuPy; the replacement,
:class:`npdl.errors.GPUOutOfMemoryError`, names what was being allocated (shape, dtype,
MiB) and keeps CuPy's text as its ``detail``.
"""

from __future__ import annotations

import numpy as np

from ..errors import GPUOutOfMemoryError

#: extra exception types to treat as "the GPU is out of memory" (besides CuPy's, found by name)
OOM_ERRORS: tuple = ()

OOM_HINT = "try a smaller batch size, or free GPU memory held by other arrays or processes"


def is_out_of_memory(exc: BaseException) -> bool:
    """Is ``exc`` CuPy running out of GPU memory? Recognised without importing CuPy:
    ``cupy.cuda.memory.OutOfMemoryError`` by class name and module, cuBLAS/CUDA allocation
    failures by their status names, and any type listed in :data:`OOM_ERRORS`."""
    if isinstance(exc, GPUOutOfMemoryError) or (OOM_ERRORS and isinstance(exc, OOM_ERRORS)):
        return True
    if any(cls.__name__ == "OutOfMemoryError" and cls.__module__.startswith("cupy")
           for cls in type(exc).__mro__):
        return True
    if type(exc).__module__.startswith(("cupy", "cupy_backends")):
        text = str(exc)
        return "ALLOC_FAILED" in text or "cudaErrorMemoryAllocation" in text
    return False


def describe_allocation(shape, dtype) -> str:
    """``"shape (60000, 784) float32, 179.4 MiB"`` (``dtype``: a dtype, a type or a name)."""
    shape = tuple(int(d) for d in shape)
    size = 1
    for d in shape:
        size *= d
    try:
        dt = np.dtype(dtype)
    except TypeError:
        return f"shape {shape} {str(dtype).rsplit('.', 1)[-1]}"
    return f"shape {shape} {dt.name}, {size * dt.itemsize / 2 ** 20:.1f} MiB"


def out_of_memory(exc: BaseException, what: str, hint: str = OOM_HINT, detail: str | None = None
                  ) -> GPUOutOfMemoryError:
    """The :class:`GPUOutOfMemoryError` to raise (``from exc``) for an out-of-memory ``exc`` while
    doing ``what``. CuPy's own text (bytes asked for, allocated so far) is kept as ``detail``;
    re-raising an npdl one with more context keeps its detail."""
    detail = detail or getattr(exc, "detail", None) or f"CuPy: {exc}"
    err = GPUOutOfMemoryError(f"out of GPU memory {what}: {hint} ({detail})")
    err.detail = detail
    return err
