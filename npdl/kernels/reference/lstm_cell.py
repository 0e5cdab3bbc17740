"""The LSTM's loop over time steps (array-API reference): the specification the Numba kernel is
tested against. :func:`forward_sequence` / :func:`backward_sequence` run the loops, one fused
recurrent product per step, and :func:`forward_step` / :func:`backward_step` do one step's
elementwise work. The input projection and the weight gradients stay with the caller
(:mod:`npdl.layers.recurrent`); the equations and their derivation are in ``lstm_forward`` /
``lstm_backward`` there.

Gate blocks of the (N, 4H) arrays, in order: input ``i``, forget ``f``, candidate ``g``, output ``o``.
"""

from __future__ import annotations

from ... import backend


def forward_step(z_rec, z_in, c_prev):
    """From the recurrent and input parts of the pre-activation, ``z = z_rec + z_in`` (N, 4H), and
    ``c_{t-1}`` (N, H): ``G = [sigmoid(z_i), sigmoid(z_f), tanh(z_g), sigmoid(z_o)]``,
    ``c = f * c_prev + i * g``, ``tc = tanh(c)``, ``h = o * tc``. Returns ``(G, c, tc, h)``."""
    xp = backend.namespace(z_rec, c_prev)
    H = int(c_prev.shape[1])
    z = z_rec + z_in
    G = (xp.tanh(z * 0.5) + 1.0) * 0.5            # sigmoid, in its overflow-free tanh form
    G[:, 2 * H:3 * H] = xp.tanh(z[:, 2 * H:3 * H])
    i, f, g, o = G[:, :H], G[:, H:2 * H], G[:, 2 * H:3 * H], G[:, 3 * H:]
    c = f * c_prev + i * g
    tc = xp.tanh(c)
    return G, c, tc, o * tc


def incoming_dh(dh_rec, dy_t, like):
    """``dh_t = dh_rec + dy_t``, the gradient reaching ``h_t`` from the next step and from the
    step's own output; either may be None (no gradient on that path), and zeros shaped like
    ``like`` when both are (truncated BPTT without per-step outputs)."""
    if dh_rec is None and dy_t is None:
        return backend.namespace(like).zeros_like(like)
    return dh_rec if dy_t is None else (dy_t if dh_rec is None else dh_rec + dy_t)


def backward_step(dh_rec, dy_t, dc_next, G, tc, c_prev):
    """``dh = dh_rec + dy_t`` (either may be None: no gradient from that path), then
    ``dc = dc_next + dh * o * (1 - tc^2)`` and ``dz = [dc g, dc c_prev, dc i, dh tc] * [i(1-i), f(1-f),
    1-g^2, o(1-o)]`` (N, 4H). Returns ``(dz, dc_prev)`` with ``dc_prev = dc * f``, the cell
    gradient that reaches ``c_{t-1}`` through ``c_t = f * c_{t-1} + ...``."""
    xp = backend.namespace(G, tc)
    H = int(tc.shape[1])
    dh = incoming_dh(dh_rec, dy_t, tc)
    i, f, g, o = G[:, :H], G[:, H:2 * H], G[:, 2 * H:3 * H], G[:, 3 * H:]
    dc = dh * o * (1.0 - tc * tc)
    if dc_next is not None:
        dc = dc + dc_next
    dG = xp.concat([dc * g, dc * c_prev, dc * i, dh * tc], axis=1)
    dz = G * (1.0 - G)
    dz[:, 2 * H:3 * H] = 1.0 - g * g
    return dz * dG, dc * f


def _cut(t, bptt_truncate):
    """True when the state gradients must not flow from step ``t`` into step ``t - 1``."""
    return bool(bptt_truncate) and t > 0 and t % int(bptt_truncate) == 0


def forward_sequence(Z_in, Wh, h0, c0, step=forward_step):
    """The whole forward loop. ``Z_in`` (T, N, 4H) is ``x_t Wx + b`` for every step, ``Wh`` (H, 4H),
    ``h0``/``c0`` (N, H). Per step: one fused product ``h_{t-1} Wh`` (N, 4H), then :func:`forward_step`.
    Returns ``(hs, cs, gates, tanh_cs)``: (T+1, N, H) with ``h_0 .. h_T``, (T+1, N, H) with
    ``c_0 .. c_T``, (T, N, 4H) with ``G_1 .. G_T`` and (T, N, H) with ``tanh(c_1) .. tanh(c_T)``.
    ``step`` does one step's elementwise work (a fused GPU kernel passes its own)."""
    xp = backend.namespace(Z_in, Wh, h0, c0)
    h, c = h0, c0
    hs, cs, gates, tanh_cs = [h0], [c0], [], []
    for t in range(int(Z_in.shape[0])):
        G, c, tc, h = step(h @ Wh, Z_in[t, ...], c)
        hs.append(h)
        cs.append(c)
        gates.append(G)
        tanh_cs.append(tc)
    return xp.stack(hs), xp.stack(cs), xp.stack(gates), xp.stack(tanh_cs)


def backward_sequence(dy_seq, dy_last, gates, tanh_cs, cs, Wh, bptt_truncate=None, step=backward_step):
    """The whole backward loop, from step T down to 1. ``dy_seq`` (T, N, H) is the output
    gradient of every step (``return_sequences``) or None; ``dy_last`` (N, H) that of ``h_T``
    alone, or None. Per step: :func:`backward_step`, then ``dh_{t-1} = dz_t Wh^T`` (N, 4H) @
    (4H, H) and ``dc_{t-1} = dc_t f_t`` (both cut to zero where ``bptt_truncate`` says).
    Returns ``(dZ, dh0, dc0)``: every ``dz_t`` as (T, N, 4H), and the initial states' gradients.
    ``step`` is :func:`backward_step` or a fused kernel with its signature."""
    xp = backend.namespace(gates, Wh)
    T = int(gates.shape[0])
    WhT = Wh.T
    dZ = [None] * T
    dh_next = dc_next = None                      # None: no gradient arrives along that path
    for t in range(T - 1, -1, -1):
        dy_t = dy_seq[t, ...] if dy_seq is not None else (dy_last if t == T - 1 else None)
        dz, dc_prev = step(dh_next, dy_t, dc_next, gates[t, ...], tanh_cs[t, ...], cs[t, ...])
        dZ[t] = dz
        if _cut(t, bptt_truncate):
            dh_next = dc_next = None              # the earlier chunk gets only its own outputs' gradient
        else:
            dh_next, dc_next = dz @ WhT, dc_prev
    zeros = xp.zeros_like(cs[0, ...])
    return xp.stack(dZ), (zeros if dh_next is None else dh_next), (zeros if dc_next is None else dc_next)
