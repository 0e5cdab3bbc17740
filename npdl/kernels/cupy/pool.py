"""Max and average pooling, CuPy (CUDA) version of :mod:`npdl.kernels.reference.pool`.

Forward: one CUDA thread per output pixel scans its window (padded cells are
``-inf`` for max and not counted for average; a later cell must be strictly greater
to win, so the first maximum in row-major order is kept, as in the reference).
Backward: one thread per output pixel adds its share of ``dy`` to the input cells
with ``atomicAdd`` (overlapping windows can share a cell). Untested on hardware
when written (no GPU was available); its tests are marked ``gpu``.
"""

from __future__ import annotations

import cupy

_SIZES = "int32 C, int32 H, int32 W, int32 KH, int32 KW, int32 sh, int32 sw, int32 pt, int32 pl, int32 OH, int32 OW"

# i is the flat index of the output pixel (n, c, oh, ow); plane is the offset of x[n, c, 0, 0]
_INDEX = """
    const int ow = i % OW, oh = (i / OW) % OH;
    const ptrdiff_t plane = (i / ((ptrdiff_t)OW * OH)) * H * W;
    const int h0 = oh * sh - pt, w0 = ow * sw - pl;
    const int count = (min(h0 + KH, H) - max(h0, 0)) * (min(w0 + KW, W) - max(w0, 0));
"""

_max_forward = cupy.ElementwiseKernel(
    "raw T x, T neg_inf, " + _SIZES, "T y, int32 arg",
    _INDEX + """
    T best = neg_inf;
    int best_k = 0;
    for (int kh = 0; kh < KH; ++kh) {
        for (int kw = 0; kw < KW; ++kw) {
            const int h = h0 + kh, w = w0 + kw;
            const T v = (0 <= h && h < H && 0 <= w && w < W) ? x[plane + (ptrdiff_t)h * W + w] : neg_inf;
            if (v > best) { best = v; best_k = kh * KW + kw; }
        }
    }
    y = best;
    arg = best_k;
    """, "npdl_max_pool_forward")

_max_backward = cupy.ElementwiseKernel(
    "T dy, int32 arg, " + _SIZES, "raw T dx",
    _INDEX + """
    const int h = h0 + arg / KW, w = w0 + arg % KW;
    if (0 <= h && h < H && 0 <= w && w < W) atomicAdd(&dx[plane + (ptrdiff_t)h * W + w], dy);
    """, "npdl_max_pool_backward")

_avg_forward = cupy.ElementwiseKernel(
    "raw T x, " + _SIZES, "T y",
    _INDEX + """
    T s = 0;
    for (int h = max(h0, 0); h < min(h0 + KH, H); ++h)
        for (int w = max(w0, 0); w < min(w0 + KW, W); ++w)
            s += x[plane + (ptrdiff_t)h * W + w];
    y = s / (T)count;
    """, "npdl_avg_pool_forward")

_avg_backward = cupy.ElementwiseKernel(
    "T dy, " + _SIZES, "raw T dx",
    _INDEX + """
    const T share = dy / (T)count;
    for (int h = max(h0, 0); h < min(h0 + KH, H); ++h)
        for (int w = max(w0, 0); w < min(w0 + KW, W); ++w)
            atomicAdd(&dx[plane + (ptrdiff_t)h * W + w], share);
    """, "npdl_avg_pool_backward")


def _args(x_shape, kernel, stride, pad):
    N, C, H, W = (int(d) for d in x_shape)
    OH = (H + pad[0] + pad[1] - kernel[0]) // stride[0] + 1
    OW = (W + pad[2] + pad[3] - kernel[1]) // stride[1] + 1
    return (N, C, OH, OW), (C, H, W, kernel[0], kernel[1], stride[0], stride[1], pad[0], pad[2], OH, OW)


def max_forward(x, kernel, stride, pad):
    x = cupy.ascontiguousarray(x)
    shape, sizes = _args(x.shape, kernel, stride, pad)
    y = cupy.empty(shape, dtype=x.dtype)
    arg = cupy.empty(shape, dtype=cupy.int32)
    _max_forward(x, x.dtype.type(-float("inf")), *sizes, y, arg)
    return y, arg


def max_backward(dy, arg, x_shape, kernel, stride, pad):
    _, sizes = _args(x_shape, kernel, stride, pad)
    dx = cupy.zeros(tuple(int(d) for d in x_shape), dtype=dy.dtype)
    _max_backward(cupy.ascontiguousarray(dy), cupy.ascontiguousarray(arg, dtype=cupy.int32), *sizes, dx)
    return dx


def avg_forward(x, kernel, stride, pad):
    x = cupy.ascontiguousarray(x)
    shape, sizes = _args(x.shape, kernel, stride, pad)
    y = cupy.empty(shape, dtype=x.dtype)
    _avg_forward(x, *sizes, y)
    return y


def avg_backward(dy, x_shape, kernel, stride, pad):
    _, sizes = _args(x_shape, kernel, stride, pad)
    dx = cupy.zeros(tuple(int(d) for d in x_shape), dtype=dy.dtype)
    _avg_backward(cupy.ascontiguousarray(dy), *sizes, dx)
    return dx
