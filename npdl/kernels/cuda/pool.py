"""Max and average pooling (``npdl.layers.pooling.max_pool_forward`` ...), numba.cuda kernels.

One thread per output pixel ``(n, c, oh, ow)``, whose window is the input cells
``(oh*sh + kh - pt, ow*sw + kw - pl)``, ``kh < KH``, ``kw < KW``. Same conventions as
the definitions:

* **max forward**: the thread scans its window in row-major order; padded cells are
  ``-inf`` (skipped: they never beat ``best``, which starts at ``-inf``), and a later
  cell must be *strictly* greater to win, so the first maximum is kept on ties.
  ``arg`` is the int32 offset ``kh*KW + kw`` of the maximum.
* **max backward**: the thread adds its ``dy`` to the one cell its ``arg`` names.
* **average forward**: the thread sums the window's cells that lie inside the input
  and divides by their number (padding is not counted).
* **average backward**: the thread adds ``dy / count`` to each of those cells.

Overlapping windows (stride < pool size) share cells, so the backward passes add
atomically into a zeroed ``dx``: the order of the additions is not fixed, and ``dx``
agrees with the definition to round-off, not bit for bit. The forward passes are exact
(the average sums in the input's dtype, in the definition's order).
"""

from __future__ import annotations

import math

from numba import cuda

from ... import backend
from ..geometry import pooled_shape, window_ints
from . import launch

#: the dtypes the kernels are written for (atomic adds); others go to the definition
DTYPES = ("float32", "float64")


@cuda.jit(cache=True)
def _max_forward(x, y, arg, KH, KW, sh, sw, pt, pl):
    i = cuda.grid(1)
    if i >= y.size:
        return
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    # (n, c, oh, ow) of output element i. Written out in each kernel, not in a device function:
    # Numba compiles those for the current GPU, so the tests' PTX check (no GPU) could not.
    ow, t = i % y.shape[3], i // y.shape[3]
    oh, t = t % y.shape[2], t // y.shape[2]
    n, c = t // C, t % C
    h0, w0 = oh * sh - pt, ow * sw - pl
    best = x.dtype.type(-math.inf)
    best_k = 0
    for kh in range(KH):
        h = h0 + kh
        if 0 <= h < H:
            for kw in range(KW):
                w = w0 + kw
                if 0 <= w < W and x[n, c, h, w] > best:  # strictly greater: the first maximum wins
                    best = x[n, c, h, w]
                    best_k = kh * KW + kw
    y[n, c, oh, ow] = best
    arg[n, c, oh, ow] = best_k


@cuda.jit(cache=True)
def _max_backward(dy, arg, dx, KW, sh, sw, pt, pl):
    i = cuda.grid(1)
    if i >= dy.size:
        return
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    ow, t = i % dy.shape[3], i // dy.shape[3]
    oh, t = t % dy.shape[2], t // dy.shape[2]
    n, c = t // C, t % C
    k = arg[n, c, oh, ow]
    h, w = oh * sh + k // KW - pt, ow * sw + k % KW - pl
    if 0 <= h < H and 0 <= w < W:  # overlapping windows can pick the same cell: their gradients add
        cuda.atomic.add(dx, (n, c, h, w), dy[n, c, oh, ow])


@cuda.jit(cache=True)
def _avg_forward(x, y, KH, KW, sh, sw, pt, pl):
    i = cuda.grid(1)
    if i >= y.size:
        return
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    ow, t = i % y.shape[3], i // y.shape[3]
    oh, t = t % y.shape[2], t // y.shape[2]
    n, c = t // C, t % C
    h0, w0 = oh * sh - pt, ow * sw - pl
    # the window's rows and columns inside the input (conditionals, not min/max: Numba
    # compiles those builtins as device functions, for the current GPU)
    h_lo, h_hi = (h0 if h0 > 0 else 0), (h0 + KH if h0 + KH < H else H)
    w_lo, w_hi = (w0 if w0 > 0 else 0), (w0 + KW if w0 + KW < W else W)
    # summed in x's dtype (float32 arithmetic stays float32 on the GPU), over the real cells only
    s = x.dtype.type(0)
    for h in range(h_lo, h_hi):
        for w in range(w_lo, w_hi):
            s += x[n, c, h, w]
    y[n, c, oh, ow] = s / x.dtype.type((h_hi - h_lo) * (w_hi - w_lo))


@cuda.jit(cache=True)
def _avg_backward(dy, dx, KH, KW, sh, sw, pt, pl):
    i = cuda.grid(1)
    if i >= dy.size:
        return
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    ow, t = i % dy.shape[3], i // dy.shape[3]
    oh, t = t % dy.shape[2], t // dy.shape[2]
    n, c = t // C, t % C
    h0, w0 = oh * sh - pt, ow * sw - pl
    h_lo, h_hi = (h0 if h0 > 0 else 0), (h0 + KH if h0 + KH < H else H)  # as in _avg_forward
    w_lo, w_hi = (w0 if w0 > 0 else 0), (w0 + KW if w0 + KW < W else W)
    share = dy[n, c, oh, ow] / dx.dtype.type((h_hi - h_lo) * (w_hi - w_lo))
    for h in range(h_lo, h_hi):
        for w in range(w_lo, w_hi):
            cuda.atomic.add(dx, (n, c, h, w), share)  # overlapping windows share cells




def max_forward(x, kernel, stride, pad):
    """``(y, arg)``: the window maxima (N, C, OH, OW) and the int32 offset of each (the first on ties)."""
    if x.dtype not in DTYPES:
        return NotImplemented
    xp = backend.namespace(x)
    x = backend.row_major(x)
    shape = pooled_shape(x.shape, kernel, stride, pad)
    y = xp.empty(shape, dtype=x.dtype)
    arg = xp.empty(shape, dtype=xp.int32)
    launch(_max_forward, y.size, x, y, arg, *window_ints(kernel, stride, pad))
    return y, arg


def max_backward(dy, arg, x_shape, kernel, stride, pad):
    """``dx`` (N, C, H, W): each window's ``dy`` added to the cell that held its maximum."""
    if dy.dtype not in DTYPES:
        return NotImplemented
    xp = backend.namespace(dy)
    dy = backend.row_major(dy)
    arg = backend.row_major(arg if arg.dtype == xp.int32 else arg.astype(xp.int32))
    dx = xp.zeros(tuple(int(d) for d in x_shape), dtype=dy.dtype)  # zeros: the threads only add
    KH, KW, sh, sw, pt, pl = window_ints(kernel, stride, pad)
    launch(_max_backward, dy.size, dy, arg, dx, KW, sh, sw, pt, pl)
    return dx


def avg_forward(x, kernel, stride, pad):
    """``y`` (N, C, OH, OW): the mean of each window's real cells (padding not counted)."""
    if x.dtype not in DTYPES:
        return NotImplemented
    xp = backend.namespace(x)
    x = backend.row_major(x)
    y = xp.empty(pooled_shape(x.shape, kernel, stride, pad), dtype=x.dtype)
    launch(_avg_forward, y.size, x, y, *window_ints(kernel, stride, pad))
    return y


def avg_backward(dy, x_shape, kernel, stride, pad):
    """``dx`` (N, C, H, W): every real cell of a window receives ``dy / count`` of that window."""
    if dy.dtype not in DTYPES:
        return NotImplemented
    xp = backend.namespace(dy)
    dy = backend.row_major(dy)
    dx = xp.zeros(tuple(int(d) for d in x_shape), dtype=dy.dtype)  # zeros: the threads only add
    launch(_avg_backward, dy.size, dy, dx, *window_ints(kernel, stride, pad))
    return dx
