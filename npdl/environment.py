"""What npdl runs on: versions, BLAS and its threads, Numba, CuPy and the GPUs, kernels, devices.

:func:`collect` gathers it as one JSON-able dict; ``npdl info`` prints it and every run
folder's ``run.json`` records it (:mod:`npdl.training.rundir`), so a result can be traced
to the machine and the code that made it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``'s ``model name`` on Linux), else what
    :mod:`platform` knows (often just the architecture)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def source_commit() -> dict | None:
    """``{"commit": sha, "modified": bool}`` when npdl runs from a git checkout (the folder
    holding the ``npdl`` package has ``.git``), else None (an installed release: its version
    says what it is). ``modified``: tracked files differ from the commit."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, ".git")):
        return None

    def git(*args):
        done = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else None

    try:
        commit = git("rev-parse", "HEAD")
        changes = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return None
    if not commit:
        return None
    return {"commit": commit, "modified": None if changes is None else bool(changes)}


def _blas() -> dict:
    import numpy as np

    info = {}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info = {"name": blas.get("name"), "version": blas.get("version")}
    except Exception:  # older NumPy: no dict mode
        pass
    try:
        from threadpoolctl import threadpool_info

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            info.update(internal_api=pools[0].get("internal_api"), threads=pools[0].get("num_threads"),
                        architecture=pools[0].get("architecture"))
    except ImportError:
        info["threads"] = "unknown (pip install threadpoolctl)"
    from .kernels.numba import blas as direct

    info["coretype_override"] = os.environ.get("OPENBLAS_CORETYPE")
    # set by ``import npdl`` unless NumPy was imported first (see npdl/__init__.py)
    info["idle_spin"] = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
    try:
        info["kernels_blas"] = direct.requested()
        info["direct_gemm"] = direct.functions().get("library") if direct.available() else None
    except (ValueError, RuntimeError) as exc:  # NPDL_BLAS misspelt, or oneMKL asked for and missing
        info["kernels_blas"] = os.environ.get(direct.ENV)
        info["direct_gemm"] = f"error: {exc}"
    from .kernels.numba import ONE_THREAD_MAX

    # a batch-1 product runs on one thread up to this many weights, above on Numba's threads
    info["one_thread_max"] = ONE_THREAD_MAX
    return info


def _numba(probe: bool = True) -> dict:
    try:
        import numba
    except ImportError as exc:
        return {"available": False, "reason": str(exc)}
    info = {"available": True, "version": numba.__version__, "threads": numba.config.NUMBA_NUM_THREADS}
    # how long an idle OpenMP thread waits for the next parallel loop (npdl.kernels.numba sets both unless set)
    info["idle_wait"] = {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if not probe:  # the layer once a parallel kernel has run, else None (not chosen yet)
        try:
            info["threading_layer"] = numba.threading_layer()
        except ValueError:
            info["threading_layer"] = None
        return info
    try:  # the layer is chosen on the first parallel call; make one (a cached kernel)
        import numpy as np

        from .kernels.numba import softmax_xent

        logits = np.zeros((2, 2), np.float32)
        softmax_xent._forward_parallel(logits, np.zeros(2, np.int64), np.empty_like(logits), np.empty(2))
        info["threading_layer"] = numba.threading_layer()
    except Exception as exc:
        info["threading_layer"] = f"unavailable ({exc})"
    return info


def _cupy() -> dict:
    try:
        import cupy
    except ImportError:
        return {"available": False, "reason": 'CuPy is not installed (pip install "npdl-backprop[gpu]")'}
    info = {"available": False, "version": cupy.__version__}
    try:
        rt = cupy.cuda.runtime
        info["cuda_runtime"] = rt.runtimeGetVersion()
        info["cuda_driver"] = rt.driverGetVersion()
        gpus = []
        for i in range(rt.getDeviceCount()):
            props = rt.getDeviceProperties(i)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            gpus.append({"device": f"cuda:{i}", "name": name,
                         "memory_gib": round(props["totalGlobalMem"] / 2 ** 30, 1),
                         "compute_capability": f"{props['major']}.{props['minor']}"})
        info["gpus"] = gpus
        info["available"] = bool(gpus)
        if not gpus:
            info["reason"] = "no CUDA device found"
    except Exception as exc:
        info["reason"] = f"CUDA unusable: {exc}"
    return info


def _mnist() -> dict:
    from .datasets import mnist_files_status

    status = mnist_files_status()
    return {"source": status.get("source"), "searched": [d.get("dir") for d in status.get("searched", [])]}


def _grouped(impl_of) -> str:
    """``"numba for softmax_xent, ...; definition for conv2d"``: the kernel modules grouped by what serves them."""
    from . import kernels

    by_impl: dict = {}
    for op in kernels.OPS:
        by_impl.setdefault(impl_of(op), []).append(op)
    return "; ".join(f"{impl} for {', '.join(ops)}" for impl, ops in by_impl.items())


def _cpu_kernels() -> str:
    """Which implementation serves each kernel module for NumPy arrays (``definition``: the layer file's code)."""
    from . import kernels

    if not kernels.enabled():
        return "off (every operation runs its definition in the layer, loss and optimizer files)"
    have_numba = kernels.numba_available()
    return _grouped(lambda op: kernels.choose(op, numpy=True, cupy=False, have_numba=have_numba, have_cuda=False))


def _gpu_kernels(gpu_present: bool) -> str:
    """Which implementation serves each kernel on a GPU: CuPy's (ElementwiseKernels, cuBLAS) where
    written, else numba.cuda's (those first with ``NPDL_KERNELS=cuda``), else the definition.

    ``numba.cuda`` is only asked whether it can compile (a driver and libNVVM) where a
    GPU is present: elsewhere the line says what a GPU would run.
    """
    from . import kernels

    if not kernels.enabled():
        return "off (every operation runs its definition in the layer, loss and optimizer files)"
    have_cuda = kernels.cuda_available() if gpu_present else True
    names = {"cuda": "numba.cuda"}

    def impl_of(op):
        impl = kernels.choose(op, numpy=False, cupy=True, have_numba=True, have_cuda=have_cuda,
                              prefer_numba_cuda=kernels.prefers_numba_cuda())
        if impl == "cupy":
            return "cuBLAS" if op == "gemm_update" else "CuPy ElementwiseKernel"
        return names.get(impl, impl)

    text = _grouped(impl_of)
    if not have_cuda:
        text += f" ({kernels.cuda_unusable_reason or 'numba.cuda cannot compile here'})"
    return text


def _gpu_matmul() -> dict:
    """Whether float32 matmuls on a GPU may use TF32 tensor cores (off unless asked for)."""
    from . import backend
    from .errors import DeviceError

    try:
        return {"tf32": backend.tf32_allowed(), "status": backend.tf32_status()}
    except DeviceError as exc:  # an unreadable CUPY_TF32: say so instead of failing
        return {"tf32": None, "status": f"unknown: {exc}"}


def collect(probe: bool = True) -> dict:
    """Everything ``npdl info`` reports, as one JSON-able dict. ``probe=False`` runs no kernel to
    learn Numba's threading layer (None until a parallel kernel has run)."""
    import numpy as np

    from . import __version__, backend

    strict = {"available": False}
    try:
        import array_api_strict

        strict = {"available": True, "version": array_api_strict.__version__}
    except ImportError:
        pass
    import array_api_compat

    cupy_info = _cupy()
    return {
        "npdl": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_model(),
        "source": source_commit(),
        "numpy": np.__version__,
        "array_api_compat": array_api_compat.__version__,
        "blas": _blas(),
        "numba": _numba(probe),
        "cupy": cupy_info,
        "array_api_strict": strict,
        "kernels": {"cpu": _cpu_kernels(), "strict": "definition",
                    "gpu": _gpu_kernels(cupy_info["available"])},
        "devices": backend.available_devices(),
        "gpu_matmul": _gpu_matmul(),
        "mnist": _mnist(),
    }
