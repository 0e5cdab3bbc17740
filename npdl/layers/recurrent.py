"""Recurrent layers: ``SimpleRNN`` and ``LSTM``, with backpropagation through time written out.

Inputs are batch-first, ``x`` of shape (N, T, F): N sequences of T steps of F
features. Inside the pure functions the time axis goes first, so that step ``t`` of
every array is one contiguous (N, ...) block:

* the input projection ``x_t W_x`` of *all* steps is one matrix product before the loop,
  ``(T*N, F) @ (F, H)``, instead of T small ones inside it;
* the loop then does one product per step, ``h_{t-1} W_h``; for the LSTM the four gates'
  recurrent products are fused into one, ``(N, H) @ (H, 4H)``;
* backward, the weight gradients are sums over steps of outer products, so they too are
  one product each after the loop: ``dW_x = X^T dA`` and ``dW_h = H_prev^T dA`` with the
  steps stacked as rows.

Backpropagation through time (BPTT) is the chain rule on the unrolled loop: ``h_t`` is
used by the output (when ``return_sequences``) *and* by step ``t + 1``, so its gradient
is the sum of both, and it must be computed from the last step backwards. Each backward
docstring derives that recurrence.

``bptt_truncate=k`` (optional) stops the state gradient every ``k`` steps, counting from
the start of the sequence: the chunks ``[0, k), [k, 2k), ...`` are each backpropagated on
their own, the state still flows forward across their boundaries (as if
``stop_gradient(h_{t-1})`` at ``t = k, 2k, ...``). It bounds how far back a gradient
travels (cheaper, no explosion over long spans), at the price of a biased gradient.

The loops over time steps themselves are kernels (:mod:`npdl.kernels`):
``kernels/reference/{simple_rnn,lstm_cell}.py`` are the readable array-API loops (the
specification, used on array-api-strict and CuPy), ``kernels/numba/...`` the CPU versions
over preallocated buffers, tested against them. What the loops compute is derived here.
"""

from __future__ import annotations

from .. import backend, checks, kernels
from ..errors import ShapeError
from ..init import get_initializer, initializer_name
from .activations import (relu_backward, relu_forward, sigmoid_backward, sigmoid_forward, tanh_backward,
                          tanh_forward)
from .base import LAYERS, Layer


def _identity_forward(a):
    return a, None


def _identity_backward(dh, cache):
    return dh


#: SimpleRNN activations: name -> (forward(a) -> (h, cache), backward(dh, cache) -> da)
RNN_ACTIVATIONS = {"tanh": (tanh_forward, tanh_backward), "sigmoid": (sigmoid_forward, sigmoid_backward),
                   "relu": (relu_forward, relu_backward), "linear": (_identity_forward, _identity_backward)}


def _zeros(xp, shape, like):
    device = getattr(like, "device", None)
    return xp.zeros(shape, dtype=like.dtype) if device is None else xp.zeros(shape, dtype=like.dtype, device=device)


def _time_major(xp, x):
    """(N, T, F) -> (T*N, F), rows ``t*N + n``: step ``t`` is rows ``t*N .. t*N + N - 1`` (one copy)."""
    N, T, F = (int(d) for d in x.shape)
    return xp.reshape(xp.permute_dims(x, (1, 0, 2)), (T * N, F))


def _batch_first(xp, a, N, T):
    """(T*N, K) or (T, N, K) time-major -> (N, T, K) batch-first."""
    return xp.permute_dims(xp.reshape(a, (T, N, int(a.shape[-1]))), (1, 0, 2))


def _input_projection(X, W):
    """``X W`` for all steps at once: (T*N, F) @ (F, K). With one feature (F = 1) it is an outer
    product, and a broadcast multiply computes it exactly, about 4x faster than a GEMM with an
    inner dimension of 1 (18 against 77 us for (1000, 1) x (1, 80), one BLAS thread)."""
    return X * W if int(W.shape[0]) == 1 else X @ W


# --------------------------------------------------------------------------- SimpleRNN


def simple_rnn_forward(x, Wx, Wh, b, h0, activation="tanh", return_sequences=False):
    """The Elman recurrence over T steps.

    Shapes: ``x`` (N, T, F), ``Wx`` (F, H), ``Wh`` (H, H), ``b`` (H,) or None, ``h0`` (N, H).
    For ``t = 1 .. T`` (``x_t = x[:, t-1, :]``)::

        a_t = x_t Wx + h_{t-1} Wh + b          # (N, F) @ (F, H) + (N, H) @ (H, H) + (H,) -> (N, H)
        h_t = act(a_t)                          # (N, H)

    Returns ``y``: every ``h_t`` as (N, T, H) with ``return_sequences``, else the last
    ``h_T`` (N, H); and the cache: the time-major input ``X`` (T*N, F) (for ``dWx``), the
    weights, every state ``hs = [h_0, ..., h_T]`` (for ``dWh`` and the activation's
    derivative) and the activation's per-step caches.
    """
    xp = backend.namespace(x, Wx, Wh, h0)
    N, T, F = (int(d) for d in x.shape)
    H = int(Wh.shape[0])
    X = _time_major(xp, x)                       # (T*N, F)
    A_in = _input_projection(X, Wx)             # (T*N, H): x_t Wx for every step at once
    if b is not None:
        A_in += b
    A_in = xp.reshape(A_in, (T, N, H))
    # the loop over steps (a_t = h_{t-1} Wh + A_in[t], h_t = act(a_t)) is a kernel:
    # kernels/reference/simple_rnn.py is the readable specification, Numba's the fast one (tanh)
    hs, act_caches = kernels.get("simple_rnn", xp).forward_sequence(A_in, Wh, h0, activation)
    h = hs[-1, ...]
    y = _batch_first(xp, hs[1:, ...], N, T) if return_sequences else h
    cache = {"X": X, "Wx": Wx, "Wh": Wh, "hs": hs, "act": act_caches, "activation": activation,
             "return_sequences": return_sequences, "has_bias": b is not None, "shape": (N, T, F)}
    return y, cache


def simple_rnn_backward(dy, cache, bptt_truncate=None, need_dx=True, need_dW=True):
    """Backpropagation through time for :func:`simple_rnn_forward`.

    ``dy`` is dL/dy: (N, T, H) with ``return_sequences`` (``dy_t = dy[:, t-1, :]``), else
    (N, H), the gradient of ``h_T`` alone (then ``dy_t = 0`` for ``t < T``).

    **The state gradient.** ``h_t`` reaches the loss along two paths: directly through
    ``y`` (``dy_t``) and through ``a_{t+1} = x_{t+1} Wx + h_t Wh + b``. So the total
    gradient ``dh_t = dL/dh_t`` (N, H) obeys, from ``t = T`` down to 1::

        dh_T = dy_T
        da_t = dh_t * act'(a_t)                 # (N, H), elementwise; tanh: dh_t * (1 - h_t^2)
        dh_{t-1} = dy_{t-1} + da_t Wh^T         # (N, H) @ (H, H) -> (N, H)

    ``dh_0 = da_1 Wh^T`` is the gradient of the initial state. (With ``bptt_truncate=k``
    the term ``da_t Wh^T`` is dropped where step ``t - 1 = k, 2k, ...`` starts a chunk.)

    **The parameters** are shared by every step, so their gradients sum over steps:

    * ``dWx = sum_t x_t^T da_t`` = ``X^T dA``: (F, T*N) @ (T*N, H) -> (F, H), the steps
      stacked as rows (``dA`` is every ``da_t``, (T*N, H));
    * ``dWh = sum_t h_{t-1}^T da_t`` = ``H_prev^T dA``: (H, T*N) @ (T*N, H) -> (H, H);
    * ``db = sum_t sum_n da_t[n]``: (H,);
    * ``dx_t = da_t Wx^T``: all steps at once, ``dA Wx^T`` (T*N, F), back to (N, T, F).

    Returns ``(dx, dWx, dWh, db, dh0)`` (``db`` None without a bias, ``dx`` None with
    ``need_dx=False``, ``dWx``/``dWh`` None with ``need_dW=False``: the caller then
    applies ``X^T dA`` and ``H_prev^T dA`` itself, from :func:`simple_rnn_products`).
    """
    X, Wx, Wh, hs = cache["X"], cache["Wx"], cache["Wh"], cache["hs"]
    N, T, F = cache["shape"]
    xp = backend.namespace(dy, Wh)
    dy_tm = xp.permute_dims(dy, (1, 0, 2)) if cache["return_sequences"] else None  # (T, N, H) view
    # the loop from step T down to 1 (the recurrence above) is a kernel, as in simple_rnn_forward
    dA, dh0 = kernels.get("simple_rnn", xp).backward_sequence(
        dy_tm, None if dy_tm is not None else dy, hs, cache["act"], Wh, cache["activation"], bptt_truncate)
    dA = xp.reshape(dA, (T * N, int(Wh.shape[0])))
    cache["dA"] = dA
    dWx = X.T @ dA if need_dW else None
    dWh = _previous_states(xp, hs, N, T).T @ dA if need_dW else None
    db = xp.sum(dA, axis=0) if cache["has_bias"] else None
    dx = _batch_first(xp, dA @ Wx.T, N, T) if need_dx else None
    return dx, dWx, dWh, db, dh0


def _previous_states(xp, hs, N, T):
    """``[h_0, ..., h_{T-1}]`` stacked time-major as rows: (T*N, H) (``hs`` a list, or already stacked)."""
    H_prev = xp.stack(hs[:-1]) if isinstance(hs, list) else hs[:-1, ...]
    return xp.reshape(H_prev, (T * N, int(H_prev.shape[-1])))


def simple_rnn_products(cache):
    """``{"Wx": (X, dA), "Wh": (H_prev, dA)}``: the weight gradients as unformed products ``A^T B``
    (after :func:`simple_rnn_backward`), for an optimizer that applies them in one GEMM each."""
    xp = backend.namespace(cache["dA"])
    N, T, _ = cache["shape"]
    return {"Wx": (cache["X"], cache["dA"]), "Wh": (_previous_states(xp, cache["hs"], N, T), cache["dA"])}


# -------------------------------------------------------------------------------- LSTM


def lstm_forward(x, Wx, Wh, b, h0, c0, return_sequences=False):
    """The LSTM (Hochreiter & Schmidhuber 1997, with a forget gate; Keras's and PyTorch's cell).

    Shapes: ``x`` (N, T, F), ``Wx`` (F, 4H), ``Wh`` (H, 4H), ``b`` (4H,) or None, ``h0``
    and ``c0`` (N, H). The four gates are column blocks of one pre-activation, in the
    order input ``i``, forget ``f``, candidate ``g``, output ``o`` (PyTorch's; Keras's
    i, f, c, o)::

        z_t = x_t Wx + h_{t-1} Wh + b            # (N, 4H): ONE product per step for all four gates
        i_t = sigmoid(z_t[:, 0:H])     f_t = sigmoid(z_t[:, H:2H])
        g_t = tanh(z_t[:, 2H:3H])      o_t = sigmoid(z_t[:, 3H:4H])
        c_t = f_t * c_{t-1} + i_t * g_t          # (N, H), the cell: forget some, write some
        h_t = o_t * tanh(c_t)                    # (N, H), the output: a gated view of the cell

    ``x_t Wx + b`` is computed for all steps before the loop, (T*N, F) @ (F, 4H).
    Returns ``y`` ((N, T, H) with ``return_sequences``, else ``h_T`` (N, H)) and the
    cache: ``X``, the weights, every ``h_t`` and ``c_t`` (t = 0..T), the gate activations
    ``G_t = [i_t, f_t, g_t, o_t]`` (N, 4H) and ``tanh(c_t)``.
    """
    xp = backend.namespace(x, Wx, Wh, h0, c0)
    N, T, F = (int(d) for d in x.shape)
    H = int(Wh.shape[0])
    X = _time_major(xp, x)                       # (T*N, F)
    Z_in = _input_projection(X, Wx)             # (T*N, 4H): the input projection of every step
    if b is not None:
        Z_in += b
    Z_in = xp.reshape(Z_in, (T, N, 4 * H))
    # the loop over steps (one fused (N, H) @ (H, 4H) product, then the gates and the cell, per step)
    # is a kernel: kernels/reference/lstm_cell.py is the readable specification, Numba's the fast one
    hs, cs, gates, tanh_cs = kernels.get("lstm_cell", xp).forward_sequence(Z_in, Wh, h0, c0)
    h = hs[-1, ...]
    y = _batch_first(xp, hs[1:, ...], N, T) if return_sequences else h
    cache = {"X": X, "Wx": Wx, "Wh": Wh, "hs": hs, "cs": cs, "gates": gates, "tanh_cs": tanh_cs,
             "return_sequences": return_sequences, "has_bias": b is not None, "shape": (N, T, F)}
    return y, cache


def lstm_backward(dy, cache, bptt_truncate=None, need_dx=True, need_dW=True):
    """Backpropagation through time for :func:`lstm_forward`.

    ``dy`` is dL/dy: (N, T, H) with ``return_sequences``, else (N, H) for ``h_T`` alone.

    **Two state gradients.** ``h_t`` feeds the output and ``z_{t+1}``; ``c_t`` feeds
    ``h_t`` and ``c_{t+1} = f_{t+1} * c_t + ...``. So, from ``t = T`` down to 1, with
    ``dh_t = dL/dh_t`` and ``dc_t = dL/dc_t`` (all (N, H), products elementwise)::

        dh_t  = dy_t + dz_{t+1} Wh^T             # (N, 4H) @ (4H, H); dh_T = dy_T
        do_t  = dh_t * tanh(c_t)                 # from h_t = o_t * tanh(c_t)
        dc_t  = dc_t(from t+1) + dh_t * o_t * (1 - tanh(c_t)^2)
        di_t  = dc_t * g_t;   dg_t = dc_t * i_t;   df_t = dc_t * c_{t-1}
        dc_{t-1}(from t) = dc_t * f_t            # the cell's gradient path: only a product with f
        dz_t  = [di_t * i_t (1 - i_t),  df_t * f_t (1 - f_t),  dg_t * (1 - g_t^2),  do_t * o_t (1 - o_t)]

    ``dz_t`` is (N, 4H), the gates' blocks side by side, so the recurrent gradient of all
    four gates is again one product, ``dz_t Wh^T``. ``dc_{t-1} = dc_t * f_t`` is why the
    LSTM remembers: while the forget gate stays near 1, the cell's gradient passes back
    unchanged, with no weight matrix and no squashing derivative in the way.
    ``dh_0 = dz_1 Wh^T`` and ``dc_0 = dc_1 * f_1`` are the initial states' gradients.

    **Parameters** (shared by all steps; ``dZ`` is every ``dz_t``, (T*N, 4H)):
    ``dWx = X^T dZ`` (F, 4H), ``dWh = H_prev^T dZ`` (H, 4H), ``db = sum(dZ, axis=0)`` (4H,),
    ``dx = dZ Wx^T`` (T*N, F), back to (N, T, F).

    Returns ``(dx, dWx, dWh, db, dh0, dc0)``; ``need_dx`` / ``need_dW`` as in
    :func:`simple_rnn_backward` (products from :func:`lstm_products`).
    """
    X, Wx, Wh, hs, cs = cache["X"], cache["Wx"], cache["Wh"], cache["hs"], cache["cs"]
    N, T, F = cache["shape"]
    H = int(Wh.shape[0])
    xp = backend.namespace(dy, Wh)
    dy_tm = xp.permute_dims(dy, (1, 0, 2)) if cache["return_sequences"] else None
    # the loop from step T down to 1 (the recurrences above) is a kernel, as in lstm_forward
    dZ, dh0, dc0 = kernels.get("lstm_cell", xp).backward_sequence(
        dy_tm, None if dy_tm is not None else dy, cache["gates"], cache["tanh_cs"], cs, Wh, bptt_truncate)
    dZ = xp.reshape(dZ, (T * N, 4 * H))
    cache["dA"] = dZ
    dWx = X.T @ dZ if need_dW else None
    dWh = _previous_states(xp, hs, N, T).T @ dZ if need_dW else None
    db = xp.sum(dZ, axis=0) if cache["has_bias"] else None
    dx = _batch_first(xp, dZ @ Wx.T, N, T) if need_dx else None
    return dx, dWx, dWh, db, dh0, dc0


lstm_products = simple_rnn_products


# ------------------------------------------------------------------------------ layers


class _Recurrent(Layer):
    """What SimpleRNN and LSTM share: parameters, input checks, initial and carried states.

    **States.** The state(s) a batch starts from are, in this order: the ``initial_state``
    given to :meth:`forward`; for a ``stateful`` layer, the final state(s) of the previous
    batch; the ``initial_state`` attribute (an (N, H) array, or a tuple ``(h0, c0)`` for the
    LSTM; ``None``); zeros. A stateful layer carries its final state in ``forward`` (training
    or not, as Keras does), treated as a constant (the gradient stops at the batch
    boundary). :meth:`reset_states` forgets it. After ``backward``, ``state_grads`` holds the
    gradients of the initial state(s).
    """

    weight_names = ("Wx", "Wh")
    product_grads = ("Wx", "Wh")
    n_states = 1
    gate_count = 1

    def __init__(self, n_in, units, return_sequences=False, stateful=False, init="glorot_uniform",
                 recurrent_init="orthogonal", bias=True, bptt_truncate=None, dtype=None, device="cpu", rng=None,
                 name=None):
        super().__init__(name)
        kind = type(self).__name__
        if int(n_in) <= 0 or int(units) <= 0:
            raise ValueError(f"{kind}: n_in and units must be positive, got n_in={n_in}, units={units}")
        if bptt_truncate is not None and int(bptt_truncate) < 1:
            raise ValueError(f"{kind}: bptt_truncate must be a positive number of steps or None, got {bptt_truncate}")
        self.n_in, self.units = int(n_in), int(units)
        self.return_sequences, self.stateful, self.bias = bool(return_sequences), bool(stateful), bool(bias)
        self.bptt_truncate = None if bptt_truncate is None else int(bptt_truncate)
        self.init, self.recurrent_init = get_initializer(init), get_initializer(recurrent_init)
        self.dtype = backend.resolve_float(dtype)
        device = backend.get_device(device)
        rng = rng if rng is not None else backend.default_generator(device)
        H, K = self.units, self.gate_count * self.units
        self.params["Wx"] = device.asarray(self.init(rng, (self.n_in, K), self.n_in, K, self.dtype))
        self.params["Wh"] = device.asarray(self.recurrent_init(rng, (H, K), H, K, self.dtype))
        if self.bias:
            self.params["b"] = device.zeros((K,), self.dtype)
        self.initial_state = None
        self.states = None  # the carried final state(s) of a stateful layer: a tuple of (N, H) arrays
        self.state_grads: dict = {}

    @property
    def who(self) -> str:
        return f"{type(self).__name__}({self.n_in}->{self.units}) '{self.name}'"

    def __call__(self, x, training: bool = False, initial_state=None):
        return self.forward(x, training, initial_state)

    # -- states
    def reset_states(self, states=None) -> None:
        """Forget the carried state: the next batch starts from ``initial_state`` (or zeros).

        ``states`` (an (N, H) array; ``(h, c)`` for the LSTM) sets the carried state
        instead, e.g. to continue a sequence whose state was saved. Call it between
        independent sequences, and before feeding a stateful layer a different batch size.
        """
        self.states = None if states is None else self._as_states(states, None, "reset_states")

    def _as_states(self, states, N, what):
        states = tuple(states) if isinstance(states, (tuple, list)) else (states,)
        if len(states) != self.n_states:
            raise ShapeError(f"{self.who}: {what} needs {self.n_states} state array(s) "
                             f"({'(h, c)' if self.n_states == 2 else 'h'}), got {len(states)}")
        for s in states:
            checks.check_float(s, self.who, what, dtype=self.dtype)
            checks.check_rank(s, 2, self.who, what, layout="(batch, units)")
            checks.check_dim(s, 1, self.units, self.who, what, meaning="units")
            if N is not None and int(s.shape[0]) != N:
                raise ShapeError(f"{self.who}: {what} is for a batch of {int(s.shape[0])} but the input batch has "
                                 f"{N} sequences (shape {tuple(int(d) for d in s.shape)})")
            checks.check_same_device(s, self.params["Wx"], self.who, what)
        return states

    def _start_states(self, x, initial_state):
        N = int(x.shape[0])
        if initial_state is not None:
            return self._as_states(initial_state, N, "initial_state")
        if self.stateful and self.states is not None:
            n0 = int(self.states[0].shape[0])
            if n0 != N:
                raise ShapeError(f"{self.who}: this stateful layer carries a state for batches of {n0} sequences but "
                                 f"got a batch of {N} (input shape {tuple(int(d) for d in x.shape)}); feed batches "
                                 f"of {n0}, or call reset_states() first")
            return self.states
        if self.initial_state is not None:
            return self._as_states(self.initial_state, N, "initial_state")
        xp = backend.namespace(self.params["Wx"])
        return tuple(_zeros(xp, (N, self.units), self.params["Wx"]) for _ in range(self.n_states))

    def _check_input(self, x):
        checks.check_float(x, self.who, dtype=self.dtype)
        checks.check_rank(x, 3, self.who, layout="(batch, time steps, features)")
        checks.check_dim(x, 2, self.n_in, self.who)
        if int(x.shape[1]) < 1:
            raise ShapeError(f"{self.who}: input must have at least one time step, got shape "
                             f"{tuple(int(d) for d in x.shape)}")
        checks.check_same_device(x, self.params["Wx"], self.who)

    def _finish_backward(self, dWx, dWh, db):
        if self.defer_products:
            # dWx = X^T dA and dWh = H_prev^T dA are left unformed: plain SGD applies each in one GEMM
            self.products.update(simple_rnn_products(self.cache))
        self.grads["Wx"], self.grads["Wh"] = dWx, dWh
        if db is not None:
            self.grads["b"] = db

    # -- shapes and configuration
    def output_shape(self, input_shape):
        return (int(input_shape[0]), self.units) if self.return_sequences else (self.units,)

    def to(self, device):
        super().to(device)
        self.states, self.initial_state = None, None
        return self

    def get_config(self):
        return {"n_in": self.n_in, "units": self.units, "return_sequences": self.return_sequences,
                "stateful": self.stateful, "init": initializer_name(self.init),
                "recurrent_init": initializer_name(self.recurrent_init), "bias": self.bias,
                "bptt_truncate": self.bptt_truncate, "dtype": self.dtype, "name": self.name}


LAYERS.pop("_Recurrent", None)  # a base class, not a layer to rebuild from a config


class SimpleRNN(_Recurrent):
    """The Elman RNN ``h_t = act(x_t Wx + h_{t-1} Wh + b)`` over inputs (N, T, n_in).

    Output: the last state (N, units), or every state (N, T, units) with
    ``return_sequences``. ``activation``: ``tanh`` (default), ``sigmoid``, ``relu`` or
    ``linear``. Weights: ``Wx`` (n_in, units) Glorot-uniform, ``Wh`` (units, units)
    orthogonal, ``b`` zeros (Keras's defaults). ``stateful``, ``initial_state``,
    :meth:`reset_states` and ``state_grads``: see :class:`_Recurrent`; ``bptt_truncate``:
    see the module docstring. Parameters are ``dtype`` (float32 by default) on ``device``.
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
        dx, dWx, dWh, db, dh0 = simple_rnn_backward(dy, self.cache, self.bptt_truncate, self.need_input_grad,
                                                    need_dW=not self.defer_products)
        self.state_grads = {"h": dh0}
        self._finish_backward(dWx, dWh, db)
        return dx

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class LSTM(_Recurrent):
    """Long short-term memory over inputs (N, T, n_in); see :func:`lstm_forward` for the equations.

    ``Wx`` (n_in, 4 units) and ``Wh`` (units, 4 units) hold the four gates' weights side by
    side (i, f, g, o), so each step is one fused product. ``unit_forget_bias=True`` starts
    the forget gate's bias at 1 (Jozefowicz et al. 2015; Keras's default), so the cell
    remembers by default early in training. The initial state is a pair ``(h0, c0)``.
    Everything else as :class:`SimpleRNN`.
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
        dx, dWx, dWh, db, dh0, dc0 = lstm_backward(dy, self.cache, self.bptt_truncate, self.need_input_grad,
                                                   need_dW=not self.defer_products)
        self.state_grads = {"h": dh0, "c": dc0}
        self._finish_backward(dWx, dWh, db)
        return dx

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}
