"""Device-specific hot loops, behind one dispatch.

Every kernel exists as a readable array-API **reference** (``npdl.kernels.reference``),
which is the specification, and as compiled versions tested against it: **numba**
for NumPy arrays on the CPU and **cupy** for CUDA arrays. ``get(op, xp)`` returns
the module implementing ``op`` for namespace ``xp``:

* NumPy -> the Numba version when Numba imports, else the reference;
* CuPy -> the CuPy version when one exists for ``op``, else the reference;
* anything else (``array-api-strict``) -> the reference.

Set ``NPDL_KERNELS=reference`` (or call ``use("reference")``) to force the
reference everywhere, e.g. to compare speeds or to rule a kernel out when debugging.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import array_api_compat

#: the kernels npdl has; each is a module with the same name in each implementation package
OPS = ("softmax_xent", "im2col", "pool", "gemm_update", "lstm_cell", "simple_rnn")

_forced = os.environ.get("NPDL_KERNELS", "").strip().lower() or None
_cache: dict = {}


def use(mode: str | None) -> None:
    """Force ``"reference"`` kernels everywhere, or ``None`` for the automatic choice."""
    global _forced
    if mode not in (None, "auto", "reference"):
        raise ValueError(f"kernel mode must be 'reference' or None, got {mode!r}")
    _forced = None if mode in (None, "auto") else mode
    _cache.clear()


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def implementation(xp, op: str = OPS[0]) -> str:
    """Which implementation (``"numba"``, ``"cupy"`` or ``"reference"``) serves ``op`` for ``xp``."""
    if _forced == "reference":
        return "reference"
    if array_api_compat.is_numpy_namespace(xp) and numba_available():
        return "numba"
    if array_api_compat.is_cupy_namespace(xp) and importlib.util.find_spec(f"{__name__}.cupy.{op}"):
        return "cupy"
    return "reference"


def get(op: str, xp):
    """The module implementing kernel ``op`` for array namespace ``xp``."""
    key = (op, getattr(xp, "__name__", str(xp)), _forced)
    mod = _cache.get(key)
    if mod is None:
        if op not in OPS:
            raise ValueError(f"unknown kernel {op!r}; known: {', '.join(OPS)}")
        mod = importlib.import_module(f"{__name__}.{implementation(xp, op)}.{op}")
        _cache[key] = mod
    return mod
