r"""What the recurrent layers share: the time-major layout, the weight gradients as products,
truncated BPTT, and the layer machinery (parameters, input checks, initial and carried states).

Inputs are batch-first, ``x`` of shape (N, T, F): N sequences of T steps of F
features. Inside the pure functions (:mod:`.simple_rnn`, :mod:`.lstm`) the time axis goes
first, so that step ``t`` of every array is one contiguous (N, ...) block:

* the input projection $x_t Wx$ of *all* steps is one matrix product before the loop,
  ``(T*N, F) @ (F, H)``, instead of T small ones inside it;
* the loop then does one product per step, $h_{t-1} Wh$; for the LSTM the four gates'
  recurrent products are fused into one, ``(N, H) @ (H, 4H)``;
* backward, the weight gradients are sums over steps of outer products, so they too are
  one product each after the loop: $dWx = X^\top dA$ and $dWh = H_{prev}^\top dA$ with the
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

The loops over time steps are named operations (:func:`npdl.kernels.accelerated`):
``simple_rnn.forward_sequence`` / ``backward_sequence`` and ``lstm_cell.forward_sequence`` /
``backward_sequence`` (and the LSTM cell's ``forward_step`` / ``backward_step``). The code in
:mod:`.simple_rnn` and :mod:`.lstm` is their definition; ``npdl/kernels/numba/`` has CPU
versions over preallocated buffers, ``npdl/kernels/cuda/lstm_cell.py`` the LSTM step as one
GPU launch each way, all tested equal to the definitions.
"""

from __future__ import annotations

from .. import backend, checks
from ..deferred import ProductGrad
from ..errors import ShapeError
from ..init import get_initializer, initializer_name
from .base import Layer


def zeros_like_device(xp, shape, like):
    """Zeros of ``shape`` with ``like``'s dtype, on ``like``'s device."""
    device = getattr(like, "device", None)
    return xp.zeros(shape, dtype=like.dtype) if device is None else xp.zeros(shape, dtype=like.dtype, device=device)


def time_major(xp, x):
    """(N, T, F) -> (T*N, F), rows ``t*N + n``: step ``t`` is rows ``t*N .. t*N + N - 1`` (one copy)."""
    N, T, F = (int(d) for d in x.shape)
    return xp.reshape(xp.permute_dims(x, (1, 0, 2)), (T * N, F))


def batch_first(xp, a, N, T):
    """(T*N, K) or (T, N, K) time-major -> (N, T, K) batch-first."""
    return xp.permute_dims(xp.reshape(a, (T, N, int(a.shape[-1]))), (1, 0, 2))


def input_projection(X, W):
    """``X W`` for all steps at once: (T*N, F) @ (F, K). With one feature (F = 1) it is an outer
    product, and a broadcast multiply computes it exactly, about 4x faster than a GEMM with an
    inner dimension of 1 (18 against 77 us for (1000, 1) x (1, 80), one BLAS thread)."""
    return X * W if int(W.shape[0]) == 1 else X @ W


def previous_states(xp, hs, N, T):
    """``[h_0, ..., h_{T-1}]`` stacked time-major as rows: (T*N, H) (``hs`` a list, or already stacked)."""
    H_prev = xp.stack(hs[:-1]) if isinstance(hs, list) else hs[:-1, ...]
    return xp.reshape(H_prev, (T * N, int(H_prev.shape[-1])))


def cut(t, bptt_truncate):
    """True when the state gradient must not flow from step ``t`` into step ``t - 1``:
    ``t = k, 2k, ...`` for ``bptt_truncate=k`` starts a chunk; never without truncation."""
    return bool(bptt_truncate) and t > 0 and t % int(bptt_truncate) == 0


def bptt_schedule(T, return_sequences, bptt_truncate):
    """For counting a backward pass over ``T`` steps (:mod:`npdl.bench.work`): ``(recurrent products
    dh_{t-1} = da_t Wh^T, steps where dh_t adds the next step's gradient to the output's, steps where a
    cell gradient arrives from step t + 1)``. Every step but those :func:`cut` starts makes the product;
    a step below the last receives the state gradients unless its successor is cut; only with
    ``return_sequences`` does an output gradient arrive at every step."""
    cuts = (int(T) - 1) // int(bptt_truncate) if bptt_truncate else 0
    return int(T) - cuts, (int(T) - 1 - cuts) if return_sequences else 0, int(T) - 1 - cuts


def weight_products(cache):
    r"""``{"Wx": (X, dA), "Wh": (H_prev, dA)}``: the weight gradients $dWx = X^\top dA$ and
    $dWh = H_{prev}^\top dA$ as unformed products $A^\top B$ (after a recurrent backward, which
    leaves every step's pre-activation gradient in ``cache["dA"]``, (T*N, K)), kept by the
    layer as :class:`~npdl.deferred.ProductGrad`."""
    xp = backend.namespace(cache["dA"])
    N, T, _ = cache["shape"]
    return {"Wx": (cache["X"], cache["dA"]), "Wh": (previous_states(xp, cache["hs"], N, T), cache["dA"])}


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
        return tuple(zeros_like_device(xp, (N, self.units), self.params["Wx"]) for _ in range(self.n_states))

    def _check_input(self, x):
        checks.check_float(x, self.who, dtype=self.dtype)
        checks.check_rank(x, 3, self.who, layout="(batch, time steps, features)")
        checks.check_dim(x, 2, self.n_in, self.who)
        if int(x.shape[1]) < 1:
            raise ShapeError(f"{self.who}: input must have at least one time step, got shape "
                             f"{tuple(int(d) for d in x.shape)}")
        checks.check_same_device(x, self.params["Wx"], self.who)

    def _finish_backward(self, db):
        # dWx = X^T dA and dWh = H_prev^T dA kept as their factors: formed when read, or applied
        # by plain SGD in one GEMM each (npdl.deferred.ProductGrad)
        products = weight_products(self.cache)
        self.grads["Wx"], self.grads["Wh"] = ProductGrad([products["Wx"]]), ProductGrad([products["Wh"]])
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


