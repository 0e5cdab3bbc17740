r"""The Elman RNN, ``SimpleRNN``: $h_t = act(x_t Wx + h_{t-1} Wh + b)$, with backpropagation
through time written out.

:func:`simple_rnn_forward` / :func:`simple_rnn_backward` do the whole layer: the input
projection of every step in one product, the loop over steps, the weight gradients as
products after it. The loops themselves, :func:`simple_rnn_forward_sequence` and
:func:`simple_rnn_backward_sequence`, are the named operations ``simple_rnn.forward_sequence``
and ``simple_rnn.backward_sequence`` (:func:`npdl.kernels.accelerated`): the code below is
their definition, ``npdl/kernels/numba/simple_rnn.py`` a CPU version for tanh over
preallocated buffers. The layout, truncated BPTT and the shared layer machinery are
described in :mod:`.recurrent_base`.
"""

from __future__ import annotations

from .. import backend, kernels
from .activations import (ELEMENTWISE_WORK, relu_backward, relu_forward, sigmoid_backward, sigmoid_forward,
                          tanh_backward, tanh_forward)
from .recurrent_base import _Recurrent, batch_first, bptt_schedule, cut, input_projection, previous_states, \
    time_major, weight_products


def _identity_forward(a):
    return a, None


def _identity_backward(dh, cache):
    return dh


#: SimpleRNN activations: name -> (forward(a) -> (h, cache), backward(dh, cache) -> da)
RNN_ACTIVATIONS = {"tanh": (tanh_forward, tanh_backward), "sigmoid": (sigmoid_forward, sigmoid_backward),
                   "relu": (relu_forward, relu_backward), "linear": (_identity_forward, _identity_backward)}


# ---------------------------------------------------------------------- the loops over steps


@kernels.accelerated("simple_rnn.forward_sequence")
def simple_rnn_forward_sequence(A_in, Wh, h0, activation="tanh"):
    """The forward loop: for $t = 1 .. T$, $a_t = h_{t-1} Wh + A_{in}[t-1]$, $h_t = act(a_t)$.

    ``A_in`` (T, N, H) is ``x_t Wx + b`` for every step (computed before the loop), ``Wh``
    (H, H), ``h0`` (N, H). Returns ``(hs, act_caches)``: ``h_0 .. h_T`` stacked as (T+1, N, H),
    and the activation's cache of every step (a list of T; for tanh, sigmoid and ReLU the
    cache is ``h_t`` itself).
    """
    xp = backend.namespace(A_in, Wh, h0)
    act_forward, _ = RNN_ACTIVATIONS[activation]
    h, hs, act_caches = h0, [h0], []
    for t in range(int(A_in.shape[0])):
        a = h @ Wh                                # (N, H) @ (H, H) -> (N, H)
        a += A_in[t, ...]
        h, act_cache = act_forward(a)             # (N, H)
        hs.append(h)
        act_caches.append(act_cache)
    return xp.stack(hs), act_caches


@kernels.accelerated("simple_rnn.backward_sequence", on=2)
def simple_rnn_backward_sequence(dy_seq, dy_last, hs, act_caches, Wh, activation="tanh", bptt_truncate=None):
    r"""The backward loop, from $t = T$ down to 1 (the recurrence derived in :func:`simple_rnn_backward`):

    * $dh_t = dy_t + da_{t+1} Wh^\top$: (N, H); no second term at $t = T$, nor where a chunk starts;
    * $da_t = dh_t \odot act'(a_t)$: (N, H), from the activation's cache of step $t$.

    ``dy_seq`` (T, N, H) holds every step's output gradient (``return_sequences``), or is None
    and ``dy_last`` (N, H) is ``h_T``'s alone; ``hs`` (T+1, N, H) and ``act_caches`` are the
    forward loop's. Returns ``(dA, dh0)``: every ``da_t`` stacked as (T, N, H), and
    $dh_0 = da_1 Wh^\top$ (N, H) (zeros where truncation cuts it off).
    """
    xp = backend.namespace(hs, Wh)
    _, act_backward = RNN_ACTIVATIONS[activation]
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
        dh_next = None if cut(t, bptt_truncate) else da @ WhT   # (N, H) @ (H, H)
    return xp.stack(dA), (xp.zeros_like(hs[0, ...]) if dh_next is None else dh_next)


# ------------------------------------------------------------------------- the whole layer


def simple_rnn_forward(x, Wx, Wh, b, h0, activation="tanh", return_sequences=False):
    r"""The Elman recurrence over T steps.

    Shapes: ``x`` (N, T, F), ``Wx`` (F, H), ``Wh`` (H, H), ``b`` (H,) or None, ``h0`` (N, H).
    For $t = 1 .. T$ (``x_t = x[:, t-1, :]``):

    * $a_t = x_t Wx + h_{t-1} Wh + b$: (N, F) @ (F, H) + (N, H) @ (H, H) + (H,) -> (N, H);
    * $h_t = act(a_t)$: (N, H).

    Returns ``y``: every ``h_t`` as (N, T, H) with ``return_sequences``, else the last
    ``h_T`` (N, H); and the cache: the time-major input ``X`` (T*N, F) (for ``dWx``), the
    weights, every state ``hs = [h_0, ..., h_T]`` (for ``dWh`` and the activation's
    derivative) and the activation's per-step caches.
    """
    xp = backend.namespace(x, Wx, Wh, h0)
    N, T, F = (int(d) for d in x.shape)
    H = int(Wh.shape[0])
    X = time_major(xp, x)                        # (T*N, F)
    A_in = input_projection(X, Wx)              # (T*N, H): x_t Wx for every step at once
    if b is not None:
        A_in += b
    A_in = xp.reshape(A_in, (T, N, H))
    hs, act_caches = simple_rnn_forward_sequence(A_in, Wh, h0, activation)
    h = hs[-1, ...]
    y = batch_first(xp, hs[1:, ...], N, T) if return_sequences else h
    cache = {"X": X, "Wx": Wx, "Wh": Wh, "hs": hs, "act": act_caches, "activation": activation,
             "return_sequences": return_sequences, "has_bias": b is not None, "shape": (N, T, F)}
    return y, cache


def simple_rnn_backward(dy, cache, bptt_truncate=None, need_dx=True, need_dW=True):
    r"""Backpropagation through time for :func:`simple_rnn_forward`.

    ``dy`` is $\frac{\partial L}{\partial y}$: (N, T, H) with ``return_sequences`` (``dy_t = dy[:, t-1, :]``), else
    (N, H), the gradient of $h_T$ alone (then $dy_t = 0$ for $t < T$).

    **The state gradient.** $h_t$ reaches the loss along two paths: directly through
    ``y`` ($dy_t$) and through $a_{t+1} = x_{t+1} Wx + h_t Wh + b$. So the total
    gradient $dh_t = \frac{\partial L}{\partial h_t}$ (N, H) obeys, from $t = T$ down to 1:

    * $dh_T = dy_T$;
    * $da_t = dh_t \odot act'(a_t)$: (N, H), elementwise; for tanh $dh_t \odot (1 - h_t^2)$;
    * $dh_{t-1} = dy_{t-1} + da_t Wh^\top$: (N, H) @ (H, H) -> (N, H).

    $dh_0 = da_1 Wh^\top$ is the gradient of the initial state. (With ``bptt_truncate=k``
    the term $da_t Wh^\top$ is dropped where step $t - 1 = k, 2k, ...$ starts a chunk.)

    **The parameters** are shared by every step, so their gradients sum over steps:

    * $dWx = \sum_{t} x_t^\top da_t = X^\top dA$: (F, T*N) @ (T*N, H) -> (F, H), the steps
      stacked as rows (``dA`` is every $da_t$, (T*N, H));
    * $dWh = \sum_{t} h_{t-1}^\top da_t = H_{prev}^\top dA$: (H, T*N) @ (T*N, H) -> (H, H);
    * $db = \sum_{t} \sum_{n} da_t[n]$: (H,);
    * $dx_t = da_t Wx^\top$: all steps at once, $dA \, Wx^\top$ (T*N, F), back to (N, T, F).

    Returns ``(dx, dWx, dWh, db, dh0)`` (``db`` None without a bias, ``dx`` None with
    ``need_dx=False``, ``dWx``/``dWh`` None with ``need_dW=False``: the caller then
    applies ``X^T dA`` and ``H_prev^T dA`` itself, from :func:`simple_rnn_products`).
    """
    X, Wx, Wh, hs = cache["X"], cache["Wx"], cache["Wh"], cache["hs"]
    N, T, F = cache["shape"]
    xp = backend.namespace(dy, Wh)
    dy_tm = xp.permute_dims(dy, (1, 0, 2)) if cache["return_sequences"] else None  # (T, N, H) view
    dA, dh0 = simple_rnn_backward_sequence(dy_tm, None if dy_tm is not None else dy, hs, cache["act"], Wh,
                                           cache["activation"], bptt_truncate)
    dA = xp.reshape(dA, (T * N, int(Wh.shape[0])))
    cache["dA"] = dA
    dWx = X.T @ dA if need_dW else None
    dWh = previous_states(xp, hs, N, T).T @ dA if need_dW else None
    db = xp.sum(dA, axis=0) if cache["has_bias"] else None
    dx = batch_first(xp, dA @ Wx.T, N, T) if need_dx else None
    return dx, dWx, dWh, db, dh0


#: ``{"Wx": (X, dA), "Wh": (H_prev, dA)}`` after :func:`simple_rnn_backward`: the weight gradients
#: as unformed products ``A^T B`` (see :func:`.recurrent_base.weight_products`)
simple_rnn_products = weight_products


# ------------------------------------------------------------------------------- the layer


class SimpleRNN(_Recurrent):
    """The Elman RNN $h_t = act(x_t Wx + h_{t-1} Wh + b)$ over inputs (N, T, n_in).

    Output: the last state (N, units), or every state (N, T, units) with
    ``return_sequences``. ``activation``: ``tanh`` (default), ``sigmoid``, ``relu`` or
    ``linear``. Weights: ``Wx`` (n_in, units) Glorot-uniform, ``Wh`` (units, units)
    orthogonal, ``b`` zeros (Keras's defaults). ``stateful``, ``initial_state``,
    :meth:`reset_states` and ``state_grads``: see :class:`~.recurrent_base._Recurrent`;
    ``bptt_truncate``: see :mod:`.recurrent_base`. Parameters are ``dtype`` (float32 by
    default) on ``device``.
    """

    def __init__(self, n_in: int, units: int, activation: str = "tanh", return_sequences: bool = False,
                 stateful: bool = False, init="glorot_uniform", recurrent_init="orthogonal", bias: bool = True,
                 bptt_truncate: int | None = None, dtype=None, device="cpu", rng=None, name: str | None = None):
        if activation not in RNN_ACTIVATIONS:
            raise ValueError(f"SimpleRNN: unknown activation {activation!r}; choose one of "
                             f"{', '.join(RNN_ACTIVATIONS)}")
        self.activation = activation
        super().__init__(n_in, units, return_sequences, stateful, init, recurrent_init, bias, bptt_truncate, dtype,
                         device, rng, name)

    def forward(self, x, training=False, initial_state=None):
        self._check_input(x)
        (h0,) = self._start_states(x, initial_state)
        y, self.cache = simple_rnn_forward(x, self.params["Wx"], self.params["Wh"], self.params.get("b"), h0,
                                           self.activation, self.return_sequences)
        if self.stateful:
            self.states = (self.cache["hs"][-1, ...],)
        return y

    def backward(self, dy):
        dx, _, _, db, dh0 = simple_rnn_backward(dy, self.cache, self.bptt_truncate, self.need_input_grad,
                                                need_dW=False)
        self.state_grads = {"h": dh0}
        self._finish_backward(db)
        return dx

    def work(self, input_shape, need_input_grad=True, dtype=None) -> dict:
        """FLOPs of :func:`simple_rnn_forward` and :func:`simple_rnn_backward` on ``input_shape`` (N, T, F)
        and what the cache keeps (:mod:`npdl.bench.work`). Forward: the input projection (2 T N F H, or
        T N H as a broadcast multiply when F = 1), the bias, and per step ``h Wh`` (2 N H^2), the add and
        the activation. Backward: per step the activation's slope, ``dh_next + dy_t`` where both arrive
        and ``da Wh^T`` (:func:`.recurrent_base.bptt_schedule`); then ``dWx`` (2 F T N H), ``dWh``
        (2 H T N H), ``db`` and ``dx`` (2 T N H F, not for a first layer). The cache keeps ``X`` (a
        time-major copy), ``hs`` (the output is a view of it) and each step's activation output."""
        N, T, F = (int(d) for d in input_shape)
        H, M = self.units, int(input_shape[0]) * self.units
        act_fwd, act_bwd, keeps_h, _ = ELEMENTWISE_WORK[self.activation]
        products, adds, _ = bptt_schedule(T, self.return_sequences, self.bptt_truncate)
        projection = T * M if F == 1 else 2 * T * N * F * H
        bias = T * M if self.bias else 0
        forward = projection + bias + T * (2 * M * H + M + act_fwd * M)
        backward = (adds + T * act_bwd) * M + products * 2 * M * H + 2 * F * T * M + 2 * H * T * M + bias \
            + (2 * T * M * F if need_input_grad else 0)
        item = 8 if self.dtype == "float64" else 4
        out = T * M if self.return_sequences else M
        kept = T * N * F + (T + 1) * M - out + (T * M if keeps_h else 0)
        return {"forward": forward, "backward": backward, "keeps_output": True, "kept_bytes": item * kept}

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}
