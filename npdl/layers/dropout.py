"""Inverted dropout: zero units at random in training, identity at inference."""

from __future__ import annotations

from .. import backend, checks
from .base import Layer


def dropout_forward(x, mask):
    r"""$y = x \odot mask$ where ``mask`` holds $\frac{1}{keep\_prob}$ (kept) or 0 (dropped).

    Scaling the kept units by $\frac{1}{keep\_prob}$ at training time ("inverted" dropout)
    keeps $E[y] = x$, so inference is the identity and needs no rescaling.
    The mask is drawn by the layer, not here, so this function is deterministic and
    can be gradient-checked. Shapes: ``x``, ``mask``, ``y`` all alike. Cache: ``mask``.
    """
    return x * mask, mask


def dropout_backward(dy, cache):
    r"""$y = x \odot mask$ is linear in ``x`` with slope ``mask``: $dx = dy \odot mask$.
    A dropped unit passes no gradient; a kept one passes it scaled by $\frac{1}{keep\_prob}$."""
    mask = cache
    return dy * mask


class Dropout(Layer):
    """Inverted dropout with drop probability ``rate`` (Keras's convention; keep = 1 - rate).

    Active only when ``forward(x, training=True)``; at inference it returns ``x``
    unchanged. Masks are drawn from ``rng`` (a :class:`npdl.backend.Generator`) on
    the input's device, so a seeded run repeats exactly on the CPU.
    """

    def __init__(self, rate: float = 0.5, rng=None, name=None):
        super().__init__(name)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.rng = rng

    def forward(self, x, training=False):
        checks.check_float(x, f"Dropout '{self.name}'")
        if not training or self.rate == 0.0:
            self.cache = None
            return x
        device = backend.device_of(x)
        if self.rng is None or self.rng.device != device:
            self.rng = backend.default_generator(device)
        keep = 1.0 - self.rate
        mask = self.rng.bernoulli(tuple(x.shape), keep, dtype=backend.dtype_name(x))
        mask *= 1.0 / keep
        y, self.cache = dropout_forward(x, mask)
        return y

    def backward(self, dy):
        return dy if self.cache is None else dropout_backward(dy, self.cache)

    def work(self, input_shape, need_input_grad=True, dtype="float32") -> dict:
        """FLOPs of a training forward and backward on ``input_shape`` (one mask multiply per element
        each way) and the mask the cache keeps (:mod:`npdl.bench.work`); drawing the mask is not counted."""
        if self.rate == 0.0:
            return {"forward": 0, "backward": 0, "view": True}
        M = 1
        for d in input_shape:
            M *= int(d)
        return {"forward": M, "backward": M, "kept_bytes": M * (8 if dtype == "float64" else 4)}

    def get_config(self):
        return {"rate": self.rate, "name": self.name}
