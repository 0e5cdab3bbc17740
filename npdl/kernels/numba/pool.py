"""Max and average pooling (``npdl.layers.pooling.max_pool_forward`` ...), Numba CPU kernels.

One ``(image, channel)`` plane per iteration of a ``prange`` over N*C; each
iteration reads and writes only its own plane, so no two threads touch one element.
Same conventions as the definitions: padded cells are ``-inf`` for max pooling and
are not counted for average pooling; ``arg`` holds the row-major window offset
``kh*KW + kw`` of the maximum, the first one on ties (a later cell must be strictly
greater to win).
"""

from __future__ import annotations

import numba
import numpy as np

from ..geometry import pooled_shape, window_ints
from . import PARALLEL_THRESHOLD

#: the dtypes the loops are compiled for; others go to the definition
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@numba.njit(cache=True, inline="always")
def _max_plane(x, y, arg, i, KH, KW, sh, sw, pt, pl):
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    OH, OW = y.shape[2], y.shape[3]
    n, c = i // C, i % C
    for oh in range(OH):
        h0 = oh * sh - pt
        rows_inside = h0 >= 0 and h0 + KH <= H
        for ow in range(OW):
            w0 = ow * sw - pl
            best = -np.inf
            best_k = 0
            if rows_inside and w0 >= 0 and w0 + KW <= W:  # the window lies inside the image: no tests per cell
                for kh in range(KH):
                    for kw in range(KW):
                        v = x[n, c, h0 + kh, w0 + kw]
                        if v > best:  # strictly greater: the first maximum in row-major order wins
                            best = v
                            best_k = kh * KW + kw
            else:  # a border window: padded cells are -inf, which never beat best = -inf
                for kh in range(KH):
                    for kw in range(KW):
                        h, w = h0 + kh, w0 + kw
                        if 0 <= h < H and 0 <= w < W and x[n, c, h, w] > best:
                            best = x[n, c, h, w]
                            best_k = kh * KW + kw
            y[n, c, oh, ow] = best
            arg[n, c, oh, ow] = best_k


@numba.njit(cache=True)
def _max_serial(x, y, arg, KH, KW, sh, sw, pt, pl):
    for i in range(x.shape[0] * x.shape[1]):
        _max_plane(x, y, arg, i, KH, KW, sh, sw, pt, pl)


@numba.njit(cache=True, parallel=True)
def _max_parallel(x, y, arg, KH, KW, sh, sw, pt, pl):
    for i in numba.prange(x.shape[0] * x.shape[1]):
        _max_plane(x, y, arg, i, KH, KW, sh, sw, pt, pl)


@numba.njit(cache=True, inline="always")
def _max_back_plane(dy, arg, dx, i, KW, sh, sw, pt, pl):
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    OH, OW = dy.shape[2], dy.shape[3]
    n, c = i // C, i % C
    for h in range(H):
        for w in range(W):
            dx[n, c, h, w] = 0
    for oh in range(OH):
        for ow in range(OW):
            k = arg[n, c, oh, ow]
            h = oh * sh + k // KW - pt
            w = ow * sw + k % KW - pl
            if 0 <= h < H and 0 <= w < W:
                dx[n, c, h, w] += dy[n, c, oh, ow]


@numba.njit(cache=True)
def _max_back_serial(dy, arg, dx, KW, sh, sw, pt, pl):
    for i in range(dx.shape[0] * dx.shape[1]):
        _max_back_plane(dy, arg, dx, i, KW, sh, sw, pt, pl)


@numba.njit(cache=True, parallel=True)
def _max_back_parallel(dy, arg, dx, KW, sh, sw, pt, pl):
    for i in numba.prange(dx.shape[0] * dx.shape[1]):
        _max_back_plane(dy, arg, dx, i, KW, sh, sw, pt, pl)


# ---- 2x2 windows at stride 2 without padding (LeNet, network3 and the Keras CNN all pool so):
# the windows tile the input, so forward is four loads and three branch-free compares per
# output, and backward writes every input cell exactly once (dy or 0), with no zeroing pass
# and no scatter-add. Same tie rule as above: a later cell must be strictly greater to win.


@numba.njit(cache=True, inline="always")
def _max2_plane(x, y, arg, i):
    C = x.shape[1]
    OH, OW = y.shape[2], y.shape[3]
    n, c = i // C, i % C
    for oh in range(OH):
        for ow in range(OW):
            h, w = 2 * oh, 2 * ow
            best, k = x[n, c, h, w], 0
            v = x[n, c, h, w + 1]
            k = 1 if v > best else k
            best = v if v > best else best
            v = x[n, c, h + 1, w]
            k = 2 if v > best else k
            best = v if v > best else best
            v = x[n, c, h + 1, w + 1]
            k = 3 if v > best else k
            best = v if v > best else best
            y[n, c, oh, ow] = best
            arg[n, c, oh, ow] = k


@numba.njit(cache=True)
def _max2_serial(x, y, arg):
    for i in range(x.shape[0] * x.shape[1]):
        _max2_plane(x, y, arg, i)


@numba.njit(cache=True, parallel=True)
def _max2_parallel(x, y, arg):
    for i in numba.prange(x.shape[0] * x.shape[1]):
        _max2_plane(x, y, arg, i)


@numba.njit(cache=True, inline="always")
def _max2_back_plane(dy, arg, dx, i):
    C = dx.shape[1]
    OH, OW = dy.shape[2], dy.shape[3]
    n, c = i // C, i % C
    zero = dx.dtype.type(0)
    for oh in range(OH):
        for ow in range(OW):
            g, k = dy[n, c, oh, ow], arg[n, c, oh, ow]
            h, w = 2 * oh, 2 * ow
            dx[n, c, h, w] = g if k == 0 else zero
            dx[n, c, h, w + 1] = g if k == 1 else zero
            dx[n, c, h + 1, w] = g if k == 2 else zero
            dx[n, c, h + 1, w + 1] = g if k == 3 else zero


@numba.njit(cache=True)
def _max2_back_serial(dy, arg, dx):
    for i in range(dx.shape[0] * dx.shape[1]):
        _max2_back_plane(dy, arg, dx, i)


@numba.njit(cache=True, parallel=True)
def _max2_back_parallel(dy, arg, dx):
    for i in numba.prange(dx.shape[0] * dx.shape[1]):
        _max2_back_plane(dy, arg, dx, i)


def _tiles_2x2(shape, kernel, stride, pad):
    """True when 2x2 windows at stride 2 tile the (even-sized, unpadded) input exactly."""
    return (tuple(kernel) == (2, 2) and tuple(stride) == (2, 2) and not any(pad)
            and int(shape[2]) % 2 == 0 and int(shape[3]) % 2 == 0)


@numba.njit(cache=True, inline="always")
def _count(o, s, k, before, size):
    """How many of the window's cells along one axis lie inside the input."""
    start = o * s - before
    return min(start + k, size) - max(start, 0)


@numba.njit(cache=True, inline="always")
def _avg_plane(x, y, i, KH, KW, sh, sw, pt, pl):
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    OH, OW = y.shape[2], y.shape[3]
    n, c = i // C, i % C
    for oh in range(OH):
        h0 = oh * sh - pt
        for ow in range(OW):
            w0 = ow * sw - pl
            s = 0.0  # summed in float64, stored in x's dtype
            for h in range(max(h0, 0), min(h0 + KH, H)):
                for w in range(max(w0, 0), min(w0 + KW, W)):
                    s += x[n, c, h, w]
            y[n, c, oh, ow] = s / (_count(oh, sh, KH, pt, H) * _count(ow, sw, KW, pl, W))


@numba.njit(cache=True)
def _avg_serial(x, y, KH, KW, sh, sw, pt, pl):
    for i in range(x.shape[0] * x.shape[1]):
        _avg_plane(x, y, i, KH, KW, sh, sw, pt, pl)


@numba.njit(cache=True, parallel=True)
def _avg_parallel(x, y, KH, KW, sh, sw, pt, pl):
    for i in numba.prange(x.shape[0] * x.shape[1]):
        _avg_plane(x, y, i, KH, KW, sh, sw, pt, pl)


@numba.njit(cache=True, inline="always")
def _avg_back_plane(dy, dx, i, KH, KW, sh, sw, pt, pl):
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    OH, OW = dy.shape[2], dy.shape[3]
    n, c = i // C, i % C
    for h in range(H):
        for w in range(W):
            dx[n, c, h, w] = 0
    for oh in range(OH):
        h0 = oh * sh - pt
        for ow in range(OW):
            w0 = ow * sw - pl
            share = dy[n, c, oh, ow] / (_count(oh, sh, KH, pt, H) * _count(ow, sw, KW, pl, W))
            for h in range(max(h0, 0), min(h0 + KH, H)):
                for w in range(max(w0, 0), min(w0 + KW, W)):
                    dx[n, c, h, w] += share


@numba.njit(cache=True)
def _avg_back_serial(dy, dx, KH, KW, sh, sw, pt, pl):
    for i in range(dx.shape[0] * dx.shape[1]):
        _avg_back_plane(dy, dx, i, KH, KW, sh, sw, pt, pl)


@numba.njit(cache=True, parallel=True)
def _avg_back_parallel(dy, dx, KH, KW, sh, sw, pt, pl):
    for i in numba.prange(dx.shape[0] * dx.shape[1]):
        _avg_back_plane(dy, dx, i, KH, KW, sh, sw, pt, pl)




def max_forward(x, kernel, stride, pad):
    """``(y, arg)``: the window maxima (N, C, OH, OW) and the int32 offset of each (the first on ties)."""
    if x.dtype not in DTYPES:
        return NotImplemented
    x = np.ascontiguousarray(x)
    y = np.empty(pooled_shape(x.shape, kernel, stride, pad), dtype=x.dtype)
    arg = np.empty(y.shape, dtype=np.int32)
    if _tiles_2x2(x.shape, kernel, stride, pad):
        (_max2_parallel if x.size >= PARALLEL_THRESHOLD else _max2_serial)(x, y, arg)
        return y, arg
    run = _max_parallel if x.size >= PARALLEL_THRESHOLD else _max_serial
    run(x, y, arg, *window_ints(kernel, stride, pad))
    return y, arg


def max_backward(dy, arg, x_shape, kernel, stride, pad):
    """``dx`` (N, C, H, W): each window's ``dy`` added to the cell that held its maximum."""
    if dy.dtype not in DTYPES:
        return NotImplemented
    dy = np.ascontiguousarray(dy)
    dx = np.empty(tuple(int(d) for d in x_shape), dtype=dy.dtype)
    arg = np.ascontiguousarray(arg, dtype=np.int32)
    if _tiles_2x2(dx.shape, kernel, stride, pad):
        (_max2_back_parallel if dx.size >= PARALLEL_THRESHOLD else _max2_back_serial)(dy, arg, dx)
        return dx
    KH, KW, sh, sw, pt, pl = window_ints(kernel, stride, pad)
    run = _max_back_parallel if dx.size >= PARALLEL_THRESHOLD else _max_back_serial
    run(dy, arg, dx, KW, sh, sw, pt, pl)
    return dx


def avg_forward(x, kernel, stride, pad):
    """``y`` (N, C, OH, OW): the mean of each window's real cells (padding not counted)."""
    if x.dtype not in DTYPES:
        return NotImplemented
    x = np.ascontiguousarray(x)
    y = np.empty(pooled_shape(x.shape, kernel, stride, pad), dtype=x.dtype)
    run = _avg_parallel if x.size >= PARALLEL_THRESHOLD else _avg_serial
    run(x, y, *window_ints(kernel, stride, pad))
    return y


def avg_backward(dy, x_shape, kernel, stride, pad):
    """``dx`` (N, C, H, W): every real cell of a window receives ``dy / count`` of that window."""
    if dy.dtype not in DTYPES:
        return NotImplemented
    dy = np.ascontiguousarray(dy)
    dx = np.empty(tuple(int(d) for d in x_shape), dtype=dy.dtype)
    run = _avg_back_parallel if dx.size >= PARALLEL_THRESHOLD else _avg_back_serial
    run(dy, dx, *window_ints(kernel, stride, pad))
    return dx
