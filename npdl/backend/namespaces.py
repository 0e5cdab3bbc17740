"""The array namespace of given arrays, the device they live on, and moving them.

Layer, loss and optimizer code never imports numpy: it asks :func:`namespace` for the
namespace of the arrays it was given (``namespace(x, W)``, in the spirit of Chainer's
``get_array_module``) and writes its math against the array API standard.
"""

from __future__ import annotations

import array_api_compat
import numpy as np

from ..errors import DeviceError, DTypeError
from .devices import CPU, Device, get_device
from .host import is_strict


def namespace(*arrays):
    """The array namespace shared by ``arrays`` (``None`` entries and Python scalars are skipped).

    NumPy arrays get NumPy itself (NumPy 2 follows the standard closely, and its own
    functions avoid the compat wrapper's per-call overhead in the hot loop); other
    libraries get their standard-conforming namespace. Arrays from two libraries,
    or from two GPUs, raise :class:`DeviceError` instead of computing garbage.
    """
    # fast path first: this runs several times per layer per step, and NumPy is the common case
    ndarray = np.ndarray
    if all(type(a) is ndarray for a in arrays) and arrays:
        return np
    arrays = [a for a in arrays if a is not None and not isinstance(a, (int, float, bool))]
    if arrays and all(type(a) is ndarray for a in arrays):
        return np
    try:
        xp = array_api_compat.array_namespace(*arrays)
    except TypeError as exc:
        not_arrays = [a for a in arrays if not array_api_compat.is_array_api_obj(a)]
        if not_arrays:
            raise DTypeError(f"expected arrays, got {type(not_arrays[0]).__name__}") from exc
        kinds = sorted({f"{type(a).__module__}.{type(a).__name__}" for a in arrays})
        raise DeviceError(f"arrays from different libraries or devices were mixed ({', '.join(kinds)}); "
                          "move them to one device first with npdl.backend.to_device(x, device)") from exc
    if array_api_compat.is_numpy_namespace(xp):
        return np
    if array_api_compat.is_cupy_namespace(xp):
        devices = {a.device.id for a in arrays if hasattr(a, "device") and hasattr(a.device, "id")}
        if len(devices) > 1:
            raise DeviceError(f"arrays on different GPUs were mixed (cuda:{sorted(devices)}); "
                              "move them to one device first with npdl.backend.to_device(x, device)")
    return xp


class AutodiffDevice(Device):
    """Where a PyTorch tensor or a JAX array lives (``kind`` ``"torch"`` or ``"jax"``).

    Training never sees one: :func:`npdl.gradcheck.check_layer` runs a layer's own array-API
    forward on torch tensors or JAX arrays to differentiate it by autodiff, and the layer's
    device checks then compare these. ``xp`` is the library's array-API namespace.
    """

    def __post_init__(self):
        object.__setattr__(self, "name", self.kind)

    @property
    def xp(self):
        import importlib

        return importlib.import_module("array_api_compat.torch" if self.kind == "torch" else "jax.numpy")


def device_of(x) -> Device:
    """The :class:`Device` an array lives on."""
    if type(x) is np.ndarray:  # the common case first: checks call this several times per step
        return CPU
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return CPU
    if is_strict(x):
        return Device("strict")
    if array_api_compat.is_cupy_array(x):
        return Device("cupy", int(x.device.id))
    if array_api_compat.is_torch_array(x) or array_api_compat.is_jax_array(x):
        return AutodiffDevice("torch" if array_api_compat.is_torch_array(x) else "jax")
    raise DeviceError(f"not an array npdl can use: {type(x).__module__}.{type(x).__name__}")


def same_device(a, b) -> bool:
    return device_of(a) == device_of(b)


def to_device(x, device):
    """``x`` moved (copied if needed) to ``device`` (a name or a :class:`Device`)."""
    return get_device(device).asarray(x)
