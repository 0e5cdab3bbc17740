"""Whether CuPy and a CUDA device are usable, found without ever raising at import time.

:func:`cupy_or_none` answers quietly (for ``npdl info`` and test skips);
:func:`require_cupy` answers with a :class:`DeviceError` that says what to install or
which device indices exist, for code that was asked to use a GPU.
"""

from __future__ import annotations

from ..errors import DeviceError

GPU_INSTALL_HINT = (
    'install the GPU extra with  pip install "npdl-backprop[gpu]"  (CuPy for CUDA 12; '
    'use "npdl-backprop[gpu13]" for CUDA 13) on a machine with an NVIDIA GPU and driver'
)


def cupy_or_none():
    """CuPy if it imports and sees at least one CUDA device, else None (never raises)."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy
    except Exception:  # ImportError, CUDARuntimeError, missing driver libraries ...
        pass
    return None


def require_cupy(index: int):
    """Import CuPy and check that device ``index`` exists, with an error that says what to do."""
    try:
        import cupy
    except ImportError as exc:
        raise DeviceError(f"device 'cuda:{index}' needs CuPy, which is not installed: {GPU_INSTALL_HINT}") from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # cupy installed but no driver / no device
        raise DeviceError(f"CuPy is installed but no CUDA device is usable ({exc}); {GPU_INSTALL_HINT}") from exc
    if count == 0:
        raise DeviceError(f"CuPy is installed but sees no CUDA device; {GPU_INSTALL_HINT}")
    if not 0 <= index < count:
        raise DeviceError(f"device 'cuda:{index}' is out of range: this machine has {count} CUDA device(s), "
                          f"cuda:0 .. cuda:{count - 1}")
    return cupy
