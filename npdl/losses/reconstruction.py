r"""Reconstruction losses for autoencoders: cross-entropy summed over pixels, averaged over the batch.

The Theano denoising autoencoder scores a reconstruction ``z`` (N, D) of inputs ``x``
(N, D) in [0, 1] by

$$
L = -\frac{1}{N} \sum_{n} \sum_{i} \left[ x[n, i] \log z[n, i] + (1 - x[n, i]) \log(1 - z[n, i]) \right]
$$

i.e. the binary cross-entropy *summed* over the D pixels of an example and *averaged*
over the N examples. Its gradient per element is D times that of Keras's mean over
every element, which is why the Theano tutorials' learning rates (0.1 for dA) look large
next to Keras's. Two forms:

* on probabilities (a sigmoid decoder): :func:`reconstruction_cross_entropy_forward`,
  clipped to [eps, 1 - eps] like :func:`npdl.losses.bce_forward`, whose
  ``reduction="batch_mean"`` it is;
* fused on the decoder's pre-activation logits ``a`` (a ``"linear"`` decoder, $z = \sigma(a)$
  left implicit): :func:`reconstruction_cross_entropy_logits_forward`, stable for any ``a``,
  :func:`npdl.losses.bce_logits_forward` with ``reduction="batch_mean"``.

Squared error needs nothing new: :class:`npdl.losses.MeanSquaredError` (Hands-On ML's
``reduce_mean(square(outputs - X))`` is its default ``reduction="mean"``; ``"batch_mean"``
sums over pixels). The targets are the *clean* inputs: ``model.fit(x, x)``.
"""

from __future__ import annotations

from .. import backend, checks
from .base import Loss
from .binary import bce_backward, bce_forward, bce_logits_backward, bce_logits_forward


def reconstruction_cross_entropy_forward(z, x, eps=1e-7):
    r"""The Theano dA's cost on reconstructed probabilities ``z`` against the clean input ``x``.

    Shapes: ``z``, ``x`` (N, D), ``x`` in [0, 1]. With $zc = \text{clip}(z, \epsilon, 1 - \epsilon)$,
    $L = \frac{1}{N} \sum_{n} \sum_{i} -(x \log zc + (1 - x) \log(1 - zc))$ (0-d array): the sum over
    all elements divided by N, which is ``bce_forward(z, x, "batch_mean")``.
    Cache: that of :func:`npdl.losses.bce_forward`, ``(zc, x, inside, 1/N)``.
    """
    return bce_forward(z, x, "batch_mean", eps)


def reconstruction_cross_entropy_backward(dloss, cache):
    r"""Each ``z[n, i]`` enters one term of one example's sum, and the batch mean divides by N:

    $$
    \frac{\partial L}{\partial z[n, i]} = \frac{1}{N} \left( -\frac{x}{z} + \frac{1 - x}{1 - z} \right) = \frac{1}{N} \frac{z - x}{z (1 - z)}
    $$

    inside the clip range (0 where ``z`` was clipped: the clip is flat there), times
    ``dloss``. Shape (N, D). Followed by a sigmoid decoder's slope $z (1 - z)$ this is
    $\frac{z - x}{N}$ -- the fused form below computes exactly that without the division.
    """
    return bce_backward(dloss, cache)


def reconstruction_cross_entropy_logits_forward(a, x):
    r"""The same cost, fused with the sigmoid, on the decoder's pre-activation ``a`` (N, D).

    With $z = \sigma(a)$, $-(x \log z + (1 - x) \log(1 - z)) = \max(a, 0) - a x + \log(1 + e^{-|a|})$
    (no overflow, no log 0, for any ``a``); ``L`` sums that over every element and divides
    by N. Cache: that of :func:`npdl.losses.bce_logits_forward`, ``(a, x, 1/N)``.
    """
    return bce_logits_forward(a, x, "batch_mean")


def reconstruction_cross_entropy_logits_backward(dloss, cache):
    r"""$\frac{\partial L}{\partial a[n, i]} = \frac{1}{N} (\sigma(a[n, i]) - x[n, i])$, times ``dloss``; shape (N, D).

    ($-x \log z - (1 - x) \log(1 - z)$ has derivative $\frac{z - x}{z (1 - z)}$ in $z$, and
    $\frac{\partial z}{\partial a} = z (1 - z)$ cancels the denominator.)
    """
    return bce_logits_backward(dloss, cache)


class _ReconstructionLoss(Loss):
    forward_fn = backward_fn = None

    def _check(self, pred, target):
        who = type(self).__name__
        checks.check_float(pred, who, "reconstruction")
        checks.check_rank(pred, 2, who, "reconstruction", layout="(batch, features)")
        checks.check_float(target, who, "target", dtype=backend.dtype_name(pred))
        checks.check_same_shape(pred, target, who, ("reconstruction", "target"))
        checks.check_same_device(target, pred, who, "target")

    def backward(self, dloss=1.0):
        return type(self).backward_fn(dloss, self.cache)


class ReconstructionCrossEntropy(_ReconstructionLoss):
    """The Theano dA's reconstruction cost on probabilities (N, D) from a sigmoid decoder;
    targets are the clean inputs in [0, 1]. Clipped to [eps, 1 - eps]."""

    backward_fn = staticmethod(reconstruction_cross_entropy_backward)

    def __init__(self, eps: float = 1e-7, name=None):
        super().__init__(name)
        if not 0.0 < float(eps) < 0.5:
            raise ValueError(f"ReconstructionCrossEntropy: eps must be in (0, 0.5), got {eps}")
        self.eps = float(eps)

    def forward(self, pred, target):
        self._check(pred, target)
        loss, self.cache = reconstruction_cross_entropy_forward(pred, target, self.eps)
        return loss

    def get_config(self):
        return {"eps": self.eps}


class ReconstructionCrossEntropyWithLogits(_ReconstructionLoss):
    """The same cost fused with the sigmoid, on a ``"linear"`` decoder's logits (N, D): stable."""

    backward_fn = staticmethod(reconstruction_cross_entropy_logits_backward)

    def forward(self, pred, target):
        self._check(pred, target)
        loss, self.cache = reconstruction_cross_entropy_logits_forward(pred, target)
        return loss


#: names for :func:`npdl.losses.get_loss` (squared error is ``"mse"``, :class:`MeanSquaredError`)
RECONSTRUCTION_LOSSES = {
    "reconstruction_cross_entropy": ReconstructionCrossEntropy,
    "reconstruction_cross_entropy_logits": ReconstructionCrossEntropyWithLogits,
}
