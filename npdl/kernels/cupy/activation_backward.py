"""Activation backward passes as CuPy ``ElementwiseKernel``\\ s (see :mod:`npdl.kernels.cupy`).

The reference's expressions (:mod:`npdl.kernels.reference.activation_backward`) in one pass,
with the same float operations in the same order (``(T)1`` a constant of the arrays' type).
"""

from __future__ import annotations

from ..reference import activation_backward as _reference
from . import elementwise_kernel

SPECS = {
    "sigmoid": ("T dy, T y", "T dx", "dx = dy * y * ((T)1 - y)"),
    "tanh": ("T dy, T y", "T dx", "dx = dy * ((T)1 - y * y)"),
    "relu": ("T dy, T y", "T dx", "dx = dy * (y > (T)0 ? (T)1 : (T)0)"),  # dy times the 0/1 mask, as the reference
}


def _run(name, dy, y):
    if dy.shape != y.shape or dy.dtype != y.dtype:
        return getattr(_reference, name)(dy, y)
    return elementwise_kernel("activation_backward", name, SPECS[name])(dy, y)


def sigmoid(dy, y):
    return _run("sigmoid", dy, y)


def tanh(dy, y):
    return _run("tanh", dy, y)


def relu(dy, y):
    return _run("relu", dy, y)
