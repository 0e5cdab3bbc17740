"""Devices: where arrays live and which library computes on them.

* ``"cpu"``    -- NumPy (plus the Numba kernels in :mod:`npdl.kernels`),
* ``"strict"`` -- ``array-api-strict`` on the CPU: our stand-in for a foreign device,
  which fails loudly on mixed arrays and numpy-only calls,
* ``"gpu"`` / ``"cuda"`` / ``"cuda:N"`` -- CuPy on an NVIDIA GPU.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import array_api_compat
import numpy as np

from ..errors import DeviceError
from .cupy_probe import cupy_or_none, require_cupy
from .dtypes import DEFAULT_FLOAT, float_dtype
from .host import is_strict, to_numpy
from .oom import describe_allocation, is_out_of_memory, out_of_memory
from .tf32 import tf32_allowed

_CPU_NAMES = ("cpu", "numpy")
_STRICT_NAMES = ("strict", "array-api-strict", "array_api_strict")
_GPU_NAMES = ("gpu", "cuda", "cupy")
VALID_DEVICE_NAMES = ("cpu", "strict", "gpu", "cuda", "cuda:N")


@dataclass(frozen=True)
class Device:
    """Where arrays live and which library computes on them.

    ``kind`` is ``"numpy"``, ``"strict"`` or ``"cupy"``; ``name`` is what a user
    types (``"cpu"``, ``"strict"``, ``"cuda:0"``).
    """

    kind: str
    index: int = 0
    name: str = field(init=False)

    def __post_init__(self):
        name = {"numpy": "cpu", "strict": "strict"}.get(self.kind, f"cuda:{self.index}")
        object.__setattr__(self, "name", name)

    def __str__(self):
        return self.name

    @property
    def xp(self):
        """The array namespace that computes on this device."""
        if self.kind == "numpy":
            return np
        if self.kind == "strict":
            import array_api_strict

            return array_api_strict
        import array_api_compat.cupy as cupy_compat

        return cupy_compat

    @property
    def is_gpu(self) -> bool:
        return self.kind == "cupy"

    def current(self):
        """A context in which this device is CuPy's current one (for launches that go to the current
        device); a no-op off the GPU."""
        if self.kind != "cupy":
            return contextlib.nullcontext()
        import cupy  # an array lives on this device: CuPy and the device are there

        return cupy.cuda.Device(self.index)

    def asarray(self, x, dtype=None):
        """``x`` (a list, a NumPy array or an array of any device) as an array on this device."""
        if dtype is not None:
            dtype = float_dtype(self.xp, dtype) if isinstance(dtype, str) else dtype
        if self.kind == "numpy":
            return np.asarray(to_numpy(x) if not isinstance(x, np.ndarray) else x, dtype=dtype)
        if self.kind == "strict":
            import array_api_strict

            if not is_strict(x):
                x = np.asarray(to_numpy(x))
            return array_api_strict.asarray(x, dtype=dtype)
        cupy = require_cupy(self.index)
        with cupy.cuda.Device(self.index):
            if not array_api_compat.is_cupy_array(x):
                x = np.asarray(to_numpy(x))
            try:
                return cupy.asarray(x, dtype=dtype)
            except Exception as exc:
                if is_out_of_memory(exc):
                    what = describe_allocation(x.shape, dtype if dtype is not None else x.dtype)
                    raise out_of_memory(exc, f"on {self.name} while allocating an array of {what}",
                                        detail=f"allocating {what}; CuPy: {exc}") from exc
                raise

    def zeros(self, shape, dtype=DEFAULT_FLOAT):
        return self.xp.zeros(shape, dtype=float_dtype(self.xp, dtype) if isinstance(dtype, str) else dtype)

    def synchronize(self):
        """Wait for the device to finish queued work (a no-op on the CPU)."""
        if self.kind == "cupy":
            import cupy

            cupy.cuda.Device(self.index).synchronize()


#: Devices are frozen values: one shared instance for the common case
CPU = Device("numpy")


def get_device(spec="cpu") -> Device:
    """Turn ``"cpu"``, ``"strict"``, ``"gpu"``, ``"cuda"``, ``"cuda:N"`` (or a Device) into a Device.

    Asking for a GPU checks at once that CuPy imports and the device exists, so the
    error comes at selection time, not deep inside the first matrix product.
    """
    if isinstance(spec, Device):
        return spec
    if spec is None:
        return CPU
    name = str(spec).strip().lower()
    if name in _CPU_NAMES:
        return CPU
    if name in _STRICT_NAMES:
        try:
            import array_api_strict  # noqa: F401
        except ImportError as exc:
            raise DeviceError("device 'strict' needs array-api-strict: pip install array-api-strict") from exc
        return Device("strict")
    index = None
    if name in _GPU_NAMES:
        index = 0
    elif name.startswith(("cuda:", "gpu:")) and name.split(":", 1)[1].isdigit():
        index = int(name.split(":", 1)[1])
    if index is None:
        raise DeviceError(f"unknown device {spec!r}; valid devices are: " + ", ".join(VALID_DEVICE_NAMES))
    require_cupy(index)
    tf32_allowed()  # an unreadable CUPY_TF32 fails here, not inside CuPy's first matrix product
    return Device("cupy", index)


def available_devices() -> list[str]:
    """The device names this process can use right now."""
    names = ["cpu"]
    try:
        import array_api_strict  # noqa: F401

        names.append("strict")
    except ImportError:
        pass
    cupy = cupy_or_none()
    if cupy is not None:
        names += [f"cuda:{i}" for i in range(cupy.cuda.runtime.getDeviceCount())]
    return names
