"""The im2col and col2im of one chunk of images for the chunked CPU convolution (:mod:`.conv2d`):
padded into a zero-bordered buffer first, then copied with loops whose indices the compiler
knows to be in range; and the chunk's product into ``y`` (:func:`scatter_out`), its part of ``dy``
out of it (:func:`gather_dy`)."""

from __future__ import annotations

import numba

@numba.njit(cache=True, nogil=True)
def im2col_dense(xc, cols, KH, KW, sh, sw, OH, OW):
    """``cols[(c, kh, kw), (n, oh, ow)] = xc[n, c, oh*sh + kh, ow*sw + kw]`` for an already padded chunk.

    Without padding to test, every index is a sum of loop counters, which the compiler
    knows to be >= 0: it drops NumPy's negative-index wraparound and vectorises the copy.
    That makes this ~5x faster than the bounds-tracking :func:`.im2col._im2col_plane`, so chunks
    with padding are first copied into a zero-bordered buffer (:func:`pad_chunk`).
    """
    m, C = xc.shape[0], xc.shape[1]
    for n in range(m):
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    r = (c * KH + kh) * KW + kw
                    for oh in range(OH):
                        col = (n * OH + oh) * OW
                        for ow in range(OW):
                            cols[r, col + ow] = xc[n, c, oh * sh + kh, ow * sw + kw]


@numba.njit(cache=True, nogil=True)
def im2col_dense_s1(xc, cols, KH, KW, OH, OW):
    """:func:`im2col_dense` at stride 1 (a branch on the stride inside the loops costs ~2x)."""
    m, C = xc.shape[0], xc.shape[1]
    for n in range(m):
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    r = (c * KH + kh) * KW + kw
                    for oh in range(OH):
                        col = (n * OH + oh) * OW
                        for ow in range(OW):
                            cols[r, col + ow] = xc[n, c, oh + kh, ow + kw]


@numba.njit(cache=True, nogil=True)
def col2im_dense(cols, dxc, KH, KW, sh, sw, OH, OW):
    """The adjoint of :func:`im2col_dense`: ``dxc`` (the padded chunk) zeroed, then every entry added back."""
    m, C = dxc.shape[0], dxc.shape[1]
    for n in range(m):
        for c in range(C):
            for h in range(dxc.shape[2]):
                for w in range(dxc.shape[3]):
                    dxc[n, c, h, w] = 0
            for kh in range(KH):
                for kw in range(KW):
                    r = (c * KH + kh) * KW + kw
                    for oh in range(OH):
                        col = (n * OH + oh) * OW
                        for ow in range(OW):
                            dxc[n, c, oh * sh + kh, ow * sw + kw] += cols[r, col + ow]


@numba.njit(cache=True, nogil=True)
def col2im_dense_s1(cols, dxc, KH, KW, OH, OW):
    """:func:`col2im_dense` at stride 1."""
    m, C = dxc.shape[0], dxc.shape[1]
    for n in range(m):
        for c in range(C):
            for h in range(dxc.shape[2]):
                for w in range(dxc.shape[3]):
                    dxc[n, c, h, w] = 0
            for kh in range(KH):
                for kw in range(KW):
                    r = (c * KH + kh) * KW + kw
                    for oh in range(OH):
                        col = (n * OH + oh) * OW
                        for ow in range(OW):
                            dxc[n, c, oh + kh, ow + kw] += cols[r, col + ow]


def col2im_any(cols, dxc, KH, KW, stride, OH, OW):
    if stride == (1, 1):
        col2im_dense_s1(cols, dxc, KH, KW, OH, OW)
    else:
        col2im_dense(cols, dxc, KH, KW, stride[0], stride[1], OH, OW)


@numba.njit(cache=True, nogil=True)
def pad_chunk(x, s, e, xpad, pt, pl):
    """``xpad[n - s]`` = image ``n`` of ``x`` inside a border of zeros (``pt`` rows on top, ``pl`` columns left)."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for n in range(s, e):
        for c in range(C):
            for h in range(xpad.shape[2]):
                for w in range(xpad.shape[3]):
                    xpad[n - s, c, h, w] = 0
            for h in range(H):
                for w in range(W):
                    xpad[n - s, c, h + pt, w + pl] = x[n, c, h, w]


@numba.njit(cache=True, nogil=True)
def unpad_chunk(dxpad, dx, s, e, pt, pl):
    """``dx[n]`` = the inside of ``dxpad[n - s]`` (the gradient that fell on the padding is dropped)."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    for n in range(s, e):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    dx[n, c, h, w] = dxpad[n - s, c, h + pt, w + pl]


def chunk_cols(x, s, e, cols, KH, KW, stride, pad, OH, OW, pad_buf):
    """im2col of images ``s:e`` into ``cols``; pads them into ``pad_buf`` first if ``pad`` is not zero."""
    if any(pad):
        xc = pad_buf[:(e - s) * x.shape[1] * (x.shape[2] + pad[0] + pad[1]) * (x.shape[3] + pad[2] + pad[3])]
        xc = xc.reshape(e - s, x.shape[1], x.shape[2] + pad[0] + pad[1], x.shape[3] + pad[2] + pad[3])
        pad_chunk(x, s, e, xc, pad[0], pad[2])
    else:
        xc = x[s:e]
    if tuple(stride) == (1, 1):
        im2col_dense_s1(xc, cols, KH, KW, OH, OW)
    else:
        im2col_dense(xc, cols, KH, KW, stride[0], stride[1], OH, OW)


@numba.njit(cache=True, nogil=True)
def cols32(x, s, e, cols, xpad, padded, pt, pl, KH, KW, sh, sw, OH, OW):
    """:func:`chunk_cols` inside Numba: images ``s:e`` of ``x`` (padded into ``xpad`` first) as ``cols``."""
    if padded:
        pad_chunk(x, s, e, xpad, pt, pl)
        if sh == 1 and sw == 1:
            im2col_dense_s1(xpad, cols, KH, KW, OH, OW)
        else:
            im2col_dense(xpad, cols, KH, KW, sh, sw, OH, OW)
    elif sh == 1 and sw == 1:
        im2col_dense_s1(x[s:e], cols, KH, KW, OH, OW)
    else:
        im2col_dense(x[s:e], cols, KH, KW, sh, sw, OH, OW)


@numba.njit(cache=True, nogil=True)
def scatter_out(out, y, s, e, b, has_bias, relu):
    """``y[n, o, p] = out[o, (n - s) P + p] (+ b[o])``: the chunk's GEMM result into NCHW order; with
    ``relu``, ``max(that, 0)`` as the definition's ``maximum``: ``nan`` stays, ``-0.0`` becomes ``0.0``."""
    C_out, P = y.shape[1], y.shape[2]
    zero = y.dtype.type(0)
    for n in range(s, e):
        for o in range(C_out):
            add = b[o] if has_bias else 0
            col = (n - s) * P
            if relu:
                for p in range(P):
                    v = out[o, col + p] + add
                    y[n, o, p] = zero if v <= 0 else v
            else:
                for p in range(P):
                    y[n, o, p] = out[o, col + p] + add


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def gather_dy(dy, s, e, d, y, relu, db):
    """``d[o, (n - s) P + p] = dy[n, o, p]``: the chunk's upstream gradient as one matrix; with ``relu``,
    times ``[y[n, o, p] > 0]`` as the definition's ``relu_backward`` (``dy * 0`` keeps its ``-0.0``).
    With a non-empty ``db`` (float64), also ``db[o] +=`` each image's row of ``d`` summed in the dtype
    (reassociated, so that it vectorises: a fixed order, the same from call to call)."""
    C_out, P = dy.shape[1], dy.shape[2]
    one, zero = dy.dtype.type(1), dy.dtype.type(0)
    want_db = db.shape[0] > 0
    for n in range(s, e):
        for o in range(C_out):
            col = (n - s) * P
            row = zero
            if relu:
                for p in range(P):
                    v = dy[n, o, p] * (one if y[n, o, p] > 0 else zero)
                    d[o, col + p] = v
                    row += v
            else:
                for p in range(P):
                    v = dy[n, o, p]
                    d[o, col + p] = v
                    row += v
            if want_db:
                db[o] += row
