"""Dense (fully connected) layer: ``y = f(x W + b)``, ``f`` the identity unless an activation is given."""

from __future__ import annotations

from .. import backend, checks
from ..deferred import ProductGrad
from ..init import get_initializer, initializer_name
from .activations import ELEMENTWISE, check_elementwise
from .base import Layer


def dense_forward(x, W, b, activation="linear"):
    """Affine map of a batch, then an elementwise activation (none by default).

    Shapes: ``x`` (N, n_in), ``W`` (n_in, n_out), ``b`` (n_out,) or ``None``.
    ``a[n, j] = sum_i x[n, i] W[i, j] + b[j]`` is the pre-activation (N, n_out), and
    ``y = f(a)`` with ``f`` one of :data:`npdl.layers.activations.ELEMENTWISE` (``"linear"``:
    ``y = a``). The bias is handed to ``f`` with the product (for sigmoid, tanh and ReLU the
    add and ``f`` are one GPU launch; ``x W`` is a fresh product, so it may be overwritten).
    Returns ``y`` and the cache ``(x, W, has_bias, activation, f_cache)``: the backward pass
    needs ``x`` for ``dW``, ``W`` for ``dx``, and the activation's own cache (its output ``y``
    for sigmoid and tanh) for ``f'``.
    """
    if activation not in ELEMENTWISE:  # "identity", None, "Tanh" ... (Dense passes canonical names)
        activation = check_elementwise(activation, "dense_forward")
    y, f_cache = ELEMENTWISE[activation][0](x @ W, bias=b, overwrite=True)
    return y, (x, W, b is not None, activation, f_cache)


def dense_pre_activation_grad(dy, cache):
    """``da = dL/da = dy * f'(a)`` (N, n_out), the activation's backward; ``dy`` itself when linear."""
    _, _, _, activation, f_cache = cache
    return ELEMENTWISE[activation][1](dy, f_cache)


def dense_backward(dy, cache, need_dx=True, need_dW=True):
    """Gradients of the layer, given ``dy = dL/dy`` of shape (N, n_out).

    First through the activation: ``da = dy * f'(a)`` (:func:`dense_pre_activation_grad`;
    ``da = dy`` without one). Then, from ``a[n, j] = sum_i x[n, i] W[i, j] + b[j]``:

    * ``dL/dx[n, i] = sum_j da[n, j] W[i, j]``, i.e. ``dx = da W^T``:
      (N, n_out) @ (n_out, n_in) -> (N, n_in).
    * ``dL/dW[i, j] = sum_n x[n, i] da[n, j]``, i.e. ``dW = x^T da``:
      (n_in, N) @ (N, n_out) -> (n_in, n_out). Each example adds the outer
      product of its input and its upstream gradient; the matrix product sums them.
    * ``dL/db[j] = sum_n da[n, j]``, i.e. ``db = da`` summed over the batch axis:
      (n_out,). ``b`` was broadcast over the N rows in the forward pass, and a
      broadcast in the forward pass is a sum in the backward pass.

    Returns ``(dx, dW, db)``; ``db`` is ``None`` when the layer has no bias, and ``dx``
    is ``None`` with ``need_dx=False`` (the first layer of a network: nobody needs
    the gradient of the data, and skipping it saves a third of the layer's work).
    ``need_dW=False`` returns ``dW = None``: the caller keeps ``dW = x^T da`` as its
    factors ``(x, da)`` (see :meth:`Dense.backward`).
    """
    return affine_backward(dense_pre_activation_grad(dy, cache), cache, need_dx, need_dW)


def affine_backward(da, cache, need_dx=True, need_dW=True):
    """The three affine formulas of :func:`dense_backward`, from ``da = dL/da`` (N, n_out)."""
    x, W, has_bias = cache[:3]
    xp = backend.namespace(da, W)
    dx = da @ W.T if need_dx else None
    dW = x.T @ da if need_dW else None
    db = xp.sum(da, axis=0) if has_bias else None
    return dx, dW, db


class Dense(Layer):
    """Fully connected layer ``y = f(x W + b)`` for inputs of shape (N, n_in).

    ``activation`` is ``None``/``"linear"`` (no ``f``, the default), ``"sigmoid"``, ``"tanh"``,
    ``"relu"``, ``"leaky_relu"`` (alpha 0.01) or ``"elu"`` (alpha 1), as Keras's
    ``Dense(units, activation=...)``: the same numbers as a Dense followed by that
    activation layer, in one layer (for sigmoid, tanh and ReLU one GPU launch for the bias and
    ``f`` together).

    ``init`` names an initialiser from :mod:`npdl.init` (``glorot_uniform``,
    ``glorot_uniform_sigmoid``, ``he_normal``, ``normal(0.01)``, ``zeros``) or is a
    callable; the bias starts at zero. Parameters are created on ``device`` in
    ``dtype`` (float32 unless float64 is asked for), drawn from ``rng`` (a
    :class:`npdl.backend.Generator`; by default one seeded by ``npdl.manual_seed``).
    """

    weight_names = ("W",)

    def __init__(self, n_in: int, n_out: int, init="glorot_uniform", bias: bool = True,
                 dtype=None, device="cpu", rng=None, name: str | None = None, activation=None):
        super().__init__(name)
        if int(n_in) <= 0 or int(n_out) <= 0:
            raise ValueError(f"Dense: n_in and n_out must be positive, got n_in={n_in}, n_out={n_out}")
        self.n_in, self.n_out, self.bias = int(n_in), int(n_out), bool(bias)
        self.activation = check_elementwise(activation, "Dense")
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
        y, self.cache = dense_forward(x, self.params["W"], self.params.get("b"), self.activation)
        return y

    def backward(self, dy):
        """:func:`dense_backward`, with ``dW = x^T da`` kept as its factors ``(x, da)``: a
        :class:`~npdl.deferred.ProductGrad`, formed when read, or added into ``W`` by plain SGD in
        one GEMM without a (n_in, n_out) temporary."""
        da = dense_pre_activation_grad(dy, self.cache)
        dx, _, db = affine_backward(da, self.cache, self.need_input_grad, need_dW=False)
        self.grads["W"] = ProductGrad([(self.cache[0], da)])  # dW = x^T da
        if db is not None:
            self.grads["b"] = db
        return dx

    def output_shape(self, input_shape):
        return (self.n_out,)

    def get_config(self):
        config = {"n_in": self.n_in, "n_out": self.n_out, "init": initializer_name(self.init),
                  "bias": self.bias, "dtype": self.dtype, "name": self.name}
        if self.activation != "linear":  # configs of plain Dense layers stay as they were
            config["activation"] = self.activation
        return config
