"""Activation backward passes as CuPy ``ElementwiseKernel``\\ s (see :mod:`npdl.kernels.cupy`).

The expressions of ``npdl.layers.activations``' ``sigmoid_backward``, ``tanh_backward`` and
``relu_backward`` (arguments ``(dy, cache)``, ``cache = y``) in one pass, with the same float
operations in the same order (``(T)1`` a constant of the arrays' type). Arrays of different
shapes or dtypes are declined (``NotImplemented``: the definition runs).
"""

from __future__ import annotations

from . import elementwise_kernel

SPECS = {
    "sigmoid": ("T dy, T y", "T dx", "dx = dy * y * ((T)1 - y)"),
    "tanh": ("T dy, T y", "T dx", "dx = dy * ((T)1 - y * y)"),
    "relu": ("T dy, T y", "T dx", "dx = dy * (y > (T)0 ? (T)1 : (T)0)"),  # dy times the 0/1 mask, as the definition
}


def _run(name, dy, y):
    if dy.shape != y.shape or dy.dtype != y.dtype or dy.dtype.kind != "f":
        return NotImplemented
    return elementwise_kernel("activation_backward", name, SPECS[name])(dy, y)


def sigmoid(dy, cache):
    """``dy * y * (1 - y)`` with ``y = cache``."""
    return _run("sigmoid", dy, cache)


def tanh(dy, cache):
    """``dy * (1 - y * y)`` with ``y = cache``."""
    return _run("tanh", dy, cache)


def relu(dy, cache):
    """``dy * [y > 0]`` with ``y = cache``."""
    return _run("relu", dy, cache)
