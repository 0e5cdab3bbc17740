"""im2col and col2im (``npdl.layers.conv.im2col``/``col2im``), Numba CPU kernels.

Plain loops, one ``(image, channel)`` plane per iteration of a ``prange`` over N*C:
every iteration writes its own rows (that channel's C-block) and columns (that
image's block) of ``cols``, or its own plane of ``dx``, so threads never share an
output element and need no atomics. For each kernel offset ``(kh, kw)`` and output
row, the range of output columns whose input pixel lies inside the image is worked
out once, so the innermost loop is a branch-free strided copy (a plain copy at
stride 1); the padding around it is written as zeros.

``im2col`` reuses the ``cols`` buffer held in ``workspace`` (a dict the layer owns)
when its shape and dtype match: a LeNet-size ``cols`` is tens of megabytes, and a
fresh one every step costs more in page faults than the copy itself.

``Conv2D`` on NumPy arrays uses the chunked convolution of :mod:`.conv2d` instead, which
never builds the whole batch's ``cols``; these serve the convolution's definition when
that kernel declines, and any caller of ``im2col`` itself.
"""

from __future__ import annotations

import numba
import numpy as np

from ..geometry import sizes
from . import PARALLEL_THRESHOLD


@numba.njit(cache=True, inline="always")
def _valid_range(k, s, before, size, out):
    """The output indices ``o`` in ``[lo, hi)`` whose input index ``o*s + k - before`` lies in ``[0, size)``."""
    lo = 0 if k >= before else (before - k + s - 1) // s
    hi = 0 if size - 1 + before - k < 0 else (size - 1 + before - k) // s + 1
    return min(lo, out), max(min(hi, out), min(lo, out))


@numba.njit(cache=True, inline="always")
def _im2col_plane(x, cols, i, KH, KW, sh, sw, pt, pl, OH, OW):
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    n, c = i // C, i % C
    base = n * OH * OW
    for kh in range(KH):
        for kw in range(KW):
            r = (c * KH + kh) * KW + kw
            lo, hi = _valid_range(kw, sw, pl, W, OW)
            for oh in range(OH):
                h = oh * sh + kh - pt
                col = base + oh * OW
                if h < 0 or h >= H:
                    for ow in range(OW):
                        cols[r, col + ow] = 0
                    continue
                for ow in range(lo):
                    cols[r, col + ow] = 0
                w0 = kw - pl
                for ow in range(lo, hi):
                    cols[r, col + ow] = x[n, c, h, ow * sw + w0]
                for ow in range(hi, OW):
                    cols[r, col + ow] = 0


@numba.njit(cache=True)
def _im2col_serial(x, cols, KH, KW, sh, sw, pt, pl, OH, OW):
    for i in range(x.shape[0] * x.shape[1]):
        _im2col_plane(x, cols, i, KH, KW, sh, sw, pt, pl, OH, OW)


@numba.njit(cache=True, parallel=True)
def _im2col_parallel(x, cols, KH, KW, sh, sw, pt, pl, OH, OW):
    for i in numba.prange(x.shape[0] * x.shape[1]):
        _im2col_plane(x, cols, i, KH, KW, sh, sw, pt, pl, OH, OW)


@numba.njit(cache=True, inline="always")
def _col2im_plane(cols, dx, i, KH, KW, sh, sw, pt, pl, OH, OW):
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    n, c = i // C, i % C
    base = n * OH * OW
    for h in range(H):
        for w in range(W):
            dx[n, c, h, w] = 0
    for kh in range(KH):
        for kw in range(KW):
            r = (c * KH + kh) * KW + kw
            lo, hi = _valid_range(kw, sw, pl, W, OW)
            w0 = kw - pl
            for oh in range(OH):
                h = oh * sh + kh - pt
                if h < 0 or h >= H:
                    continue
                col = base + oh * OW
                for ow in range(lo, hi):
                    dx[n, c, h, ow * sw + w0] += cols[r, col + ow]


@numba.njit(cache=True)
def _col2im_serial(cols, dx, KH, KW, sh, sw, pt, pl, OH, OW):
    for i in range(dx.shape[0] * dx.shape[1]):
        _col2im_plane(cols, dx, i, KH, KW, sh, sw, pt, pl, OH, OW)


@numba.njit(cache=True, parallel=True)
def _col2im_parallel(cols, dx, KH, KW, sh, sw, pt, pl, OH, OW):
    for i in numba.prange(dx.shape[0] * dx.shape[1]):
        _col2im_plane(cols, dx, i, KH, KW, sh, sw, pt, pl, OH, OW)


#: the dtypes the loops are compiled for; others go to the definition
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def im2col(x, kernel, stride, pad, workspace=None):
    """``cols`` (C*KH*KW, N*OH*OW); with a ``workspace``, the buffer kept there (overwritten by the next call)."""
    if x.dtype not in DTYPES:
        return NotImplemented
    x = np.ascontiguousarray(x)
    N, C, H, W, KH, KW, OH, OW = sizes(x.shape, kernel, stride, pad)
    shape = (C * KH * KW, N * OH * OW)
    cols = None if workspace is None else workspace.get("cols")
    if cols is None or cols.shape != shape or cols.dtype != x.dtype:
        cols = np.empty(shape, dtype=x.dtype)
        if workspace is not None:
            workspace["cols"] = cols
    run = _im2col_parallel if cols.size >= PARALLEL_THRESHOLD else _im2col_serial
    run(x, cols, KH, KW, int(stride[0]), int(stride[1]), int(pad[0]), int(pad[2]), OH, OW)
    return cols


def col2im(cols, x_shape, kernel, stride, pad):
    """``dx`` (N, C, H, W): each entry of ``cols`` added to the input pixel it came from."""
    if cols.dtype not in DTYPES:
        return NotImplemented
    cols = np.ascontiguousarray(cols)
    N, C, H, W, KH, KW, OH, OW = sizes(x_shape, kernel, stride, pad)
    dx = np.empty((N, C, H, W), dtype=cols.dtype)
    run = _col2im_parallel if cols.size >= PARALLEL_THRESHOLD else _col2im_serial
    run(cols, dx, KH, KW, int(stride[0]), int(stride[1]), int(pad[0]), int(pad[2]), OH, OW)
    return dx
