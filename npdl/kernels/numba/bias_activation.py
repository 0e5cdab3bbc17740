"""Bias add and activation in one pass on the CPU: Numba versions of ``npdl.layers.activations``'
``sigmoid_forward`` and ``tanh_forward`` for float32 (arguments ``(x, *, bias=None,
overwrite=False)``, result ``(y, cache)`` with ``cache = y``).

``x`` of shape (..., K) is read as its (M, K) rows (C order, ``K = x.shape[-1]``), ``b = bias``
of shape (K,), and every element is read once and written once::

    tanh:     y[m, k] = tanh32(x[m, k] + b[k])
    sigmoid:  y[m, k] = (tanh32((x[m, k] + b[k]) * 0.5) + 1) * 0.5

the definitions' operations in their order, with float32 constants (no float64 promotion).
``tanh32`` is the vectorising float32 tanh of :mod:`npdl.kernels.numba.fast_tanh`: NumPy's
float32 ``tanh`` is a scalar loop on CPUs without AVX-512, and ``math.tanh`` in a Numba loop
is slower still. Results therefore agree with the definitions to a few float32 ulps (at most
6.9 ulps, a relative error of 4.2e-7, from ``tanh32``), not bit for bit. With ``overwrite``
``y`` is written over ``x`` (each element is read before it is written) and ``x`` is returned, by
loops that take ``x`` alone (see the comment above the loops).

Declined (``NotImplemented``: the definition runs): anything but a C-contiguous float32 NumPy
``x`` of at least one dimension, and a ``bias`` that is not a float32 NumPy array of shape
``x.shape[-1:]``. float64 (gradient checks) thus keeps NumPy's ``tanh``. ReLU has no CPU
kernel: NumPy's ``maximum`` is one SIMD pass already.
"""

from __future__ import annotations

import numba
import numpy as np

from . import ELEMENTWISE_PARALLEL_THRESHOLD as PARALLEL_THRESHOLD  # a cheap pass: see there
from .fast_tanh import tanh32

_HALF = np.float32(0.5)
_ONE = np.float32(1.0)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _sigmoid(z):
    """The definition's ``(tanh(z * 0.5) + 1) * 0.5`` in float32."""
    return (tanh32(z * _HALF) + _ONE) * _HALF


# Eight loops per activation: flat x and y without a bias; (M, K) views of x and y with one, whose
# inner loop over K vectorises; and the same four in place, taking x alone. In place must be its own
# loop: given x as both x and y, LLVM's check that the two do not overlap fails at run time and it
# falls back to its scalar loop, which took 37 us instead of 4.5 us for a (20, 500) tanh with a bias
# (a 784-500-10 MLP step is ~0.4 ms) on a 2-core AMD EPYC Zen 4. Written out at module level rather than made by a factory: Numba's
# cache keeps one index per function name, and closures of one factory share a name, so each would
# overwrite the others' index and recompile in every process. ``error_model="numpy"``: with Numba's
# default error model every division in ``tanh32`` is checked for zero, and the loop does not vectorise.

@numba.njit(cache=True, error_model="numpy")
def _tanh_flat(x, y):
    for i in range(y.size):
        y[i] = tanh32(x[i])


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _tanh_flat_parallel(x, y):
    for i in numba.prange(y.size):
        y[i] = tanh32(x[i])


@numba.njit(cache=True, error_model="numpy")
def _tanh_rows(x, b, y):
    for m in range(y.shape[0]):
        for k in range(y.shape[1]):
            y[m, k] = tanh32(x[m, k] + b[k])


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _tanh_rows_parallel(x, b, y):
    for m in numba.prange(y.shape[0]):
        for k in range(y.shape[1]):
            y[m, k] = tanh32(x[m, k] + b[k])


@numba.njit(cache=True, error_model="numpy")
def _tanh_flat_inplace(x):
    for i in range(x.size):
        x[i] = tanh32(x[i])


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _tanh_flat_inplace_parallel(x):
    for i in numba.prange(x.size):
        x[i] = tanh32(x[i])


@numba.njit(cache=True, error_model="numpy")
def _tanh_rows_inplace(x, b):
    for m in range(x.shape[0]):
        for k in range(x.shape[1]):
            x[m, k] = tanh32(x[m, k] + b[k])


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _tanh_rows_inplace_parallel(x, b):
    for m in numba.prange(x.shape[0]):
        for k in range(x.shape[1]):
            x[m, k] = tanh32(x[m, k] + b[k])


@numba.njit(cache=True, error_model="numpy")
def _sigmoid_flat(x, y):
    for i in range(y.size):
        y[i] = _sigmoid(x[i])


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _sigmoid_flat_parallel(x, y):
    for i in numba.prange(y.size):
        y[i] = _sigmoid(x[i])


@numba.njit(cache=True, error_model="numpy")
def _sigmoid_rows(x, b, y):
    for m in range(y.shape[0]):
        for k in range(y.shape[1]):
            y[m, k] = _sigmoid(x[m, k] + b[k])


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _sigmoid_rows_parallel(x, b, y):
    for m in numba.prange(y.shape[0]):
        for k in range(y.shape[1]):
            y[m, k] = _sigmoid(x[m, k] + b[k])


@numba.njit(cache=True, error_model="numpy")
def _sigmoid_flat_inplace(x):
    for i in range(x.size):
        x[i] = _sigmoid(x[i])


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _sigmoid_flat_inplace_parallel(x):
    for i in numba.prange(x.size):
        x[i] = _sigmoid(x[i])


@numba.njit(cache=True, error_model="numpy")
def _sigmoid_rows_inplace(x, b):
    for m in range(x.shape[0]):
        for k in range(x.shape[1]):
            x[m, k] = _sigmoid(x[m, k] + b[k])


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _sigmoid_rows_inplace_parallel(x, b):
    for m in numba.prange(x.shape[0]):
        for k in range(x.shape[1]):
            x[m, k] = _sigmoid(x[m, k] + b[k])


#: (serial, parallel) without a bias, (serial, parallel) with one; then the same in place
_TANH = (_tanh_flat, _tanh_flat_parallel, _tanh_rows, _tanh_rows_parallel,
         _tanh_flat_inplace, _tanh_flat_inplace_parallel, _tanh_rows_inplace, _tanh_rows_inplace_parallel)
_SIGMOID = (_sigmoid_flat, _sigmoid_flat_parallel, _sigmoid_rows, _sigmoid_rows_parallel,
            _sigmoid_flat_inplace, _sigmoid_flat_inplace_parallel, _sigmoid_rows_inplace,
            _sigmoid_rows_inplace_parallel)


def _run(loops, x, b, overwrite):
    if (not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim == 0 or not x.flags.c_contiguous
            or b is not None and (not isinstance(b, np.ndarray) or b.dtype != x.dtype or b.shape != x.shape[-1:])):
        return NotImplemented
    if overwrite and not x.flags.writeable:
        return NotImplemented  # the definition raises NumPy's own error
    big = x.size >= PARALLEL_THRESHOLD
    if overwrite:
        serial, parallel, serial_bias, parallel_bias = loops[4:]
        if b is None:
            (parallel if big else serial)(x.reshape(-1))
        elif x.size:
            (parallel_bias if big else serial_bias)(x.reshape(-1, x.shape[-1]), np.ascontiguousarray(b))
        return x, x
    y = np.empty_like(x)
    serial, parallel, serial_bias, parallel_bias = loops[:4]
    if b is None:
        (parallel if big else serial)(x.reshape(-1), y.reshape(-1))
    elif x.size:
        shape = (x.size // x.shape[-1], x.shape[-1])
        (parallel_bias if big else serial_bias)(x.reshape(shape), np.ascontiguousarray(b), y.reshape(shape))
    return y, y


def sigmoid(x, *, bias=None, overwrite=False):
    """``(y, y)`` with ``y = (tanh((x + bias) * 0.5) + 1) * 0.5`` (float32; else ``NotImplemented``)."""
    return _run(_SIGMOID, x, bias, overwrite)


def tanh(x, *, bias=None, overwrite=False):
    """``(y, y)`` with ``y = tanh(x + bias)`` (float32; else ``NotImplemented``)."""
    return _run(_TANH, x, bias, overwrite)
