"""Activation backward passes from the cached output ``y`` (array-API reference).

Sigmoid, tanh and ReLU have slopes that are functions of their own output, so the
forward pass caches ``y`` and the backward pass is one elementwise expression of
``dy`` (the upstream gradient) and ``y``, both of the layer's output shape:

* sigmoid: ``y = 1 / (1 + e^-x)``, ``dy/dx = y (1 - y)``:  ``dx = dy * y * (1 - y)``
* tanh:    ``y = tanh x``, ``dy/dx = 1 - y^2``:           ``dx = dy * (1 - y * y)``
* ReLU:    ``y = max(x, 0)``, slope 1 where ``y > 0``, else 0 (0 at the kink):
  ``dx = dy * [y > 0]``

(the derivations are in :mod:`npdl.layers.activations`). Written as NumPy-style
expressions each makes two or three passes and as many temporaries; the compiled
versions make one pass and one output array.
"""

from __future__ import annotations

from ... import backend


def sigmoid(dy, y):
    return dy * y * (1.0 - y)


def tanh(dy, y):
    return dy * (1.0 - y * y)


def relu(dy, y):
    # a product with the 0/1 mask in dy's dtype, not where(y > 0, dy, 0): the same numbers, and
    # NumPy's where measured 20x slower on a (64, 32, 28, 28) batch
    xp = backend.namespace(dy)
    return dy * xp.astype(y > 0, dy.dtype)
