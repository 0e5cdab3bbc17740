"""im2col and col2im, Numba CPU version of :mod:`npdl.kernels.reference.im2col`.

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
"""

from __future__ import annotations

import numba
import numpy as np

from . import PARALLEL_THRESHOLD
from .blas import gemm_at_b


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


def _sizes(x_shape, kernel, stride, pad):
    N, C, H, W = (int(d) for d in x_shape)
    KH, KW = kernel
    OH = (H + pad[0] + pad[1] - KH) // stride[0] + 1
    OW = (W + pad[2] + pad[3] - KW) // stride[1] + 1
    return N, C, H, W, KH, KW, OH, OW


def im2col(x, kernel, stride, pad, workspace=None):
    x = np.ascontiguousarray(x)
    N, C, H, W, KH, KW, OH, OW = _sizes(x.shape, kernel, stride, pad)
    shape = (C * KH * KW, N * OH * OW)
    cols = None if workspace is None else workspace.get("cols")
    if cols is None or cols.shape != shape or cols.dtype != x.dtype:
        cols = np.empty(shape, dtype=x.dtype)
        if workspace is not None:
            workspace["cols"] = cols
    run = _im2col_parallel if cols.size >= PARALLEL_THRESHOLD else _im2col_serial
    run(x, cols, KH, KW, stride[0], stride[1], pad[0], pad[2], OH, OW)
    return cols


def col2im(cols, x_shape, kernel, stride, pad):
    cols = np.ascontiguousarray(cols)
    N, C, H, W, KH, KW, OH, OW = _sizes(x_shape, kernel, stride, pad)
    dx = np.empty((N, C, H, W), dtype=cols.dtype)
    run = _col2im_parallel if cols.size >= PARALLEL_THRESHOLD else _col2im_serial
    run(cols, dx, KH, KW, stride[0], stride[1], pad[0], pad[2], OH, OW)
    return dx


# ------------------------------------------------- the whole convolution, chunk by chunk
#
# ``im2col`` above materialises ``cols`` for the whole batch: for LeNet's second layer
# (500 images, 20 channels, 5x5 kernel, 8x8 outputs) that is 500 x 32,000 floats, 64 MB,
# written once, read back by the GEMM, and its gradient ``dcols`` written and read again.
# The functions below do the same products a few images at a time, so each chunk's
# ``cols`` (about 1 MiB) is built, multiplied and dropped while it is still in the core's
# cache; the backward pass rebuilds a chunk's ``cols`` from ``x`` (cheap, in cache) rather
# than keeping 64 MB alive between the passes. Chunks are handed out to worker threads one
# at a time (the kernels release the GIL, the GEMMs run in single-threaded BLAS), so a core
# that is busy with other work simply takes fewer chunks: no thread waits at a barrier for
# a descheduled partner, which is what makes a statically split parallel loop (or a
# multi-threaded BLAS on small matrices) collapse on a loaded machine.

#: elements of one chunk's ``cols`` (float32: 1 MiB, half a core's L2 here)
CHUNK_ELEMENTS = 1 << 18


@numba.njit(cache=True, nogil=True)
def _im2col_dense(xc, cols, KH, KW, sh, sw, OH, OW):
    """``cols[(c, kh, kw), (n, oh, ow)] = xc[n, c, oh*sh + kh, ow*sw + kw]`` for an already padded chunk.

    Without padding to test, every index is a sum of loop counters, which the compiler
    knows to be >= 0: it drops NumPy's negative-index wraparound and vectorises the copy.
    That makes this ~5x faster than the bounds-tracking :func:`_im2col_plane`, so chunks
    with padding are first copied into a zero-bordered buffer (:func:`_pad_chunk`).
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
def _im2col_dense_s1(xc, cols, KH, KW, OH, OW):
    """:func:`_im2col_dense` at stride 1 (a branch on the stride inside the loops costs ~2x)."""
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
def _col2im_dense(cols, dxc, KH, KW, sh, sw, OH, OW):
    """The adjoint of :func:`_im2col_dense`: ``dxc`` (the padded chunk) zeroed, then every entry added back."""
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
def _col2im_dense_s1(cols, dxc, KH, KW, OH, OW):
    """:func:`_col2im_dense` at stride 1."""
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


def _col2im_any(cols, dxc, KH, KW, stride, OH, OW):
    if stride == (1, 1):
        _col2im_dense_s1(cols, dxc, KH, KW, OH, OW)
    else:
        _col2im_dense(cols, dxc, KH, KW, stride[0], stride[1], OH, OW)


@numba.njit(cache=True, nogil=True)
def _pad_chunk(x, s, e, xpad, pt, pl):
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
def _unpad_chunk(dxpad, dx, s, e, pt, pl):
    """``dx[n]`` = the inside of ``dxpad[n - s]`` (the gradient that fell on the padding is dropped)."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    for n in range(s, e):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    dx[n, c, h, w] = dxpad[n - s, c, h + pt, w + pl]


def _chunk_cols(x, s, e, cols, KH, KW, stride, pad, OH, OW, pad_buf):
    """im2col of images ``s:e`` into ``cols``; pads them into ``pad_buf`` first if ``pad`` is not zero."""
    if any(pad):
        xc = pad_buf[:(e - s) * x.shape[1] * (x.shape[2] + pad[0] + pad[1]) * (x.shape[3] + pad[2] + pad[3])]
        xc = xc.reshape(e - s, x.shape[1], x.shape[2] + pad[0] + pad[1], x.shape[3] + pad[2] + pad[3])
        _pad_chunk(x, s, e, xc, pad[0], pad[2])
    else:
        xc = x[s:e]
    if tuple(stride) == (1, 1):
        _im2col_dense_s1(xc, cols, KH, KW, OH, OW)
    else:
        _im2col_dense(xc, cols, KH, KW, stride[0], stride[1], OH, OW)


@numba.njit(cache=True, nogil=True)
def _scatter_out(out, y, s, e, b, has_bias):
    """``y[n, o, p] = out[o, (n - s) P + p] (+ b[o])``: the chunk's GEMM result into NCHW order."""
    C_out, P = y.shape[1], y.shape[2]
    for n in range(s, e):
        for o in range(C_out):
            add = b[o] if has_bias else 0
            col = (n - s) * P
            for p in range(P):
                y[n, o, p] = out[o, col + p] + add


@numba.njit(cache=True, nogil=True)
def _gather_dy(dy, s, e, d):
    """``d[o, (n - s) P + p] = dy[n, o, p]``: the chunk's upstream gradient as one matrix."""
    C_out, P = dy.shape[1], dy.shape[2]
    for n in range(s, e):
        for o in range(C_out):
            col = (n - s) * P
            for p in range(P):
                d[o, col + p] = dy[n, o, p]


_pool = None
_blas = None


def workers() -> int:
    """Threads that share the chunks: Numba's thread count (``NUMBA_NUM_THREADS``)."""
    return max(1, int(numba.config.NUMBA_NUM_THREADS))


def _run_chunks(work, n_chunks):
    """``work(worker, chunk_iterator)`` on up to :func:`workers` threads, BLAS held to one thread meanwhile."""
    global _pool, _blas
    import itertools
    import threading

    n = min(workers(), n_chunks)
    if n <= 1:
        return [work(0, iter(range(n_chunks)))]
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="npdl-conv")
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController

            _blas = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # noqa: BLE001 -- no threadpoolctl: leave BLAS as it is
            _blas = []
    counter, lock = itertools.count(), threading.Lock()

    def chunks():
        while True:
            with lock:
                i = next(counter)
            if i >= n_chunks:
                return
            yield i

    saved = [(lib, lib.get_num_threads()) for lib in _blas]
    for lib, _ in saved:
        lib.set_num_threads(1)
    try:
        futures = [_pool.submit(work, k, chunks()) for k in range(n)]
        return [f.result() for f in futures]
    finally:
        for lib, threads in saved:
            lib.set_num_threads(threads)


#: byte alignment of the chunk buffers
ALIGN = 256


def aligned_empty(size, dtype):
    """A flat uninitialised array of ``size`` elements whose data starts on an :data:`ALIGN`-byte boundary.

    NumPy only promises 16 bytes. OpenBLAS's small-chunk GEMMs measured up to 1.5x slower on a
    misaligned operand (the ``dW`` product of a Keras-CNN chunk: 9.4 against 14.7 ms per step)."""
    dtype = np.dtype(dtype)
    raw = np.empty(size * dtype.itemsize + ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + size * dtype.itemsize].view(dtype)


def _buffers(workspace, key, n, size, dtype):
    """``n`` flat aligned buffers of ``size`` elements kept in ``workspace[key]`` between calls."""
    bufs = None if workspace is None else workspace.get(key)
    if bufs is None or len(bufs) < n or bufs[0].size != size or bufs[0].dtype != dtype:
        bufs = [aligned_empty(size, dtype) for _ in range(n)]
        if workspace is not None:
            workspace[key] = bufs
    return bufs


def _plan(x_shape, W_shape, stride, pad):
    N, C, H, W, KH, KW, OH, OW = _sizes(x_shape, W_shape[2:], stride, pad)
    K, P = C * KH * KW, OH * OW
    nb = max(1, min(N, CHUNK_ELEMENTS // (K * P)))
    return N, KH, KW, OH, OW, K, P, nb, -(-N // nb)


def conv_forward(x, W, b, stride, pad, workspace=None):
    """``y`` (N, C_out, OH, OW) = the convolution of ``x`` with ``W`` (+ ``b``), chunk by chunk.

    The same arithmetic as ``W2 @ im2col(x)`` (each output is one dot product over
    ``(c, kh, kw)``), only never holding more than a chunk of ``cols`` at once.
    """
    x = np.ascontiguousarray(x)
    W2 = np.ascontiguousarray(W).reshape(W.shape[0], -1)
    C_out = W2.shape[0]
    N, KH, KW, OH, OW, K, P, nb, n_chunks = _plan(x.shape, W.shape, stride, pad)
    y = np.empty((N, C_out, P), dtype=x.dtype)
    n_workers = min(workers(), n_chunks)
    cols_bufs = _buffers(workspace, "cols", n_workers, K * nb * P, x.dtype)
    out_bufs = _buffers(workspace, "out", n_workers, C_out * nb * P, x.dtype)
    bias = b if b is not None else np.zeros(C_out, dtype=x.dtype)  # ignored without a bias
    padded = (x.shape[1] * (x.shape[2] + pad[0] + pad[1]) * (x.shape[3] + pad[2] + pad[3])) * nb
    pad_bufs = _buffers(workspace, "xpad", n_workers, padded, x.dtype) if any(pad) else [None] * n_workers

    def work(k, chunks):
        for i in chunks:
            s, e = i * nb, min(N, (i + 1) * nb)
            cols = cols_bufs[k][:K * (e - s) * P].reshape(K, (e - s) * P)
            _chunk_cols(x, s, e, cols, KH, KW, stride, pad, OH, OW, pad_bufs[k])
            out = out_bufs[k][:C_out * (e - s) * P].reshape(C_out, (e - s) * P)
            np.matmul(W2, cols, out=out)
            _scatter_out(out, y, s, e, bias, b is not None)

    _run_chunks(work, n_chunks)
    return y.reshape(N, C_out, OH, OW)


def conv_backward(dy, x, W, stride, pad, has_bias, need_dx=True, workspace=None):
    """``(dx, dW, db)`` of :func:`conv_forward`, chunk by chunk: per chunk ``d = dy`` as (C_out, n P),
    ``dW2 += d @ cols^T`` and ``dx[chunk] = col2im(W2^T @ d)``; ``cols`` is rebuilt from ``x``."""
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy)
    W2 = np.ascontiguousarray(W).reshape(W.shape[0], -1)
    C_out = W2.shape[0]
    N, KH, KW, OH, OW, K, P, nb, n_chunks = _plan(x.shape, W.shape, stride, pad)
    dy3 = dy.reshape(N, C_out, P)
    dx = np.empty(x.shape, dtype=x.dtype) if need_dx else None
    n_workers = min(workers(), n_chunks)
    cols_bufs = _buffers(workspace, "cols", n_workers, K * nb * P, x.dtype)
    d_bufs = _buffers(workspace, "out", n_workers, C_out * nb * P, x.dtype)
    dcols_bufs = _buffers(workspace, "dcols", n_workers, K * nb * P, x.dtype) if need_dx else None
    padded_shape = (x.shape[1], x.shape[2] + pad[0] + pad[1], x.shape[3] + pad[2] + pad[3])
    padded = padded_shape[0] * padded_shape[1] * padded_shape[2] * nb
    pad_bufs = _buffers(workspace, "xpad", n_workers, padded, x.dtype) if any(pad) else [None] * n_workers

    def work(k, chunks):
        # dW2^T (K, C_out) accumulates cols @ d^T in place (BLAS beta = 1): in this orientation
        # OpenBLAS's GEMM measured 1.5x faster than d @ cols^T at one-image chunks (inner dimension P)
        dW2T = np.zeros((K, C_out), dtype=x.dtype)
        for i in chunks:
            s, e = i * nb, min(N, (i + 1) * nb)
            m = (e - s) * P
            cols = cols_bufs[k][:K * m].reshape(K, m)
            _chunk_cols(x, s, e, cols, KH, KW, stride, pad, OH, OW, pad_bufs[k])
            d = d_bufs[k][:C_out * m].reshape(C_out, m)
            _gather_dy(dy3, s, e, d)
            if not gemm_at_b(dW2T, cols.T, d.T, 1.0, 1.0):
                dW2T += cols @ d.T
            if need_dx:
                dcols = dcols_bufs[k][:K * m].reshape(K, m)
                np.matmul(W2.T, d, out=dcols)
                if any(pad):  # pad_bufs[k] holds this chunk's padded x, no longer needed: reuse it
                    dxc = pad_bufs[k][:padded // nb * (e - s)].reshape(e - s, *padded_shape)
                    _col2im_any(dcols, dxc, KH, KW, tuple(stride), OH, OW)
                    _unpad_chunk(dxc, dx, s, e, pad[0], pad[2])
                else:
                    _col2im_any(dcols, dx[s:e], KH, KW, tuple(stride), OH, OW)
        return dW2T

    partial = _run_chunks(work, n_chunks)
    dW2T = partial[0]
    for g in partial[1:]:
        dW2T += g
    db = dy3.sum(axis=(0, 2)) if has_bias else None
    return dx, np.ascontiguousarray(dW2T.T).reshape(W.shape), db
