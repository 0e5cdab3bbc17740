"""The BLAS NumPy already loaded, called directly (ctypes) for GEMM with ``beta != 0``.

NumPy's ``matmul`` always overwrites its output (``beta = 0``), so an update
``C <- alpha A^T B + beta C`` costs a temporary and a second pass. The same BLAS
library NumPy uses (found through ``threadpoolctl``, no second BLAS and no second
thread pool) exposes ``cblas_?gemm``, which does it in one call. (At batch 1 the update is a
rank-1 one, ``C <- beta C + alpha x y^T``, which a Numba loop over the rows of ``C`` does:
:mod:`.rows`.)

``gemm_at_b`` returns False when no usable CBLAS was found or the arrays do not fit (dtype,
layout); the kernel then declines and the definition runs.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

#: symbol names tried in order (``{}`` is the routine: sgemm, dger, ...), with the integer type
#: of their dimensions
_CANDIDATES = (("scipy_cblas_{}64_", ctypes.c_int64), ("cblas_{}64_", ctypes.c_int64),
               ("scipy_cblas_{}", ctypes.c_int), ("cblas_{}", ctypes.c_int))

#: {"float32": sgemm, "float64": dgemm, "library": name}; {} when no CBLAS is usable; None until first looked up
_loaded = None


def _find() -> dict:
    if os.environ.get("NPDL_NO_CBLAS"):
        return {}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    np.ones((2, 2)) @ np.ones((2, 2))  # make sure NumPy's BLAS is loaded before looking for it
    # Several BLAS libraries may be loaded: importing Numba imports SciPy, whose wheel loads its
    # own OpenBLAS with its own thread pool. Use NumPy's (its wheel keeps it beside the package,
    # in numpy.libs or numpy/.dylibs): two pools taking turns spin against each other, which
    # measured 8 ms instead of 0.3 ms per MLP step on 2 cores.
    numpy_dir = os.path.dirname(os.path.abspath(np.__file__))
    blas_libs = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    blas_libs.sort(key=lambda info: not os.path.abspath(info["filepath"]).startswith(numpy_dir))
    for info in blas_libs:
        try:
            lib = ctypes.CDLL(info["filepath"])
        except OSError:
            continue
        for pattern, int_t in _CANDIDATES:
            fns = {}
            for dtype, letter, real_t in (("float32", "s", ctypes.c_float), ("float64", "d", ctypes.c_double)):
                fn = getattr(lib, pattern.format(letter + "gemm"), None)
                if fn is None:
                    break
                fn.restype = None
                # order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc
                fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, int_t, int_t, int_t, real_t,
                               ctypes.c_void_p, int_t, ctypes.c_void_p, int_t, real_t, ctypes.c_void_p, int_t]
                fns[dtype] = fn
            if len(fns) == 2:
                fns["library"] = f"{info.get('internal_api')} {info.get('version')} ({pattern.format('?gemm')})"
                return fns
    return {}


def functions() -> dict:
    global _loaded
    if _loaded is None:
        _loaded = _find()
    return _loaded


def available() -> bool:
    return bool(functions())


def sgemm():
    """The ``cblas_sgemm`` of NumPy's BLAS as a ctypes function (Numba's compiled loops can call it:
    :mod:`.simple_rnn`, :mod:`.lstm_cell`), or None where no usable CBLAS was found."""
    return functions().get("float32")


def _as_op(X):
    """``(trans, ld)`` so that BLAS reads ``X`` (row-major) as given, or None if its layout does not fit."""
    item = X.itemsize
    rows, cols = X.shape
    if X.strides[1] == item and X.strides[0] >= max(cols, 1) * item and X.strides[0] % item == 0:
        return NO_TRANS, X.strides[0] // item  # rows are contiguous: row-major X
    if X.strides[0] == item and X.strides[1] >= max(rows, 1) * item and X.strides[1] % item == 0:
        return TRANS, X.strides[1] // item  # columns are contiguous: X.T is row-major
    return None


#: dtype.char -> the dtype's name (``str(dtype)`` is a slow Python-level call in NumPy, a few microseconds)
_FLOAT_CHARS = {"f": "float32", "d": "float64"}


def gemm_at_b(C, A, B, alpha: float, beta: float) -> bool:
    """``C <- alpha A^T B + beta C`` in place through CBLAS; False if it could not be done here."""
    fns = functions()
    fn = fns.get(_FLOAT_CHARS.get(C.dtype.char))
    if fn is None or A.dtype != C.dtype or B.dtype != C.dtype or A.ndim != 2 or B.ndim != 2 or C.ndim != 2:
        return False
    if not C.flags.c_contiguous or not C.flags.writeable:
        return False
    m, n = C.shape
    k = A.shape[0]
    if A.shape[1] != m or B.shape != (k, n) or m == 0 or n == 0:
        return False
    # op(A) must be A^T (M, K'): A is read transposed if it is row-major, as-is if A.T is row-major
    a = _as_op(A)
    b = _as_op(B)
    if a is None or b is None:
        return False
    trans_a = TRANS if a[0] == NO_TRANS else NO_TRANS
    fn(ROW_MAJOR, trans_a, b[0], m, n, k, alpha, A.ctypes.data, a[1], B.ctypes.data, b[1], beta,
       C.ctypes.data, n)
    return True
