"""``TimeDistributed``: apply one layer to every time step of a sequence (N, T, ...).

The same layer (the same weights) at every step is the same layer applied to the
N*T rows of the sequence laid end to end, so the wrapper only reshapes:
(N, T, F) -> (N*T, F) -> the layer -> (N*T, K) -> (N, T, K). Backward, the reshape
is undone on ``dy`` and the wrapped layer's own backward does the rest; its weight
gradient ``x^T dy`` (for a Dense layer) then sums over examples *and* time steps in
one product, which is exactly the sum over steps that sharing the weights requires.
"""

from __future__ import annotations

from .. import backend, checks
from ..errors import ShapeError
from .base import Layer, layer_from_config
from .dense import dense_backward, dense_forward


def time_distributed_dense_forward(x, W, b):
    """$y[:, t, :] = x[:, t, :] W + b$ for every step: (N, T, F) -> (N, T, K).

    Computed as one :func:`~npdl.layers.dense.dense_forward` on the (N*T, F) rows.
    Cache: the dense cache and the leading shape (N, T).
    """
    xp = backend.namespace(x, W)
    N, T, F = (int(d) for d in x.shape)
    y, cache = dense_forward(xp.reshape(x, (N * T, F)), W, b)
    return xp.reshape(y, (N, T, int(W.shape[1]))), (cache, (N, T))


def time_distributed_dense_backward(dy, cache):
    r"""Reshape ``dy`` (N, T, K) to rows (N*T, K) and apply :func:`~npdl.layers.dense.dense_backward`:

    * $dW = \sum_{n, t} x[n, t]^\top dy[n, t] = X^\top dY$: (F, N*T) @ (N*T, K) -> (F, K);
    * $db = \sum_{n, t} dy[n, t]$: (K,);
    * $dx[n, t] = dy[n, t] W^\top$: (N*T, F), back to (N, T, F).

    Returns ``(dx, dW, db)``.
    """
    dense_cache, (N, T) = cache
    xp = backend.namespace(dy)
    dx, dW, db = dense_backward(xp.reshape(dy, (N * T, int(dy.shape[2]))), dense_cache)
    return xp.reshape(dx, (N, T, int(dx.shape[1]))), dW, db


class TimeDistributed(Layer):
    """Apply ``layer`` (e.g. ``Dense(units, 1)``) to each time step of inputs (N, T, ...).

    The wrapper shares the wrapped layer's ``params`` and ``grads``, so the optimizer,
    penalties and checkpoints (``"<index>.W"``) see the wrapped layer's parameters as the
    wrapper's own.
    """

    def __init__(self, layer: Layer, name: str | None = None):
        if not isinstance(layer, Layer):
            raise TypeError(f"TimeDistributed: expected an npdl Layer, got {type(layer).__name__}")
        super().__init__(name or f"time_distributed_{layer.name}")
        self.layer = layer
        self.weight_names = layer.weight_names
        self._share()

    def _share(self):
        self.params, self.grads = self.layer.params, self.layer.grads

    @property
    def dtype(self):
        return getattr(self.layer, "dtype", None)

    def forward(self, x, training=False):
        who = f"TimeDistributed({type(self.layer).__name__}) '{self.name}'"
        checks.check_array(x, who)
        if x.ndim < 3:
            raise ShapeError(f"{who}: input must be at least 3-D (batch, time steps, ...), got shape "
                             f"{tuple(int(d) for d in x.shape)} ({x.ndim}-D)")
        xp = backend.namespace(x)
        N, T = int(x.shape[0]), int(x.shape[1])
        rest = tuple(int(d) for d in x.shape[2:])
        try:
            y = self.layer.forward(xp.reshape(x, (N * T,) + rest), training)
        except ShapeError as exc:
            raise ShapeError(f"{who}: input of shape {tuple(int(d) for d in x.shape)} is applied step by step as "
                             f"rows {(N * T,) + rest}, which the wrapped layer refused: {exc}") from exc
        self.cache = (N, T, rest)
        return xp.reshape(y, (N, T) + tuple(int(d) for d in y.shape[1:]))

    def backward(self, dy):
        N, T, rest = self.cache
        xp = backend.namespace(dy)
        inner = self.layer
        inner.need_input_grad = self.need_input_grad
        dx = inner.backward(xp.reshape(dy, (N * T,) + tuple(int(d) for d in dy.shape[2:])))
        self._share()
        return None if dx is None else xp.reshape(dx, (N, T) + rest)

    def output_shape(self, input_shape):
        return (int(input_shape[0]),) + tuple(self.layer.output_shape(tuple(input_shape[1:])))

    def work(self, input_shape, need_input_grad=True, dtype=None) -> dict:
        """The wrapped layer's work on the N*T rows (:mod:`npdl.bench.work`); the reshapes cost nothing."""
        N, T = int(input_shape[0]), int(input_shape[1])
        return self.layer.work((N * T,) + tuple(int(d) for d in input_shape[2:]), need_input_grad, dtype)

    def to(self, device):
        self.layer.to(device)
        self._share()
        self._device = backend.get_device(device)
        self.cache = None
        return self

    @property
    def trainable(self):
        return self.layer.trainable

    @trainable.setter
    def trainable(self, value):
        if hasattr(self, "layer"):
            self.layer.trainable = value

    def get_config(self):
        return {"layer": {"class": type(self.layer).__name__, "config": self.layer.get_config()}, "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(layer_from_config(config.pop("layer")), **config)

    def __repr__(self):
        return f"TimeDistributed({self.layer!r})"
