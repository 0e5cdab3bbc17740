"""The recurrent benchmark workloads (``rnn_bN``, ``lstm_bN``): one plain-SGD step, float32.

* ``rnn_bN``: the Keras RNN classifier's step (``npdl train rnn-mnist``): inputs (N, 28, 28)
  (28 steps of 28 features), ``SimpleRNN(28 -> 50, tanh)`` returning the last state,
  ``Dense(50 -> 10)``, softmax cross-entropy.
* ``lstm_bN``: the Keras LSTM regressor's step (``npdl train lstm-regressor``): inputs
  (N, 20, 1), ``LSTM(1 -> 20)`` returning every state, ``TimeDistributed(Dense(20 -> 1))``,
  mean squared error against targets (N, 20, 1).

Both use **plain SGD** (lr 0.01, no clipping), like every other ``npdl bench`` workload, so
the step times the network's forward and backward passes rather than an optimizer (the
recipes train with Adam and clipping; Adam adds a few elementwise passes over ~4k / ~2k
parameters). The LSTM is *not* stateful here: carrying the state is a reference copy,
not computation. Weights: Glorot-uniform input weights, orthogonal recurrent weights,
zero biases (+1 on the LSTM's forget gate). The peers (``benchmarks/peers_rnn.py``) build
the same networks from :data:`SPECS`.
"""

from __future__ import annotations

from .. import backend
from ..layers import LSTM, Dense, SimpleRNN, TimeDistributed
from ..models import Sequential
from ..optim import SGD
from .fixed_batch import fixed_batch_step
from .workloads import Workload


def build_rnn_model(w: Workload, device="cpu", seed: int = 0) -> Sequential:
    """The workload's recurrent network on ``device``, compiled with plain SGD."""
    device = backend.get_device(device)
    rng = backend.Generator(device, seed)
    s = w.spec
    if s["cell"] == "simple_rnn":
        layers = [SimpleRNN(s["features"], s["units"], device=device, rng=rng),
                  Dense(s["units"], s["outputs"], device=device, rng=rng)]
        loss = "softmax_cross_entropy"
    else:
        layers = [LSTM(s["features"], s["units"], return_sequences=True, device=device, rng=rng),
                  TimeDistributed(Dense(s["units"], s["outputs"], device=device, rng=rng))]
        loss = "mse"
    model = Sequential(layers, name=w.name)
    model.compile(loss, SGD(lr=w.lr), metrics=())
    return model


def rnn_step(w: Workload, device, seed: int = 0):
    """A recurrent network's step on random float32 sequences (N, T, F) and targets on the device."""
    model = build_rnn_model(w, device, seed)
    rng = backend.Generator(device, seed + 1)
    s = w.spec
    x = rng.normal((w.batch_size, s["steps"], s["features"]), dtype="float32")
    if s["cell"] == "simple_rnn":
        y = rng.integers(0, s["outputs"], (w.batch_size,))
    else:
        y = rng.normal((w.batch_size, s["steps"], s["outputs"]), dtype="float32")
    return fixed_batch_step(model, x, y)
