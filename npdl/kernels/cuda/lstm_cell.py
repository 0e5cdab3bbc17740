"""The LSTM cell's per-step elementwise work as one launch each way: numba.cuda versions of
``npdl.layers.lstm.lstm_forward_step`` / ``lstm_backward_step`` (same arguments, same results).

The definition's ``lstm_forward_step`` is about a dozen CuPy operations (the gates' sigmoids
and tanh, the cell update, ``tanh(c)``, ``h``) and its ``lstm_backward_step`` about fifteen: on
a GPU, one kernel launch each, per time step, for arrays of a few thousand elements. Here one
thread per ``(n, j)``, ``j < H``, does all four gates of hidden unit ``j`` of example ``n``. The
loops over steps (``lstm_cell.forward_sequence`` / ``backward_sequence``, one recurrent matrix
product per step, cuBLAS through CuPy) have no kernel here: the definition's loops run, and
call these steps through the dispatch. The same operations in the same order as the
definition, in the arrays' dtype (typed constants), so results agree with it to round-off
(the GPU may fuse a multiply and an add; its ``tanhf`` is within a few ulp).
"""

from __future__ import annotations

import math

from numba import cuda

from ... import backend
from . import launch


@cuda.jit(cache=True)
def _forward(z_rec, z_in, c_prev, G, c, tc, h):
    k = cuda.grid(1)
    N, H = c_prev.shape
    if k >= N * H:
        return
    n, j = k // H, k % H
    half, one = c_prev.dtype.type(0.5), c_prev.dtype.type(1)
    zi = z_rec[n, j] + z_in[n, j]
    zf = z_rec[n, H + j] + z_in[n, H + j]
    zg = z_rec[n, 2 * H + j] + z_in[n, 2 * H + j]
    zo = z_rec[n, 3 * H + j] + z_in[n, 3 * H + j]
    i = (math.tanh(zi * half) + one) * half  # sigmoid in its tanh form, as the definition
    f = (math.tanh(zf * half) + one) * half
    g = math.tanh(zg)
    o = (math.tanh(zo * half) + one) * half
    G[n, j], G[n, H + j], G[n, 2 * H + j], G[n, 3 * H + j] = i, f, g, o
    cn = f * c_prev[n, j] + i * g
    t = math.tanh(cn)
    c[n, j], tc[n, j], h[n, j] = cn, t, o * t


@cuda.jit(cache=True)
def _backward(dh, dc_next, G, tc, c_prev, dz, dc_prev):
    k = cuda.grid(1)
    N, H = tc.shape
    if k >= N * H:
        return
    n, j = k // H, k % H
    one = tc.dtype.type(1)
    i, f, g, o = G[n, j], G[n, H + j], G[n, 2 * H + j], G[n, 3 * H + j]
    d = dh[n, j]
    t = tc[n, j]
    dc = d * o * (one - t * t) + dc_next[n, j]
    dz[n, j] = i * (one - i) * (dc * g)
    dz[n, H + j] = f * (one - f) * (dc * c_prev[n, j])
    dz[n, 2 * H + j] = (one - g * g) * (dc * i)
    dz[n, 3 * H + j] = o * (one - o) * (d * t)
    dc_prev[n, j] = dc * f


def _incoming_dh(dh_rec, dy_t, like):
    """``dh_rec + dy_t``, either possibly None (no gradient on that path): zeros when both are."""
    if dh_rec is None and dy_t is None:
        return backend.namespace(like).zeros_like(like)
    return dh_rec if dy_t is None else (dy_t if dh_rec is None else dh_rec + dy_t)


def forward_step(z_rec, z_in, c_prev):
    """As the definition: returns ``(G, c, tc, h)``."""
    xp = backend.namespace(z_rec, c_prev)
    z_rec, z_in, c_prev = backend.row_major(z_rec), backend.row_major(z_in), backend.row_major(c_prev)
    N, H = (int(d) for d in c_prev.shape)
    G = xp.empty((N, 4 * H), dtype=c_prev.dtype)
    c, tc, h = (xp.empty((N, H), dtype=c_prev.dtype) for _ in range(3))
    launch(_forward, N * H, z_rec, z_in, c_prev, G, c, tc, h)
    return G, c, tc, h


def backward_step(dh_rec, dy_t, dc_next, G, tc, c_prev):
    """As the definition: returns ``(dz, dc_prev)``; a missing gradient (None) counts as zeros."""
    xp = backend.namespace(G, tc)
    dh = backend.row_major(_incoming_dh(dh_rec, dy_t, tc))
    dc_next = xp.zeros_like(tc) if dc_next is None else backend.row_major(dc_next)
    G, tc, c_prev = backend.row_major(G), backend.row_major(tc), backend.row_major(c_prev)
    dz = xp.empty(G.shape, dtype=G.dtype)
    dc_prev = xp.empty(tc.shape, dtype=tc.dtype)
    launch(_backward, int(tc.shape[0]) * int(tc.shape[1]), dh, dc_next, G, tc, c_prev, dz, dc_prev)
    return dz, dc_prev
