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

from . import ELEMENTWISE_PARALLEL_THRESHOLD as PARALLEL_THRESHOLD  # a cheap pass: see there


# Each loop is written out, not made by a factory around the elementwise body: Numba's on-disk
# cache keys a function by its name and its closure's contents, and a factory's loops share one
# name and close over a fresh dispatcher in every process, so they were compiled again each time.
# ``one`` is typed as the arrays' float: an int 1 would promote float32 to float64, and the
# results must round exactly as the definition's float32 arithmetic does (same operations, same order)

@numba.njit(cache=True)
def _sigmoid_serial(dy, y, dx):
    one = y.dtype.type(1)
    for i in range(dx.size):
        dx[i] = dy[i] * y[i] * (one - y[i])


@numba.njit(cache=True, parallel=True)
def _sigmoid_parallel(dy, y, dx):
    one = y.dtype.type(1)
    for i in numba.prange(dx.size):
        dx[i] = dy[i] * y[i] * (one - y[i])


@numba.njit(cache=True)
def _tanh_serial(dy, y, dx):
    one = y.dtype.type(1)
    for i in range(dx.size):
        dx[i] = dy[i] * (one - y[i] * y[i])


@numba.njit(cache=True, parallel=True)
def _tanh_parallel(dy, y, dx):
    one = y.dtype.type(1)
    for i in numba.prange(dx.size):
        dx[i] = dy[i] * (one - y[i] * y[i])


# dy times the 0/1 mask, as the definition: dy * 0 keeps its -0.0 and nan

@numba.njit(cache=True)
def _relu_serial(dy, y, dx):
    one, zero = y.dtype.type(1), y.dtype.type(0)
    for i in range(dx.size):
        dx[i] = dy[i] * (one if y[i] > 0 else zero)


@numba.njit(cache=True, parallel=True)
def _relu_parallel(dy, y, dx):
    one, zero = y.dtype.type(1), y.dtype.type(0)
    for i in numba.prange(dx.size):
        dx[i] = dy[i] * (one if y[i] > 0 else zero)


_SIGMOID, _TANH, _RELU = (_sigmoid_serial, _sigmoid_parallel), (_tanh_serial, _tanh_parallel), \
    (_relu_serial, _relu_parallel)


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
