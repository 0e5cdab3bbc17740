"""Fused softmax + cross-entropy on a GPU: numba.cuda versions of
``npdl.losses.cross_entropy.softmax_cross_entropy_forward`` / ``_backward`` (same arguments,
results and cache).

* **forward**: one thread per row ``n`` makes the definition's passes over its K logits
  -- the maximum ``m``, the exponentials ``exp(z - m)`` (written to ``probs``) and their
  sum ``s``, the division by ``s``, and the row's loss ``log s - (z[t] - m)`` -- with no
  (N, K) temporaries besides ``probs``. A classifier has a handful of classes, so a
  thread per row is enough work and needs no reduction across threads. The loss is
  then the mean of the N row losses, by the namespace's ``mean`` (on the device).
* **backward**: one thread per element computes ``(p - [k == t]) * dloss / N``.

Everything is computed in the logits' dtype, as in the definition; the GPU's ``expf``
and ``logf`` are within a few ulp of NumPy's, so results agree to round-off. Logits that
are not a 2-D float array, and an empty batch, are declined (``NotImplemented``: the
definition runs).
"""

from __future__ import annotations

import math

from numba import cuda

from ... import backend
from . import launch


@cuda.jit(cache=True)
def _forward(logits, labels, probs, row_loss):
    n = cuda.grid(1)
    if n >= logits.shape[0]:
        return
    K = logits.shape[1]
    m = logits[n, 0]
    for k in range(1, K):
        if logits[n, k] > m:
            m = logits[n, k]
    s = logits.dtype.type(0)
    for k in range(K):
        e = math.exp(logits[n, k] - m)  # <= 1: subtracting the maximum cannot overflow
        probs[n, k] = e
        s += e
    for k in range(K):
        probs[n, k] /= s  # divided, not multiplied by 1/s: the definition's rounding
    row_loss[n] = math.log(s) - (logits[n, labels[n]] - m)


@cuda.jit(cache=True)
def _backward(probs, labels, scale, dlogits):
    i = cuda.grid(1)
    if i >= probs.size:
        return
    K = probs.shape[1]
    n, k = i // K, i % K
    p = probs[n, k]
    if k == labels[n]:
        p -= probs.dtype.type(1)  # a typed 1: an int literal would promote float32 to float64
    dlogits[n, k] = p * scale[0]


def _fits(a) -> bool:
    return a.ndim == 2 and a.dtype.kind == "f" and a.shape[0] > 0


def forward(logits, labels):
    """``(loss, (probs, labels))``: the mean cross-entropy (0-d array), softmax (N, K) and the labels."""
    if not _fits(logits):
        return NotImplemented
    xp = backend.namespace(logits)
    row_major_logits, row_major_labels = backend.row_major(logits), backend.row_major(labels)
    N = int(logits.shape[0])
    probs = xp.empty(logits.shape, dtype=logits.dtype)
    row_loss = xp.empty((N,), dtype=logits.dtype)
    launch(_forward, N, row_major_logits, row_major_labels, probs, row_loss)
    return xp.mean(row_loss), (probs, labels)


def backward(dloss, cache):
    """``dlogits = dloss * (probs - onehot(labels)) / N`` with shape (N, K), ``cache = (probs, labels)``.

    ``dloss`` is a Python number or a 0-d array of ``probs``' namespace (what
    ``SoftmaxCrossEntropy.backward`` passes on). ``dloss / N`` goes to the kernel as a
    one-element array of ``probs``' dtype, computed on the device: a 0-d CuPy
    ``dloss`` is never copied to the host, which would wait for the GPU.
    """
    probs, labels = cache
    if not _fits(probs):
        return NotImplemented
    xp = backend.namespace(probs)
    probs, labels = backend.row_major(probs), backend.row_major(labels)
    N = int(probs.shape[0])
    if isinstance(dloss, (int, float)):
        scale = xp.full((1,), dloss / N, dtype=probs.dtype)
    else:
        scale = xp.reshape(xp.asarray(dloss / N, dtype=probs.dtype), (1,))
    dlogits = xp.empty(probs.shape, dtype=probs.dtype)
    launch(_backward, probs.size, probs, labels, scale, dlogits)
    return dlogits
