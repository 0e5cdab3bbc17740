"""Metrics: reported, never differentiated."""

from __future__ import annotations

from .. import backend
from .base import check_labels


def zero_one_error(scores, labels, check_range=True):
    """Fraction of rows whose highest score is not the label (the Theano tutorials' ``errors``).

    ``scores`` (N, K) logits or probabilities, ``labels`` (N,) ints. Returns a 0-d
    array in ``scores``' dtype, left on the device (no host synchronisation).
    """
    check_labels(scores, labels, "zero_one_error", check_range)
    xp = backend.namespace(scores)
    wrong = xp.argmax(scores, axis=1) != labels
    return xp.mean(xp.astype(wrong, scores.dtype))


def accuracy(scores, labels, check_range=True):
    """``1 - zero_one_error``."""
    return 1.0 - zero_one_error(scores, labels, check_range)
