"""The CBLAS constants and the ``cblas_?gemm`` signatures, for a library found in the process (:mod:`.blas`,
:mod:`.mkl`)."""

from __future__ import annotations

import ctypes

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def gemm_functions(lib, pattern, int_t) -> dict:
    """``{"float32": sgemm, "float64": dgemm}`` of ``lib`` under the symbol ``pattern``, or ``{}``."""
    fns = {}
    for dtype, letter, real_t in (("float32", "s", ctypes.c_float), ("float64", "d", ctypes.c_double)):
        fn = getattr(lib, pattern.format(letter + "gemm"), None)
        if fn is None:
            return {}
        fn.restype = None
        # order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc
        fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, int_t, int_t, int_t, real_t,
                       ctypes.c_void_p, int_t, ctypes.c_void_p, int_t, real_t, ctypes.c_void_p, int_t]
        fns[dtype] = fn
    return fns
