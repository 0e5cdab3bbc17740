"""Activation backward passes, numba.cuda version of :mod:`npdl.kernels.reference.activation_backward`.

One launch, one thread per element, reading ``dy`` and ``y`` once and writing ``dx``
once, where CuPy would launch two or three elementwise kernels with temporaries in
between. The same operations in the same order as the reference, in the arrays'
dtype (a typed ``1``, never a float64 literal), so results are bit-identical to it.
"""

from __future__ import annotations

from numba import cuda

from ... import backend
from ..reference import activation_backward as _reference
from . import launch


@cuda.jit(cache=True)
def _sigmoid(dy, y, dx):
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dy[i] * y[i] * (y.dtype.type(1) - y[i])


@cuda.jit(cache=True)
def _tanh(dy, y, dx):
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dy[i] * (y.dtype.type(1) - y[i] * y[i])


@cuda.jit(cache=True)
def _relu(dy, y, dx):
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dy[i] * (y.dtype.type(1) if y[i] > 0 else y.dtype.type(0))


def _run(kernel, reference, dy, y):
    if dy.shape != y.shape or dy.dtype != y.dtype:
        return reference(dy, y)
    xp = backend.namespace(dy, y)
    dy, y = backend.row_major(dy), backend.row_major(y)
    dx = xp.empty(dy.shape, dtype=dy.dtype)
    launch(kernel, dx.size, xp.reshape(dy, (-1,)), xp.reshape(y, (-1,)), xp.reshape(dx, (-1,)))
    return dx


def sigmoid(dy, y):
    return _run(_sigmoid, _reference.sigmoid, dy, y)


def tanh(dy, y):
    return _run(_tanh, _reference.tanh, dy, y)


def relu(dy, y):
    return _run(_relu, _reference.relu, dy, y)
