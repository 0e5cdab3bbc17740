"""A dense layer's two products on the CPU: at batch 1, ``x W`` and ``da W^T`` as Numba loops over the
rows of ``W``; at larger batches ``da W^T`` in whichever orientation BLAS runs faster here.

At batch 1, :func:`npdl.layers.dense.x_times_W` and :func:`npdl.layers.dense.da_times_W_T` are
vector-matrix products: each reads ``W`` once and does one multiply-add per element, so the
bandwidth of wherever ``W`` lives bounds them. The loops (:mod:`.rows`) run on the calling thread
up to :data:`~npdl.kernels.numba.ONE_THREAD_MAX` weights, above it on Numba's threads, whose idle
threads spin briefly (:mod:`npdl.kernels.numba`), so that the step's next product finds them awake:
a second core streams its share of the rows. ``sda_b1``'s step (784-1000-1000-1000-10) took
0.98 against 1.39 ms with every product on one thread (2-core Intel Xeon, ``benchmarks/run.py``,
medians of five rounds). BLAS would run them on its own threads, whose wake-up npdl does not
control (OpenBLAS's sleep at once, :mod:`npdl`), and under load a training step chooses one
thread for them (:mod:`.threads`).

``x W`` sums the rows of ``W`` in fixed blocks, each ``y[j]`` in order of ``i`` within a block and
the blocks in order (:func:`.rows.x_times_W`); ``da W^T`` is one dot product per row of ``W``
(:mod:`.rows`, with the compiler free to reassociate the sum: partial sums, one per vector lane).
Their results differ from BLAS's in the last bits, as BLAS's own results differ between thread
counts and CPUs; the same inputs give the same bits on a given CPU, at any thread count and any
size, and the same as the one-pass :func:`input_grad_then_update`'s, which computes ``da W^T`` and
updates ``W`` in one pass.

From batch 2, ``da W^T`` goes to BLAS either as written or as ``(W da^T)^T`` copied back to
row-major, chosen per shape by timing the first calls (:mod:`.orientation`), and only where the
two give the same bits, so the choice never changes a result. On a 2-core AMD EPYC Zen 4
(OpenBLAS 0.3.31; ``benchmarks/ab.py``, 5 rounds) the choice took ``(W da^T)^T`` for the
784-1000-1000-1000-10 network at batch 32 (its step 0.937x, every round 0.91-0.98x) and for the
Keras CNN's 3136-1024 layer at batch 64, and kept ``da W^T`` at batch 128, where the other was
no faster inside the step. Products under :data:`MIN_WORK` multiply-adds stay as written.

Where oneMKL is the kernels' library (:mod:`.blas`), both products from batch 2 go to it instead, from
:data:`.blas.MIN_WORK` multiply-adds (below, NumPy's ``@``).
"""

from __future__ import annotations

import numpy as np

from . import ONE_THREAD_MAX, blas, rows
from .gemm_update import leaves_to_definition
from .orientation import Choice

#: ``x W`` declines below this many columns of ``W``: a shorter row fills no vector of 16 lanes,
#: and NumPy's product is as fast (a (1000, 10) ``W``: 2.9 us in NumPy, 4.2 us in the loop)
MIN_COLUMNS = 32


def _is_row(v, W) -> bool:
    """Whether ``v`` is one row (1, K) and ``W`` a non-empty C-contiguous float matrix of the same dtype."""
    return (type(v) is np.ndarray and type(W) is np.ndarray and v.ndim == 2 and v.shape[0] == 1
            and W.ndim == 2 and v.dtype == W.dtype and W.dtype.char in "fd" and W.flags.c_contiguous
            and W.size > 0)


def _other_blas(a, W):
    """``a @ W`` through oneMKL where it is the kernels' library and the product has at least
    :data:`.blas.MIN_WORK` multiply-adds (:func:`.blas.serves`), else None (NumPy's ``@`` runs)."""
    if type(a) is not np.ndarray or type(W) is not np.ndarray or a.ndim != 2 or W.ndim != 2:
        return None
    if not blas.serves(a.shape[0] * a.shape[1] * W.shape[-1]):
        return None
    return blas.matmul(a, W)


def x_times_W(x, W):
    """:func:`npdl.layers.dense.x_times_W`: at batch 1 ``y = x W`` (1, n_out) row by row (:mod:`.rows`: on
    one thread, or on Numba's above :data:`~npdl.kernels.numba.ONE_THREAD_MAX` weights); from batch 2
    through oneMKL where it is the kernels' library."""
    if not _is_row(x, W) or x.shape[1] != W.shape[0] or W.shape[1] < MIN_COLUMNS:
        if type(x) is np.ndarray and x.ndim == 2 and x.shape[0] > 1:
            y = _other_blas(x, W)
            if y is not None:
                return y
        return NotImplemented
    y = np.empty((1, W.shape[1]), W.dtype)
    loop = rows.x_times_W_parallel if rows.on_threads(W.size, ONE_THREAD_MAX) else rows.x_times_W
    loop(x[0], W, y[0])
    return y


def _as_written(da, W):
    return da @ W.T


def _W_untransposed(da, W):
    return np.ascontiguousarray((W @ da.T).T)


#: ``da W^T`` at batch 2 and up: as written, or as ``(W da^T)^T``, per shape (:mod:`.orientation`)
_orientation = Choice(_as_written, _W_untransposed)

#: below this many multiply-adds (N n_in n_out) ``da W^T`` runs as written, untimed: a few
#: microseconds, where the copy back to row-major costs what the other orientation might save
MIN_WORK = 1 << 21


def da_times_W_T(da, W):
    """:func:`npdl.layers.dense.da_times_W_T`: ``dx = da W^T`` (N, n_in); at batch 1 row by row
    (:mod:`.rows`: on one thread, or on Numba's above :data:`~npdl.kernels.numba.ONE_THREAD_MAX`
    weights), from batch 2 through BLAS in the orientation measured faster for the shape."""
    if _is_row(da, W) and da.shape[1] == W.shape[1]:
        dx = np.empty((1, W.shape[0]), W.dtype)
        loop = rows.W_times_da_parallel if rows.on_threads(W.size, ONE_THREAD_MAX) else rows.W_times_da
        loop(W, da[0], dx[0], W.dtype.type(0))
        return dx
    if (type(da) is not np.ndarray or type(W) is not np.ndarray or da.ndim != 2 or W.ndim != 2
            or da.shape[0] < 2 or da.shape[1] != W.shape[1] or da.dtype != W.dtype or W.dtype.char not in "fd"):
        return NotImplemented
    dx = _other_blas(da, W.T)
    if dx is not None:
        return dx
    if da.shape[0] * W.size < MIN_WORK:
        return NotImplemented
    return _orientation((da.shape, W.shape, W.strides, da.strides, W.dtype.char), da, W)


def input_grad_then_update(da, x, W, alpha, beta):
    """:func:`npdl.layers.dense.input_grad_then_update` at batch 1: ``dx = da W^T`` and
    ``W <- beta W + alpha x^T da`` in one pass over ``W`` (:func:`.rows.dot_then_update`), the bits
    of :func:`da_times_W_T` and of :func:`.gemm_update.gemm_update`'s rank-1 update. Other batches,
    arrays these loops do not take, and weights the optimizer's kernel leaves to the definition
    (:func:`.gemm_update.leaves_to_definition`) decline: the definition runs the two."""
    if not (_is_row(da, W) and type(x) is np.ndarray and x.ndim == 2 and x.shape == (1, W.shape[0])
            and da.shape[1] == W.shape[1] and x.dtype == W.dtype and W.flags.writeable
            and not leaves_to_definition(W)):
        return NotImplemented
    scalar = W.dtype.type  # alpha and beta in W's dtype, as the rank-1 update takes them
    dx = np.empty((1, W.shape[0]), W.dtype)
    loop = rows.dot_then_update_parallel if rows.on_threads(W.size, ONE_THREAD_MAX) else rows.dot_then_update
    loop(W, da[0], dx[0], x[0], scalar(alpha), scalar(beta), scalar(0))
    return dx
