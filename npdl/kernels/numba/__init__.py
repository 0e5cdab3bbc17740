"""Numba CPU versions of the kernels (``cache=True``: compiled once, then loaded from disk).

Each kernel has a serial and a ``parallel=True`` variant sharing one row routine:
threads only pay for themselves on large batches, and a 20 x 10 softmax must not
wake a thread pool.
"""

#: below this many elements a kernel runs serially
PARALLEL_THRESHOLD = 1 << 16
