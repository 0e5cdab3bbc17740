"""The npdl side of a benchmark workload: a Sequential model and one ``train_step`` on fixed data."""

from __future__ import annotations

from .. import backend
from ..layers import Dense
from ..models import Sequential
from ..optim import SGD
from .fixed_batch import fixed_batch_step
from .workloads import Workload


def build_model(w: Workload, device="cpu", seed: int = 0) -> Sequential:
    """The workload's network (Glorot-uniform weights, zero biases, the activation inside each hidden
    Dense) on ``device``, compiled with SGD."""
    device = backend.get_device(device)
    rng = backend.Generator(device, seed)
    pairs = list(zip(w.sizes[:-1], w.sizes[1:]))
    layers = [Dense(n_in, n_out, device=device, rng=rng, activation=w.activation if i < len(pairs) - 1 else None)
              for i, (n_in, n_out) in enumerate(pairs)]
    model = Sequential(layers, name=w.name)
    model.compile("softmax_cross_entropy", SGD(lr=w.lr), metrics=())
    return model


def dense_step(w: Workload, device, seed: int = 0):
    """A dense classifier's step: random float32 inputs and labels already on the device."""
    model = build_model(w, device, seed)
    rng = backend.Generator(device, seed + 1)
    x = rng.normal((w.batch_size, w.sizes[0]), dtype="float32")
    y = rng.integers(0, w.sizes[-1], (w.batch_size,))
    return fixed_batch_step(model, x, y)


#: family -> function(workload, device, seed) returning a zero-argument step; later families add theirs
STEP_BUILDERS = {"mlp": dense_step, "sda": dense_step}

from .conv_step import conv_step  # noqa: E402  (lenet, kcnn)

STEP_BUILDERS.update(lenet=conv_step, kcnn=conv_step)

from .autoencoder_step import autoencoder_step  # noqa: E402  (da)

STEP_BUILDERS.update(da=autoencoder_step)

from .rnn_step import rnn_step  # noqa: E402  (rnn, lstm)

STEP_BUILDERS.update(rnn=rnn_step, lstm=rnn_step)


def npdl_step(w: Workload, device="cpu", seed: int = 0):
    """``(step, sync)`` for :func:`npdl.bench.measure`: random float32 data already on the device."""
    device = backend.get_device(device)
    return STEP_BUILDERS[w.family](w, device, seed), device.synchronize
