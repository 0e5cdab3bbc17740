"""im2col and col2im (``npdl.layers.conv.im2col``/``col2im``), numba.cuda kernels.

One thread per element of ``cols`` (C*KH*KW, N*OH*OW). The thread for
``cols[r, q]`` unpacks ``r = (c, kh, kw)`` and ``q = (n, oh, ow)`` (both row-major) and
works out the input pixel ``(n, c, oh*sh + kh - pt, ow*sw + kw - pl)`` that entry copies:

* ``im2col``: the thread writes that pixel, or zero when it falls in the padding.
  Consecutive threads write consecutive columns of one row, so the writes coalesce;
  the reads are ``sw`` apart.
* ``col2im``: the thread adds its entry to that pixel (and drops it when it falls in
  the padding). Overlapping patches (stride < kernel) send several entries to one
  pixel, so the add is atomic; the order of the additions is not fixed, and ``dx``
  agrees with the definition to round-off, not bit for bit.

There is no numba.cuda ``conv2d`` module: the chunked convolution of the Numba kernels
exists for CPU caches, so on a GPU the convolution's definition runs, with these two
kernels for ``cols`` and ``dx`` and cuBLAS for the products.
"""

from __future__ import annotations

from numba import cuda

from ... import backend
from ..geometry import sizes
from . import launch

#: the dtypes the kernels are written for (atomic adds); others go to the definition
DTYPES = ("float32", "float64")


@cuda.jit(cache=True)
def _im2col(x, cols, KH, KW, sh, sw, pt, pl, OH, OW):
    i = cuda.grid(1)
    if i >= cols.size:
        return
    H, W = x.shape[2], x.shape[3]
    # cols[r, q]: r = (c, kh, kw) and q = (n, oh, ow), both row-major. Written out in each kernel,
    # not in a device function: Numba compiles those for the current GPU, so the tests' PTX
    # check, which has no GPU, could not compile the kernel.
    r, q = i // cols.shape[1], i % cols.shape[1]
    n, p = q // (OH * OW), q % (OH * OW)
    oh, ow = p // OW, p % OW
    kw, kh, c = r % KW, (r // KW) % KH, r // (KW * KH)
    h, w = oh * sh + kh - pt, ow * sw + kw - pl
    value = x.dtype.type(0)  # the padding
    if 0 <= h < H and 0 <= w < W:
        value = x[n, c, h, w]
    cols[r, q] = value


@cuda.jit(cache=True)
def _col2im(cols, dx, KH, KW, sh, sw, pt, pl, OH, OW):
    i = cuda.grid(1)
    if i >= cols.size:
        return
    H, W = dx.shape[2], dx.shape[3]
    r, q = i // cols.shape[1], i % cols.shape[1]  # as in _im2col
    n, p = q // (OH * OW), q % (OH * OW)
    oh, ow = p // OW, p % OW
    kw, kh, c = r % KW, (r // KW) % KH, r // (KW * KH)
    h, w = oh * sh + kh - pt, ow * sw + kw - pl
    if 0 <= h < H and 0 <= w < W:  # several patches can hold this pixel: their gradients add
        cuda.atomic.add(dx, (n, c, h, w), cols[r, q])


def _geometry(kernel, stride, pad, OH, OW):
    """The scalar kernel arguments after the arrays, as plain Python ints."""
    return int(kernel[0]), int(kernel[1]), int(stride[0]), int(stride[1]), int(pad[0]), int(pad[2]), OH, OW


def im2col(x, kernel, stride, pad, workspace=None):
    """``cols`` (C*KH*KW, N*OH*OW) for ``x`` (N, C, H, W); ``workspace`` is ignored (CuPy's memory pool reuses)."""
    if x.dtype not in DTYPES:
        return NotImplemented
    xp = backend.namespace(x)
    x = backend.row_major(x)
    N, C, H, W, KH, KW, OH, OW = sizes(x.shape, kernel, stride, pad)
    cols = xp.empty((C * KH * KW, N * OH * OW), dtype=x.dtype)
    launch(_im2col, cols.size, x, cols, *_geometry(kernel, stride, pad, OH, OW))
    return cols


def col2im(cols, x_shape, kernel, stride, pad):
    """``dx`` (N, C, H, W): each entry of ``cols`` added (atomically) to the input pixel it came from."""
    if cols.dtype not in DTYPES:
        return NotImplemented
    xp = backend.namespace(cols)
    cols = backend.row_major(cols)
    N, C, H, W, KH, KW, OH, OW = sizes(x_shape, kernel, stride, pad)
    dx = xp.zeros((N, C, H, W), dtype=cols.dtype)  # zeros: the threads only add
    launch(_col2im, cols.size, cols, dx, *_geometry(kernel, stride, pad, OH, OW))
    return dx
