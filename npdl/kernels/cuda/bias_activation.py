"""Bias add and activation in one launch on a GPU: numba.cuda versions of ``npdl.layers.activations``'
``sigmoid_forward``, ``tanh_forward`` and ``relu_forward`` (arguments ``(x, *, bias=None,
overwrite=False)``, result ``(y, cache)`` with ``cache = y``).

One thread per element of ``x`` (read as flat, C-ordered), whose bias is
``bias[i % K]`` with ``K = x.shape[-1]``. CuPy would launch one kernel for the bias add
and one for ``tanh``, and for the sigmoid three more (``* 1/2`` before the ``tanh``, ``+ 1``
and ``* 1/2`` after it); this is one launch and no temporaries. The definitions' operations
in their order, in the arrays' dtype (typed constants, never a float64 literal); the GPU's
``tanhf``/``tanh`` are not NumPy's, so results agree with the definitions to round-off. ReLU
keeps NumPy's ``maximum`` semantics: ``nan`` stays ``nan`` and ``-0.0`` becomes ``0.0``. With
``overwrite`` ``y`` is written over ``x`` (when ``x`` is C-contiguous).

Declined (``NotImplemented``: the definition runs): a 0-d ``x``, a ``bias`` of another dtype
or shape than ``x.shape[-1:]`` (promotion or broadcasting the layers never ask for), and
tanh and ReLU without a bias, which are one CuPy launch already.
"""

from __future__ import annotations

import math

from numba import cuda

from ... import backend
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


def _run(kernel, kernel_no_bias, a, b, overwrite):
    if a.ndim == 0 or a.dtype.kind != "f" or b is not None and (b.dtype != a.dtype
                                                                  or tuple(b.shape) != tuple(a.shape[-1:])):
        return NotImplemented  # promotion or broadcasting the layers never ask for
    if kernel_no_bias is None and b is None:
        return NotImplemented  # one CuPy launch already (tanh, maximum)
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
    return y, y


def sigmoid(x, *, bias=None, overwrite=False):
    """``(y, y)`` with ``y = (tanh((x + bias) / 2) + 1) / 2``."""
    return _run(_sigmoid, _sigmoid_no_bias, x, bias, overwrite)


def tanh(x, *, bias=None, overwrite=False):
    """``(y, y)`` with ``y = tanh(x + bias)``."""
    return _run(_tanh, None, x, bias, overwrite)


def relu(x, *, bias=None, overwrite=False):
    """``(y, y)`` with ``y = max(x + bias, 0)``."""
    return _run(_relu, None, x, bias, overwrite)
