"""Fused softmax + cross-entropy, Numba CPU version of :mod:`npdl.kernels.reference.softmax_xent`.

One pass per row computes the maximum, the exponentials, their sum, the
probabilities and the row's loss, with no (N, K) temporaries besides ``probs``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import PARALLEL_THRESHOLD


@numba.njit(cache=True, inline="always")
def _row_forward(logits, labels, probs, row_loss, n):
    K = logits.shape[1]
    m = logits[n, 0]
    for k in range(1, K):
        if logits[n, k] > m:
            m = logits[n, k]
    s = 0.0
    for k in range(K):
        e = math.exp(logits[n, k] - m)
        probs[n, k] = e
        s += e
    inv = 1.0 / s
    for k in range(K):
        probs[n, k] *= inv
    row_loss[n] = math.log(s) - (logits[n, labels[n]] - m)


@numba.njit(cache=True)
def _forward_serial(logits, labels, probs, row_loss):
    for n in range(logits.shape[0]):
        _row_forward(logits, labels, probs, row_loss, n)


@numba.njit(cache=True, parallel=True)
def _forward_parallel(logits, labels, probs, row_loss):
    for n in numba.prange(logits.shape[0]):
        _row_forward(logits, labels, probs, row_loss, n)


@numba.njit(cache=True)
def _backward(probs, labels, scale, dlogits):
    N, K = probs.shape
    for n in range(N):
        for k in range(K):
            dlogits[n, k] = probs[n, k] * scale
        dlogits[n, labels[n]] -= scale


def forward(logits, labels):
    logits = np.ascontiguousarray(logits)
    probs = np.empty_like(logits)
    row_loss = np.empty(logits.shape[0], dtype=np.float64)  # summed in float64 below
    run = _forward_parallel if logits.size >= PARALLEL_THRESHOLD else _forward_serial
    run(logits, labels, probs, row_loss)
    return np.asarray(row_loss.mean(), dtype=logits.dtype), probs


def backward(dloss, probs, labels):
    dlogits = np.empty_like(probs)
    _backward(probs, labels, float(dloss) / probs.shape[0], dlogits)
    return dlogits
