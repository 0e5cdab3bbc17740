"""Numba CPU versions of the kernels (``cache=True``: compiled once, then loaded from disk).

Each kernel has a serial and a ``parallel=True`` variant sharing one row routine:
threads only pay for themselves on large batches, and a 20 x 10 softmax must not
wake a thread pool.

Numba's OpenMP threads must not fight BLAS's threads for the cores: by default an
idle OpenMP thread spins after each parallel loop, and the matrix product that
follows (a convolution's GEMM after im2col or pooling) then runs on a core shared
with a spinning thread -- measured at 30% of a LeNet step on 2 cores. Unless the
user has set it, ``OMP_WAIT_POLICY=PASSIVE`` makes idle threads sleep instead. It is
set here, before any parallel kernel runs, because OpenMP reads it once, when the
threading layer loads.
"""

import os

from .cache_size import last_level_bytes

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: below this many elements a kernel runs serially
PARALLEL_THRESHOLD = 1 << 16

#: below this many elements the one-pass elementwise kernels (:mod:`.bias_activation`,
#: :mod:`.activation_backward`) run serially. Their loops vectorise (0.3-0.5 ns per float32
#: element), so the serial loop is done before a sleeping thread pool has woken: on a 2-core AMD
#: EPYC Zen 4 VM, each call following a (256, 1000) x (1000, 1000) product as in a training step,
#: a (128, 1000) sigmoid with its bias took 70 us serially against 118 us in parallel, its
#: backward 63-69 against 93-108 us; from (256, 1000) the two were even, and at (512, 1000) the
#: parallel loop won (207 against 266 us).
ELEMENTWISE_PARALLEL_THRESHOLD = 1 << 18

#: the most elements of a weight matrix that a batch-1 product runs on one thread with, where the
#: last-level cache is not known (:func:`one_thread_max`)
ONE_THREAD_LIMIT = 1 << 21


def one_thread_max(cache_bytes) -> int:
    """Up to this many elements of a weight matrix, a batch-1 product with it -- ``x W``, ``da W^T``
    (:mod:`.dense_products`) and the rank-1 update ``W <- W + alpha x da`` (:mod:`.gemm_update`) --
    runs on one thread in a Numba loop: three float32 matrices of it in the last-level cache of
    ``cache_bytes`` (:mod:`.cache_size`), and never more than :data:`ONE_THREAD_LIMIT`. Above it
    ``x W`` goes to BLAS's threads, and ``da W^T`` and the update share their rows out among
    Numba's (:mod:`.rows`, the same bits as on one thread).

    Such a product streams ``W`` once. Where a step's weights stay in the cache, one core streams
    them fast and each call to a multi-threaded BLAS first wakes a sleeping thread; where they do
    not, they come from memory, and a second core's share of the memory bandwidth is worth the
    wake-up. ``sda_b1``'s step (784-1000-1000-1000-10, 11 MB of float32 weights, each streamed
    three times) measured both ways: on a 2-core AMD EPYC Zen 4 (32 MB L3) one thread took 0.68
    against 0.84 ms on BLAS's two, and at 2000x2000 (16 MB) one thread was slower (468/412/517
    against 378/351/393 us for the three products); on a 2-core AMD EPYC Zen 1 (8 MB L3) BLAS's two
    threads took 0.73-0.89 of one thread's step time over eight rounds.
    """
    if not cache_bytes:
        return ONE_THREAD_LIMIT
    return min(ONE_THREAD_LIMIT, int(cache_bytes) // (3 * 4))


#: bytes of CPU 0's last-level cache, read once at import (:mod:`.cache_size`; None where unknown)
LAST_LEVEL_CACHE = last_level_bytes()
ONE_THREAD_MAX = one_thread_max(LAST_LEVEL_CACHE)
