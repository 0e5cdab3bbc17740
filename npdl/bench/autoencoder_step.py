"""The npdl side of the ``da_bN`` workloads: one SGD step of a tied denoising autoencoder.

``Sequential([MaskingNoise(p), TiedAutoencoder(784, 1000, "sigmoid", "linear")])`` with the
reconstruction cross-entropy on the decoder's logits: the Theano dA's cost (sigmoid decoder,
cross-entropy summed over pixels, averaged over the batch), computed in its stable fused
form. The peers (``benchmarks/peers_autoencoder.py``) compute the same function.
"""

from __future__ import annotations

from .. import backend
from ..layers.autoencoder import TiedAutoencoder
from ..layers.noise import MaskingNoise
from ..models import Sequential
from ..optim import SGD
from .fixed_batch import fixed_batch_step
from .workloads import Workload


def build_autoencoder(w: Workload, device="cpu", seed: int = 0) -> Sequential:
    """The workload's denoising autoencoder on ``device`` (x4 Glorot weights, zero biases), SGD."""
    device = backend.get_device(device)
    rng = backend.Generator(device, seed)
    n_visible, n_hidden = w.sizes
    model = Sequential([MaskingNoise(w.spec["corruption"], rng=backend.Generator(device, seed + 2)),
                        TiedAutoencoder(n_visible, n_hidden, encoder=w.activation, decoder="linear",
                                        device=device, rng=rng)], name=w.name)
    return model.compile("reconstruction_cross_entropy_logits", SGD(lr=w.lr))


def autoencoder_step(w: Workload, device, seed: int = 0):
    """A step on uniform [0, 1) float32 inputs already on the device (the targets are the inputs)."""
    model = build_autoencoder(w, device, seed)
    x = backend.Generator(device, seed + 1).uniform((w.batch_size, w.sizes[0]), dtype="float32")
    return fixed_batch_step(model, x, x)
