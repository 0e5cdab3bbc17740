"""The LSTM's loops over time steps on the CPU: versions of
``npdl.layers.lstm.lstm_forward_sequence`` / ``lstm_backward_sequence`` (same arguments, same
results). The cell's single steps (``lstm_cell.forward_step`` / ``backward_step``) have no CPU
kernel: these loops never call them.

The definition takes ~12 NumPy calls per step forward and ~15 backward, each a pass over an
(N, H) or (N, 4H) array plus Python dispatch; at the LSTM regressor's size (N = 50, H = 20)
dispatch and allocation dominate. Here the whole loop runs over preallocated buffers: backward
is one Numba pass and one GEMM per step; forward is one GEMM, two NumPy tanh calls (NumPy's
vectorised tanh: ~1 ns per element, against ~10 ns for a scalar ``math.tanh`` in a Numba loop)
and one Numba pass per step. Arrays of mixed or non-float dtypes are declined (``NotImplemented``).

In float32 the forward step's elementwise work is one Numba call (:func:`_step32`) with the
vectorised float32 tanh of :mod:`.fast_tanh` (NumPy's float32 tanh is a scalar loop on CPUs
without AVX-512, 7 ns per element on a 2-core AMD EPYC): per step one GEMM and one Numba pass.
float64 (the gradient checks) keeps NumPy's tanh.

In float32, where NumPy's BLAS can be called directly (:mod:`.blas`), each loop over steps is one
Numba call (:func:`_forward32`, :func:`_backward32`) that calls the same ``cblas_sgemm`` NumPy's
``matmul`` calls, with the same arguments: the same bits as the loop in Python, without a Python
iteration, four views and a Numba dispatch of eight arrays per step. On a 2-core AMD EPYC (Zen 1)
at N = 50, H = 20, T = 20 that took the forward loop from 0.56 to 0.44 ms and the backward loop from
0.44 to 0.33 ms.
"""

from __future__ import annotations

import numba
import numpy as np

from .blas import NO_TRANS, ROW_MAJOR, TRANS, numpy_sgemm as sgemm
from .fast_tanh import tanh32


@numba.njit(cache=True)
def _gates_and_cell(G, c_prev, c):
    """``G`` holds tanh of the scaled pre-activation: sigmoid(z) = (tanh(z/2) + 1) / 2 on the
    i, f, o blocks (in place); then ``c = f * c_prev + i * g``."""
    N, H = c_prev.shape
    for n in range(N):
        for j in range(H):
            i = 0.5 * G[n, j] + 0.5
            f = 0.5 * G[n, H + j] + 0.5
            o = 0.5 * G[n, 3 * H + j] + 0.5
            G[n, j], G[n, H + j], G[n, 3 * H + j] = i, f, o
            c[n, j] = f * c_prev[n, j] + i * G[n, 2 * H + j]


@numba.njit(cache=True)
def _backward(dh, dy_t, dc, G, tc, c_prev, dz, has_dy):
    """``dh += dy_t``; ``d = dc + dh o (1 - tc^2)``; ``dz`` = the gates' gradients; ``dc <- d f`` (in place)."""
    N, H = tc.shape
    for n in range(N):
        for j in range(H):
            h_grad = dh[n, j]
            if has_dy:
                h_grad += dy_t[n, j]
            i, f, g, o = G[n, j], G[n, H + j], G[n, 2 * H + j], G[n, 3 * H + j]
            t = tc[n, j]
            d = dc[n, j] + h_grad * o * (1.0 - t * t)
            dc[n, j] = d * f
            dz[n, j] = d * g * i * (1.0 - i)
            dz[n, H + j] = d * c_prev[n, j] * f * (1.0 - f)
            dz[n, 2 * H + j] = d * i * (1.0 - g * g)
            dz[n, 3 * H + j] = h_grad * t * o * (1.0 - o)


@numba.njit(cache=True, error_model="numpy")
def _step32(z, z_in, scale, offset, c_prev, c, tc, h):
    """One float32 step after its GEMM ``z = h_{t-1} Wh``: ``z += z_in``, then the gates in place,
    ``G = tanh(z * scale) * scale + offset`` (``scale``, ``offset`` = 1/2 on the i, f, o blocks:
    the definition's sigmoid ``(tanh(z / 2) + 1) / 2``, the same rounding as halving is exact; 1 and 0
    on the g block: tanh), then ``c = f c_prev + i g``, ``tc = tanh(c)``, ``h = o tc``."""
    N, K = z.shape
    H = K // 4
    for n in range(N):
        for j in range(K):
            z[n, j] = tanh32((z[n, j] + z_in[n, j]) * scale[j]) * scale[j] + offset[j]
    for n in range(N):
        for j in range(H):
            cell = z[n, H + j] * c_prev[n, j] + z[n, j] * z[n, 2 * H + j]
            c[n, j] = cell
            t = tanh32(cell)
            tc[n, j] = t
            h[n, j] = z[n, 3 * H + j] * t


@numba.njit(cache=True, error_model="numpy")
def _forward32(gemm, Z_in, Wh, scale, offset, hs, cs, gates, tanh_cs):
    """The float32 forward loop: per step ``gates[t] = hs[t] @ Wh`` (``gemm``: ``cblas_sgemm``), then
    :func:`_step32`. All arrays C-contiguous; ``hs[0]``, ``cs[0]`` hold ``h0``, ``c0``."""
    T, N, K = Z_in.shape
    H = K // 4
    one, zero = np.float32(1.0), np.float32(0.0)
    for t in range(T):
        z = gates[t]
        gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, N, K, H, one, hs[t].ctypes.data, H, Wh.ctypes.data, K, zero,
             z.ctypes.data, K)
        _step32(z, Z_in[t], scale, offset, cs[t], cs[t + 1], tanh_cs[t], hs[t + 1])


@numba.njit(cache=True)
def _backward32(gemm, dy_seq, has_dy, gates, tanh_cs, cs, Wh, dZ, dh, dc, truncate):
    """The float32 backward loop from ``t = T - 1`` down: :func:`_backward` into ``dZ[t]`` (``dc``
    updated in place), then ``dh = dZ[t] @ Wh^T`` (``gemm``, ``Wh`` read transposed), or ``dh = dc = 0``
    where a chunk of ``truncate`` steps starts (``truncate`` 0: none). ``dy_seq`` is read only with
    ``has_dy``."""
    T, N, K = gates.shape
    H = K // 4
    one, zero = np.float32(1.0), np.float32(0.0)
    for t in range(T - 1, -1, -1):
        dz = dZ[t]
        _backward(dh, dy_seq[t] if has_dy else dh, dc, gates[t], tanh_cs[t], cs[t], dz, has_dy)
        if truncate > 0 and t > 0 and t % truncate == 0:
            dh[...] = 0.0
            dc[...] = 0.0
        else:
            gemm(ROW_MAJOR, NO_TRANS, TRANS, N, H, K, one, dz.ctypes.data, K, Wh.ctypes.data, K, zero,
                 dh.ctypes.data, H)


def _served(*arrays):
    """One float dtype for all (what the layers pass); anything else is the definition's."""
    dtype = arrays[0].dtype
    return dtype in (np.float32, np.float64) and all(a.dtype == dtype for a in arrays)


def forward_sequence(Z_in, Wh, h0, c0):
    """As the definition, into preallocated (T+1, N, H) / (T, N, 4H) buffers: per step one GEMM
    written straight into the step's gate slice, NumPy's vectorised tanh in place, and one Numba
    pass for the gates and the cell; no per-step allocation and no stacking afterwards.

    The sigmoid blocks need ``tanh(z / 2)``: ``Wh`` and ``Z_in`` are scaled by 1/2 on those blocks
    once per sequence (exact: a power of two), so each step's single tanh call serves all four gates."""
    if not _served(Z_in, Wh, h0, c0):
        return NotImplemented
    T, N, K = Z_in.shape
    H = K // 4
    dtype = Z_in.dtype
    hs, cs = np.empty((T + 1, N, H), dtype), np.empty((T + 1, N, H), dtype)
    gates, tanh_cs = np.empty((T, N, K), dtype), np.empty((T, N, H), dtype)
    hs[0], cs[0] = h0, c0
    if dtype == np.float32:
        scale, offset = np.full(K, 0.5, dtype), np.full(K, 0.5, dtype)
        scale[2 * H:3 * H], offset[2 * H:3 * H] = 1.0, 0.0
        gemm = sgemm()
        if gemm is not None and Z_in.flags.c_contiguous and Wh.flags.c_contiguous:
            _forward32(gemm, Z_in, Wh, scale, offset, hs, cs, gates, tanh_cs)
            return hs, cs, gates, tanh_cs
        for t in range(T):
            np.matmul(hs[t], Wh, out=gates[t])
            _step32(gates[t], Z_in[t], scale, offset, cs[t], cs[t + 1], tanh_cs[t], hs[t + 1])
        return hs, cs, gates, tanh_cs
    scale = np.full(K, 0.5, dtype)
    scale[2 * H:3 * H] = 1.0
    Ws, Zs = Wh * scale, Z_in * scale
    for t in range(T):
        z = gates[t]
        np.matmul(hs[t], Ws, out=z)
        z += Zs[t]
        np.tanh(z, out=z)
        _gates_and_cell(z, cs[t], cs[t + 1])
        np.tanh(cs[t + 1], out=tanh_cs[t])
        np.multiply(z[:, 3 * H:], tanh_cs[t], out=hs[t + 1])
    return hs, cs, gates, tanh_cs


def backward_sequence(dy_seq, dy_last, gates, tanh_cs, cs, Wh, bptt_truncate=None):
    """As the definition: per step one Numba pass (``dz_t`` into a preallocated (T, N, 4H) buffer, the
    cell gradient updated in place) and one GEMM written into the state gradient ``dh``."""
    if not _served(gates, tanh_cs, cs, Wh, *(a for a in (dy_seq, dy_last) if a is not None)):
        return NotImplemented
    T, N, K = gates.shape
    H = K // 4
    dZ = np.empty_like(gates)
    dh, dc = np.zeros((N, H), gates.dtype), np.zeros((N, H), gates.dtype)
    if dy_last is not None:
        dh[...] = dy_last
    has_dy = dy_seq is not None
    gemm = sgemm() if gates.dtype == np.float32 else None
    if gemm is not None and all(a.flags.c_contiguous for a in (gates, tanh_cs, cs, Wh)):
        _backward32(gemm, dy_seq if has_dy else dZ, has_dy, gates, tanh_cs, cs, Wh, dZ, dh, dc,
                    int(bptt_truncate or 0))
        return dZ, dh, dc
    WhT = Wh.T
    for t in range(T - 1, -1, -1):
        _backward(dh, dy_seq[t] if has_dy else dh, dc, gates[t], tanh_cs[t], cs[t], dZ[t], has_dy)
        if bptt_truncate and t > 0 and t % int(bptt_truncate) == 0:
            dh[...] = 0.0
            dc[...] = 0.0
        else:
            np.matmul(dZ[t], WhT, out=dh)
    return dZ, dh, dc
