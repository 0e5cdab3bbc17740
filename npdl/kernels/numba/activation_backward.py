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


# ``kind`` selects the derivative: the same for the whole call, so the branch on it leaves each loop
# (LLVM unswitches it) and the loop vectorises. (One loop with a ``kind`` argument, not a factory of
# loops around each body: Numba's on-disk cache keys a function by its name and its closure's
# contents, and a factory's loops share one name and close over a fresh dispatcher in every
# process, so they were compiled again each time.) ``one`` is typed as the arrays' float: an int 1
# would promote float32 to float64, and the results must round exactly as the definition's float32
# arithmetic does (same operations, same order).

LINEAR, SIGMOID, TANH, RELU = 0, 1, 2, 3
_KINDS = {"linear": LINEAR, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU}


@numba.njit(cache=True, inline="always")
def _da(kind, g, v, one, zero):
    """``g f'`` from the output ``v``: ``g v (1 - v)``, ``g (1 - v v)``, or ``g`` times the 0/1 mask
    (as the definition: ``g * 0`` keeps its -0.0 and nan)."""
    if kind == SIGMOID:
        return g * v * (one - v)
    if kind == TANH:
        return g * (one - v * v)
    return g * (one if v > 0 else zero)  # RELU


@numba.njit(cache=True)
def _flat_serial(kind, dy, y, dx):
    one, zero = y.dtype.type(1), y.dtype.type(0)
    for i in range(dx.size):
        dx[i] = _da(kind, dy[i], y[i], one, zero)


@numba.njit(cache=True, parallel=True)
def _flat_parallel(kind, dy, y, dx):
    one, zero = y.dtype.type(1), y.dtype.type(0)
    for i in numba.prange(dx.size):
        dx[i] = _da(kind, dy[i], y[i], one, zero)


def _run(kind, dy, y):
    if (not isinstance(dy, np.ndarray) or not isinstance(y, np.ndarray) or dy.shape != y.shape
            or dy.dtype != y.dtype or dy.dtype.kind != "f" or not (dy.flags.c_contiguous and y.flags.c_contiguous)):
        return NotImplemented
    dx = np.empty_like(dy)
    (_flat_parallel if dx.size >= PARALLEL_THRESHOLD else _flat_serial)(kind, dy.reshape(-1), y.reshape(-1),
                                                                          dx.reshape(-1))
    return dx


def sigmoid(dy, cache):
    """``dy * y * (1 - y)`` with ``y = cache``."""
    return _run(SIGMOID, dy, cache)


def tanh(dy, cache):
    """``dy * (1 - y * y)`` with ``y = cache``."""
    return _run(TANH, dy, cache)


def relu(dy, cache):
    """``dy * [y > 0]`` with ``y = cache``."""
    return _run(RELU, dy, cache)


# -- the activation's backward and the bias gradient in one pass: npdl.layers.dense.pre_activation_and_bias_grad
#
# ``db[j] = sum_n da[n, j]`` summed as NumPy sums a C-contiguous (N, K) array over axis 0 (K > 1): row 0
# starts each sum and the rows are added in order, so ``db`` has the definition's bits; ``da`` is
# :func:`_da`, as in the loops above. For LINEAR ``da`` is ``dy``, and only the sum is made.

#: the columns one thread sums in the parallel loop: a block of (N, 256) float32 rows is 1 KB per row
COLUMNS = 256


@numba.njit(cache=True)
def _columns(kind, dy, y, da, db, j0, j1):
    """Columns ``j0:j1`` of ``da`` (not for LINEAR, where ``da`` is ``dy``) and of ``db``."""
    if kind == LINEAR:
        for j in range(j0, j1):
            db[j] = dy[0, j]
        for n in range(1, dy.shape[0]):
            for j in range(j0, j1):
                db[j] += dy[n, j]
        return
    one, zero = dy.dtype.type(1), dy.dtype.type(0)
    for j in range(j0, j1):
        da[0, j] = _da(kind, dy[0, j], y[0, j], one, zero)
        db[j] = da[0, j]
    for n in range(1, dy.shape[0]):
        for j in range(j0, j1):
            da[n, j] = _da(kind, dy[n, j], y[n, j], one, zero)
            db[j] += da[n, j]


@numba.njit(cache=True)
def _with_bias_serial(kind, dy, y, da, db):
    _columns(kind, dy, y, da, db, 0, dy.shape[1])


@numba.njit(cache=True, parallel=True)
def _with_bias_parallel(kind, dy, y, da, db):
    K = dy.shape[1]
    for block in numba.prange((K + COLUMNS - 1) // COLUMNS):
        _columns(kind, dy, y, da, db, block * COLUMNS, min(K, (block + 1) * COLUMNS))


def pre_activation_and_bias_grad(dy, cache):
    """:func:`npdl.layers.dense.pre_activation_and_bias_grad`: ``da`` and ``db`` in one pass over ``dy``
    (and ``y``), for a layer with a bias and a linear, sigmoid, tanh or ReLU activation, on
    C-contiguous (N, K) float arrays with K > 1 (one column: NumPy sums it pairwise, not in order)."""
    _, _, has_bias, activation, f_cache = cache
    kind = _KINDS.get(activation)
    if (not has_bias or kind is None or type(dy) is not np.ndarray or dy.ndim != 2 or dy.shape[1] < 2
            or dy.shape[0] == 0 or dy.dtype.kind != "f" or not dy.flags.c_contiguous):
        return NotImplemented
    y = dy if kind == LINEAR else f_cache  # LINEAR reads no y: dy stands in
    if (type(y) is not np.ndarray or y.shape != dy.shape or y.dtype != dy.dtype or not y.flags.c_contiguous):
        return NotImplemented
    # LINEAR's da is dy itself, and the loop writes none: it gets a scratch row in its place, so that a
    # read-only dy never reaches Numba as an array it might write
    da = np.empty((1, 1), dy.dtype) if kind == LINEAR else np.empty_like(dy)
    db = np.empty(dy.shape[1], dy.dtype)
    (_with_bias_parallel if dy.size >= PARALLEL_THRESHOLD else _with_bias_serial)(kind, dy, y, da, db)
    return (dy if kind == LINEAR else da), db
