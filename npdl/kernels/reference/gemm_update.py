"""Fused "product gradient + update", the readable reference.

Many weight gradients are a matrix product: a dense layer's ``dW = x^T dy`` with
``x`` (N, n_in) and ``dy`` (N, n_out). Plain SGD (with an L2 penalty or decoupled
weight decay folded in) then does ``W <- beta W - lr dW``. Forming ``dW`` first
costs a (n_in, n_out) temporary and a second pass over ``W``; a GEMM computes
``C <- alpha A^T B + beta C`` in one pass, which is the whole update with
``alpha = -lr``. At small batches that pass is most of the step's time.

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
