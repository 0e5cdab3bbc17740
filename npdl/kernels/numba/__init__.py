"""Numba CPU versions of the kernels (``cache=True``: compiled once, then loaded from disk).

Each kernel has a serial and a ``parallel=True`` variant sharing one row routine:
threads only pay for themselves on large batches, and a 20 x 10 softmax must not
wake a thread pool.

Numba's OpenMP threads must not fight BLAS's threads for the cores: by default (GNU OpenMP) an
idle thread spins for about 300,000 iterations (milliseconds) after each parallel loop, and the
matrix product that follows (a convolution's GEMM after im2col or pooling) then runs on a core
shared with a spinning thread -- measured at 30% of a LeNet step on 2 cores. Nor must they sleep
at once: on a virtual machine, waking a sleeping thread is a system call and a reschedule, and a
parallel loop called 40 us after the last one took 70-90 us against 5-6 us with its threads
awake (a 64x1024 ``da W^T``, 2-core Intel Xeon KVM guest). So, unless the user has set
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``, idle threads spin for :data:`SPIN_COUNT` iterations
(``GOMP_SPINCOUNT``; 80-160 us on that machine, where the default spin is milliseconds) and then
sleep (``OMP_WAIT_POLICY=PASSIVE``): the parallel loops of one training step, a few tens of
microseconds apart, find their threads awake, and a thread spins at most that long into a BLAS
call that follows. In alternating slices (``benchmarks/env_ab.py GOMP_SPINCOUNT 0 10000``, three
rounds) it was as fast or faster on every benchmark workload: ``kcnn_b64`` 0.86-0.96x the step
time with no spin, ``mlp_b20`` 0.93-1.00x, the others 0.96-1.02x. Both are set here, before any
parallel kernel runs, because OpenMP reads them once, when the threading layer loads.
"""

import os

#: spin iterations of an idle Numba (GNU OpenMP) thread before it sleeps, unless the user set the spin
SPIN_COUNT = 10_000

if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
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

#: the most elements of a weight matrix that a batch-1 product -- ``x W``, ``da W^T``
#: (:mod:`.dense_products`), the rank-1 update ``W <- W + alpha x da`` (:mod:`.gemm_update`) and
#: the two latter in one pass (:mod:`.rows`) -- runs on one thread; above it the rows are shared
#: out among Numba's threads, in the same bits. Such a product streams ``W`` once, one multiply-add
#: per element, and one core's stream is the bound: with the threads awake (:data:`SPIN_COUNT`),
#: two threads took 79 against 160 us for a 1000x1000 ``da W^T``, 121 against 217 us for it and the
#: update in one pass, 22 against 56 us at 784x500, and broke even at 256x256 (5 us; 2-core Intel
#: Xeon, three matrices in turn as in a step). How many threads a training step gives them is
#: chosen by timing (:mod:`.threads`): one, where a second costs more than it brings (a busy core).
ONE_THREAD_MAX = 1 << 16
