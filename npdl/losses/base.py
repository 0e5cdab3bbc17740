"""What every loss shares, and the checks of predictions against targets."""

from __future__ import annotations

from .. import backend, checks
from ..errors import LabelError

REDUCTIONS = ("mean", "batch_mean", "sum")


def reduce(xp, elementwise, reduction):
    """Turn per-element losses (N, ...) into one number.

    * ``"mean"``: mean over every element (Keras's MSE and BCE);
    * ``"batch_mean"``: sum over all but the batch axis, mean over the batch (the
      Theano dA's cross-entropy "summed over pixels, averaged over the batch");
    * ``"sum"``: plain sum.
    """
    if reduction == "mean":
        return xp.mean(elementwise)
    if reduction == "batch_mean":
        return xp.sum(elementwise) / elementwise.shape[0]
    return xp.sum(elementwise)


def reduce_scale(shape, reduction) -> float:
    """d(reduced)/d(each element): the constant that :func:`reduce` multiplies every element by."""
    if reduction == "mean":
        size = 1
        for d in shape:
            size *= int(d)
        return 1.0 / size
    if reduction == "batch_mean":
        return 1.0 / int(shape[0])
    return 1.0


def check_reduction(reduction, who):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{who}: reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    return reduction


def check_labels(logits, labels, who, check_range=True):
    """Integer labels of shape (N,) in ``0..K-1`` for predictions (N, K).

    The range check reads two numbers back (min and max); pass ``check_range=False``
    where the labels were validated once up front (a training loop on a GPU).
    """
    checks.check_rank(logits, 2, who, what="predictions", layout="(batch, classes)")
    checks.check_array(labels, who, "labels")
    if not backend.is_integer(labels):
        raise LabelError(f"{who}: labels must be integer class indices, got dtype {backend.dtype_name(labels)}")
    if labels.ndim != 1 or int(labels.shape[0]) != int(logits.shape[0]):
        raise LabelError(f"{who}: labels must have shape ({int(logits.shape[0])},) to match predictions "
                         f"{tuple(int(d) for d in logits.shape)}, got {tuple(int(d) for d in labels.shape)}")
    checks.check_same_device(labels, logits, who, what="labels")
    if check_range and labels.shape[0] > 0:
        xp = backend.namespace(labels)
        lo, hi, k = int(xp.min(labels)), int(xp.max(labels)), int(logits.shape[1])
        if lo < 0 or hi >= k:
            raise LabelError(f"{who}: labels must be in 0..{k - 1} for {k} classes, got values in {lo}..{hi}")


class Loss:
    """A loss object: ``forward(prediction, target) -> 0-d array``, ``backward(dloss=1.0) -> dprediction``."""

    def __init__(self, name=None):
        self.name = name or type(self).__name__
        self.cache = None

    def forward(self, pred, target):
        raise NotImplementedError

    def backward(self, dloss=1.0):
        raise NotImplementedError

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def get_config(self) -> dict:
        return {}
