"""Work split into chunks on a few threads, and the aligned buffers the chunks reuse.

Used by the chunked convolution (:mod:`.conv2d`). Chunks are handed out to worker
threads one at a time (the kernels release the GIL, the GEMMs run in single-threaded
BLAS), so a core that is busy with other work simply takes fewer chunks: no thread
waits at a barrier for a descheduled partner, which is what makes a statically split
parallel loop (or a multi-threaded BLAS on small matrices) collapse on a loaded machine.

Buffers live in a ``workspace`` dict the caller owns (a layer keeps one), so that the
next call with the same shapes finds them: they only ever hold scratch values, which
every call overwrites before it reads them.
"""

from __future__ import annotations

import itertools
import threading

import numba
import numpy as np

from .blas import one_thread_here

_pool = None
_blas = None


def workers() -> int:
    """Threads that share the chunks: Numba's thread count (``NUMBA_NUM_THREADS``)."""
    return max(1, int(numba.config.NUMBA_NUM_THREADS))


def run_chunks(work, n_chunks):
    """``work(worker, chunk_iterator)`` on up to :func:`workers` threads, BLAS held to one thread meanwhile
    (NumPy's through its global count, oneMKL on each worker thread: :func:`.blas.one_thread_here`)."""
    global _pool, _blas
    n = min(workers(), n_chunks)
    if n <= 1:
        return [work(0, iter(range(n_chunks)))]
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="npdl-conv")
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController

            _blas = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # noqa: BLE001 -- no threadpoolctl: leave BLAS as it is
            _blas = []
    counter, lock = itertools.count(), threading.Lock()

    def chunks():
        while True:
            with lock:
                i = next(counter)
            if i >= n_chunks:
                return
            yield i

    saved = [(lib, lib.get_num_threads()) for lib in _blas]
    for lib, _ in saved:
        lib.set_num_threads(1)

    def one_blas_thread(k, chunk_iterator):
        one_thread_here()
        return work(k, chunk_iterator)

    try:
        futures = [_pool.submit(one_blas_thread, k, chunks()) for k in range(n)]
        return [f.result() for f in futures]
    finally:
        for lib, threads in saved:
            lib.set_num_threads(threads)


#: byte alignment of the chunk buffers
ALIGN = 256


def aligned_empty(size, dtype):
    """A flat uninitialised array of ``size`` elements whose data starts on an :data:`ALIGN`-byte boundary.

    NumPy only promises 16 bytes. OpenBLAS's small-chunk GEMMs measured up to 1.5x slower on a
    misaligned operand (the ``dW`` product of a Keras-CNN chunk: 9.4 against 14.7 ms per step)."""
    dtype = np.dtype(dtype)
    raw = np.empty(size * dtype.itemsize + ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + size * dtype.itemsize].view(dtype)


def buffers(workspace, key, n, size, dtype):
    """``n`` flat aligned buffers of ``size`` elements kept in ``workspace[key]`` between calls."""
    bufs = None if workspace is None else workspace.get(key)
    if bufs is None or len(bufs) < n or (n and (bufs[0].size != size or bufs[0].dtype != dtype)):
        bufs = [aligned_empty(size, dtype) for _ in range(n)]
        if workspace is not None:
            workspace[key] = bufs
    return bufs

