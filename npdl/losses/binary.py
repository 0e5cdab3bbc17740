"""Binary cross-entropy: on logits (stable) and on probabilities (clipped, as the Theano dA)."""

from __future__ import annotations

from .. import backend, checks, kernels
from .base import Loss, check_reduction, reduce, reduce_scale


@kernels.accelerated("bce_logits.forward")
def bce_logits_forward(z, t, reduction="mean"):
    r"""Cross-entropy of $\sigma(z)$ against targets $t$ in [0, 1], from the logits.

    Per element $l = -(t \log s + (1 - t) \log(1 - s))$ with $s = \sigma(z)$, which
    simplifies to $l = \max(z, 0) - z t + \log(1 + e^{-|z|})$: no exp overflows and
    no log of 0, for any $z$. Shapes: ``z``, ``t`` equal, any rank.
    Cache: ``(z, t, scale)``. The named operation ``bce_logits.forward``
    (``npdl/kernels/numba/bce_logits.py``: float32 on the CPU, with a vectorised ``log1p(exp(-|z|))``).
    """
    xp = backend.namespace(z, t)
    elementwise = xp.maximum(z, 0.0) - z * t + xp.log1p(xp.exp(-xp.abs(z)))
    return reduce(xp, elementwise, reduction), (z, t, reduce_scale(z.shape, reduction))


@kernels.accelerated("bce_logits.backward", on=1)
def bce_logits_backward(dloss, cache):
    r"""$\frac{\partial l}{\partial z} = s - t$ (the sigmoid's slope $s (1 - s)$ cancels the log's
    $\frac{1}{s}$ and $\frac{1}{1 - s}$), so $dz = dloss \cdot scale \cdot (\sigma(z) - t)$."""
    z, t, scale = cache
    xp = backend.namespace(z)
    s = (xp.tanh(z * 0.5) + 1.0) * 0.5
    return (s - t) * (scale * dloss)


def bce_forward(p, t, reduction="mean", eps=1e-7):
    r"""Cross-entropy of probabilities $p$ against targets $t$ in [0, 1].

    $l = -(t \log pc + (1 - t) \log(1 - pc))$ with $pc = \text{clip}(p, \epsilon, 1 - \epsilon)$ so
    a saturated sigmoid never gives $\log 0$. ``reduction="batch_mean"`` is the Theano
    dA's reconstruction cost. Cache: ``(pc, t, inside, scale)``.
    """
    xp = backend.namespace(p, t)
    pc = xp.clip(p, eps, 1.0 - eps)
    elementwise = -(t * xp.log(pc) + (1.0 - t) * xp.log(1.0 - pc))
    inside = (p > eps) & (p < 1.0 - eps)
    return reduce(xp, elementwise, reduction), (pc, t, inside, reduce_scale(p.shape, reduction))


def bce_backward(dloss, cache):
    r"""$\frac{\partial l}{\partial p} = -\frac{t}{p} + \frac{1 - t}{1 - p} = \frac{p - t}{p (1 - p)}$ inside the clip range,
    and 0 where $p$ was clipped (the clip is flat there). ``dp`` is $dloss \cdot scale$ times that."""
    pc, t, inside, scale = cache
    xp = backend.namespace(pc)
    return xp.where(inside, (pc - t) / (pc * (1.0 - pc)), 0.0) * (scale * dloss)


class _BinaryLoss(Loss):
    forward_fn = backward_fn = None

    def __init__(self, reduction="mean", name=None):
        super().__init__(name)
        self.reduction = check_reduction(reduction, type(self).__name__)

    def forward(self, pred, target):
        who = type(self).__name__
        checks.check_float(pred, who, "prediction")
        checks.check_float(target, who, "target", dtype=backend.dtype_name(pred))
        checks.check_same_shape(pred, target, who)
        checks.check_same_device(target, pred, who, "target")
        loss, self.cache = type(self).forward_fn(pred, target, self.reduction)
        return loss

    def backward(self, dloss=1.0):
        return type(self).backward_fn(dloss, self.cache)

    def get_config(self):
        return {"reduction": self.reduction}


class BinaryCrossEntropyWithLogits(_BinaryLoss):
    """Stable BCE on logits; targets in [0, 1], same shape."""
    forward_fn, backward_fn = bce_logits_forward, bce_logits_backward


class BinaryCrossEntropy(_BinaryLoss):
    """BCE on probabilities (e.g. a sigmoid output), clipped to [1e-7, 1 - 1e-7]."""
    forward_fn, backward_fn = bce_forward, bce_backward
