"""The chunked convolution (:mod:`.conv2d`) with its columns laid out channels-last.

The definition's ``cols`` has a row per ``(c, kh, kw)`` and a column per output position
``(n, oh, ow)``: each row is copied from one input plane, ``OW`` values at a time. Here each chunk
is first copied into a zero-bordered, channels-last buffer ``xpT[n, h, w, c]``, and its columns are
laid out the other way round: ``colsT[(n, oh, ow), (kh, kw, c)] = xpT[n, oh sh + kh, ow sw + kw, c]``,
a row per output position made of ``KH`` runs of ``KW C`` consecutive values at stride 1 (``KH KW``
runs of ``C`` otherwise). With ``C`` of 16 or more (a vector's worth of float32) both the copy and
its adjoint, which adds each row of ``dcolsT`` back into ``dxT``, go a vector at a time, where the
definition's layout moves short runs of ``OW``. On the Keras CNN's second convolution (32 channels
of 14 x 14, 5 x 5 kernel, one image; 2-core Intel Xeon, one thread) the copy took 12 against 27 us
(the padding included), its adjoint 13 against 47 us (the border dropped included); with oneMKL the
backward products ``dW' += dT^T colsT`` and ``dcolsT = dT W'`` took 130 and 116 against 142 and
131 us (OpenBLAS 0.3.31: 145 and 149 against 157 and 159 us).

The products are the definition's with the rows of ``W2`` reordered to ``(kh, kw, c)``
(``W' = W.transpose(0, 2, 3, 1)``), so each output is the same dot product with its terms in
another order: ``y = W' colsT^T`` in the definition's (C_out, n P) order, ``dW'`` put back in
``(c, kh, kw)`` order as the runs are added (:func:`sum_runs`), ``dxT`` back to ``(c, h, w)`` as its
border is dropped. Float32 with a CBLAS only, as the one-call chunks of :mod:`.conv2d`; the forward
pass only where that CBLAS is not NumPy's (:data:`FORWARD_WITH_NUMPYS_BLAS`).
"""

from __future__ import annotations

import numba
import numpy as np

from .blas import NO_TRANS, ROW_MAJOR, TRANS
from .conv2d_cols import scatter_out

#: input channels from which the columns are laid out channels-last
MIN_CHANNELS = 16

#: whether the forward pass lays its columns out channels-last where the kernels' BLAS is NumPy's
#: OpenBLAS: there ``W' colsT^T`` took 1.27-1.40x as long as the definition's ``W2 cols`` ((64, 800) x
#: (800, 196): 215 against 169 us; (50, 500) x (500, 512): 300 against 212 us; one thread, OpenBLAS
#: 0.3.31 on a 2-core Intel Xeon), more than the cheaper copy saves: the whole forward pass took 1.07x
#: as long on the Keras CNN's second convolution, 1.16x on LeNet's. oneMKL took 147 against 145 us and
#: 180 against 172 us for the products, and the pass 0.87x and 0.95x
FORWARD_WITH_NUMPYS_BLAS = False


@numba.njit(cache=True, nogil=True)
def pad_last(x, s, e, xpT, pt, pl):
    """``xpT[n - s, h + pt, w + pl, c] = x[n, c, h, w]`` inside a border of zeros."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for n in range(s, e):
        for h in range(xpT.shape[1]):
            for w in range(xpT.shape[2]):
                for c in range(C):
                    xpT[n - s, h, w, c] = 0
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    xpT[n - s, h + pt, w + pl, c] = x[n, c, h, w]


@numba.njit(cache=True, nogil=True)
def im2col_last(xpT, colsT, KH, KW, sh, sw, OH, OW):
    """``colsT[(n, oh, ow), (kh, kw, c)] = xpT[n, oh sh + kh, ow sw + kw, c]``."""
    m, C = xpT.shape[0], xpT.shape[3]
    for n in range(m):
        for oh in range(OH):
            for ow in range(OW):
                p = (n * OH + oh) * OW + ow
                for kh in range(KH):
                    for kw in range(KW):
                        base = (kh * KW + kw) * C
                        for c in range(C):
                            colsT[p, base + c] = xpT[n, oh * sh + kh, ow * sw + kw, c]


@numba.njit(cache=True, nogil=True)
def im2col_last_s1(xpT, colsT, KH, KW, OH, OW):
    """:func:`im2col_last` at stride 1, where the ``KW C`` values of one ``(n, oh, ow, kh)`` are consecutive
    in both arrays: one run of ``KW C`` values, not ``KW`` runs of ``C``."""
    m, Wp, C = xpT.shape[0], xpT.shape[2], xpT.shape[3]
    rows = xpT.reshape(m, xpT.shape[1], Wp * C)
    run = KW * C
    for n in range(m):
        for oh in range(OH):
            for ow in range(OW):
                p = (n * OH + oh) * OW + ow
                for kh in range(KH):
                    src = rows[n, oh + kh, ow * C:ow * C + run]
                    dst = colsT[p, kh * run:(kh + 1) * run]
                    for j in range(run):
                        dst[j] = src[j]


@numba.njit(cache=True, nogil=True)
def col2im_last(dcolsT, dxpT, KH, KW, sh, sw, OH, OW):
    """The adjoint of :func:`im2col_last`: ``dxpT`` zeroed, then every entry of ``dcolsT`` added back."""
    m, C = dxpT.shape[0], dxpT.shape[3]
    for n in range(m):
        for h in range(dxpT.shape[1]):
            for w in range(dxpT.shape[2]):
                for c in range(C):
                    dxpT[n, h, w, c] = 0
        for oh in range(OH):
            for ow in range(OW):
                p = (n * OH + oh) * OW + ow
                for kh in range(KH):
                    for kw in range(KW):
                        base = (kh * KW + kw) * C
                        for c in range(C):
                            dxpT[n, oh * sh + kh, ow * sw + kw, c] += dcolsT[p, base + c]


@numba.njit(cache=True, nogil=True)
def col2im_last_s1(dcolsT, dxpT, KH, KW, OH, OW):
    """:func:`col2im_last` at stride 1, a run of ``KW C`` values at a time."""
    m, Wp, C = dxpT.shape[0], dxpT.shape[2], dxpT.shape[3]
    rows = dxpT.reshape(m, dxpT.shape[1], Wp * C)
    run = KW * C
    for n in range(m):
        rows[n] = 0
        for oh in range(OH):
            for ow in range(OW):
                p = (n * OH + oh) * OW + ow
                for kh in range(KH):
                    dst = rows[n, oh + kh, ow * C:ow * C + run]
                    src = dcolsT[p, kh * run:(kh + 1) * run]
                    for j in range(run):
                        dst[j] += src[j]


@numba.njit(cache=True, nogil=True)
def unpad_last(dxpT, dx, s, e, pt, pl):
    """``dx[n, c, h, w] = dxpT[n - s, h + pt, w + pl, c]`` (the gradient that fell on the border is dropped)."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    for n in range(s, e):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    dx[n, c, h, w] = dxpT[n - s, h + pt, w + pl, c]


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def gather_last(dy, s, e, dT, y, relu, db):
    """``dT[(n - s) P + p, o] = dy[n, o, p]`` (times ``[y[n, o, p] > 0]`` with ``relu``); with a non-empty
    ``db``, ``db[o] +=`` each image's ``dT[., o]`` summed in the dtype (reassociated, so that it vectorises:
    a fixed order, the same from call to call)."""
    C_out, P = dy.shape[1], dy.shape[2]
    one, zero = dy.dtype.type(1), dy.dtype.type(0)
    want_db = db.shape[0] > 0
    for n in range(s, e):
        row0 = (n - s) * P
        for o in range(C_out):
            total = zero
            if relu:
                for p in range(P):
                    v = dy[n, o, p] * (one if y[n, o, p] > 0 else zero)
                    dT[row0 + p, o] = v
                    total += v
            else:
                for p in range(P):
                    v = dy[n, o, p]
                    dT[row0 + p, o] = v
                    total += v
            if want_db:
                db[o] += total


@numba.njit(cache=True, nogil=True)
def cols_last(x, s, e, xpad_buf, cols_buf, K, pt, pl, Hp, Wp, KH, KW, sh, sw, OH, OW):
    """``(xpT, colsT)`` of images ``s:e``: ``x`` padded into ``xpad_buf`` channels-last, then its columns
    into ``cols_buf`` (:func:`pad_last`, :func:`im2col_last`)."""
    m, C = e - s, x.shape[1]
    xpT = xpad_buf[:m * Hp * Wp * C].reshape(m, Hp, Wp, C)
    pad_last(x, s, e, xpT, pt, pl)
    colsT = cols_buf[:m * OH * OW * K].reshape(m * OH * OW, K)
    if sh == 1 and sw == 1:
        im2col_last_s1(xpT, colsT, KH, KW, OH, OW)
    else:
        im2col_last(xpT, colsT, KH, KW, sh, sw, OH, OW)
    return xpT, colsT


@numba.njit(cache=True, nogil=True)
def forward_chunk32(gemm, x, s, e, W2T, b, has_bias, cols_buf, out_buf, xpad_buf, pt, pl, Hp, Wp, KH, KW, sh, sw,
                    OH, OW, y, relu):
    """One chunk of :func:`.conv2d.forward` channels-last (float32): ``xpT``, ``colsT``, ``out = W' colsT^T``
    (``W'`` = ``W2T``) in the definition's (C_out, n P) order, and ``out`` (+ ``b``) into ``y``."""
    C_out, K = W2T.shape
    n = (e - s) * OH * OW
    _, colsT = cols_last(x, s, e, xpad_buf, cols_buf, K, pt, pl, Hp, Wp, KH, KW, sh, sw, OH, OW)
    out = out_buf[:C_out * n].reshape(C_out, n)
    gemm(ROW_MAJOR, NO_TRANS, TRANS, C_out, n, K, np.float32(1.0), W2T.ctypes.data, K, colsT.ctypes.data, K,
         np.float32(0.0), out.ctypes.data, n)
    scatter_out(out, y, s, e, b, has_bias, relu)


@numba.njit(cache=True, nogil=True)
def backward_run32(gemm, x, dy3, first, last, nb, W2T, part, db, cols_buf, d_buf, xpad_buf, pt, pl, Hp, Wp,
                   KH, KW, sh, sw, OH, OW, need_dx, dx, y3, relu):
    """Chunks ``first:last`` of :func:`.conv2d.backward` channels-last (float32): per chunk ``xpT``, ``colsT``,
    ``dT``, ``part = dT^T colsT (+ part)`` (C_out, K) in ``(kh, kw, c)`` order and, with ``need_dx``,
    ``dcolsT = dT W'`` (``W'`` = ``W2T``, (C_out, K) in that order) added back into ``dx``."""
    N = x.shape[0]
    C_out, K = W2T.shape
    for i in range(first, last):
        s = i * nb
        e = min(N, s + nb)
        n = (e - s) * OH * OW
        xpT, colsT = cols_last(x, s, e, xpad_buf, cols_buf, K, pt, pl, Hp, Wp, KH, KW, sh, sw, OH, OW)
        dT = d_buf[:n * C_out].reshape(n, C_out)
        gather_last(dy3, s, e, dT, y3, relu, db)
        beta = np.float32(0.0) if i == first else np.float32(1.0)
        gemm(ROW_MAJOR, TRANS, NO_TRANS, C_out, K, n, np.float32(1.0), dT.ctypes.data, C_out, colsT.ctypes.data, K,
             beta, part.ctypes.data, K)
        if need_dx:  # colsT and xpT are no longer needed: dcolsT and dxpT reuse them
            gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, n, K, C_out, np.float32(1.0), dT.ctypes.data, C_out,
                 W2T.ctypes.data, K, np.float32(0.0), colsT.ctypes.data, K)
            if sh == 1 and sw == 1:
                col2im_last_s1(colsT, xpT, KH, KW, OH, OW)
            else:
                col2im_last(colsT, xpT, KH, KW, sh, sw, OH, OW)
            unpad_last(xpT, dx, s, e, pt, pl)


@numba.njit(cache=True, nogil=True)
def sum_runs(parts, n_runs, C, KH, KW, dW):
    """``dW[o, c, kh, kw] = parts[0, o K + (kh KW + kw) C + c] + parts[1, ...] + ...``: the runs' sums added
    in run order (the bits of adding them one after another), back in the definition's order."""
    C_out = dW.shape[0]
    K = C * KH * KW
    for o in range(C_out):
        for t in range(KH * KW):
            for c in range(C):
                i = o * K + t * C + c
                acc = parts[0, i]
                for g in range(1, n_runs):
                    acc += parts[g, i]
                dW[o, c, t // KW, t % KW] = acc
