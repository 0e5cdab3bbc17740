"""CuPy versions of the kernels that are library calls rather than hand-written loops
(``gemm_update``: cuBLAS). The hand-written GPU kernels are in :mod:`npdl.kernels.cuda`
(``numba.cuda``); a kernel in neither falls back to the array-API reference, which CuPy
runs as ordinary (unfused) device operations."""
