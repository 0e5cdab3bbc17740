"""Device-specific hot loops, behind one dispatch.

Every kernel exists as a readable array-API **reference** (``npdl.kernels.reference``),
which is the specification, and as compiled versions tested against it: **numba**
for NumPy arrays on the CPU, and for CuPy arrays on a GPU **cuda** (``numba.cuda``
kernels, tested in CI under Numba's CUDA simulator) and **cupy** (CuPy library calls:
cuBLAS for ``gemm_update``). ``get(op, xp)`` returns the module implementing ``op``
for namespace ``xp``:

* NumPy -> the Numba version when Numba imports, else the reference;
* CuPy -> the ``numba.cuda`` version when one exists for ``op`` and ``numba.cuda``
  can compile for this machine's GPU, else the CuPy version when one exists, else
  the reference; with ``NPDL_KERNELS=cupy`` (``use("cupy")``) the CuPy version first
  where both exist (the elementwise kernels: cheaper launches, see :mod:`npdl.kernels.cupy`);
* anything else (``array-api-strict``) -> the reference.

Set ``NPDL_KERNELS=reference`` (or call ``use("reference")``) to force the
reference everywhere, e.g. to compare speeds or to rule a kernel out when debugging.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os

import array_api_compat

#: the kernels npdl has; each is a module with the same name in each implementation package
OPS = ("softmax_xent", "im2col", "pool", "gemm_update", "lstm_cell", "simple_rnn", "activation_backward",
       "optimizer_update", "bias_activation")

_forced = os.environ.get("NPDL_KERNELS", "").strip().lower() or None
_cache: dict = {}


def use(mode: str | None) -> None:
    """Force ``"reference"`` kernels everywhere, prefer CuPy's own GPU kernels (``"cupy"``), or
    ``None`` for the automatic choice."""
    global _forced
    if mode not in (None, "auto", "reference", "cupy"):
        raise ValueError(f"kernel mode must be 'reference', 'cupy' or None, got {mode!r}")
    _forced = None if mode in (None, "auto") else mode
    _cache.clear()


def prefers_cupy() -> bool:
    """Whether CuPy's own kernels come before the numba.cuda ones (``NPDL_KERNELS=cupy``, ``use("cupy")``)."""
    return _forced == "cupy"


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def cuda_available() -> bool:
    """True when ``numba.cuda`` imports, sees a GPU and finds libNVVM to compile for it.

    Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) it is always true. The
    NVVM check matters: CuPy does not need libNVVM (a CUDA toolkit's, or the
    ``nvidia-cuda-nvcc`` wheel's), so a machine where CuPy runs may lack it, and there
    the first launch would fail instead of falling back to the CuPy/reference kernels.
    Asked once per process (it initialises the CUDA driver).
    """
    try:
        from numba import cuda
        from numba.core import config

        if not cuda.is_available():
            return False
        if config.ENABLE_CUDASIM:
            return True
        from numba.cuda.cudadrv import nvvm

        return bool(nvvm.is_available())
    except Exception:  # no numba, a broken CUDA install, a driver that fails to initialise ...
        return False


def has_module(package: str, op: str) -> bool:
    """Whether ``npdl.kernels.<package>`` has a module for ``op`` (found without importing it)."""
    return importlib.util.find_spec(f"{__name__}.{package}.{op}") is not None


def choose(op: str, *, numpy: bool, cupy: bool, have_numba: bool, have_cuda: bool, prefer_cupy: bool = False) -> str:
    """The implementation for ``op`` given what is true of the namespace and the machine.

    The whole selection rule, with the facts about the namespace and the machine as
    arguments (:func:`implementation` supplies the real ones), so that tests can try
    every case on a machine without CuPy or a GPU.
    """
    if numpy and have_numba:
        return "numba"
    if cupy:
        if prefer_cupy and has_module("cupy", op):
            return "cupy"
        if have_cuda and has_module("cuda", op):
            return "cuda"
        if has_module("cupy", op):
            return "cupy"
    return "reference"


def implementation(xp, op: str = OPS[0]) -> str:
    """Which implementation (``"numba"``, ``"cuda"``, ``"cupy"`` or ``"reference"``) serves ``op`` for ``xp``."""
    if _forced == "reference":
        return "reference"
    numpy = array_api_compat.is_numpy_namespace(xp)
    cupy = not numpy and array_api_compat.is_cupy_namespace(xp)
    return choose(op, numpy=numpy, cupy=cupy, have_numba=numpy and numba_available(),
                  have_cuda=cupy and cuda_available(), prefer_cupy=prefers_cupy())


def get(op: str, xp):
    """The module implementing kernel ``op`` for array namespace ``xp``."""
    key = (op, xp, _forced)  # namespaces are modules: hashable, and cheaper to key on than their names
    mod = _cache.get(key)
    if mod is None:
        if op not in OPS:
            raise ValueError(f"unknown kernel {op!r}; known: {', '.join(OPS)}")
        mod = importlib.import_module(f"{__name__}.{implementation(xp, op)}.{op}")
        _cache[key] = mod
    return mod
