"""The batch-1 passes over a weight matrix, row by row: ``da W^T``, the rank-1 update, and the two in
one pass, each on one thread or on Numba's threads, all from two row routines compiled once.

At batch 1 a dense layer's backward pass and plain SGD's step read ``W`` twice and write it once:
``dx[i] = sum_j W[i, j] da[j]`` (:func:`npdl.layers.dense.da_times_W_T`), then
``W[i, :] <- beta W[i, :] + (alpha x[i]) da`` (the rank-1 update of
:func:`npdl.optim.sgd.gemm_update_sum`). Both go row by row, so one pass can do both: read row
``i`` once for its ``dx[i]``, and update it while it is in the L1 cache
(:func:`npdl.layers.dense.input_grad_then_update`). Where ``W`` does not fit in the last-level cache
that saves a third of the layer's memory traffic.

Every kernel here calls the same two routines, :func:`row_dot` and :func:`row_update`, each its own
compiled function (so each keeps its own floating-point flags when LLVM inlines it), and a row is
always done by one thread: the serial, the parallel and the fused kernels give the same bits, at
any thread count (``tests/test_updates.py``). The parallel ones share the rows out among Numba's
threads (:mod:`npdl.kernels.numba.threads` sets how many for a training step), for a matrix that
streams from memory, where a second core's share of the bandwidth pays for waking it.
"""

from __future__ import annotations

import numba


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def row_dot(w, v, zero):
    """``sum_j w[j] v[j]``, vectorised by letting the compiler reassociate the sum (partial sums, one
    per vector lane, added at the end): a few last bits from the sum in order, the same bits on a
    given CPU every time. ``zero`` is 0 in the arrays' dtype, so a float32 sum stays float32."""
    s = zero
    for j in range(w.shape[0]):
        s += w[j] * v[j]
    return s


@numba.njit(cache=True, error_model="numpy")
def row_update(row, beta, c, v):
    """``row[j] <- beta row[j] + c v[j]`` in place, each element rounded as the expression is written."""
    for j in range(row.shape[0]):
        row[j] = beta * row[j] + c * v[j]


# -- dx = da W^T: dx[i] = W[i, :] . da

@numba.njit(cache=True, error_model="numpy")
def W_times_da(W, da, dx, zero):
    for i in range(W.shape[0]):
        dx[i] = row_dot(W[i], da, zero)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def W_times_da_parallel(W, da, dx, zero):
    for i in numba.prange(W.shape[0]):
        dx[i] = row_dot(W[i], da, zero)


# -- C <- beta C + alpha x y^T: row i gains (alpha x[i]) y

@numba.njit(cache=True, error_model="numpy")
def rank_one(C, x, y, alpha, beta):
    for i in range(C.shape[0]):
        row_update(C[i], beta, alpha * x[i], y)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def rank_one_parallel(C, x, y, alpha, beta):
    for i in numba.prange(C.shape[0]):
        row_update(C[i], beta, alpha * x[i], y)


# -- both in one pass: dx[i] from row i as it was, then row i updated

@numba.njit(cache=True, error_model="numpy")
def dot_then_update(W, da, dx, x, alpha, beta, zero):
    for i in range(W.shape[0]):
        w = W[i]
        dx[i] = row_dot(w, da, zero)
        row_update(w, beta, alpha * x[i], da)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def dot_then_update_parallel(W, da, dx, x, alpha, beta, zero):
    for i in numba.prange(W.shape[0]):
        w = W[i]
        dx[i] = row_dot(w, da, zero)
        row_update(w, beta, alpha * x[i], da)
