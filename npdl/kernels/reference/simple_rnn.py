"""The SimpleRNN's loop over time steps (array-API reference): the specification the Numba kernel
is tested against. The input projection and the weight gradients stay with the caller
(:mod:`npdl.layers.recurrent`), where the recurrences are derived (``simple_rnn_forward`` /
``simple_rnn_backward``); the activation pairs are that module's ``RNN_ACTIVATIONS``.
"""

from __future__ import annotations

from ... import backend


def _activation(name):
    from ...layers.recurrent import RNN_ACTIVATIONS  # late: the layer module imports the kernels

    return RNN_ACTIVATIONS[name]


def _cut(t, bptt_truncate):
    """True when the state gradient must not flow from step ``t`` into step ``t - 1``."""
    return bool(bptt_truncate) and t > 0 and t % int(bptt_truncate) == 0


def forward_sequence(A_in, Wh, h0, activation="tanh"):
    """``a_t = h_{t-1} Wh + A_in[t]``, ``h_t = act(a_t)`` for t = 1..T. ``A_in`` (T, N, H) is
    ``x_t Wx + b`` for every step. Returns ``(hs, act_caches)``: ``h_0 .. h_T`` as (T+1, N, H), and
    the activation's cache of every step (a list)."""
    xp = backend.namespace(A_in, Wh, h0)
    act_forward, _ = _activation(activation)
    h, hs, act_caches = h0, [h0], []
    for t in range(int(A_in.shape[0])):
        a = h @ Wh                                # (N, H) @ (H, H)
        a += A_in[t, ...]
        h, act_cache = act_forward(a)
        hs.append(h)
        act_caches.append(act_cache)
    return xp.stack(hs), act_caches


def backward_sequence(dy_seq, dy_last, hs, act_caches, Wh, activation="tanh", bptt_truncate=None):
    """From t = T down to 1: ``dh_t = dy_t + da_{t+1} Wh^T``, ``da_t = dh_t * act'(a_t)``. ``dy_seq``
    (T, N, H) holds every step's output gradient (``return_sequences``), or is None and ``dy_last``
    (N, H) is ``h_T``'s alone. Returns ``(dA, dh0)``: every ``da_t`` as (T, N, H) and dL/dh_0."""
    xp = backend.namespace(hs, Wh)
    _, act_backward = _activation(activation)
    T = len(act_caches)
    WhT = Wh.T
    dA = [None] * T
    dh_next = None                                # da_{t+1} Wh^T: None where no gradient arrives
    for t in range(T - 1, -1, -1):
        dy_t = dy_seq[t, ...] if dy_seq is not None else (dy_last if t == T - 1 else None)
        dh = dy_t if dh_next is None else (dh_next if dy_t is None else dh_next + dy_t)
        if dh is None:                            # cut off from both paths (truncated BPTT, last output only)
            dh = xp.zeros_like(hs[0, ...])
        da = act_backward(dh, act_caches[t])      # (N, H)
        dA[t] = da
        dh_next = None if _cut(t, bptt_truncate) else da @ WhT
    return xp.stack(dA), (xp.zeros_like(hs[0, ...]) if dh_next is None else dh_next)
