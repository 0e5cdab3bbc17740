"""The machine's ceilings, measured: the float32 matrix-product rate and the streaming memory bandwidth.

``npdl bench --peak`` prints them; ``npdl bench`` and ``benchmarks/run.py`` divide each step's
achieved rate by them (:mod:`npdl.bench.roofline`).

* **GEMM rate**: ``C = A @ B`` on square float32 matrices, ``2 n^3`` FLOP per product. On the
  CPU NumPy's BLAS with its thread pool as it is (``--blas-threads`` limits it); on a GPU cuBLAS
  through CuPy with TF32 off (exact float32, what npdl computes by default; ``--tf32`` measures the
  TF32 rate instead), timed with CUDA events. ``n`` doubles from 512 until one product takes at
  least ``target_ms`` (or ``n`` reaches ``max_n``), so a large machine is measured on a product
  large enough to fill it; the rate is the best of the timed products.
* **Streaming bandwidth**: two kernels over float32 arrays far larger than the caches, each timed
  by its best pass: a copy ``b[:] = a`` (8 bytes per element: one read, one write) and the STREAM
  triad ``a = b + s * c`` in one pass (12 bytes per element: two reads, one write; a Numba
  parallel loop on the CPU, a CuPy ElementwiseKernel on a GPU). ``bandwidth_gb_per_s`` is the
  larger of the two.
"""

from __future__ import annotations

import time

import numba

#: float32 elements per stream array: 128 MiB on the CPU, 1 GiB on a GPU (both far above the caches)
DEFAULT_ELEMENTS = {"cpu": 1 << 25, "gpu": 1 << 28}


def _best_seconds(fn, sync, min_seconds: float, min_reps: int = 3, timer=None) -> tuple[float, int]:
    """The shortest of at least ``min_reps`` timed calls of ``fn`` (after one untimed), repeated for ``min_seconds``."""
    fn()
    sync()
    best, total, reps = float("inf"), 0.0, 0
    while reps < min_reps or total < min_seconds:
        if timer is None:
            t0 = time.perf_counter()
            fn()
            sync()
            dt = time.perf_counter() - t0
        else:
            dt = timer(fn)
        best, total, reps = min(best, dt), total + dt, reps + 1
    return best, reps


def _cpu_threads() -> dict:
    """The thread counts the CPU measurements run with: BLAS's pool and Numba's."""
    out = {}
    try:
        from threadpoolctl import threadpool_info

        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        out["blas_threads"] = blas[0]["num_threads"] if blas else None
        out["blas"] = blas[0].get("internal_api") if blas else None
    except ImportError:  # threadpoolctl is a dependency; be robust anyway
        out["blas_threads"] = None
    out["numba_threads"] = numba.get_num_threads()
    return out


@numba.njit(parallel=True, fastmath=True, cache=True)
def _triad_cpu(a, b, c, s):
    """``a = b + s c`` in one parallel pass (Numba's threads)."""
    for i in numba.prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


def gemm_rate(xp, sync, min_seconds=0.5, target_ms=20.0, max_n=4096, timer=None) -> dict:
    """The float32 GEMM rate of namespace ``xp`` (NumPy or CuPy): ``{"gemm_gflops_per_s", "gemm_n", ...}``."""
    n, seconds = 512, 0.0
    while True:
        a = xp.ones((n, n), dtype=xp.float32) * 0.5
        b = xp.ones((n, n), dtype=xp.float32) * 0.25
        c = xp.empty((n, n), dtype=xp.float32)

        def product():
            xp.matmul(a, b, out=c)

        seconds, reps = _best_seconds(product, sync, 0.0, min_reps=2, timer=timer)
        if seconds * 1e3 >= target_ms or n >= max_n:
            break
        n *= 2
    seconds, reps = _best_seconds(product, sync, min_seconds, timer=timer)
    return {"gemm_gflops_per_s": 2.0 * n ** 3 / seconds / 1e9, "gemm_n": n, "gemm_reps": reps}


def stream_bandwidth(xp, sync, elements: int, min_seconds=0.5, triad=None, timer=None) -> dict:
    """Copy and triad bandwidths (GB/s, 1e9 bytes) over float32 arrays of ``elements``."""
    a = xp.zeros(elements, dtype=xp.float32)
    b = xp.ones(elements, dtype=xp.float32)
    c = xp.ones(elements, dtype=xp.float32) * 2.0
    copy_s, _ = _best_seconds(lambda: xp.copyto(a, b), sync, min_seconds, timer=timer)
    triad_s, _ = _best_seconds(lambda: triad(a, b, c, xp.float32(3.0)), sync, min_seconds, timer=timer)
    copy_gb, triad_gb = 8 * elements / copy_s / 1e9, 12 * elements / triad_s / 1e9
    return {"copy_gb_per_s": copy_gb, "triad_gb_per_s": triad_gb, "bandwidth_gb_per_s": max(copy_gb, triad_gb),
            "stream_elements": int(elements)}


def measure_peak(device, min_seconds: float = 0.5, elements: int | None = None, max_n: int | None = None,
                 tf32: bool = False) -> dict:
    """The ceilings of ``device`` (an :class:`npdl.backend.Device`): GEMM rate and bandwidth, with the
    device's name, the dtype, the thread counts (CPU) and whether TF32 was on (GPU)."""
    from .timing import device_name, timer_for

    kind = "gpu" if device.is_gpu else "cpu"
    elements = int(elements or DEFAULT_ELEMENTS[kind])
    record = {"device": kind, "device_name": device_name(device), "dtype": "float32"}
    if device.is_gpu:
        import cupy

        from .. import backend

        backend.allow_tf32(bool(tf32))
        timer = timer_for(device)
        with device.current():
            record.update(gemm_rate(cupy, device.synchronize, min_seconds, max_n=max_n or 16384, timer=timer))
            kernel = cupy.ElementwiseKernel("float32 b, float32 c, float32 s", "float32 a", "a = b + s * c",
                                            "npdl_stream_triad")
            record.update(stream_bandwidth(cupy, device.synchronize, elements, min_seconds,
                                           triad=lambda a, b, c, s: kernel(b, c, s, a), timer=timer))
        record["tf32"] = bool(tf32)
        return record
    import numpy as np

    record.update(_cpu_threads())
    record.update(gemm_rate(np, lambda: None, min_seconds, max_n=max_n or 4096))
    record.update(stream_bandwidth(np, lambda: None, elements, min_seconds, triad=_triad_cpu))
    return record
