"""Bias add and activation in one launch, numba.cuda version of :mod:`npdl.kernels.reference.bias_activation`.

One thread per element of ``a`` (read as flat, C-ordered), whose bias is
``b[i % K]`` with ``K = a.shape[-1]``. CuPy would launch one kernel for the bias add
and one for ``tanh``, and for the sigmoid three more (``* 1/2`` before the ``tanh``, ``+ 1``
and ``* 1/2`` after it); this is one launch and no temporaries. The reference's operations in its order, in the arrays'
dtype (typed constants, never a float64 literal); the GPU's ``tanhf``/``tanh`` are
not NumPy's, so results agree with the reference to round-off. ReLU keeps NumPy's
``maximum`` semantics: ``nan`` stays ``nan`` and ``-0.0`` becomes ``0.0``.

``linear`` is the reference's: its bias add is already one CuPy launch.
"""

from __future__ import annotations

import math

from numba import cuda

from ... import backend
from ..reference import bias_activation as _reference
from ..reference.bias_activation import linear  # noqa: F401
from . import launch


@cuda.jit(cache=True)
def _sigmoid(a, b, y):
    i = cuda.grid(1)
    if i < y.size:
        half = y.dtype.type(0.5)
        y[i] = (math.tanh((a[i] + b[i % b.size]) * half) + y.dtype.type(1)) * half


@cuda.jit(cache=True)
def _sigmoid_no_bias(a, y):
    i = cuda.grid(1)
    if i < y.size:
        half = y.dtype.type(0.5)
        y[i] = (math.tanh(a[i] * half) + y.dtype.type(1)) * half


@cuda.jit(cache=True)
def _tanh(a, b, y):
    i = cuda.grid(1)
    if i < y.size:
        y[i] = math.tanh(a[i] + b[i % b.size])


@cuda.jit(cache=True)
def _relu(a, b, y):
    i = cuda.grid(1)
    if i < y.size:
        v = a[i] + b[i % b.size]
        y[i] = y.dtype.type(0) if v <= 0 else v  # nan <= 0 is false: nan passes, as in maximum


def _run(kernel, kernel_no_bias, reference, a, b, overwrite):
    if a.ndim == 0 or b is not None and (b.dtype != a.dtype or tuple(b.shape) != tuple(a.shape[-1:])):
        return reference(a, b, overwrite)  # promotion or broadcasting the layers never ask for
    if kernel_no_bias is None and b is None:
        return reference(a, b, overwrite)  # one CuPy launch already (tanh, maximum)
    xp = backend.namespace(a)
    if not overwrite or not a.flags.c_contiguous:
        y = xp.empty(a.shape, dtype=a.dtype)
        a = backend.row_major(a)
    else:
        y = a  # each thread reads its element before writing it: in place is safe
    flat_a, flat_y = xp.reshape(a, (-1,)), xp.reshape(y, (-1,))
    if b is None:
        launch(kernel_no_bias, y.size, flat_a, flat_y)
    else:
        launch(kernel, y.size, flat_a, b, flat_y)
    return y


def sigmoid(a, b=None, overwrite=False):
    return _run(_sigmoid, _sigmoid_no_bias, _reference.sigmoid, a, b, overwrite)


def tanh(a, b=None, overwrite=False):
    return _run(_tanh, None, _reference.tanh, a, b, overwrite)


def relu(a, b=None, overwrite=False):
    return _run(_relu, None, _reference.relu, a, b, overwrite)
