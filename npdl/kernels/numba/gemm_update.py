"""``C <- beta C + alpha A^T B`` on the CPU: one BLAS call (see :mod:`.blas`), no temporary.

A GEMM is the one kernel here not written as a Numba loop: NumPy's BLAS is far
faster than any hand-written loop, and what the definition loses is only the
missing ``beta`` in ``matmul``. Declines (the definition runs) when the BLAS
cannot be called directly or the arrays' layout does not fit.

A sum of products ``sum_p A_p^T B_p`` is one product of the stacked factors,
``[A_1; A_2; ...]^T [B_1; B_2; ...]`` (stacked along the batch axis), so
:func:`gemm_update_sum` copies the small factors once and makes one GEMM call: one
pass over ``C`` instead of one per term. For a tied 784x1000 autoencoder at batch 1
that measured 0.07 ms against 0.13 ms for two rank-1 GEMMs and 1.7 ms for forming
``dW`` with ``matmul`` and subtracting it (one BLAS thread).

At batch 1 the product is a rank-1 update, ``C <- beta C + alpha x y^T``, one multiply-add per
element of ``C`` in one pass: :func:`rank_one_update` does it row by row (vectorised), up to
:data:`~npdl.kernels.numba.ONE_THREAD_MAX` elements on one thread like the batch-1 products of the
step (:mod:`.dense_products`), above on Numba's threads (where BLAS's GER ran before: it streamed
1000x1000 float32 at 0.58 ms a call against 0.44 ms for the loop on two threads, on a 2-core AMD
EPYC Zen 1 with the matrix coming from memory), in the bits of the one-pass
:func:`npdl.layers.dense.input_grad_then_update` (:mod:`.rows`).
"""

from __future__ import annotations

import numpy as np

from . import ONE_THREAD_MAX, blas, rows
from .blas import gemm_at_b

#: below this many elements of ``C`` the kernel declines. NumPy's ``matmul`` (``beta = 0``) reaches
#: OpenBLAS's small-matrix kernels, which a ``beta != 0`` call does not, and a temporary of this
#: size stays in cache: the definition (``matmul``, scale, add) was faster at every shape of
#: the benchmark workloads with ``C`` up to 10,000 elements, and slower from 40,000 (2-core
#: AMD EPYC, OpenBLAS 0.3.31, float32, median of 400 calls): (K, M, N) = (50, 50, 10) 10 against
#: 27 us; (1400, 50, 50) 229 against 243 us; (20, 100, 100) 25 against 39 us; (20, 200, 200) 91
#: against 71 us; (20, 784, 500) 2217 against 266 us. Where oneMKL is the kernels' library, a smaller
#: ``C`` goes to it all the same from :data:`.blas.MIN_WORK` multiply-adds (:func:`leaves_to_definition`).
SMALL_C = 1 << 14


def leaves_to_definition(C, work: int = 0) -> bool:
    """Whether :func:`gemm_update` leaves ``C`` to the definition: a one-row or one-column ``C``, or one
    under :data:`SMALL_C` elements (see there and in :func:`gemm_update`) unless the product has ``work``
    multiply-adds enough to go to oneMKL (:func:`.blas.serves`). With the default ``work``, whether it
    does so whatever the factors."""
    if C.ndim == 2 and 1 in C.shape:
        return True
    return C.size < SMALL_C and not blas.serves(work)


def rank_one_update(C, x, y, alpha: float, beta: float = 1.0) -> bool:
    """``C <- beta C + alpha x y^T`` in place row by row (:mod:`.rows`), on one thread up to
    :data:`~npdl.kernels.numba.ONE_THREAD_MAX` elements, above on Numba's threads; ``x`` (M,), ``y``
    (N,), ``C`` (M, N) C-contiguous, one dtype (float32 or float64); False, ``C`` untouched, where
    they do not fit."""
    if C.dtype not in (np.float32, np.float64) or x.dtype != C.dtype or y.dtype != C.dtype:
        return False
    if C.ndim != 2 or x.ndim != 1 or y.ndim != 1 or x.shape[0] != C.shape[0] or y.shape[0] != C.shape[1]:
        return False
    if not C.flags.c_contiguous or not C.flags.writeable:
        return False
    scalar = C.dtype.type  # alpha and beta in C's dtype: a float32 loop stays in float32
    loop = rows.rank_one_parallel if rows.on_threads(C.size, ONE_THREAD_MAX) else rows.rank_one
    loop(C, x, y, scalar(alpha), scalar(beta))
    return True


def gemm_update(C, A, B, alpha: float, beta: float = 1.0):
    """``C <- beta C + alpha A^T B`` in one BLAS call; ``NotImplemented`` where the definition is as fast
    (a one-row or one-column ``C``, or one under :data:`SMALL_C` elements) or the BLAS cannot be
    called (nothing changed then)."""
    # A one-row or one-column ``C`` is a matrix-vector product: NumPy's matmul calls GEMV for it,
    # while OpenBLAS's GEMM takes ~5x longer at such shapes (LSTM regressor, one thread: 22 us
    # against 4.4 us for the (1, 80) input weights with N = 1000; 13 against 2.6 us for a
    # (20, 1) dense output), and the definition's temporary is tiny there.
    if leaves_to_definition(C, A.shape[0] * C.size if A.ndim == 2 else 0):
        return NotImplemented
    if A.ndim == 2 and A.shape[0] == 1 and B.ndim == 2:  # batch 1: a rank-1 update
        if rank_one_update(C, A[0], B[0], alpha, beta):
            return C  # one pass, row by row (see the module docstring)
    if gemm_at_b(C, A, B, float(alpha), float(beta)):
        return C
    return NotImplemented


def gemm_update_sum(C, pairs, alpha: float, beta: float = 1.0):
    """:func:`npdl.optim.sgd.gemm_update_sum`: one GEMM over the stacked factors."""
    pairs = list(pairs)
    if len(pairs) == 1:
        return gemm_update(C, pairs[0][0], pairs[0][1], alpha, beta)
    dtypes = {a.dtype for pair in pairs for a in pair}
    if len(dtypes) == 1 and all(a.ndim == 2 for pair in pairs for a in pair):
        A = np.concatenate([a for a, _ in pairs], axis=0)
        B = np.concatenate([b for _, b in pairs], axis=0)
        return gemm_update(C, A, B, alpha, beta)
    return NotImplemented
