"""L1 and L2 penalties on weights (never biases), added to the loss as the Theano tutorials do."""

from __future__ import annotations

from .. import backend


def l2_penalty_forward(weights, lam):
    r"""$P = \lambda \sum_{i} \sum W_i^2$ over a list of weight arrays (the Theano MLP's
    ``L2_reg * L2_sqr``; Keras's ``l2(lam)``). Cache: ``(weights, lam)``."""
    xp = backend.namespace(*weights)
    # sum(W ** 2) as a dot product of the flattened W with itself: the same number, without an
    # array of squares the size of W (a dense layer's W is megabytes; this runs every step)
    flat = [xp.reshape(W, (-1,)) for W in weights]
    return lam * sum(xp.vecdot(w, w) for w in flat), (weights, lam)


def l2_penalty_backward(dP, cache):
    r"""$\frac{\partial P}{\partial W_i} = 2 \lambda W_i$, one array per weight, each shaped like its ``W_i``."""
    weights, lam = cache
    return [l2_penalty_grad(W, lam * dP) for W in weights]


def l2_penalty_grad(W, lam):
    r"""The gradient of $\lambda \sum W^2$ with respect to ``W``: $2 \lambda W$, shaped like ``W``.
    (``lam`` a Python float, so a float32 ``W`` gives a float32 gradient.)"""
    return W * (2.0 * lam)


def l1_penalty_forward(weights, lam):
    r"""$P = \lambda \sum_{i} \sum |W_i|$. Cache: ``(weights, lam)``."""
    xp = backend.namespace(*weights)
    return lam * sum(xp.sum(xp.abs(W)) for W in weights), (weights, lam)


def l1_penalty_backward(dP, cache):
    r"""$\frac{\partial |w|}{\partial w} = \text{sign}(w)$ (taken as 0 at the kink w = 0), so $\frac{\partial P}{\partial W_i} = \lambda \, \text{sign}(W_i)$."""
    weights, lam = cache
    return [l1_penalty_grad(W, lam * dP) for W in weights]


def l1_penalty_grad(W, lam):
    r"""The gradient of $\lambda \sum |W|$ with respect to ``W``: $\lambda \, \text{sign}(W)$ (0 where $W = 0$)."""
    return backend.namespace(W).sign(W) * lam


def regularized_weights(layers) -> list[tuple[object, str]]:
    """``(layer, name)`` of every trainable weight a penalty applies to (biases excluded)."""
    return [(layer, name) for layer in layers for name in getattr(layer, "weight_names", ())
            if name in layer.params]
