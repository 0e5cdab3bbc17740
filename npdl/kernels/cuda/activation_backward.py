"""Activation backward passes on a GPU: numba.cuda versions of ``npdl.layers.activations``'
``sigmoid_backward``, ``tanh_backward`` and ``relu_backward`` (arguments ``(dy, cache)``, ``cache = y``).

One launch, one thread per element, reading ``dy`` and ``y`` once and writing ``dx``
once, where CuPy would launch two or three elementwise kernels with temporaries in
between. The same operations in the same order as the definitions, in the arrays'
dtype (a typed ``1``, never a float64 literal), so results are bit-identical to them.
Arrays of different shapes or dtypes are declined (``NotImplemented``: the definition runs).
"""

from __future__ import annotations

from numba import cuda

from ... import backend
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


def _run(kernel, dy, y):
    if dy.shape != y.shape or dy.dtype != y.dtype or dy.dtype.kind != "f":
        return NotImplemented
    xp = backend.namespace(dy, y)
    dy, y = backend.row_major(dy), backend.row_major(y)
    dx = xp.empty(dy.shape, dtype=dy.dtype)
    launch(kernel, dx.size, xp.reshape(dy, (-1,)), xp.reshape(y, (-1,)), xp.reshape(dx, (-1,)))
    return dx


def sigmoid(dy, cache):
    """``dy * y * (1 - y)`` with ``y = cache``."""
    return _run(_sigmoid, dy, cache)


def tanh(dy, cache):
    """``dy * (1 - y * y)`` with ``y = cache``."""
    return _run(_tanh, dy, cache)


def relu(dy, cache):
    """``dy * [y > 0]`` with ``y = cache``."""
    return _run(_relu, dy, cache)
