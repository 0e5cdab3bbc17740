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
sums over images that make ``dW`` are split differently (per run of chunks, then the runs
in order), so ``dW`` agrees with the definition to round-off, and is the same from one call
to the next whatever the number of threads and whichever thread took which chunks. The ``workspace`` holds the chunk
buffers (``conv2d.*`` keys) between calls; they never change a result.
"""

from __future__ import annotations

import numba
import numpy as np

from ..geometry import conv_geometry, pair, sizes
from .blas import NO_TRANS, ROW_MAJOR, TRANS, gemm_at_b, sgemm
from .chunking import buffers, run_chunks, workers
from .conv2d_cols import chunk_cols, col2im_any, col2im_dense, col2im_dense_s1, cols32, unpad_chunk

#: the dtypes the loops are compiled for; others go to the definition
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: elements of one chunk's ``cols`` (float32: 1 MiB, half a core's L2 here)
CHUNK_ELEMENTS = 1 << 18

#: at most this many fixed runs of chunks make the backward pass's ``dW``, each summed in its own
#: buffer, then added in order: ``dW`` is the same whichever thread took which run, and however
#: many threads there are
GROUPS = 32


@numba.njit(cache=True, nogil=True)
def _scatter_out(out, y, s, e, b, has_bias, relu):
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


@numba.njit(cache=True, nogil=True)
def _gather_dy(dy, s, e, d, y, relu):
    """``d[o, (n - s) P + p] = dy[n, o, p]``: the chunk's upstream gradient as one matrix; with ``relu``,
    times ``[y[n, o, p] > 0]`` as the definition's ``relu_backward`` (``dy * 0`` keeps its ``-0.0``)."""
    C_out, P = dy.shape[1], dy.shape[2]
    one, zero = dy.dtype.type(1), dy.dtype.type(0)
    for n in range(s, e):
        for o in range(C_out):
            col = (n - s) * P
            if relu:
                for p in range(P):
                    d[o, col + p] = dy[n, o, p] * (one if y[n, o, p] > 0 else zero)
            else:
                for p in range(P):
                    d[o, col + p] = dy[n, o, p]


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def _relu_bias_grad(dy, y, db):
    """``db[o] = sum over (n, p) of dy[n, o, p] * [y[n, o, p] > 0]``: each image's row summed in the
    dtype (reassociated, so that it vectorises: a fixed order, the same from call to call), the rows
    added in float64."""
    one, zero = dy.dtype.type(1), dy.dtype.type(0)
    for o in range(dy.shape[1]):
        total = 0.0
        for n in range(dy.shape[0]):
            row = zero
            for p in range(dy.shape[2]):
                row += dy[n, o, p] * (one if y[n, o, p] > 0 else zero)
            total += row
        db[o] = total


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
    _scatter_out(out, y, s, e, b, has_bias, relu)


@numba.njit(cache=True, nogil=True)
def _backward_run32(gemm, x, dy3, first, last, nb, W2, dW2T, cols_buf, d_buf, dcols_buf, xpad_buf, padded,
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
        _gather_dy(dy3, s, e, d, y3, relu)
        beta = np.float32(0.0) if i == first else np.float32(1.0)
        gemm(ROW_MAJOR, NO_TRANS, TRANS, K, C_out, n, np.float32(1.0), cols.ctypes.data, n, d.ctypes.data, n,
             beta, dW2T.ctypes.data, C_out)
        if need_dx:
            dcols = dcols_buf[:K * n].reshape(K, n)
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


def _plan(x_shape, W_shape, stride, pad):
    N, C, H, W, KH, KW, OH, OW = sizes(x_shape, W_shape[2:], stride, pad)
    K, P = C * KH * KW, OH * OW
    nb = max(1, min(N, CHUNK_ELEMENTS // (K * P)))
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
    padded = (x.shape[1] * (x.shape[2] + pad[0] + pad[1]) * (x.shape[3] + pad[2] + pad[3])) * nb
    pad_bufs = buffers(workspace, "conv2d.xpad", n_workers, padded, x.dtype) if any(pad) else [None] * n_workers

    gemm = _one_call(x, W2, y, bias)
    has_pad = any(pad)
    Hp, Wp = x.shape[2] + pad[0] + pad[1], x.shape[3] + pad[2] + pad[3]
    empty = np.empty(0, x.dtype)

    def work(k, chunks):
        for i in chunks:
            s, e = i * nb, min(N, (i + 1) * nb)
            if gemm is not None:
                _forward_chunk32(gemm, x, s, e, W2, bias, b is not None, cols_bufs[k], out_bufs[k],
                                 pad_bufs[k] if has_pad else empty, has_pad, pad[0], pad[2], Hp, Wp,
                                 KH, KW, stride[0], stride[1], OH, OW, y, relu)
                continue
            cols = cols_bufs[k][:K * (e - s) * P].reshape(K, (e - s) * P)
            chunk_cols(x, s, e, cols, KH, KW, stride, pad, OH, OW, pad_bufs[k])
            out = out_bufs[k][:C_out * (e - s) * P].reshape(C_out, (e - s) * P)
            np.matmul(W2, cols, out=out)
            _scatter_out(out, y, s, e, bias, b is not None, relu)

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
    dcols_bufs = buffers(workspace, "conv2d.dcols", n_workers, K * nb * P, x.dtype) if need_dx else None
    padded_shape = (x.shape[1], x.shape[2] + pad[0] + pad[1], x.shape[3] + pad[2] + pad[3])
    padded = padded_shape[0] * padded_shape[1] * padded_shape[2] * nb
    pad_bufs = buffers(workspace, "conv2d.xpad", n_workers, padded, x.dtype) if any(pad) else [None] * n_workers

    # dW is a sum over chunks. Each worker summing the chunks it happened to take would make dW
    # depend on the timing (measured: 7 different dW from 30 identical calls idle, 22 under load),
    # so the chunks are cut into at most GROUPS fixed runs of consecutive chunks, handed out whole;
    # each run's sum goes to its own buffer, and the buffers are added in run order afterwards.
    n_groups = min(GROUPS, n_chunks)
    bounds = [g * n_chunks // n_groups for g in range(n_groups + 1)]
    dW_bufs = buffers(workspace, "conv2d.dW", n_groups, K * C_out, x.dtype)

    gemm = _one_call(x, dy3, W2, *([dx] if need_dx else []))
    has_pad = any(pad)
    empty = np.empty(0, x.dtype)

    def work(k, groups):
        for g in groups:
            if gemm is not None:
                _backward_run32(gemm, x, dy3, bounds[g], bounds[g + 1], nb, W2, dW_bufs[g].reshape(K, C_out),
                                cols_bufs[k], d_bufs[k], dcols_bufs[k] if need_dx else empty,
                                pad_bufs[k] if has_pad else empty, has_pad, pad[0], pad[2], padded_shape[1],
                                padded_shape[2], KH, KW, stride[0], stride[1], OH, OW, need_dx,
                                dx if need_dx else x[:0], y3, relu)
                continue
            # dW2^T (K, C_out) of run g accumulates cols @ d^T in place (BLAS beta = 1 after its first
            # chunk): in this orientation OpenBLAS's GEMM measured 1.5x faster than d @ cols^T at
            # one-image chunks (inner dimension P)
            dW2T = dW_bufs[g].reshape(K, C_out)
            for i in range(bounds[g], bounds[g + 1]):
                s, e = i * nb, min(N, (i + 1) * nb)
                m = (e - s) * P
                cols = cols_bufs[k][:K * m].reshape(K, m)
                chunk_cols(x, s, e, cols, KH, KW, stride, pad, OH, OW, pad_bufs[k])
                d = d_bufs[k][:C_out * m].reshape(C_out, m)
                _gather_dy(dy3, s, e, d, y3, relu)
                first = i == bounds[g]
                if not gemm_at_b(dW2T, cols.T, d.T, 1.0, 0.0 if first else 1.0):
                    if first:
                        np.matmul(cols, d.T, out=dW2T)
                    else:
                        dW2T += cols @ d.T
                if need_dx:
                    dcols = dcols_bufs[k][:K * m].reshape(K, m)
                    np.matmul(W2.T, d, out=dcols)
                    if any(pad):  # pad_bufs[k] holds this chunk's padded x, no longer needed: reuse it
                        dxc = pad_bufs[k][:padded // nb * (e - s)].reshape(e - s, *padded_shape)
                        col2im_any(dcols, dxc, KH, KW, tuple(stride), OH, OW)
                        unpad_chunk(dxc, dx, s, e, pad[0], pad[2])
                    else:
                        col2im_any(dcols, dx[s:e], KH, KW, tuple(stride), OH, OW)

    run_chunks(work, n_groups)
    dW2T = dW_bufs[0].reshape(K, C_out)  # the runs' sums added into the first run's buffer, in order
    for g in range(1, n_groups):
        dW2T += dW_bufs[g].reshape(K, C_out)
    db = None
    if has_bias and relu:
        db = np.empty(C_out, dtype=np.float64)
        _relu_bias_grad(dy3, y3, db)
        db = db.astype(x.dtype)
    elif has_bias:
        db = dy3.sum(axis=(0, 2))
    return dx, dW2T.T.copy().reshape(W.shape), db  # a C-ordered copy: the buffer is the workspace's
