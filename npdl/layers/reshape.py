"""Flatten: (N, d1, d2, ...) -> (N, d1 * d2 * ...)."""

from __future__ import annotations

from .. import backend, checks
from .base import Layer


def flatten_forward(x):
    """Keep the batch axis, merge the others (row-major, as NumPy and the Theano
    tutorials do). A reshape moves no values, so the cache is only the input shape."""
    xp = backend.namespace(x)
    return xp.reshape(x, (x.shape[0], -1)), tuple(x.shape)


def flatten_backward(dy, cache):
    r"""A reshape is a permutation-free relabelling of the same numbers: each ``dx``
    element is the ``dy`` element it became, so $dx = \text{reshape}(dy, x.shape)$."""
    xp = backend.namespace(dy)
    return xp.reshape(dy, cache)


class Flatten(Layer):
    """Flattens every axis but the first (the batch)."""

    def forward(self, x, training=False):
        checks.check_rank(x, (2, 3, 4, 5), f"Flatten '{self.name}'", layout="with a leading batch axis")
        y, self.cache = flatten_forward(x)
        return y

    def backward(self, dy):
        return flatten_backward(dy, self.cache)

    def work(self, input_shape, need_input_grad=True, dtype=None) -> dict:
        """No FLOPs, nothing kept: the output is the input relabelled (:mod:`npdl.bench.work`)."""
        return {"forward": 0, "backward": 0, "view": True}

    def output_shape(self, input_shape):
        size = 1
        for d in input_shape:
            size *= int(d)
        return (size,)
