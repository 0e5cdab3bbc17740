"""Mean squared error."""

from __future__ import annotations

from .. import backend, checks
from .base import Loss, check_reduction, reduce, reduce_scale


def mse_forward(pred, target, reduction="mean"):
    r"""$L = \text{reduce}((pred - target)^2)$; ``pred`` and ``target`` any equal shapes.

    With ``reduction="mean"`` (Keras) $L = \frac{1}{M} \sum (pred - target)^2$ over all M
    elements; ``"batch_mean"`` sums each example then averages over the batch.
    Cache: ``(diff, scale)`` with $scale = \frac{\partial L}{\partial (\text{each squared term})}$.
    """
    xp = backend.namespace(pred, target)
    diff = pred - target
    return reduce(xp, diff * diff, reduction), (diff, reduce_scale(diff.shape, reduction))


def mse_backward(dloss, cache):
    r"""$\frac{\partial}{\partial pred} (pred - target)^2 = 2 (pred - target)$, times the reduction's ``scale``:
    $dpred = dloss \cdot 2 \cdot scale \cdot diff$ (same shape as ``pred``)."""
    diff, scale = cache
    return diff * (2.0 * scale * dloss)


class MeanSquaredError(Loss):
    def __init__(self, reduction="mean", name=None):
        super().__init__(name)
        self.reduction = check_reduction(reduction, "MeanSquaredError")

    def forward(self, pred, target):
        who = "MeanSquaredError"
        checks.check_float(pred, who, "prediction")
        checks.check_float(target, who, "target", dtype=backend.dtype_name(pred))
        checks.check_same_shape(pred, target, who)
        checks.check_same_device(target, pred, who, "target")
        loss, self.cache = mse_forward(pred, target, self.reduction)
        return loss

    def backward(self, dloss=1.0):
        return mse_backward(dloss, self.cache)

    def get_config(self):
        return {"reduction": self.reduction}
