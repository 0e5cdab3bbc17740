"""Bias add and activation as CuPy ``ElementwiseKernel``\\ s (see :mod:`npdl.kernels.cupy`).

Versions of ``npdl.layers.activations``' ``sigmoid_forward``, ``tanh_forward`` and
``relu_forward`` (arguments ``(x, *, bias=None, overwrite=False)``, result ``(y, cache)`` with
``cache = y``): ``y = f(a + b[i % K])`` with ``a = x``, ``b = bias``, ``K = a.shape[-1]`` and ``i``
the element's (C-order) index, in the definitions' operations and order; with ``overwrite``
the output is ``x`` itself. Declined (``NotImplemented``: the definition runs): a 0-d ``x``, a
bias of another dtype or shape than ``x.shape[-1:]``, and tanh and ReLU without a bias (one
CuPy launch each already).
"""

from __future__ import annotations

import numpy as np

from . import elementwise_kernel

SPECS = {
    "sigmoid": ("T a, raw T b, int64 K", "T y", "const T h = (T)0.5; y = (tanh((a + b[i % K]) * h) + (T)1) * h"),
    "sigmoid_no_bias": ("T a", "T y", "const T h = (T)0.5; y = (tanh(a * h) + (T)1) * h"),
    "tanh": ("T a, raw T b, int64 K", "T y", "y = tanh(a + b[i % K])"),
    # z <= 0 is false for nan: nan passes, and -0.0 becomes 0.0, as NumPy's maximum(z, 0) does
    "relu": ("T a, raw T b, int64 K", "T y", "const T z = a + b[i % K]; y = z <= (T)0 ? (T)0 : z"),
}


def _run(name, no_bias, a, b, overwrite):
    if a.ndim == 0 or a.dtype.kind != "f" or b is not None and (b.dtype != a.dtype
                                                                  or tuple(b.shape) != tuple(a.shape[-1:])):
        return NotImplemented
    if b is None and no_bias is None:
        return NotImplemented
    out = (a,) if overwrite else ()
    if b is None:
        y = elementwise_kernel("bias_activation", no_bias, SPECS[no_bias])(a, *out)
    else:
        y = elementwise_kernel("bias_activation", name, SPECS[name])(a, b, np.int64(a.shape[-1]), *out)
    return y, y


def sigmoid(x, *, bias=None, overwrite=False):
    """``(y, y)`` with ``y = (tanh((x + bias) / 2) + 1) / 2``."""
    return _run("sigmoid", "sigmoid_no_bias", x, bias, overwrite)


def tanh(x, *, bias=None, overwrite=False):
    """``(y, y)`` with ``y = tanh(x + bias)``."""
    return _run("tanh", None, x, bias, overwrite)


def relu(x, *, bias=None, overwrite=False):
    """``(y, y)`` with ``y = max(x + bias, 0)``."""
    return _run("relu", None, x, bias, overwrite)
