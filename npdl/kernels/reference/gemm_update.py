"""Fused "product gradient + update", the readable reference.

Many weight gradients are a matrix product: a dense layer's ``dW = x^T dy`` with
``x`` (N, n_in) and ``dy`` (N, n_out). Plain SGD (with an L2 penalty or decoupled
weight decay folded in) then does ``W <- beta W - lr dW``. Forming ``dW`` first
costs a (n_in, n_out) temporary and a second pass over ``W``; a GEMM computes
``C <- alpha A^T B + beta C`` in one pass, which is the whole update with
``alpha = -lr``. At small batches that pass is most of the step's time.

Some weights are used twice, so their gradient is a *sum* of products: a tied
autoencoder's ``dW = x~^T dA_enc + dA_dec^T h``. :func:`gemm_update_sum` applies
``W <- beta W + alpha sum_p A_p^T B_p``, again without forming the sum.

This reference is the specification the compiled versions are tested against.
"""

from __future__ import annotations


def gemm_update(C, A, B, alpha: float, beta: float = 1.0):
    """``C <- beta * C + alpha * (A.T @ B)`` in place; returns ``C``.

    Shapes: ``A`` (N, M), ``B`` (N, K), ``C`` (M, K); ``alpha`` and ``beta`` are Python floats.
    """
    if beta != 1.0:
        C *= beta
    C += alpha * (A.T @ B)
    return C


def gemm_update_sum(C, pairs, alpha: float, beta: float = 1.0):
    """``C <- beta * C + alpha * sum_p (A_p.T @ B_p)`` in place for ``pairs = [(A_1, B_1), ...]``; returns ``C``.

    Each ``A_p`` is (N_p, M) and ``B_p`` (N_p, K); the batch sizes ``N_p`` may differ.
    Here: one :func:`gemm_update` per pair, ``beta`` applied with the first.
    """
    for index, (A, B) in enumerate(pairs):
        gemm_update(C, A, B, alpha, beta if index == 0 else 1.0)
    return C
