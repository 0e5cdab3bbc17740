"""Input checks shared by layers and losses, each raising an error that names the layer,
what it expected and what it got. They read only shapes and dtypes (no data), so
they cost nothing on a GPU: no value is copied back to the host.
"""

from __future__ import annotations

from . import backend
from .errors import DeviceError, DTypeError, ShapeError


def _shape(x) -> tuple:
    return tuple(int(d) for d in x.shape)


def check_array(x, who: str, what: str = "input"):
    """``x`` must be an array of a library npdl supports; returns its namespace."""
    try:
        return backend.namespace(x)
    except DeviceError:
        raise
    except Exception as exc:
        raise DTypeError(f"{who}: {what} must be an array, got {type(x).__name__}") from exc


def check_float(x, who: str, what: str = "input", dtype: str | None = None):
    """``x`` must be a float array; with ``dtype`` it must be exactly that float type.

    npdl never casts silently: float64 data into a float32 layer is refused, with the
    cast to write (``x.astype("float32")``) in the message.
    """
    check_array(x, who, what)
    got = backend.dtype_name(x)
    if not backend.is_floating(x):
        raise DTypeError(f"{who}: {what} must be a float array, got dtype {got}; "
                         f"convert it first, e.g. x.astype('{dtype or backend.DEFAULT_FLOAT}') / 255")
    if dtype is not None and got != dtype:
        raise DTypeError(f"{who}: {what} has dtype {got} but the layer computes in {dtype}; "
                         f"cast explicitly with x.astype('{dtype}') (npdl never casts silently)")


def check_rank(x, ndim: int | tuple, who: str, what: str = "input", layout: str = ""):
    """``x.ndim`` must be ``ndim`` (or one of a tuple of ranks)."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.ndim not in allowed:
        want = " or ".join(f"{n}-D" for n in allowed)
        raise ShapeError(f"{who}: {what} must be {want}{' ' + layout if layout else ''}, "
                         f"got shape {_shape(x)} ({x.ndim}-D)")


def check_dim(x, axis: int, size: int, who: str, what: str = "input", meaning: str = "features"):
    """``x.shape[axis]`` must equal ``size``."""
    if int(x.shape[axis]) != int(size):
        raise ShapeError(f"{who}: {what} must have {size} {meaning} on axis {axis}, "
                         f"got shape {_shape(x)}")


def check_same_shape(a, b, who: str, names=("prediction", "target")):
    if _shape(a) != _shape(b):
        raise ShapeError(f"{who}: {names[0]} and {names[1]} must have the same shape, "
                         f"got {_shape(a)} and {_shape(b)}")


def check_same_device(x, param, who: str, what: str = "input"):
    """``x`` must live where the layer's parameters live (same library, same GPU)."""
    if backend.device_of(x) != backend.device_of(param):
        raise DeviceError(f"{who}: {what} is on device '{backend.device_of(x)}' but the layer's parameters are "
                          f"on '{backend.device_of(param)}'; move one of them, e.g. model.to(device) or "
                          f"npdl.backend.to_device(x, device)")
