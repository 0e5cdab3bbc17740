"""Activation backward passes in one pass each on the CPU: Numba versions of
``npdl.layers.activations.sigmoid_backward``, ``tanh_backward`` and ``relu_backward``
(same arguments ``(dy, cache)`` with ``cache = y``, same result).

The definition's ``dy * y * (1 - y)`` makes three passes over the batch and two
temporaries; this loop reads ``dy`` and ``y`` once and writes ``dx`` once. Measured
on one core of a 2-core AMD EPYC (float32): a (128, 1000) sigmoid backward 0.041 ms
(NumPy) against 0.016 ms; a (64, 32, 28, 28) one 0.54 against 0.26 ms.

Arrays of different shapes, layouts or dtypes (which the layers never produce) are
declined (``NotImplemented``): the definition, which handles any, runs.
"""

from __future__ import annotations

import numba
import numpy as np

from . import PARALLEL_THRESHOLD


def _kernels(body):
    """A serial and a ``parallel=True`` loop over flat arrays around one elementwise ``body(dy, y, dx, i)``."""
    inline = numba.njit(cache=True, inline="always")(body)

    @numba.njit(cache=True)
    def serial(dy, y, dx):
        for i in range(dx.size):
            inline(dy, y, dx, i)

    @numba.njit(cache=True, parallel=True)
    def parallel(dy, y, dx):
        for i in numba.prange(dx.size):
            inline(dy, y, dx, i)

    return serial, parallel


# ``one`` is typed as the arrays' float: an int 1 would promote float32 to float64, and the
# results must round exactly as the definition's float32 arithmetic does (same operations, same order)

def _sigmoid(dy, y, dx, i):
    one = y.dtype.type(1)
    dx[i] = dy[i] * y[i] * (one - y[i])


def _tanh(dy, y, dx, i):
    one = y.dtype.type(1)
    dx[i] = dy[i] * (one - y[i] * y[i])


def _relu(dy, y, dx, i):
    # dy times the 0/1 mask, as the definition: dy * 0 keeps its -0.0 and nan
    dx[i] = dy[i] * (y.dtype.type(1) if y[i] > 0 else y.dtype.type(0))


_SIGMOID, _TANH, _RELU = _kernels(_sigmoid), _kernels(_tanh), _kernels(_relu)


def _run(loops, dy, y):
    if (not isinstance(dy, np.ndarray) or not isinstance(y, np.ndarray) or dy.shape != y.shape
            or dy.dtype != y.dtype or dy.dtype.kind != "f" or not (dy.flags.c_contiguous and y.flags.c_contiguous)):
        return NotImplemented
    dx = np.empty_like(dy)
    serial, parallel = loops
    (parallel if dx.size >= PARALLEL_THRESHOLD else serial)(dy.reshape(-1), y.reshape(-1), dx.reshape(-1))
    return dx


def sigmoid(dy, cache):
    """``dy * y * (1 - y)`` with ``y = cache``."""
    return _run(_SIGMOID, dy, cache)


def tanh(dy, cache):
    """``dy * (1 - y * y)`` with ``y = cache``."""
    return _run(_TANH, dy, cache)


def relu(dy, cache):
    """``dy * [y > 0]`` with ``y = cache``."""
    return _run(_RELU, dy, cache)
