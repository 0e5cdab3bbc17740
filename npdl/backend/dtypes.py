"""The dtype policy: float32 by default, float64 on request, and dtype names of any library."""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError

DEFAULT_FLOAT = "float32"
FLOAT_DTYPES = ("float32", "float64")


def resolve_float(name) -> str:
    """Check a float dtype name (``None`` means the default, float32)."""
    name = DEFAULT_FLOAT if name is None else str(name).replace("numpy.", "").replace("array_api_strict.", "")
    if name not in FLOAT_DTYPES:
        raise DTypeError(f"unsupported float dtype {name!r}; use one of {', '.join(FLOAT_DTYPES)}")
    return name


def float_dtype(xp, name=None):
    """The dtype object of namespace ``xp`` for ``"float32"`` / ``"float64"``."""
    return getattr(xp, resolve_float(name))


_DTYPE_NAMES: dict = {}


def dtype_name(x) -> str:
    """``"float32"``, ``"int64"``, ... for an array of any library."""
    dtype = x.dtype
    if type(x) is not np.ndarray:
        return str(dtype).rsplit(".", 1)[-1]
    name = _DTYPE_NAMES.get(dtype)  # str(dtype) costs microseconds, and checks call this every step
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype)
    return name


def is_floating(x) -> bool:
    return dtype_name(x) in ("float16", "float32", "float64")


def is_integer(x) -> bool:
    return dtype_name(x) in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
