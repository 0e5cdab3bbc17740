"""Fused softmax + cross-entropy on logits with integer labels (array-API reference).

Forward, for logits ``z`` (N, K) and labels ``t`` (N,) in ``0..K-1``::

    m[n]    = max_k z[n, k]                       (for stability; cancels below)
    s[n]    = sum_k exp(z[n, k] - m[n])
    p[n, k] = exp(z[n, k] - m[n]) / s[n]          softmax probabilities
    L       = (1/N) sum_n ( log s[n] - (z[n, t[n]] - m[n]) )     = -(1/N) sum_n log p[n, t[n]]

Backward: ``dL/dz[n, k] = (p[n, k] - [k == t[n]]) / N``, times the upstream ``dloss``.
(Softmax's Jacobian ``p_k (delta_kj - p_j)`` contracted with ``d(-log p_t)/dp_k =
-delta_kt / p_t`` collapses to ``p_j - delta_jt``: no division by a probability,
hence exact and stable where a separate softmax and log would not be.)
"""

from __future__ import annotations

from ... import backend


def forward(logits, labels):
    """Returns ``(loss, probs)``: the mean cross-entropy (0-d array) and softmax (N, K)."""
    xp = backend.namespace(logits)
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    e = xp.exp(shifted)
    s = xp.sum(e, axis=1, keepdims=True)
    probs = e / s
    target_logit = xp.take_along_axis(shifted, xp.reshape(labels, (-1, 1)), axis=1)
    loss = xp.mean(xp.log(s) - target_logit)
    return loss, probs


def backward(dloss, probs, labels):
    """``dlogits = dloss * (probs - onehot(labels)) / N`` with shape (N, K)."""
    xp = backend.namespace(probs)
    n, k = probs.shape
    onehot = xp.reshape(labels, (-1, 1)) == xp.reshape(xp.arange(k, dtype=labels.dtype), (1, -1))
    return xp.where(onehot, probs - 1.0, probs) * (dloss / n)
