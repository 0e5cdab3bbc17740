"""im2col and col2im, CuPy (CUDA) version of :mod:`npdl.kernels.reference.im2col`.

One CUDA thread per element: ``im2col`` computes, for its element of ``cols``, the
input pixel it copies (zero in the padding); ``col2im`` adds its element of ``cols``
to that pixel with ``atomicAdd`` (several columns can hold the same pixel). The
addition order of overlapping patches is therefore not fixed: results agree with
the reference to round-off, not bit for bit. Untested on hardware when written
(no GPU was available); its tests are marked ``gpu``.
"""

from __future__ import annotations

import cupy

# cols[r, q] with r = (c, kh, kw) and q = (n, oh, ow), both row-major; i is the flat index into cols
_INDEX = """
    const ptrdiff_t P = (ptrdiff_t)OH * OW, NP = (ptrdiff_t)N * P;
    const ptrdiff_t r = i / NP, q = i % NP;
    const int n = q / P, oh = (q % P) / OW, ow = q % OW;
    const int kw = r % KW, kh = (r / KW) % KH, c = r / ((ptrdiff_t)KW * KH);
    const int h = oh * sh + kh - pt, w = ow * sw + kw - pl;
    const bool inside = 0 <= h && h < H && 0 <= w && w < W;
    const ptrdiff_t pixel = (((ptrdiff_t)n * C + c) * H + h) * W + w;
"""
_SIZES = ("int32 N, int32 C, int32 H, int32 W, int32 KH, int32 KW, int32 sh, int32 sw, int32 pt, int32 pl, "
          "int32 OH, int32 OW")

_im2col = cupy.ElementwiseKernel(
    "raw T x, " + _SIZES, "T col",
    _INDEX + "col = inside ? x[pixel] : (T)0;",
    "npdl_im2col")

_col2im = cupy.ElementwiseKernel(
    "T col, " + _SIZES, "raw T dx",
    _INDEX + "if (inside) atomicAdd(&dx[pixel], col);",
    "npdl_col2im")


def _sizes(x_shape, kernel, stride, pad):
    N, C, H, W = (int(d) for d in x_shape)
    KH, KW = kernel
    OH = (H + pad[0] + pad[1] - KH) // stride[0] + 1
    OW = (W + pad[2] + pad[3] - KW) // stride[1] + 1
    return N, C, H, W, KH, KW, OH, OW


def im2col(x, kernel, stride, pad, workspace=None):
    x = cupy.ascontiguousarray(x)
    N, C, H, W, KH, KW, OH, OW = _sizes(x.shape, kernel, stride, pad)
    cols = cupy.empty((C * KH * KW, N * OH * OW), dtype=x.dtype)
    _im2col(x, N, C, H, W, KH, KW, stride[0], stride[1], pad[0], pad[2], OH, OW, cols)
    return cols


def col2im(cols, x_shape, kernel, stride, pad):
    cols = cupy.ascontiguousarray(cols)
    N, C, H, W, KH, KW, OH, OW = _sizes(x_shape, kernel, stride, pad)
    dx = cupy.zeros((N, C, H, W), dtype=cols.dtype)
    _col2im(cols, N, C, H, W, KH, KW, stride[0], stride[1], pad[0], pad[2], OH, OW, dx)
    return dx
