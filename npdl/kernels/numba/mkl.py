"""Intel's oneMKL for the CPU kernels' products (:mod:`.blas` chooses it: ``NPDL_BLAS``): finding
``libmkl_rt``, loading it with settings of its own, and the checks that it computes right here."""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import re
import sys

import numpy as np

from .cblas import NO_TRANS, ROW_MAJOR, gemm_functions

#: ``MKL_Set_Threading_Layer``'s code for Intel's OpenMP runtime (``libiomp5``, which the ``mkl``
#: package installs beside it)
_MKL_INTEL_THREADS = 0


#: how long oneMKL's idle threads wait for the next product before they sleep (``KMP_BLOCKTIME``,
#: unless set; see :func:`_find_mkl`)
MKL_BLOCKTIME = "200us"


#: ``MKL_CBWR_Get``'s argument for every setting, the strict mode's bit and the automatic branch
_MKL_CBWR_ALL, _MKL_CBWR_STRICT, _MKL_CBWR_AUTO = -1, 0x10000, 2


def intel_cpu() -> bool:
    """Whether this is an Intel CPU (``GenuineIntel`` in ``/proc/cpuinfo``; False where that cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "GenuineIntel" in line
    except OSError:
        pass
    return False


def _mkl_paths() -> list:
    """Candidate files of oneMKL's single dynamic library: the ``mkl`` package's, then the system's."""
    paths = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")), reverse=True)
    found = ctypes.util.find_library("mkl_rt")
    return paths + ([found] if found else [])


def _find_mkl(paths=None) -> dict:
    """oneMKL's ``cblas_?gemm`` (32-bit integers, its default interface) on Intel's OpenMP threads, from the
    first of ``paths`` (default :func:`_mkl_paths`) that loads, or ``{}``;
    ``fns["agrees"]`` says whether its probe products were right (:func:`_agrees`).

    Its settings are this oneMKL's own, never left in the environment, where another library's
    oneMKL (PyTorch's) or runtime would read them too:

    * its threads wait ``KMP_BLOCKTIME`` (:data:`MKL_BLOCKTIME` unless set) for the next product
      before they sleep (``OMP_WAIT_POLICY=PASSIVE`` alone makes it 0): waking a sleeping thread costs
      tens of microseconds on a virtual machine, and a 784-500-10 network's step at batch 20 took
      0.73 ms with 0, 0.61 ms with 50 us, 0.455 ms with 200 us and 0.45 ms with 200 ms (2-core Intel
      Xeon). The runtime reads it when it starts, on the probe products, and it is unset again after.
    * its strict CNR mode (``MKL_CBWR_Set``, unless ``MKL_CBWR`` is set): its GEMM gives the same
      bits whatever its thread count (without it a (128, 1000) @ (1000, 1000) product differed
      between one thread and two), so the training step may choose the count by timing
      (:mod:`.threads`) without changing a result.
    """
    added = "KMP_BLOCKTIME" not in os.environ
    if added:
        os.environ["KMP_BLOCKTIME"] = MKL_BLOCKTIME
    try:
        for path in _mkl_paths() if paths is None else paths:
            try:
                lib = ctypes.CDLL(path)
                set_layer = lib.MKL_Set_Threading_Layer
            except (OSError, AttributeError):
                continue
            set_layer.restype, set_layer.argtypes = ctypes.c_int, [ctypes.c_int]
            set_layer(_MKL_INTEL_THREADS)  # before any other call, or it is too late
            if "MKL_CBWR" not in os.environ:
                cbwr_set = lib.MKL_CBWR_Set
                cbwr_set.restype, cbwr_set.argtypes = ctypes.c_int, [ctypes.c_int]
                cbwr_set(_MKL_CBWR_AUTO | _MKL_CBWR_STRICT)
            fns = gemm_functions(lib, "cblas_{}", ctypes.c_int)
            if fns:
                version = ctypes.create_string_buffer(256)
                lib.MKL_Get_Version_String(version, len(version))
                found = re.search(r"Version ([0-9][0-9.]*)", version.value.decode(errors="replace"))
                fns["library"] = f"mkl {found.group(1) if found else '(version unknown)'} (cblas_?gemm)"
                fns["provider"] = "mkl"
                local = lib.MKL_Set_Num_Threads_Local
                local.restype, local.argtypes = ctypes.c_int, [ctypes.c_int]
                fns["threads_here"] = local
                cbwr = lib.MKL_CBWR_Get
                cbwr.restype, cbwr.argtypes = ctypes.c_int, [ctypes.c_int]
                fns["strict"] = bool(cbwr(_MKL_CBWR_ALL) & _MKL_CBWR_STRICT)
                get = lib.MKL_Get_Max_Threads
                get.restype, get.argtypes = ctypes.c_int, []
                fns["threads"] = (get, local)  # the calling thread's count, as threadpoolctl sets it
                fns["agrees"] = _agrees(fns)  # the first products: the threads start, reading KMP_BLOCKTIME
                return fns
        return {}
    finally:
        if added:
            del os.environ["KMP_BLOCKTIME"]


class MKLInterferenceWarning(RuntimeWarning):
    """oneMKL was found but would compute wrong products here, so the kernels call NumPy's BLAS instead."""


def _agrees(fns) -> bool:
    """Whether oneMKL's products of two fixed probes agree with float64 within float32's rounding bound: a
    second check, after :func:`_gnu_openmp_global`, that its modules (loaded on its first call) work."""
    rng = np.random.default_rng(0)
    for m, k, n in ((4, 8, 4), (20, 784, 500), (64, 800, 196)):
        A = rng.standard_normal((m, k)).astype(np.float32)
        B = rng.standard_normal((k, n)).astype(np.float32)
        C = np.empty((m, n), np.float32)
        fns["float32"](ROW_MAJOR, NO_TRANS, NO_TRANS, m, n, k, 1.0, A.ctypes.data, k, B.ctypes.data, n, 0.0,
                       C.ctypes.data, n)
        exact = A.astype(np.float64) @ B.astype(np.float64)
        bound = k * np.finfo(np.float32).eps * (np.abs(A.astype(np.float64)) @ np.abs(B.astype(np.float64)))
        if not np.all(np.abs(C - exact) <= bound):
            return False
    return True


def _gnu_openmp_global() -> bool:
    """Whether GNU OpenMP's functions are global in this process (``import torch`` makes them so, loading
    its own ``libgomp``): oneMKL's modules loaded now would bind their ``omp_*`` calls to them while
    Intel's runtime runs their threads, and every thread would compute the same share of a product
    (on a 2-core Intel Xeon, (64, 800) @ (800, 196) on two threads off by 100 and more). Asked before
    oneMKL loads: Intel's runtime, which it brings, defines those entry points too. oneMKL loads on
    the kernels' first product, or on ``npdl.kernels.numba.blas.functions()``."""
    try:
        return hasattr(ctypes.CDLL(None), "GOMP_parallel")
    except OSError:
        return False
