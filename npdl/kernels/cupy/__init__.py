"""CuPy (CUDA) versions of the kernels. A kernel missing here falls back to the array-API
reference, which CuPy runs as ordinary (unfused) device operations."""
