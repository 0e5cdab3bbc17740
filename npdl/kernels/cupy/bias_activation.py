"""Bias add and activation as CuPy ``ElementwiseKernel``\\ s (see :mod:`npdl.kernels.cupy`).

``y = f(a + b[i % K])`` with ``K = a.shape[-1]`` and ``i`` the element's (C-order) index, in
the reference's operations and order; with ``overwrite`` the output is ``a`` itself.
``linear`` is the reference's (its bias add is one CuPy launch already), as are a
standalone tanh and ReLU (one launch each).
"""

from __future__ import annotations

import numpy as np

from ..reference import bias_activation as _reference
from ..reference.bias_activation import linear  # noqa: F401
from . import elementwise_kernel

SPECS = {
    "sigmoid": ("T a, raw T b, int64 K", "T y", "const T h = (T)0.5; y = (tanh((a + b[i % K]) * h) + (T)1) * h"),
    "sigmoid_no_bias": ("T a", "T y", "const T h = (T)0.5; y = (tanh(a * h) + (T)1) * h"),
    "tanh": ("T a, raw T b, int64 K", "T y", "y = tanh(a + b[i % K])"),
    # z <= 0 is false for nan: nan passes, and -0.0 becomes 0.0, as NumPy's maximum(z, 0) does
    "relu": ("T a, raw T b, int64 K", "T y", "const T z = a + b[i % K]; y = z <= (T)0 ? (T)0 : z"),
}


def _run(name, no_bias, reference, a, b, overwrite):
    if a.ndim == 0 or b is not None and (b.dtype != a.dtype or tuple(b.shape) != tuple(a.shape[-1:])):
        return reference(a, b, overwrite)
    if b is None and no_bias is None:
        return reference(a, b, overwrite)
    out = (a,) if overwrite else ()
    if b is None:
        return elementwise_kernel("bias_activation", no_bias, SPECS[no_bias])(a, *out)
    return elementwise_kernel("bias_activation", name, SPECS[name])(a, b, np.int64(a.shape[-1]), *out)


def sigmoid(a, b=None, overwrite=False):
    return _run("sigmoid", "sigmoid_no_bias", _reference.sigmoid, a, b, overwrite)


def tanh(a, b=None, overwrite=False):
    return _run("tanh", None, _reference.tanh, a, b, overwrite)


def relu(a, b=None, overwrite=False):
    return _run("relu", None, _reference.relu, a, b, overwrite)
