"""Cross-entropy for classifiers: fused on logits, or as negative log-likelihood on probabilities."""

from __future__ import annotations

from .. import backend, checks, kernels
from .base import Loss, check_labels


@kernels.accelerated("softmax_xent.forward")
def softmax_cross_entropy_forward(logits, labels):
    r"""Mean cross-entropy of softmax(``logits``) against integer ``labels``.

    ``logits`` $z$ (N, K) float, ``labels`` $t$ (N,) int in ``0..K-1``:

    * $m[n] = \max_{k} z[n, k]$, subtracted for stability: it cancels below;
    * $s[n] = \sum_{k} \exp(z[n, k] - m[n])$: every term $\le 1$, so no overflow;
    * $p[n, k] = \frac{\exp(z[n, k] - m[n])}{s[n]}$: the softmax probabilities, (N, K);
    * $\log p[n, k] = (z[n, k] - m[n]) - \log s[n]$: the log-softmax, never $\log 0$;
    * $L = -\frac{1}{N} \sum_{n} \log p[n, t[n]]$ (a 0-d array).

    The loss takes the logarithm of the probabilities from the log-softmax line, not
    ``log(p)``: a probability that underflows to 0 (a logit far below the row's maximum)
    still has a finite log. Returns ``(L, cache)`` with cache ``(probs, labels)``.
    Accelerated by the ``softmax_xent`` kernels (one pass per row).
    """
    xp = backend.namespace(logits)
    shifted = logits - xp.max(logits, axis=1, keepdims=True)  # z - m
    e = xp.exp(shifted)
    s = xp.sum(e, axis=1, keepdims=True)  # (N, 1)
    probs = e / s
    # log p[n, t[n]]: pick the target's shifted logit first, so the log-softmax is only (N, 1)
    log_p_target = xp.take_along_axis(shifted, xp.reshape(labels, (-1, 1)), axis=1) - xp.log(s)
    loss = -xp.mean(log_p_target)
    return loss, (probs, labels)


@kernels.accelerated("softmax_xent.backward", on=1)
def softmax_cross_entropy_backward(dloss, cache):
    r"""$\frac{\partial L}{\partial z[n, k]} = dloss \cdot \frac{p[n, k] - \mathbb{1}[k = t[n]]}{N}$, shape (N, K)
    (``probs`` is $p$, ``labels`` is $t$).

    Derivation: with $p = \text{softmax}(z)$ and $L_n = -\log p[t]$ for one row,

    $$
    \frac{\partial L_n}{\partial z[j]} = \sum_{k} \frac{\partial L_n}{\partial p[k]} \frac{\partial p[k]}{\partial z[j]} = -\frac{1}{p[t]} p[t] (\delta_{tj} - p[j]) = p[j] - \delta_{tj}
    $$

    and the mean over the batch divides by N. No division by a probability survives, which is
    why the fused loss is exact and stable where a softmax layer followed by NLL is not.
    ``dloss`` is a Python number or a 0-d array of ``probs``' namespace and dtype.
    """
    probs, labels = cache
    xp = backend.namespace(probs)
    n, k = probs.shape
    onehot = xp.reshape(labels, (-1, 1)) == xp.reshape(xp.arange(k, dtype=labels.dtype), (1, -1))  # (N, K)
    return (probs - xp.astype(onehot, probs.dtype)) * (dloss / n)


def nll_forward(probs, labels, eps=0.0):
    r"""Negative log-likelihood of class probabilities (the Theano tutorials' cost on a softmax output).

    ``probs`` $p$ (N, K) with rows summing to 1, ``labels`` $t$ (N,):
    $L = -\frac{1}{N} \sum_{n} \log p[n, t[n]]$. ``eps`` > 0 clips the picked
    probability from below (avoids log 0). Cache: ``(picked, labels, shape)``.
    """
    xp = backend.namespace(probs)
    picked = xp.take_along_axis(probs, xp.reshape(labels, (-1, 1)), axis=1)
    if eps > 0:
        picked = xp.maximum(picked, eps)
    return -xp.mean(xp.log(picked)), (picked, labels, tuple(probs.shape))


def nll_backward(dloss, cache):
    r"""Only the picked probability of each row enters L:
    $\frac{\partial L}{\partial p[n, k]} = -\frac{dloss}{N \cdot p[n, t[n]]}$ if $k = t[n]$, else 0
    (``probs`` is $p$, ``labels`` is $t$).
    Shape (N, K). (This is why a softmax layer followed by NLL is less stable than the fused loss.)"""
    picked, labels, shape = cache
    xp = backend.namespace(picked)
    n, k = shape
    onehot = xp.reshape(labels, (-1, 1)) == xp.reshape(xp.arange(k, dtype=labels.dtype), (1, -1))
    return xp.where(onehot, (-dloss / n) / picked, 0.0)


class SoftmaxCrossEntropy(Loss):
    """Softmax + cross-entropy on logits (N, K) with integer labels (N,): the classifier loss."""

    def __init__(self, check_range=True, name=None):
        super().__init__(name)
        self.check_range = check_range

    def forward(self, logits, labels):
        who = "SoftmaxCrossEntropy"
        checks.check_float(logits, who, "logits")
        check_labels(logits, labels, who, self.check_range)
        loss, self.cache = softmax_cross_entropy_forward(logits, labels)
        return loss

    def backward(self, dloss=1.0):
        return softmax_cross_entropy_backward(dloss, self.cache)


class NegativeLogLikelihood(Loss):
    """NLL on probabilities (N, K), e.g. after a :class:`npdl.layers.Softmax` layer."""

    def __init__(self, eps=0.0, check_range=True, name=None):
        super().__init__(name)
        self.eps, self.check_range = float(eps), check_range

    def forward(self, probs, labels):
        who = "NegativeLogLikelihood"
        checks.check_float(probs, who, "probabilities")
        check_labels(probs, labels, who, self.check_range)
        loss, self.cache = nll_forward(probs, labels, self.eps)
        return loss

    def backward(self, dloss=1.0):
        return nll_backward(dloss, self.cache)

    def get_config(self):
        return {"eps": self.eps}
