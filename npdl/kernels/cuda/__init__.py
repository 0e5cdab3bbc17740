"""numba.cuda (CUDA) versions of the kernels, tested against the definitions they accelerate.

The kernels are written in Python with ``numba.cuda``, compiled lazily once per
argument types (the same source serves float32 and float64) and cached on disk
(``cache=True``, as the Numba CPU kernels are). On a GPU they run on CuPy arrays,
which Numba reads through ``__cuda_array_interface__`` without a copy. In CI, where
there is no GPU, they run on NumPy arrays under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, see ``tests/test_cuda_sim.py``), which executes every
thread as Python: that checks the index arithmetic, not the speed, and not what
Numba's CUDA compiler accepts, so the same tests also compile every kernel to PTX.

Every kernel uses one thread per output element (per row for the softmax forward).
Where several threads add into one output element -- col2im, where patches overlap,
and the pooling backward passes, where windows overlap -- they add with atomics, so
the order of the additions is not fixed and those results agree with the definition
to round-off, not bit for bit. im2col and the pooling forward passes are exact; the
softmax agrees to round-off (the GPU's ``expf``, a sequential row sum).

The wrappers (``im2col.im2col``, ``pool.max_forward``, ...) take and return arrays of
the caller's namespace (CuPy on a GPU, NumPy under the simulator), allocate their
outputs with it, and launch through :func:`launch`. This package imports no Numba
itself, so finding out which kernels exist (``npdl.kernels.implementation``) does
not load ``numba.cuda``.
"""

from __future__ import annotations

#: threads per block of every launch (fewer, rounded up to a warp, when there is less work)
THREADS_PER_BLOCK = 256
WARP = 32


def launch(kernel, n: int, *args) -> None:
    """Run ``kernel`` on ``n`` threads (a 1-D grid) with ``args``; nothing when ``n`` is 0.

    Every kernel guards ``if i >= n: return``, so the grid may overshoot ``n``.
    Small launches use one block of ``n`` threads rounded up to a warp: on a GPU a
    256-thread block for 40 elements only idles, and the simulator runs every
    thread as a Python thread.

    CuPy arrays are handed to Numba with ``as_cuda_array(sync=False)`` and the
    kernel runs on CuPy's current stream. Left to itself, Numba would synchronize
    the stream named in each array's ``__cuda_array_interface__`` (a host wait per
    argument per launch) and then launch on its own default stream; launching on
    CuPy's stream instead keeps the kernel ordered after the CuPy operations that
    produced its inputs and before those that read its outputs, without any host
    wait. A tuple argument (of arrays, for kernels over several parameters at once, or of
    ints) stays a tuple, its arrays handed over the same way.
    """
    n = int(n)
    if n <= 0:
        return
    threads = min(THREADS_PER_BLOCK, -(-n // WARP) * WARP)
    blocks = -(-n // threads)
    members = [x for a in args for x in (a if isinstance(a, tuple) else (a,))]  # a tuple of arrays is one argument
    if not any(hasattr(a, "__cuda_array_interface__") for a in members):  # NumPy arrays: the simulator
        kernel[blocks, threads](*args)
        return
    import cupy
    from numba import cuda

    def device(a):
        return cuda.as_cuda_array(a, sync=False) if hasattr(a, "__cuda_array_interface__") else a

    args = tuple(tuple(device(x) for x in a) if isinstance(a, tuple) else device(a) for a in args)
    kernel[blocks, threads, _numba_stream(cupy, cuda)](*args)


_streams: dict = {}


def _numba_stream(cupy, cuda):
    """Numba's handle on CuPy's current stream, made once per (device, stream) and kept: a launch
    is bound by host time at small sizes, and a new external-stream object per launch is part of it."""
    key = (cupy.cuda.runtime.getDevice(), cupy.cuda.get_current_stream().ptr)
    stream = _streams.get(key)
    if stream is None:
        if len(_streams) >= 64:  # a program that makes a stream per batch: keep the table small
            _streams.clear()
        stream = _streams[key] = cuda.external_stream(key[1])
    return stream
