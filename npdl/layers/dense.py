"""Dense (fully connected) layer: ``y = x W + b``."""

from __future__ import annotations

from .. import backend, checks
from ..init import get_initializer, initializer_name
from .base import Layer


def dense_forward(x, W, b):
    """Affine map of a batch.

    Shapes: ``x`` (N, n_in), ``W`` (n_in, n_out), ``b`` (n_out,) or ``None``.
    Returns ``y`` (N, n_out) with ``y[n, j] = sum_i x[n, i] W[i, j] + b[j]``, and the
    cache ``(x, W, has_bias)``: the backward pass needs ``x`` for ``dW`` and ``W``
    for ``dx``, and nothing else.
    """
    y = x @ W
    if b is not None:
        y += b  # y is a fresh array: add in place, one temporary fewer
    return y, (x, W, b is not None)


def dense_backward(dy, cache, need_dx=True, need_dW=True):
    """Gradients of the affine map, given ``dy = dL/dy`` of shape (N, n_out).

    From ``y[n, j] = sum_i x[n, i] W[i, j] + b[j]``:

    * ``dL/dx[n, i] = sum_j dy[n, j] W[i, j]``, i.e. ``dx = dy W^T``:
      (N, n_out) @ (n_out, n_in) -> (N, n_in).
    * ``dL/dW[i, j] = sum_n x[n, i] dy[n, j]``, i.e. ``dW = x^T dy``:
      (n_in, N) @ (N, n_out) -> (n_in, n_out). Each example adds the outer
      product of its input and its upstream gradient; the matrix product sums them.
    * ``dL/db[j] = sum_n dy[n, j]``, i.e. ``db = dy`` summed over the batch axis:
      (n_out,). ``b`` was broadcast over the N rows in the forward pass, and a
      broadcast in the forward pass is a sum in the backward pass.

    Returns ``(dx, dW, db)``; ``db`` is ``None`` when the layer has no bias, and ``dx``
    is ``None`` with ``need_dx=False`` (the first layer of a network: nobody needs
    the gradient of the data, and skipping it saves a third of the layer's work).
    ``need_dW=False`` returns ``dW = None``: the caller applies ``x.T @ dy`` itself,
    fused into the weight update (see :meth:`Dense.backward`).
    """
    x, W, has_bias = cache
    xp = backend.namespace(dy, W)
    dx = dy @ W.T if need_dx else None
    dW = x.T @ dy if need_dW else None
    db = xp.sum(dy, axis=0) if has_bias else None
    return dx, dW, db


class Dense(Layer):
    """Fully connected layer ``y = x W + b`` for inputs of shape (N, n_in).

    ``init`` names an initialiser from :mod:`npdl.init` (``glorot_uniform``,
    ``glorot_uniform_sigmoid``, ``he_normal``, ``normal(0.01)``, ``zeros``) or is a
    callable; the bias starts at zero. Parameters are created on ``device`` in
    ``dtype`` (float32 unless float64 is asked for), drawn from ``rng`` (a
    :class:`npdl.backend.Generator`; by default one seeded by ``npdl.manual_seed``).
    """

    weight_names = ("W",)
    product_grads = ("W",)

    def __init__(self, n_in: int, n_out: int, init="glorot_uniform", bias: bool = True,
                 dtype=None, device="cpu", rng=None, name: str | None = None):
        super().__init__(name)
        if int(n_in) <= 0 or int(n_out) <= 0:
            raise ValueError(f"Dense: n_in and n_out must be positive, got n_in={n_in}, n_out={n_out}")
        self.n_in, self.n_out, self.bias = int(n_in), int(n_out), bool(bias)
        self.init = get_initializer(init)
        self.dtype = backend.resolve_float(dtype)
        device = backend.get_device(device)
        rng = rng if rng is not None else backend.default_generator(device)
        self.params["W"] = device.asarray(self.init(rng, (self.n_in, self.n_out), self.n_in, self.n_out, self.dtype))
        if self.bias:
            self.params["b"] = device.zeros((self.n_out,), self.dtype)

    def forward(self, x, training=False):
        who = f"Dense({self.n_in}->{self.n_out}) '{self.name}'"
        checks.check_float(x, who, dtype=self.dtype)
        checks.check_rank(x, 2, who, layout="(batch, features)")
        checks.check_dim(x, 1, self.n_in, who)
        checks.check_same_device(x, self.params["W"], who)
        y, self.cache = dense_forward(x, self.params["W"], self.params.get("b"))
        return y

    def backward(self, dy):
        dx, dW, db = dense_backward(dy, self.cache, self.need_input_grad, need_dW=not self.defer_products)
        if self.defer_products:
            # dW = x.T @ dy is left unformed: plain SGD adds -lr * x.T @ dy straight into W in one
            # GEMM (kernels.gemm_update), saving a (n_in, n_out) temporary and a pass over W
            self.products["W"] = (self.cache[0], dy)
        self.grads["W"] = dW
        if db is not None:
            self.grads["b"] = db
        return dx

    def output_shape(self, input_shape):
        return (self.n_out,)

    def get_config(self):
        return {"n_in": self.n_in, "n_out": self.n_out, "init": initializer_name(self.init),
                "bias": self.bias, "dtype": self.dtype, "name": self.name}
