"""The LSTM (Hochreiter & Schmidhuber 1997, with a forget gate), with backpropagation through
time written out.

:func:`lstm_forward` / :func:`lstm_backward` do the whole layer: the input projection of every
step in one product, the loop over steps, the weight gradients as products after it. The
loops, :func:`lstm_forward_sequence` / :func:`lstm_backward_sequence`, and one step's
elementwise work inside them, :func:`lstm_forward_step` / :func:`lstm_backward_step`, are the
named operations ``lstm_cell.forward_sequence``, ``lstm_cell.backward_sequence``,
``lstm_cell.forward_step`` and ``lstm_cell.backward_step`` (:func:`npdl.kernels.accelerated`):
the code below is their definition. ``npdl/kernels/numba/lstm_cell.py`` runs whole loops on
the CPU over preallocated buffers; ``npdl/kernels/cuda/lstm_cell.py`` does each step in one
GPU launch each way, inside the loops below. The layout, truncated BPTT and the shared layer
machinery are described in :mod:`.recurrent_base`.

Gate blocks of the (N, 4H) arrays, in order: input ``i``, forget ``f``, candidate ``g``,
output ``o`` (PyTorch's order; Keras's i, f, c, o).
"""

from __future__ import annotations

from .. import backend, kernels
from .recurrent_base import _Recurrent, batch_first, bptt_schedule, cut, input_projection, previous_states, \
    time_major, weight_products

# ------------------------------------------------------------------------------- one step


@kernels.accelerated("lstm_cell.forward_step")
def lstm_forward_step(z_rec, z_in, c_prev):
    r"""One step's gates and cell, from the recurrent and input parts of the pre-activation.

    $z_{rec} = h_{t-1} Wh$ and $z_{in} = x_t Wx + b$ (N, 4H), $c_{prev} = c_{t-1}$ (N, H):

    * $z = z_{rec} + z_{in}$: (N, 4H);
    * $G = [\sigma(z_i), \sigma(z_f), \tanh(z_g), \sigma(z_o)] = [i, f, g, o]$: (N, 4H), blocks of H columns;
    * $c = f \odot c_{prev} + i \odot g$, $tc = \tanh(c)$, $h = o \odot tc$: (N, H) each.

    Returns ``(G, c, tc, h)``.
    """
    xp = backend.namespace(z_rec, c_prev)
    H = int(c_prev.shape[1])
    z = z_rec + z_in
    G = (xp.tanh(z * 0.5) + 1.0) * 0.5            # sigmoid, in its overflow-free tanh form
    G[:, 2 * H:3 * H] = xp.tanh(z[:, 2 * H:3 * H])
    i, f, g, o = G[:, :H], G[:, H:2 * H], G[:, 2 * H:3 * H], G[:, 3 * H:]
    c = f * c_prev + i * g
    tc = xp.tanh(c)
    return G, c, tc, o * tc


def _incoming_dh(dh_rec, dy_t, like):
    """``dh_t = dh_rec + dy_t``, the gradient reaching ``h_t`` from the next step and from the
    step's own output; either may be None (no gradient on that path), and zeros shaped like
    ``like`` when both are (truncated BPTT without per-step outputs)."""
    if dh_rec is None and dy_t is None:
        return backend.namespace(like).zeros_like(like)
    return dh_rec if dy_t is None else (dy_t if dh_rec is None else dh_rec + dy_t)


@kernels.accelerated("lstm_cell.backward_step", on=3)
def lstm_backward_step(dh_rec, dy_t, dc_next, G, tc, c_prev):
    r"""One step backward (the equations derived in :func:`lstm_backward`).

    $dh_{rec} = dz_{t+1} Wh^\top$ and $dy_t$ (N, H) are the two gradients reaching $h_t$,
    ``dc_next`` (N, H) the one reaching $c_t$ from step $t + 1$; each may be None (no
    gradient on that path). ``G``, ``tc``, ``c_prev`` are the step's forward values:

    * $dh = dh_{rec} + dy_t$;
    * $dc = dc_{next} + dh \odot o \odot (1 - tc^2)$;
    * $dz = [dc \odot g, dc \odot c_{prev}, dc \odot i, dh \odot tc] \odot [i (1 - i), f (1 - f), 1 - g^2, o (1 - o)]$: (N, 4H).

    Returns ``(dz, dc_prev)`` with $dc_{prev} = dc \odot f$, the cell gradient that reaches
    $c_{t-1}$ through $c_t = f \odot c_{t-1} + ...$.
    """
    xp = backend.namespace(G, tc)
    H = int(tc.shape[1])
    dh = _incoming_dh(dh_rec, dy_t, tc)
    i, f, g, o = G[:, :H], G[:, H:2 * H], G[:, 2 * H:3 * H], G[:, 3 * H:]
    dc = dh * o * (1.0 - tc * tc)
    if dc_next is not None:
        dc = dc + dc_next
    dG = xp.concat([dc * g, dc * c_prev, dc * i, dh * tc], axis=1)
    dz = G * (1.0 - G)
    dz[:, 2 * H:3 * H] = 1.0 - g * g
    return dz * dG, dc * f


# ---------------------------------------------------------------------- the loops over steps


@kernels.accelerated("lstm_cell.forward_sequence")
def lstm_forward_sequence(Z_in, Wh, h0, c0):
    """The forward loop. ``Z_in`` (T, N, 4H) is $x_t Wx + b$ for every step, ``Wh`` (H, 4H),
    ``h0``/``c0`` (N, H). Per step: one fused product $h_{t-1} Wh$ (N, H) @ (H, 4H) for all four
    gates, then :func:`lstm_forward_step`.

    Returns ``(hs, cs, gates, tanh_cs)``: (T+1, N, H) with ``h_0 .. h_T``, (T+1, N, H) with
    ``c_0 .. c_T``, (T, N, 4H) with ``G_1 .. G_T`` and (T, N, H) with ``tanh(c_1) .. tanh(c_T)``.
    """
    xp = backend.namespace(Z_in, Wh, h0, c0)
    h, c = h0, c0
    hs, cs, gates, tanh_cs = [h0], [c0], [], []
    for t in range(int(Z_in.shape[0])):
        G, c, tc, h = lstm_forward_step(h @ Wh, Z_in[t, ...], c)
        hs.append(h)
        cs.append(c)
        gates.append(G)
        tanh_cs.append(tc)
    return xp.stack(hs), xp.stack(cs), xp.stack(gates), xp.stack(tanh_cs)


@kernels.accelerated("lstm_cell.backward_sequence", on=2)
def lstm_backward_sequence(dy_seq, dy_last, gates, tanh_cs, cs, Wh, bptt_truncate=None):
    r"""The backward loop, from step T down to 1.

    ``dy_seq`` (T, N, H) is the output gradient of every step (``return_sequences``) or None;
    ``dy_last`` (N, H) that of ``h_T`` alone, or None. Per step: :func:`lstm_backward_step`,
    then $dh_{t-1} = dz_t Wh^\top$ (N, 4H) @ (4H, H) and $dc_{t-1} = dc_t \odot f_t$ (both cut
    where ``bptt_truncate`` starts a chunk). Returns ``(dZ, dh0, dc0)``: every ``dz_t`` as
    (T, N, 4H), and the initial states' gradients (N, H) (zeros where cut off).
    """
    xp = backend.namespace(gates, Wh)
    T = int(gates.shape[0])
    WhT = Wh.T
    dZ = [None] * T
    dh_next = dc_next = None                      # None: no gradient arrives along that path
    for t in range(T - 1, -1, -1):
        dy_t = dy_seq[t, ...] if dy_seq is not None else (dy_last if t == T - 1 else None)
        dz, dc_prev = lstm_backward_step(dh_next, dy_t, dc_next, gates[t, ...], tanh_cs[t, ...], cs[t, ...])
        dZ[t] = dz
        if cut(t, bptt_truncate):
            dh_next = dc_next = None              # the earlier chunk gets only its own outputs' gradient
        else:
            dh_next, dc_next = dz @ WhT, dc_prev
    zeros = xp.zeros_like(cs[0, ...])
    return xp.stack(dZ), (zeros if dh_next is None else dh_next), (zeros if dc_next is None else dc_next)


# ------------------------------------------------------------------------- the whole layer


def lstm_forward(x, Wx, Wh, b, h0, c0, return_sequences=False):
    r"""The LSTM (with a forget gate; Keras's and PyTorch's cell).

    Shapes: ``x`` (N, T, F), ``Wx`` (F, 4H), ``Wh`` (H, 4H), ``b`` (4H,) or None, ``h0``
    and ``c0`` (N, H). The four gates are column blocks of one pre-activation, in the
    order input ``i``, forget ``f``, candidate ``g``, output ``o``:

    * $z_t = x_t Wx + h_{t-1} Wh + b$: (N, 4H), ONE product per step for all four gates;
    * $i_t = \sigma(z_t[:, 0:H])$, $f_t = \sigma(z_t[:, H:2H])$, $g_t = \tanh(z_t[:, 2H:3H])$, $o_t = \sigma(z_t[:, 3H:4H])$;
    * $c_t = f_t \odot c_{t-1} + i_t \odot g_t$: (N, H), the cell: forget some, write some;
    * $h_t = o_t \odot \tanh(c_t)$: (N, H), the output: a gated view of the cell.

    ``x_t Wx + b`` is computed for all steps before the loop, (T*N, F) @ (F, 4H).
    Returns ``y`` ((N, T, H) with ``return_sequences``, else ``h_T`` (N, H)) and the
    cache: ``X``, the weights, every ``h_t`` and ``c_t`` (t = 0..T), the gate activations
    ``G_t = [i_t, f_t, g_t, o_t]`` (N, 4H) and ``tanh(c_t)``.
    """
    xp = backend.namespace(x, Wx, Wh, h0, c0)
    N, T, F = (int(d) for d in x.shape)
    H = int(Wh.shape[0])
    X = time_major(xp, x)                        # (T*N, F)
    Z_in = input_projection(X, Wx)              # (T*N, 4H): the input projection of every step
    if b is not None:
        Z_in += b
    Z_in = xp.reshape(Z_in, (T, N, 4 * H))
    hs, cs, gates, tanh_cs = lstm_forward_sequence(Z_in, Wh, h0, c0)
    h = hs[-1, ...]
    y = batch_first(xp, hs[1:, ...], N, T) if return_sequences else h
    cache = {"X": X, "Wx": Wx, "Wh": Wh, "hs": hs, "cs": cs, "gates": gates, "tanh_cs": tanh_cs,
             "return_sequences": return_sequences, "has_bias": b is not None, "shape": (N, T, F)}
    return y, cache


def lstm_backward(dy, cache, bptt_truncate=None, need_dx=True, need_dW=True):
    r"""Backpropagation through time for :func:`lstm_forward`.

    ``dy`` is $\frac{\partial L}{\partial y}$: (N, T, H) with ``return_sequences``, else (N, H) for $h_T$ alone.

    **Two state gradients.** $h_t$ feeds the output and $z_{t+1}$; $c_t$ feeds
    $h_t$ and $c_{t+1} = f_{t+1} \odot c_t + ...$. So, from $t = T$ down to 1, with
    $dh_t = \frac{\partial L}{\partial h_t}$ and $dc_t = \frac{\partial L}{\partial c_t}$ (all (N, H)):

    * $dh_t = dy_t + dz_{t+1} Wh^\top$: (N, 4H) @ (4H, H); $dh_T = dy_T$;
    * $do_t = dh_t \odot \tanh(c_t)$, from $h_t = o_t \odot \tanh(c_t)$;
    * $dc_t = dc_t^{(t+1)} + dh_t \odot o_t \odot (1 - \tanh(c_t)^2)$, the first term from step $t + 1$;
    * $di_t = dc_t \odot g_t$, $dg_t = dc_t \odot i_t$, $df_t = dc_t \odot c_{t-1}$;
    * $dc_{t-1}^{(t)} = dc_t \odot f_t$: the cell's gradient path, only a product with $f$;
    * $dz_t = [di_t \odot i_t (1 - i_t), df_t \odot f_t (1 - f_t), dg_t \odot (1 - g_t^2), do_t \odot o_t (1 - o_t)]$.

    $dz_t$ is (N, 4H), the gates' blocks side by side, so the recurrent gradient of all
    four gates is again one product, $dz_t Wh^\top$. $dc_{t-1} = dc_t \odot f_t$ is why the
    LSTM remembers: while the forget gate stays near 1, the cell's gradient passes back
    unchanged, with no weight matrix and no squashing derivative in the way.
    $dh_0 = dz_1 Wh^\top$ and $dc_0 = dc_1 \odot f_1$ are the initial states' gradients.

    **Parameters** (shared by all steps; ``dZ`` is every $dz_t$, (T*N, 4H)):
    $dWx = X^\top dZ$ (F, 4H), $dWh = H_{prev}^\top dZ$ (H, 4H), ``db = sum(dZ, axis=0)`` (4H,),
    $dx = dZ \, Wx^\top$ (T*N, F), back to (N, T, F).

    Returns ``(dx, dWx, dWh, db, dh0, dc0)``; ``need_dx`` / ``need_dW`` as in
    :func:`~.simple_rnn.simple_rnn_backward` (products from :func:`lstm_products`).
    """
    X, Wx, Wh, hs, cs = cache["X"], cache["Wx"], cache["Wh"], cache["hs"], cache["cs"]
    N, T, F = cache["shape"]
    H = int(Wh.shape[0])
    xp = backend.namespace(dy, Wh)
    dy_tm = xp.permute_dims(dy, (1, 0, 2)) if cache["return_sequences"] else None  # (T, N, H) view
    dZ, dh0, dc0 = lstm_backward_sequence(dy_tm, None if dy_tm is not None else dy, cache["gates"],
                                          cache["tanh_cs"], cs, Wh, bptt_truncate)
    dZ = xp.reshape(dZ, (T * N, 4 * H))
    cache["dA"] = dZ
    dWx = X.T @ dZ if need_dW else None
    dWh = previous_states(xp, hs, N, T).T @ dZ if need_dW else None
    db = xp.sum(dZ, axis=0) if cache["has_bias"] else None
    dx = batch_first(xp, dZ @ Wx.T, N, T) if need_dx else None
    return dx, dWx, dWh, db, dh0, dc0


#: ``{"Wx": (X, dZ), "Wh": (H_prev, dZ)}`` after :func:`lstm_backward`: the weight gradients as
#: unformed products ``A^T B`` (see :func:`.recurrent_base.weight_products`)
lstm_products = weight_products


# ------------------------------------------------------------------------------- the layer


class LSTM(_Recurrent):
    """Long short-term memory over inputs (N, T, n_in); see :func:`lstm_forward` for the equations.

    ``Wx`` (n_in, 4 units) and ``Wh`` (units, 4 units) hold the four gates' weights side by
    side (i, f, g, o), so each step is one fused product. ``unit_forget_bias=True`` starts
    the forget gate's bias at 1 (Jozefowicz et al. 2015; Keras's default), so the cell
    remembers by default early in training. The initial state is a pair ``(h0, c0)``.
    Everything else as :class:`~.simple_rnn.SimpleRNN`.
    """

    n_states = 2
    gate_count = 4

    def __init__(self, n_in: int, units: int, return_sequences: bool = False, stateful: bool = False,
                 unit_forget_bias: bool = True, init="glorot_uniform", recurrent_init="orthogonal", bias: bool = True,
                 bptt_truncate: int | None = None, dtype=None, device="cpu", rng=None, name: str | None = None):
        super().__init__(n_in, units, return_sequences, stateful, init, recurrent_init, bias, bptt_truncate, dtype,
                         device, rng, name)
        self.unit_forget_bias = bool(unit_forget_bias)
        if self.bias and self.unit_forget_bias:
            self.params["b"][self.units:2 * self.units] = 1.0

    def forward(self, x, training=False, initial_state=None):
        self._check_input(x)
        h0, c0 = self._start_states(x, initial_state)
        y, self.cache = lstm_forward(x, self.params["Wx"], self.params["Wh"], self.params.get("b"), h0, c0,
                                     self.return_sequences)
        if self.stateful:
            self.states = (self.cache["hs"][-1, ...], self.cache["cs"][-1, ...])
        return y

    def backward(self, dy):
        dx, _, _, db, dh0, dc0 = lstm_backward(dy, self.cache, self.bptt_truncate, self.need_input_grad,
                                               need_dW=False)
        self.state_grads = {"h": dh0, "c": dc0}
        self._finish_backward(db)
        return dx

    def work(self, input_shape, need_input_grad=True, dtype=None) -> dict:
        """FLOPs of :func:`lstm_forward` and :func:`lstm_backward` on ``input_shape`` (N, T, F) and what the
        cache keeps (:mod:`npdl.bench.work`), ``M = N H``. Forward: the input projection (2 T N F 4H, or
        T N 4H when F = 1), the bias, and per step ``h Wh`` (2 N H 4H) and :func:`lstm_forward_step`'s
        26 M (``z`` 4M, the sigmoid form 16M, ``tanh(z_g)`` M, ``c`` 3M, ``tanh(c)`` M, ``h`` M).
        Backward: per step :func:`lstm_backward_step`'s 23 M (``dc`` 4M, ``dG`` 4M, ``G (1 - G)`` 8M,
        ``1 - g^2`` 2M, ``dz`` 4M, ``dc f`` M), M more where two ``dh`` or two ``dc`` arrive, ``dz Wh^T``
        (:func:`.recurrent_base.bptt_schedule`); then ``dWx``, ``dWh``, ``db`` and ``dx`` as for
        SimpleRNN with 4H columns. The cache keeps ``X``, ``hs``, ``cs``, the gates and ``tanh(c)``."""
        N, T, F = (int(d) for d in input_shape)
        H, M = self.units, int(input_shape[0]) * self.units
        products, dh_adds, dc_adds = bptt_schedule(T, self.return_sequences, self.bptt_truncate)
        projection = 4 * T * M if F == 1 else 2 * T * N * F * 4 * H
        bias = 4 * T * M if self.bias else 0
        forward = projection + bias + T * (8 * M * H + 26 * M)
        backward = (23 * T + dh_adds + dc_adds) * M + products * 8 * M * H + 8 * F * T * M + 8 * H * T * M + bias \
            + (8 * T * M * F if need_input_grad else 0)
        item = 8 if self.dtype == "float64" else 4
        out = T * M if self.return_sequences else M
        kept = T * N * F + 2 * (T + 1) * M + 4 * T * M + T * M - out
        return {"forward": forward, "backward": backward, "keeps_output": True, "kept_bytes": item * kept}

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}
