"""The convolution (``npdl.layers.conv.conv2d_forward``/``conv2d_backward``), Numba CPU kernel:
the same matrix products, a few images at a time.

The definition materialises ``cols`` for the whole batch: for LeNet's second layer
(500 images, 20 channels, 5x5 kernel, 8x8 outputs) that is 500 x 32,000 floats, 64 MB,
written once, read back by the GEMM, and its gradient ``dcols`` written and read again.
This kernel does the same products a chunk of images at a time, so each chunk's ``cols``
(about 1 MiB) is built, multiplied and dropped while it is still in the core's cache.
The cache is the definition's, ``(x, W, stride, pad, has_bias, activation, f_cache)``: the
backward pass rebuilds each chunk's ``cols`` from ``x`` (cheap, in cache), as the definition
rebuilds the whole of it. Chunks go to worker threads one at a time (:mod:`.chunking`).

With ``activation="relu"`` (``Conv2D(..., activation="relu")``) the ReLU is applied as each
chunk's product is written into ``y``, and its mask ``[y > 0]`` as each chunk's ``dy`` is read:
the same bits as the definition's ``maximum`` and ``dy * mask``, without the two passes over
the output a separate ReLU layer makes (on the Keras CNN's two convolutions, 1.3 ms of its
forward pass and 1.3 ms of its backward). Other activations go to the definition.

In float32, where a CBLAS can be called directly (:func:`.blas.sgemm`: NumPy's, or oneMKL's where
it is the kernels' library), each chunk of the forward pass, and each run of chunks of the
backward pass, is one Numba call that calls that ``cblas_sgemm`` itself, with the arguments
``np.matmul`` passes: with NumPy's BLAS the same bits as the per-chunk Python steps (the
fallback), without their Python work and the two threads taking turns at the GIL between every
step (measured on a 2-core AMD EPYC Zen 4, the Keras CNN's second convolution, 64 images, medians
of 12 alternations: backward 21.8 -> 20.0 ms, forward 10.3 -> 10.0 ms). Each worker's products
run on one BLAS thread (:func:`.chunking.run_chunks`).

Each output is the same dot product over ``(c, kh, kw)`` as in ``W2 @ cols``; only the
sums over images that make ``dW`` and ``db`` are split differently (per run of chunks, then the
runs in order), so they agree with the definition to round-off, and are the same from one call
to the next whatever the number of threads and whichever thread took which chunks. From
:data:`.conv2d_last.MIN_CHANNELS` input channels, the float32 one-call chunks lay their columns
out channels-last (:mod:`.conv2d_last`): the same products with the terms of each dot product in
``(kh, kw, c)`` order, equal to the definition's to round-off. The ``workspace`` holds the chunk
buffers (``conv2d.*`` keys) between calls; they never change a result.
"""

from __future__ import annotations

import numba
import numpy as np

from ..geometry import conv_geometry, pair, sizes
from . import conv2d_last
from .blas import NO_TRANS, ROW_MAJOR, TRANS, gemm_at_b, numpy_own, sgemm
from .chunking import buffers, run_chunks, workers
from .conv2d_cols import (chunk_cols, col2im_any, col2im_dense, col2im_dense_s1, cols32, gather_dy, scatter_out,
                          unpad_chunk)

#: the dtypes the loops are compiled for; others go to the definition
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: elements of one chunk's ``cols`` (float32: 1 MiB, half a core's L2 here)
CHUNK_ELEMENTS = 1 << 18

#: the chunks are made a multiple of this many (when they hold several images), so that two or four
#: workers share them evenly
CHUNK_MULTIPLE = 4

#: elements between two runs' ``dW`` partial sums (256 bytes in float32)
RUN_ALIGN = 64

#: at most this many fixed runs of chunks make the backward pass's ``dW``, each summed in its own
#: buffer, then added in order: ``dW`` is the same whichever thread took which run, and however
#: many threads there are
GROUPS = 32


@numba.njit(cache=True, nogil=True)
def _sum_runs(parts, n_runs, K, C_out, dW2):
    """``dW2[o, k] = parts[0, k C_out + o] + parts[1, k C_out + o] + ...``: the runs' ``dW2^T`` added in
    run order (the bits of adding them one after another), written out as ``dW2`` (C_out, K)."""
    acc = np.empty(C_out, dtype=parts.dtype)
    for k in range(K):
        base = k * C_out
        for o in range(C_out):
            acc[o] = parts[0, base + o]
        for g in range(1, n_runs):
            for o in range(C_out):
                acc[o] += parts[g, base + o]
        for o in range(C_out):
            dW2[o, k] = acc[o]


@numba.njit(cache=True, nogil=True)
def _forward_chunk32(gemm, x, s, e, W2, b, has_bias, cols_buf, out_buf, xpad_buf, padded, pt, pl, Hp, Wp,
                     KH, KW, sh, sw, OH, OW, y, relu):
    """One chunk of :func:`forward` in one call (float32): ``cols``, ``out = W2 @ cols`` through ``gemm``
    (``cblas_sgemm``, called as ``np.matmul`` calls it), ``out`` (+ ``b``) into ``y``."""
    m, (C_out, K), P = e - s, W2.shape, OH * OW
    n = m * P
    cols = cols_buf[:K * n].reshape(K, n)
    xpad = xpad_buf[:m * x.shape[1] * Hp * Wp].reshape(m, x.shape[1], Hp, Wp) if padded else x[:0]
    cols32(x, s, e, cols, xpad, padded, pt, pl, KH, KW, sh, sw, OH, OW)
    out = out_buf[:C_out * n].reshape(C_out, n)
    gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, C_out, n, K, np.float32(1.0), W2.ctypes.data, K, cols.ctypes.data, n,
         np.float32(0.0), out.ctypes.data, n)
    scatter_out(out, y, s, e, b, has_bias, relu)


@numba.njit(cache=True, nogil=True)
def _backward_run32(gemm, x, dy3, first, last, nb, W2, dW2T, db, cols_buf, d_buf, xpad_buf, padded,
                    pt, pl, Hp, Wp, KH, KW, sh, sw, OH, OW, need_dx, dx, y3, relu):
    """Chunks ``first:last`` of :func:`backward` in one call (float32): per chunk ``cols``, ``d``,
    ``dW2T = cols @ d^T (+ dW2T)`` and, with ``need_dx``, ``dcols = W2^T @ d`` and col2im into ``dx``, the
    products through ``gemm`` with the arguments :func:`.blas.gemm_at_b` and ``np.matmul`` pass."""
    N, C = x.shape[0], x.shape[1]
    (C_out, K), P = W2.shape, OH * OW
    for i in range(first, last):
        s = i * nb
        e = min(N, s + nb)
        m = e - s
        n = m * P
        cols = cols_buf[:K * n].reshape(K, n)
        xpad = xpad_buf[:m * C * Hp * Wp].reshape(m, C, Hp, Wp) if padded else x[:0]
        cols32(x, s, e, cols, xpad, padded, pt, pl, KH, KW, sh, sw, OH, OW)
        d = d_buf[:C_out * n].reshape(C_out, n)
        gather_dy(dy3, s, e, d, y3, relu, db)
        beta = np.float32(0.0) if i == first else np.float32(1.0)
        gemm(ROW_MAJOR, NO_TRANS, TRANS, K, C_out, n, np.float32(1.0), cols.ctypes.data, n, d.ctypes.data, n,
             beta, dW2T.ctypes.data, C_out)
        if need_dx:
            dcols = cols_buf[:K * n].reshape(K, n)
            gemm(ROW_MAJOR, TRANS, NO_TRANS, K, n, C_out, np.float32(1.0), W2.ctypes.data, K, d.ctypes.data, n,
                 np.float32(0.0), dcols.ctypes.data, n)
            if padded:  # xpad holds this chunk's padded x, no longer needed: reuse it
                if sh == 1 and sw == 1:
                    col2im_dense_s1(dcols, xpad, KH, KW, OH, OW)
                else:
                    col2im_dense(dcols, xpad, KH, KW, sh, sw, OH, OW)
                unpad_chunk(xpad, dx, s, e, pt, pl)
            elif sh == 1 and sw == 1:
                col2im_dense_s1(dcols, dx[s:e], KH, KW, OH, OW)
            else:
                col2im_dense(dcols, dx[s:e], KH, KW, sh, sw, OH, OW)


def _one_call(*arrays):
    """``cblas_sgemm`` for the one-call chunks, or None (float64, no CBLAS, a non-contiguous array)."""
    if arrays[0].dtype != np.float32 or not all(a.flags.c_contiguous for a in arrays):
        return None
    return sgemm()


def _weights_last(W, gemm, forward=False):
    """``W`` as (C_out, (kh, kw, c)) where the chunks' columns are laid out channels-last (float32 one-call
    chunks with at least :data:`.conv2d_last.MIN_CHANNELS` input channels; forward, only where the
    kernels' BLAS is not NumPy's: :data:`.conv2d_last.FORWARD_WITH_NUMPYS_BLAS`), else None."""
    if gemm is None or W.shape[1] < conv2d_last.MIN_CHANNELS:
        return None
    if forward and numpy_own() and not conv2d_last.FORWARD_WITH_NUMPYS_BLAS:
        return None
    return np.ascontiguousarray(W.transpose(0, 2, 3, 1)).reshape(W.shape[0], -1)


def _plan(x_shape, W_shape, stride, pad):
    N, C, H, W, KH, KW, OH, OW = sizes(x_shape, W_shape[2:], stride, pad)
    K, P = C * KH * KW, OH * OW
    nb = max(1, min(N, CHUNK_ELEMENTS // (K * P)))
    n_chunks = -(-N // nb)
    if 1 < n_chunks < N:  # a multiple of CHUNK_MULTIPLE chunks, none larger than CHUNK_ELEMENTS allows
        nb = -(-N // (-(-n_chunks // CHUNK_MULTIPLE) * CHUNK_MULTIPLE))
    return N, KH, KW, OH, OW, K, P, nb, -(-N // nb)


#: the activations applied as the output is written (and their gradient as ``dy`` is read); others
#: go to the definition
ACTIVATIONS = ("linear", "relu")


def forward(x, W, b, stride=1, padding="valid", workspace=None, activation="linear"):
    """``(y, cache)`` as :func:`npdl.layers.conv.conv2d_forward`, chunk by chunk: per chunk of images,
    ``cols`` of the chunk, ``out = W2 @ cols``, and ``out`` (+ ``b``) scattered into ``y`` in NCHW order,
    through the ReLU with ``activation="relu"``."""
    if x.dtype not in DTYPES or W.dtype != x.dtype or (b is not None and b.dtype != x.dtype) \
            or activation not in ACTIVATIONS:
        return NotImplemented
    relu = activation == "relu"
    stride = pair(stride, "stride", "conv2d_forward")
    _, _, pad = conv_geometry(x.shape, (int(W.shape[2]), int(W.shape[3])), stride, padding, "conv2d_forward")
    x = np.ascontiguousarray(x)
    W2 = np.ascontiguousarray(W).reshape(W.shape[0], -1)
    C_out = W2.shape[0]
    N, KH, KW, OH, OW, K, P, nb, n_chunks = _plan(x.shape, W.shape, stride, pad)
    y = np.empty((N, C_out, P), dtype=x.dtype)
    n_workers = min(workers(), n_chunks)
    cols_bufs = buffers(workspace, "conv2d.cols", n_workers, K * nb * P, x.dtype)
    out_bufs = buffers(workspace, "conv2d.out", n_workers, C_out * nb * P, x.dtype)
    bias = b if b is not None else np.zeros(C_out, dtype=x.dtype)  # ignored without a bias
    gemm = _one_call(x, W2, y, bias)
    W2T = _weights_last(W, gemm, forward=True)
    has_pad = any(pad)
    Hp, Wp = x.shape[2] + pad[0] + pad[1], x.shape[3] + pad[2] + pad[3]
    padded = x.shape[1] * Hp * Wp * nb
    pad_bufs = buffers(workspace, "conv2d.xpad", n_workers, padded, x.dtype) if has_pad or W2T is not None \
        else [None] * n_workers
    empty = np.empty(0, x.dtype)

    def work(k, chunks):
        for i in chunks:
            s, e = i * nb, min(N, (i + 1) * nb)
            if W2T is not None:
                conv2d_last.forward_chunk32(gemm, x, s, e, W2T, bias, b is not None, cols_bufs[k], out_bufs[k],
                                            pad_bufs[k], pad[0], pad[2], Hp, Wp, KH, KW, stride[0], stride[1], OH, OW,
                                            y, relu)
                continue
            if gemm is not None:
                _forward_chunk32(gemm, x, s, e, W2, bias, b is not None, cols_bufs[k], out_bufs[k],
                                 pad_bufs[k] if has_pad else empty, has_pad, pad[0], pad[2], Hp, Wp,
                                 KH, KW, stride[0], stride[1], OH, OW, y, relu)
                continue
            cols = cols_bufs[k][:K * (e - s) * P].reshape(K, (e - s) * P)
            chunk_cols(x, s, e, cols, KH, KW, stride, pad, OH, OW, pad_bufs[k])
            out = out_bufs[k][:C_out * (e - s) * P].reshape(C_out, (e - s) * P)
            np.matmul(W2, cols, out=out)
            scatter_out(out, y, s, e, bias, b is not None, relu)

    run_chunks(work, n_chunks)
    y = y.reshape(N, C_out, OH, OW)
    return y, (x, W, stride, pad, b is not None, activation, y if relu else None)


def backward(dy, cache, need_dx=True, workspace=None):
    """``(dx, dW, db)`` as :func:`npdl.layers.conv.conv2d_backward`, chunk by chunk: per chunk,
    ``cols`` rebuilt from ``x``, ``d = dy`` (times the ReLU's mask) as (C_out, n P), ``dW2 += d @ cols^T``
    and ``dx[chunk] = col2im(W2^T @ d)``."""
    x, W, stride, pad, has_bias, activation, f_cache = cache
    if x.dtype not in DTYPES or dy.dtype != x.dtype or W.dtype != x.dtype or activation not in ACTIVATIONS:
        return NotImplemented
    relu = activation == "relu"
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy)
    W2 = np.ascontiguousarray(W).reshape(W.shape[0], -1)
    C_out = W2.shape[0]
    N, KH, KW, OH, OW, K, P, nb, n_chunks = _plan(x.shape, W.shape, stride, pad)
    dy3 = dy.reshape(N, C_out, P)
    y3 = np.ascontiguousarray(f_cache).reshape(N, C_out, P) if relu else dy3[:0]
    dx = np.empty(x.shape, dtype=x.dtype) if need_dx else None
    n_workers = min(workers(), n_chunks)
    cols_bufs = buffers(workspace, "conv2d.cols", n_workers, K * nb * P, x.dtype)
    d_bufs = buffers(workspace, "conv2d.out", n_workers, C_out * nb * P, x.dtype)
    gemm = _one_call(x, dy3, W2, *([dx] if need_dx else []))
    W2T = _weights_last(W, gemm)
    has_pad = any(pad)
    padded_shape = (x.shape[1], x.shape[2] + pad[0] + pad[1], x.shape[3] + pad[2] + pad[3])
    padded = padded_shape[0] * padded_shape[1] * padded_shape[2] * nb
    pad_bufs = buffers(workspace, "conv2d.xpad", n_workers, padded, x.dtype) if has_pad or W2T is not None \
        else [None] * n_workers
    empty = np.empty(0, x.dtype)

    # dW is a sum over chunks. Each worker summing the chunks it happened to take would make dW
    # depend on the timing (measured: 7 different dW from 30 identical calls idle, 22 under load),
    # so the chunks are cut into at most GROUPS fixed runs of consecutive chunks, handed out whole;
    # each run's sum goes to its own row of dW_runs (db's to its row of db_runs), and the rows are
    # added in run order afterwards.
    n_groups = min(GROUPS, n_chunks)
    bounds = [g * n_chunks // n_groups for g in range(n_groups + 1)]
    stride_dW = -(-K * C_out // RUN_ALIGN) * RUN_ALIGN  # each run's rows start on an aligned boundary
    dW_runs = buffers(workspace, "conv2d.dW", 1, n_groups * stride_dW, x.dtype)[0].reshape(n_groups, stride_dW)
    db_runs = np.zeros((n_groups, C_out if has_bias else 0), dtype=np.float64)  # each run adds into its row

    def work(k, groups):
        for g in groups:
            if W2T is not None:
                conv2d_last.backward_run32(gemm, x, dy3, bounds[g], bounds[g + 1], nb, W2T, dW_runs[g, :K * C_out],
                                           db_runs[g], cols_bufs[k], d_bufs[k], pad_bufs[k], pad[0], pad[2],
                                           padded_shape[1], padded_shape[2], KH, KW, stride[0], stride[1], OH, OW,
                                           need_dx, dx if need_dx else x[:0], y3, relu)
                continue
            if gemm is not None:
                _backward_run32(gemm, x, dy3, bounds[g], bounds[g + 1], nb, W2,
                                dW_runs[g, :K * C_out].reshape(K, C_out), db_runs[g], cols_bufs[k], d_bufs[k],
                                pad_bufs[k] if has_pad else empty, has_pad, pad[0], pad[2], padded_shape[1],
                                padded_shape[2], KH, KW, stride[0], stride[1], OH, OW, need_dx,
                                dx if need_dx else x[:0], y3, relu)
                continue
            # dW2^T (K, C_out) of run g accumulates cols @ d^T in place (BLAS beta = 1 after its first
            # chunk): in this orientation OpenBLAS's GEMM measured 1.5x faster than d @ cols^T at
            # one-image chunks (inner dimension P)
            dW2T = dW_runs[g, :K * C_out].reshape(K, C_out)
            for i in range(bounds[g], bounds[g + 1]):
                s, e = i * nb, min(N, (i + 1) * nb)
                m = (e - s) * P
                cols = cols_bufs[k][:K * m].reshape(K, m)
                chunk_cols(x, s, e, cols, KH, KW, stride, pad, OH, OW, pad_bufs[k])
                d = d_bufs[k][:C_out * m].reshape(C_out, m)
                gather_dy(dy3, s, e, d, y3, relu, db_runs[g])
                first = i == bounds[g]
                if not gemm_at_b(dW2T, cols.T, d.T, 1.0, 0.0 if first else 1.0):
                    if first:
                        np.matmul(cols, d.T, out=dW2T)
                    else:
                        dW2T += cols @ d.T
                if need_dx:
                    dcols = cols_bufs[k][:K * m].reshape(K, m)  # cols is no longer needed: reuse it
                    np.matmul(W2.T, d, out=dcols)
                    if any(pad):  # pad_bufs[k] holds this chunk's padded x, no longer needed: reuse it
                        dxc = pad_bufs[k][:padded // nb * (e - s)].reshape(e - s, *padded_shape)
                        col2im_any(dcols, dxc, KH, KW, tuple(stride), OH, OW)
                        unpad_chunk(dxc, dx, s, e, pad[0], pad[2])
                    else:
                        col2im_any(dcols, dx[s:e], KH, KW, tuple(stride), OH, OW)

    run_chunks(work, n_groups)
    dW = np.empty(W.shape, dtype=x.dtype)
    if W2T is not None:
        conv2d_last.sum_runs(dW_runs, n_groups, x.shape[1], KH, KW, dW)
    else:
        _sum_runs(dW_runs, n_groups, K, C_out, dW.reshape(C_out, K))
    db = None
    if has_bias:
        db = db_runs[0].copy()
        for g in range(1, n_groups):
            db += db_runs[g]
        db = db.astype(x.dtype)
    return dx, dW, db
