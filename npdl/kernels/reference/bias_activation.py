"""Bias add and activation in one call, ``y = f(a + b)`` (array-API reference).

A layer's pre-activation is usually a fresh matrix product plus a bias broadcast over
the rows, ``a = x W`` (N, K) and ``b`` (K,), followed by an elementwise ``f``. Written
as array expressions that is one pass for the bias and one or more for ``f``:
sigmoid, computed as ``(tanh(z / 2) + 1) / 2`` (see :mod:`npdl.layers.activations`),
is three. On a GPU each pass is a kernel launch, and a small batch's step is bound by
launches, so the GPU version does the whole ``f(a + b)`` in one.

Every function takes the pre-activation ``a`` (any shape), the bias ``b`` (shape
``a.shape[-1:]`` and ``a``'s dtype, as a layer's parameter is; broadcast over the other
axes) or ``None``, and ``overwrite``: with
``True`` it may use ``a``'s memory (a layer passes a product it no longer needs: the
reference adds the bias in place, the GPU kernel writes ``y`` over ``a``); with
``False`` ``a`` is left as it is. ``linear`` returns ``a`` itself when there is no bias.
"""

from __future__ import annotations

from ... import backend


def biased(a, b=None, overwrite=False):
    """``a + b``: in place when ``overwrite`` (no new array), ``a`` itself when ``b`` is None."""
    if b is None:
        return a
    if overwrite:
        a += b
        return a
    return a + b


def sigmoid(a, b=None, overwrite=False):
    xp = backend.namespace(a)
    y = xp.tanh(biased(a, b, overwrite) * 0.5)
    y += 1.0
    y *= 0.5
    return y


def tanh(a, b=None, overwrite=False):
    return backend.namespace(a).tanh(biased(a, b, overwrite))


def relu(a, b=None, overwrite=False):
    return backend.namespace(a).maximum(biased(a, b, overwrite), 0.0)


def linear(a, b=None, overwrite=False):
    return biased(a, b, overwrite)
