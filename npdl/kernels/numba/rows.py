"""The batch-1 passes over a weight matrix, row by row: ``x W``, ``da W^T``, the rank-1 update, and the
two latter in one pass, each on one thread or on Numba's threads, all from three row routines
compiled once.

At batch 1 a dense layer's backward pass and plain SGD's step read ``W`` twice and write it once:
``dx[i] = sum_j W[i, j] da[j]`` (:func:`npdl.layers.dense.da_times_W_T`), then
``W[i, :] <- beta W[i, :] + (alpha x[i]) da`` (the rank-1 update of
:func:`npdl.optim.sgd.gemm_update_sum`). Both go row by row, so one pass can do both: read row
``i`` once for its ``dx[i]``, and update it while it is in the L1 cache
(:func:`npdl.layers.dense.input_grad_then_update`). Where ``W`` does not fit in the last-level cache
that saves a third of the layer's memory traffic.

``y = x W`` is a sum of rows, ``y = sum_i x[i] W[i, :]``: :func:`rows_into` adds a block of
:data:`BLOCK_ROWS` rows into a partial ``y``, in order of ``i`` and vectorised over the columns
(four rows per pass over the partial, still added one at a time: 1000x1000 in cache on a 2-core
AMD EPYC Zen 1, 130 against 180 us with one row per pass), and the partials are added in order of
their blocks. The blocks are fixed by the shape, not by the threads, so the bits are the same on
one thread as on many, and each thread streams whole rows (a split by columns instead, each
thread reading half of every row, ran at 0.84x the time of one thread where this split runs at
0.57x: 2-core Intel Xeon, 784x1000 and 1000x1000).

Every kernel here calls the same routines, :func:`row_dot`, :func:`row_update` and :func:`rows_into`,
each its own compiled function (so each keeps its own floating-point flags when LLVM inlines it),
and a row (or a block of ``x W``) is always done by one thread: the serial, the parallel and the
fused kernels give the same bits, at any thread count (``tests/test_updates.py``,
``tests/test_dense_products.py``). The parallel ones share the rows out among Numba's threads
(:data:`npdl.kernels.numba.ONE_THREAD_MAX` says from which size; :mod:`npdl.kernels.numba.threads`
sets how many for a training step).
"""

from __future__ import annotations

import numba
import numpy as np

#: rows of ``W`` per partial sum of ``x W`` (:func:`rows_into`): 1000 rows are 16 blocks, enough to
#: share out evenly, and the partials (16 rows of ``y``) stay in the L1 or L2 cache
BLOCK_ROWS = 64


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


def on_threads(size: int, bound: int) -> bool:
    """Whether a pass over a matrix of ``size`` elements takes the parallel loop: above ``bound``
    (:data:`npdl.kernels.numba.ONE_THREAD_MAX`) and with more than one Numba thread for this thread.
    On one thread the serial loop is the faster of the two, with the same bits: ``sda_b1``'s step
    took 1.37-1.40 ms with it against 1.55-1.57 ms with the parallel loops held to one thread
    (2-core Intel Xeon), as the training step runs them when it chooses one thread under load."""
    return size > bound and numba.get_num_threads() > 1


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


# -- y = x W: y = sum_i x[i] W[i, :], in fixed blocks of rows, the blocks' partial sums added in order

@numba.njit(cache=True, error_model="numpy")
def rows_into(x, W, out, start, stop):
    """``out <- sum_{start <= i < stop} x[i] W[i, :]``, each ``out[j]`` summed in order of ``i``."""
    out[:] = 0
    i = start
    while i + 4 <= stop:  # four rows of W per pass over out: out is loaded and stored a quarter as often
        c0, c1, c2, c3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        w0, w1, w2, w3 = W[i], W[i + 1], W[i + 2], W[i + 3]
        for j in range(out.shape[0]):
            out[j] = (((out[j] + c0 * w0[j]) + c1 * w1[j]) + c2 * w2[j]) + c3 * w3[j]  # still in order of i
        i += 4
    while i < stop:
        c = x[i]
        w = W[i]
        for j in range(out.shape[0]):
            out[j] += c * w[j]
        i += 1


@numba.njit(cache=True, error_model="numpy")
def _add_blocks(partial, y):
    y[:] = partial[0]
    for p in range(1, partial.shape[0]):
        q = partial[p]
        for j in range(y.shape[0]):
            y[j] += q[j]


@numba.njit(cache=True, error_model="numpy")
def x_times_W(x, W, y):
    m = W.shape[0]
    blocks = (m + BLOCK_ROWS - 1) // BLOCK_ROWS
    partial = np.empty((blocks, W.shape[1]), W.dtype)
    for p in range(blocks):
        rows_into(x, W, partial[p], p * BLOCK_ROWS, min(m, (p + 1) * BLOCK_ROWS))
    _add_blocks(partial, y)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def x_times_W_parallel(x, W, y):
    m = W.shape[0]
    blocks = (m + BLOCK_ROWS - 1) // BLOCK_ROWS
    partial = np.empty((blocks, W.shape[1]), W.dtype)
    for p in numba.prange(blocks):
        rows_into(x, W, partial[p], p * BLOCK_ROWS, min(m, (p + 1) * BLOCK_ROWS))
    _add_blocks(partial, y)
