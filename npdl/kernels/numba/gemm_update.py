"""``C <- beta C + alpha A^T B`` on the CPU: one BLAS call (see :mod:`.blas`), no temporary.

A GEMM is the one kernel here not written as a Numba loop: NumPy's BLAS is far
faster than any hand-written loop, and what the reference loses is only the
missing ``beta`` in ``matmul``. Falls back to the reference when the BLAS
cannot be called directly or the arrays' layout does not fit.
"""

from __future__ import annotations

from ..reference import gemm_update as _reference
from .blas import gemm_at_b


def gemm_update(C, A, B, alpha: float, beta: float = 1.0):
    if not gemm_at_b(C, A, B, float(alpha), float(beta)):
        _reference.gemm_update(C, A, B, alpha, beta)
    return C
