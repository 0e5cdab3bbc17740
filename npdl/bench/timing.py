"""Timing one training step: warm up, then repeat until enough time has been measured.

Two timers read one step's time (:func:`timer_for` picks by device):

* :class:`WallTimer` (CPU): ``perf_counter`` around ``step(); sync()``.
* :class:`CudaEventTimer` (GPU): a CUDA event recorded on the current stream before and
  after the step, then ``stop.synchronize()`` and ``cupy.cuda.get_elapsed_time(start, stop)``:
  the time the GPU spent from reaching the first event to finishing the step's last kernel.
  When the host launches kernels slower than the GPU runs them (small batches), the GPU
  waits on the host between the two events and that wait is counted, as it should be.
"""

from __future__ import annotations

import statistics
import time


class WallTimer:
    """Seconds of ``step(); sync()`` by ``time.perf_counter``."""

    name = "perf_counter"

    def __init__(self, sync=lambda: None):
        self.sync = sync

    def __call__(self, step) -> float:
        t0 = time.perf_counter()
        step()
        self.sync()
        return time.perf_counter() - t0


class CudaEventTimer:
    """Seconds of ``step()`` between two CUDA events on the current stream.

    ``cuda`` is ``cupy.cuda`` (or, in tests, anything with an ``Event`` class whose
    instances have ``record()`` and ``synchronize()``, and ``get_elapsed_time(start, stop)``
    in milliseconds). The two events are made once and reused: each reading waits for
    its stop event, so no reading overlaps the next.
    """

    name = "cuda_events"

    def __init__(self, cuda=None):
        if cuda is None:
            import cupy

            cuda = cupy.cuda
        self.cuda = cuda
        self.start, self.stop = cuda.Event(), cuda.Event()

    def __call__(self, step) -> float:
        self.start.record()
        step()
        self.stop.record()
        self.stop.synchronize()
        return self.cuda.get_elapsed_time(self.start, self.stop) / 1e3


def timer_for(device):
    """CUDA events on a GPU device, ``perf_counter`` + ``device.synchronize`` elsewhere."""
    if getattr(device, "is_gpu", False):
        return CudaEventTimer()
    return WallTimer(device.synchronize)


#: warm-up of :func:`measure`: at least this many steps and this many seconds
MIN_WARMUP, WARMUP_SECONDS = 10, 0.3


def warm_up(step, sync=lambda: None, min_warmup: int = MIN_WARMUP, warmup_seconds: float = WARMUP_SECONDS) -> None:
    """``step()`` at least ``min_warmup`` times and for at least ``warmup_seconds``, then ``sync()``.

    It absorbs compilation, caches, allocator growth and, in an npdl training step, the
    thread-count controller's first tries of each count (:mod:`npdl.kernels.numba.threads`:
    eight steps on two cores)."""
    start = time.perf_counter()
    n = 0
    while n < min_warmup or time.perf_counter() - start < warmup_seconds:
        step()
        n += 1
    sync()


def measure(step, sync=lambda: None, min_seconds: float = 1.5, warmup_seconds: float = WARMUP_SECONDS,
            min_warmup: int = MIN_WARMUP, min_reps: int = 10, timer=None) -> dict:
    """Median and minimum milliseconds of ``step()``.

    After :func:`warm_up` (``min_warmup``, ``warmup_seconds``), each timed call is read by
    ``timer`` (default :class:`WallTimer` ``(sync)``: the call is followed by ``sync()``, a
    device synchronisation on a GPU, so the time is the step's, not its launch's). Steps are
    repeated until ``min_seconds`` of them have been timed.
    """
    timer = WallTimer(sync) if timer is None else timer
    warm_up(step, sync, min_warmup, warmup_seconds)
    times = []
    total = 0.0
    while total < min_seconds or len(times) < min_reps:
        dt = timer(step)
        times.append(dt)
        total += dt
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3, "reps": len(times)}


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: the /proc/cpuinfo flags that decide which SIMD kernels BLAS, NumPy and XLA can run
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
              "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16")


def cpu_features(path: str = "/proc/cpuinfo") -> str:
    """The CPU's family/model and its SIMD flags from ``/proc/cpuinfo`` (e.g. ``family 23 model 1: sse4_2 avx
    avx2 fma f16c``): the model name alone does not say, in a virtual machine, which kernels can run.
    Empty where there is no ``/proc/cpuinfo`` (``path``)."""
    info = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        return ""
    flags = set(info.get("flags", "").split())
    have = " ".join(flag for flag in SIMD_FLAGS if flag in flags)
    family = f"family {info['cpu family']} model {info['model']}: " if "cpu family" in info and "model" in info else ""
    return family + (have or "no SIMD flags listed")


def device_name(device) -> str:
    """What the step ran on: the GPU's name from CuPy on a GPU, the CPU's model name otherwise."""
    if getattr(device, "is_gpu", False):
        import cupy

        name = cupy.cuda.runtime.getDeviceProperties(device.index)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    return cpu_name()
