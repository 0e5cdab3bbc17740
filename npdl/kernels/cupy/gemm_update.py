"""``C <- beta C + alpha A^T B`` on a CUDA device: one cuBLAS GEMM through ``cupy.cublas.gemm``.

Untested on hardware where this was written (no GPU); the tests marked ``gpu``
compare it with :func:`npdl.optim.sgd.gemm_update_sum` on a CUDA machine.
"""

from __future__ import annotations


def gemm_update(C, A, B, alpha: float, beta: float = 1.0):
    """``C <- beta C + alpha A^T B`` in one cuBLAS call; ``NotImplemented`` where it cannot be called."""
    try:
        from cupy import cublas
    except ImportError:  # an old CuPy without the cublas module
        return NotImplemented
    if not C.flags.c_contiguous:
        return NotImplemented
    cublas.gemm("T", "N", A, B, out=C, alpha=float(alpha), beta=float(beta))
    return C


def gemm_update_sum(C, pairs, alpha: float, beta: float = 1.0):
    """``C <- beta C + alpha sum_p A_p^T B_p``: the stacked factors in one GEMM (see the Numba version)."""
    import cupy

    pairs = list(pairs)
    if len(pairs) == 1:
        return gemm_update(C, pairs[0][0], pairs[0][1], alpha, beta)
    A = cupy.concatenate([a for a, _ in pairs], axis=0)
    B = cupy.concatenate([b for _, b in pairs], axis=0)
    return gemm_update(C, A, B, alpha, beta)
