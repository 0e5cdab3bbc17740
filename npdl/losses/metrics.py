"""Metrics: reported, never differentiated."""

from __future__ import annotations

from .. import backend
from ..errors import ShapeError
from .base import check_labels


def zero_one_error(scores, labels, check_range=True):
    """Fraction of rows whose highest score is not the label (the Theano tutorials' ``errors``).

    ``scores`` (N, K) logits or probabilities, ``labels`` (N,) ints. Returns a 0-d
    array in ``scores``' dtype, left on the device (no host synchronisation).

    A row holding a NaN or an infinity is always wrong, whatever its argmax: ``argmax``
    of a NaN row is the index of its first NaN (class 0 for an all-NaN row), which
    would otherwise score a diverged model as right on every label 0. So
    ``wrong[n] = (argmax_k scores[n, k] != labels[n]) or not all_k isfinite(scores[n, k])``,
    (N,) booleans, and the error is their mean. N must be at least 1.
    """
    check_labels(scores, labels, "zero_one_error", check_range)
    if int(scores.shape[0]) == 0:
        raise ShapeError("zero_one_error: no rows to score (scores have shape "
                         f"{tuple(int(d) for d in scores.shape)}); the error of an empty batch is undefined")
    xp = backend.namespace(scores)
    finite = xp.all(xp.isfinite(scores), axis=1)
    wrong = xp.logical_or(xp.argmax(scores, axis=1) != labels, xp.logical_not(finite))
    return xp.mean(xp.astype(wrong, scores.dtype))


def accuracy(scores, labels, check_range=True):
    """``1 - zero_one_error``: a row holding NaN or an infinity is never right."""
    return 1.0 - zero_one_error(scores, labels, check_range)
