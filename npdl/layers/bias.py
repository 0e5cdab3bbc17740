"""A per-channel bias on its own: $y[n, c, ...] = x[n, c, ...] + b[c]$.

Theano's LeNet (``LeNetConvPoolLayer``) and Nielsen's ``ConvPoolLayer`` add their bias
*after* max pooling: ``act(maxpool(conv(x, W)) + b)``. With npdl's layers that is
``Conv2D(..., bias=False) -> MaxPool2D -> ChannelBias -> Tanh``. (Pooling commutes with
adding a per-channel constant, so ``maxpool(conv + b)`` is the same function; adding it
after the pool touches a quarter of the pixels.)
"""

from __future__ import annotations

from .. import backend, checks
from .base import Layer


def channel_bias_forward(x, b):
    """``x`` (N, C, ...) plus ``b`` (C,) broadcast over the batch and every position. Cache: ``x.ndim``."""
    xp = backend.namespace(x, b)
    shape = (1, int(b.shape[0])) + (1,) * (x.ndim - 2)
    return x + xp.reshape(b, shape), x.ndim


def channel_bias_backward(dy, cache):
    r"""$\frac{\partial L}{\partial x} = dy$ (adding a constant has slope 1), and ``b[c]`` was broadcast over every
    ``(n, ...)`` of channel ``c``, so $\frac{\partial L}{\partial b[c]} = \sum_{n, ...} dy[n, c, ...]$ over all axes but 1: (C,)."""
    xp = backend.namespace(dy)
    return dy, xp.sum(dy, axis=(0,) + tuple(range(2, cache)))


class ChannelBias(Layer):
    """``ChannelBias(channels)``: adds a learned ``b`` (C,), zero at the start, to every pixel of channel C
    of an (N, C, ...) input."""

    def __init__(self, channels: int, dtype=None, device="cpu", name: str | None = None):
        super().__init__(name)
        if int(channels) <= 0:
            raise ValueError(f"ChannelBias: channels must be positive, got {channels}")
        self.channels = int(channels)
        self.dtype = backend.resolve_float(dtype)
        self.params["b"] = backend.get_device(device).zeros((self.channels,), self.dtype)

    def forward(self, x, training=False):
        who = f"ChannelBias({self.channels}) '{self.name}'"
        checks.check_float(x, who, dtype=self.dtype)
        checks.check_rank(x, (2, 3, 4, 5), who, layout="(batch, channels, ...)")
        checks.check_dim(x, 1, self.channels, who, meaning="channels")
        checks.check_same_device(x, self.params["b"], who)
        y, self.cache = channel_bias_forward(x, self.params["b"])
        return y

    def backward(self, dy):
        dx, self.grads["b"] = channel_bias_backward(dy, self.cache)
        return dx

    def work(self, input_shape, need_input_grad=True, dtype=None) -> dict:
        """FLOPs on ``input_shape`` (:mod:`npdl.bench.work`): one add per element forward, the sum for
        ``db`` (one per element) backward; nothing kept."""
        M = 1
        for d in input_shape:
            M *= int(d)
        return {"forward": M, "backward": M}

    def get_config(self):
        return {"channels": self.channels, "dtype": self.dtype, "name": self.name}
