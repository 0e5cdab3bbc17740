"""CuPy versions of kernels: library calls (``gemm_update``: cuBLAS) and, for the purely
elementwise kernels, CuPy ``ElementwiseKernel``\\ s.

The other hand-written GPU kernels are in :mod:`npdl.kernels.cuda` (``numba.cuda``); where an
operation has a kernel in both, the one here serves (``NPDL_KERNELS=cuda`` or
``kernels.use("cuda")`` puts the ``numba.cuda`` one first); an operation with a kernel in neither
runs its definition (the layer file's array-API code), which CuPy runs as ordinary (unfused)
device operations. The elementwise ones here (``activation_backward``, ``bias_activation``,
``optimizer_update``) are the same one-pass loops as the ``numba.cuda`` versions, written as the
CUDA C++ snippets CuPy compiles with NVRTC. A CuPy launch costs less host time than a Numba one
(on an H200, 14 us against 70-180 us, and one numba.cuda launch over Adam's 8 parameters 1.2 ms
against 0.14 ms for CuPy's 8), which is what a small batch's step is bound by: with them first,
``npdl bench --device gpu`` ran sda_b1 in 1.67 ms instead of 4.67 ms (``benchmarks/gpu_check.sh``,
``benchmarks/results/2026-12-04-gpu-h200.md``).

Each such module declares its kernels in ``SPECS``, ``name -> (in_params, out_params,
operation)`` in CuPy's notation (``T`` the arrays' float type, ``raw`` an array indexed by
hand, ``i`` the element's index); :func:`elementwise_kernel` builds them. Without a GPU the
snippets are compiled by ``tests/test_cupy_snippets.py`` into a host library with nvcc and
checked against the definitions on the CPU.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def elementwise_kernel(module: str, name: str, spec: tuple):
    """The ``cupy.ElementwiseKernel`` for ``spec = (in_params, out_params, operation)``, made once."""
    import cupy

    in_params, out_params, operation = spec
    return cupy.ElementwiseKernel(in_params, out_params, operation, f"npdl_{module}_{name}")
