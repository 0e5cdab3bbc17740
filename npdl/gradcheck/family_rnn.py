"""Gradient-check cases for the recurrent layers, with their independent references.

* ``SimpleRNN`` over 4 steps: tanh returning the last state, tanh returning every state,
  sigmoid returning every state; each with a non-zero initial state ``h0``, checked with
  respect to ``x``, ``Wx``, ``Wh``, ``b`` and ``h0``.
* ``LSTM`` over 4 steps, last state and every state, non-zero ``(h0, c0)``: with respect to
  ``x``, ``Wx``, ``Wh``, ``b``, ``h0`` and ``c0``.
* ``TimeDistributed`` (Dense on every step of a (N, T, F) sequence): ``x``, ``W``, ``b``.
* ``LSTM+TimeDistributed``: the LSTM regressor's stack, LSTM (sequences, one input feature) ->
  per-step Dense.

The JAX references run the recurrence with ``jax.lax.scan`` (the cell written from the
textbook equations, sigmoid as ``1 / (1 + exp(-z))``); the PyTorch references call
PyTorch's own cells ``torch.rnn_tanh_cell`` and ``torch.lstm_cell`` (weights transposed
to PyTorch's (out, in) layout; PyTorch's gate order i, f, g, o is npdl's), and write the
sigmoid RNN by hand since PyTorch has no such cell. Neither calls npdl.
"""

from __future__ import annotations

from .. import layers as L
from .case import Case, named_grads

N, T, F, H = 3, 4, 2, 3


def cases():
    def rnn_case(suffix, activation, return_sequences):
        def make(g, d):
            return {"x": g.normal((N, T, F), dtype=d), "Wx": g.normal((F, H), std=0.7, dtype=d),
                    "Wh": g.normal((H, H), std=0.5, dtype=d), "b": g.normal((H,), std=0.5, dtype=d),
                    "h0": g.normal((N, H), std=0.5, dtype=d)}

        wrt = ("x", "Wx", "Wh", "b", "h0")
        return Case("SimpleRNN" + suffix, make, wrt,
                    lambda x, Wx, Wh, b, h0: L.simple_rnn_forward(x, Wx, Wh, b, h0, activation, return_sequences),
                    lambda dy, c: named_grads(wrt, L.simple_rnn_backward(dy, c)),
                    options={"activation": activation, "return_sequences": return_sequences})

    def lstm_make(g, d):
        return {"x": g.normal((N, T, F), dtype=d), "Wx": g.normal((F, 4 * H), std=0.7, dtype=d),
                "Wh": g.normal((H, 4 * H), std=0.5, dtype=d), "b": g.normal((4 * H,), std=0.5, dtype=d),
                "h0": g.normal((N, H), std=0.5, dtype=d), "c0": g.normal((N, H), dtype=d)}

    def lstm_case(suffix, return_sequences):
        wrt = ("x", "Wx", "Wh", "b", "h0", "c0")
        return Case("LSTM" + suffix, lstm_make, wrt,
                    lambda x, Wx, Wh, b, h0, c0: L.lstm_forward(x, Wx, Wh, b, h0, c0, return_sequences),
                    lambda dy, c: named_grads(wrt, L.lstm_backward(dy, c)),
                    options={"return_sequences": return_sequences})

    def stack_make(g, d):
        inputs = lstm_make(g, d)  # one input feature, as the LSTM regressor (x W is then an outer product)
        inputs.update(x=g.normal((N, T, 1), dtype=d), Wx=g.normal((1, 4 * H), std=0.7, dtype=d),
                      W2=g.normal((H, 2), dtype=d), b2=g.normal((2,), dtype=d))
        return inputs

    def stack_forward(x, Wx, Wh, b, h0, c0, W2, b2):
        h, c1 = L.lstm_forward(x, Wx, Wh, b, h0, c0, return_sequences=True)
        y, c2 = L.time_distributed_dense_forward(h, W2, b2)
        return y, (c1, c2)

    def stack_backward(dy, cache):
        c1, c2 = cache
        dh, dW2, db2 = L.time_distributed_dense_backward(dy, c2)
        dx, dWx, dWh, db, dh0, dc0 = L.lstm_backward(dh, c1)
        return {"x": dx, "Wx": dWx, "Wh": dWh, "b": db, "h0": dh0, "c0": dc0, "W2": dW2, "b2": db2}

    return [
        rnn_case("", "tanh", False),
        rnn_case("[sequences]", "tanh", True),
        rnn_case("[sigmoid_sequences]", "sigmoid", True),
        lstm_case("", False),
        lstm_case("[sequences]", True),
        Case("TimeDistributed", lambda g, d: {"x": g.normal((N, T, F), dtype=d), "W": g.normal((F, 2), dtype=d),
                                              "b": g.normal((2,), dtype=d)},
             ("x", "W", "b"), L.time_distributed_dense_forward,
             lambda dy, c: named_grads(("x", "W", "b"), L.time_distributed_dense_backward(dy, c))),
        Case("LSTM+TimeDistributed", stack_make, ("x", "Wx", "Wh", "b", "h0", "c0", "W2", "b2"),
             stack_forward, stack_backward),
    ]


def jax_table(jnp, opt) -> dict:
    """JAX forwards by base name: the recurrences as ``jax.lax.scan`` over the time axis."""
    import jax

    def sigmoid(z):
        return 1.0 / (1.0 + jnp.exp(-z))

    act = {"tanh": jnp.tanh, "sigmoid": sigmoid, "relu": lambda a: jnp.maximum(a, 0.0),
           "linear": lambda a: a}[opt.get("activation", "tanh")]
    sequences = opt.get("return_sequences", False)

    def rnn(x, Wx, Wh, b, h0):
        def step(h, x_t):
            h = act(x_t @ Wx + h @ Wh + b)
            return h, h

        h_last, hs = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))  # scan over (T, N, F)
        return jnp.swapaxes(hs, 0, 1) if sequences else h_last

    def lstm_scan(x, Wx, Wh, b, h0, c0):
        n = h0.shape[1]

        def step(carry, x_t):
            h, c = carry
            z = x_t @ Wx + h @ Wh + b
            i, f = sigmoid(z[:, :n]), sigmoid(z[:, n:2 * n])
            g, o = jnp.tanh(z[:, 2 * n:3 * n]), sigmoid(z[:, 3 * n:])
            c = f * c + i * g
            h = o * jnp.tanh(c)
            return (h, c), h

        (h_last, _), hs = jax.lax.scan(step, (h0, c0), jnp.swapaxes(x, 0, 1))
        return h_last, jnp.swapaxes(hs, 0, 1)

    def lstm(x, Wx, Wh, b, h0, c0):
        h_last, hs = lstm_scan(x, Wx, Wh, b, h0, c0)
        return hs if sequences else h_last

    return {"SimpleRNN": rnn, "LSTM": lstm, "TimeDistributed": lambda x, W, b: x @ W + b,
            "LSTM+TimeDistributed": lambda x, Wx, Wh, b, h0, c0, W2, b2:
                lstm_scan(x, Wx, Wh, b, h0, c0)[1] @ W2 + b2}


def torch_table(torch, opt) -> dict:
    """PyTorch forwards by base name, stepping PyTorch's own cells (``torch.rnn_tanh_cell``,
    ``torch.lstm_cell``) along the time axis; weights are passed transposed, (out, in)."""
    sequences = opt.get("return_sequences", False)
    activation = opt.get("activation", "tanh")

    def collect(hs, h_last):
        return torch.stack(hs, dim=1) if sequences else h_last

    def rnn(x, Wx, Wh, b, h0):
        h, hs = h0, []
        for t in range(x.shape[1]):
            if activation == "tanh":
                h = torch.rnn_tanh_cell(x[:, t], h, Wx.T, Wh.T, b, torch.zeros_like(b))
            else:
                h = {"sigmoid": torch.sigmoid, "relu": torch.relu, "linear": lambda a: a}[activation](
                    x[:, t] @ Wx + h @ Wh + b)
            hs.append(h)
        return collect(hs, h)

    def lstm_all(x, Wx, Wh, b, h0, c0):
        h, c, hs = h0, c0, []
        for t in range(x.shape[1]):
            h, c = torch.lstm_cell(x[:, t], (h, c), Wx.T, Wh.T, b, torch.zeros_like(b))
            hs.append(h)
        return hs, h

    def lstm(x, Wx, Wh, b, h0, c0):
        return collect(*lstm_all(x, Wx, Wh, b, h0, c0))

    return {"SimpleRNN": rnn, "LSTM": lstm, "TimeDistributed": lambda x, W, b: x @ W + b,
            "LSTM+TimeDistributed": lambda x, Wx, Wh, b, h0, c0, W2, b2:
                torch.stack(lstm_all(x, Wx, Wh, b, h0, c0)[0], dim=1) @ W2 + b2}
