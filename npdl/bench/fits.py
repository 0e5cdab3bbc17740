"""Will a workload's step fit in the device's memory? Refuse, with the largest batch that would, before
allocating anything.

The estimate is :attr:`npdl.bench.work.Work.bytes`: the batch, the parameters, their gradients,
the optimizer's state and the activations kept for the backward pass, each once. A step needs at
least that much (temporaries come on top), so a workload refused here could never have run, and
one accepted may still run out: :func:`npdl.cli.bench` then reports the allocation failure
without a traceback.
"""

from __future__ import annotations

from ..errors import NpdlError


class WorkloadTooLargeError(NpdlError, MemoryError):
    """A benchmark workload's step cannot fit in the memory of the device it was asked for."""


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


def available_bytes(device) -> int | None:
    """Free memory on ``device``: the GPU's free memory (CuPy), or the CPU's ``MemAvailable``; None if unknown."""
    if getattr(device, "is_gpu", False):
        import cupy

        with cupy.cuda.Device(device.index):
            free, _ = cupy.cuda.runtime.memGetInfo()
        return int(free) + int(cupy.get_default_memory_pool().free_bytes())
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def largest_batch(w, available: int) -> int:
    """The largest batch size of ``w``'s family whose step's bytes fit in ``available`` (0 if none)."""
    from dataclasses import replace

    from .work import workload_work

    one, two = (workload_work(replace(w, batch_size=b)).bytes for b in (1, 2))
    per_example, fixed = two - one, 2 * one - two
    return max(0, int((available - fixed) // per_example)) if per_example > 0 else 0


def check_fits(workloads, device, available: int | None = None) -> None:
    """Raise :class:`WorkloadTooLargeError` for the first workload whose step's bytes exceed ``available``
    (default: :func:`available_bytes` of ``device``); nothing is allocated."""
    from .work import workload_work

    available = available_bytes(device) if available is None else available
    if available is None:
        return
    where = "GPU" if getattr(device, "is_gpu", False) else "CPU"
    for w in workloads:
        need = workload_work(w).bytes
        if need > available:
            largest = largest_batch(w, available)
            hint = (f"the largest batch that could fit is about {largest:,} (--batch-sizes {largest})" if largest
                    else "no batch size of it fits")
            raise WorkloadTooLargeError(
                f"{w.name}: one training step needs at least {_gb(need)} (its batch, parameters, gradients and "
                f"the activations kept for backward) but the {where} has {_gb(available)} free; {hint}")
