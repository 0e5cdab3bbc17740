"""The BLAS NumPy already loaded, called directly (ctypes) for GEMM with ``beta != 0`` and for GER.

NumPy's ``matmul`` always overwrites its output (``beta = 0``), so an update
``C <- alpha A^T B + beta C`` costs a temporary and a second pass. The same BLAS
library NumPy uses (found through ``threadpoolctl``, no second BLAS and no second
thread pool) exposes ``cblas_?gemm``, which does it in one call.

At batch 1 the update is a rank-1 one, ``C <- C + alpha x y^T``: BLAS's GER. GEMM with
an inner dimension of 1 still packs its operands into panels; GER streams over ``C``
once. For a 1000x1000 float32 ``C`` on a 2-core AMD EPYC (OpenBLAS 0.3.31, 2 threads)
``sgemm`` with k = 1 took 0.077 ms, ``sger`` 0.028 ms.

``gemm_at_b`` and ``ger`` return False when no usable CBLAS was found or the arrays do
not fit (dtype, layout); the kernel then declines and the definition runs.
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

#: {"float32": sgemm, "float64": dgemm, "ger": {"float32": sger, "float64": dger}, "library": name},
#: "ger" empty when the library lacks it; {} when no CBLAS is usable; None until first looked up
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
            fns, ger = {}, {}
            for dtype, letter, real_t in (("float32", "s", ctypes.c_float), ("float64", "d", ctypes.c_double)):
                fn = getattr(lib, pattern.format(letter + "gemm"), None)
                if fn is None:
                    break
                fn.restype = None
                # order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc
                fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, int_t, int_t, int_t, real_t,
                               ctypes.c_void_p, int_t, ctypes.c_void_p, int_t, real_t, ctypes.c_void_p, int_t]
                fns[dtype] = fn
                fn = getattr(lib, pattern.format(letter + "ger"), None)
                if fn is not None:
                    fn.restype = None
                    # order, M, N, alpha, x, incx, y, incy, A, lda
                    fn.argtypes = [ctypes.c_int, int_t, int_t, real_t, ctypes.c_void_p, int_t,
                                   ctypes.c_void_p, int_t, ctypes.c_void_p, int_t]
                    ger[dtype] = fn
            if len(fns) == 2:
                fns["ger"] = ger if len(ger) == 2 else {}
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


def ger(C, x, y, alpha: float) -> bool:
    """``C <- C + alpha x y^T`` in place through CBLAS (rank-1 update); False if it could not be done here.

    Shapes: ``x`` (M,), ``y`` (N,), ``C`` (M, N) C-contiguous. ``x`` and ``y`` may be strided
    (a row or a column of a matrix), with positive strides.
    """
    fn = functions().get("ger", {}).get(_FLOAT_CHARS.get(C.dtype.char))
    if fn is None or x.dtype != C.dtype or y.dtype != C.dtype or x.ndim != 1 or y.ndim != 1 or C.ndim != 2:
        return False
    if not C.flags.c_contiguous or not C.flags.writeable:
        return False
    m, n = C.shape
    if x.shape[0] != m or y.shape[0] != n or m == 0 or n == 0:
        return False
    item = C.itemsize
    strides = (x.strides[0], y.strides[0])
    if any(s <= 0 or s % item for s in strides):
        return False
    fn(ROW_MAJOR, m, n, alpha, x.ctypes.data, strides[0] // item, y.ctypes.data, strides[1] // item,
       C.ctypes.data, n)
    return True
