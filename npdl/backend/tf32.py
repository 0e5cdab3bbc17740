"""The precision of float32 matrix products on a GPU: exact float32 (the default) or TF32.

With ``CUPY_TF32=1`` CuPy's float32 matmul/dot/tensordot ask cuBLAS for TF32 tensor cores
(inputs rounded to a 10-bit mantissa) on Ampere and newer GPUs. This module reads and sets
that switch; it never imports CuPy itself, and touches CuPy's cached choice only when CuPy is
already imported.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from ..errors import DeviceError

#: CuPy's own switch: with ``CUPY_TF32=1`` its float32 matmul/dot/tensordot ask cuBLAS for TF32
#: tensor cores (inputs rounded to a 10-bit mantissa) on Ampere and newer GPUs. CuPy reads it
#: lazily, at its first float32 matrix product, and caches the answer for the process.
TF32_ENV = "CUPY_TF32"


def tf32_allowed() -> bool:
    """Whether float32 matrix products on a GPU may use TF32 tensor cores.

    Off unless asked for: :func:`allow_tf32`, ``npdl train/bench --tf32``, or ``CUPY_TF32=1``
    in the environment. Off means exact float32 products (cuBLAS's default math mode).
    """
    value = os.environ.get(TF32_ENV, "").strip()
    if not value:
        return False
    try:
        return int(value) > 0  # CuPy's own reading of the variable
    except ValueError:
        raise DeviceError(f"{TF32_ENV}={value!r} in the environment is not an integer; CuPy reads it as "
                          f"int(...) > 0: set {TF32_ENV}=0 (exact float32 matmuls, the default) or "
                          f"{TF32_ENV}=1 (TF32 tensor cores)") from None


def _cupy_linalg():
    """CuPy's matmul module if CuPy is already imported and exposes its compute-type switch, else None."""
    if "cupy" not in sys.modules:
        return None
    try:
        from cupy._core import _routines_linalg as linalg
    except ImportError:
        return None
    if not hasattr(linalg, "set_compute_type") or not hasattr(linalg, "COMPUTE_TYPE_TBD"):
        return None
    return linalg


def allow_tf32(flag: bool = True) -> None:
    """Let float32 matrix products on a GPU use TF32 tensor cores (``flag=True``) or not.

    Faster on Ampere and newer GPUs, but each input is rounded to 10 mantissa bits, so results
    differ from exact float32 around 1e-3 relative. The default is off. Works at any time:
    before CuPy is imported it sets ``CUPY_TF32``, which CuPy reads at its first float32 product;
    afterwards it also resets CuPy's cached choice so the next product reads it again. Where
    an installed CuPy has already fixed the choice and offers no way to reset it, asking for a
    different setting raises :class:`DeviceError` (set ``CUPY_TF32`` before starting Python).
    Has no effect on the CPU, on float64, or on older GPUs (CuPy warns there).
    """
    flag = bool(flag)
    try:
        before = tf32_allowed()
    except DeviceError:
        before = None  # an unreadable value: replaced below
    os.environ[TF32_ENV] = "1" if flag else "0"
    if "cupy" not in sys.modules:
        return
    linalg = _cupy_linalg()
    if linalg is not None:
        # back to "to be decided": CuPy's next float32 product reads CUPY_TF32 again
        linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TBD)
    elif before != flag:
        raise DeviceError(f"cannot {'enable' if flag else 'disable'} TF32 now: CuPy is already imported and this "
                          f"version offers no way to change its float32 matmul mode; set {TF32_ENV}="
                          f"{int(flag)} in the environment before starting Python")


def tf32_status() -> str:
    """One line for ``npdl info``: the float32 matmul precision on a GPU and how to change it."""
    if tf32_allowed():
        return (f"TF32 allowed ({TF32_ENV}=1): float32 matmuls on Ampere+ GPUs round inputs to 10 mantissa bits; "
                f"exact float32 with {TF32_ENV}=0")
    return ("exact float32 (default); TF32 tensor cores only on request: --tf32, "
            f"npdl.backend.allow_tf32() or {TF32_ENV}=1")
