r"""Dense (fully connected) layer: $y = f(x W + b)$, $f$ the identity unless an activation is given."""

from __future__ import annotations

from .. import backend, checks, kernels
from ..deferred import ProductGrad
from ..init import get_initializer, initializer_name
from ..optim.sgd import gemm_update_sum
from .activations import ELEMENTWISE, ELEMENTWISE_WORK, check_elementwise
from .base import Layer


@kernels.accelerated("dense_products.x_times_W")
def x_times_W(x, W):
    r"""The layer's product $x W$: (N, n_in) @ (n_in, n_out) -> (N, n_out), a fresh array.

    (At batch 1 on the CPU a one-thread loop does it: :mod:`npdl.kernels.numba.dense_products`.)"""
    return x @ W


@kernels.accelerated("dense_products.da_times_W_T")
def da_times_W_T(da, W):
    r"""The input gradient's product $da W^\top$: (N, n_out) @ (n_out, n_in) -> (N, n_in).

    (On the CPU a one-thread loop at batch 1; from batch 2 BLAS, given $(W da^\top)^\top$ instead
    where that is faster and the same bits: :mod:`npdl.kernels.numba.dense_products`.)"""
    return da @ W.T


@kernels.accelerated("dense_products.input_grad_then_update")
def input_grad_then_update(da, x, W, alpha: float, beta: float):
    r"""$dx = da W^\top$ from ``W`` as it is, then $W \leftarrow \beta W + \alpha x^\top da$ in place; returns ``dx``.

    Shapes: ``da`` (N, n_out), ``x`` (N, n_in), ``W`` (n_in, n_out); ``alpha``, ``beta`` Python floats.
    The input gradient (:func:`da_times_W_T`) and then plain SGD's step on ``W`` from its gradient
    $dW = x^\top da$, with $\alpha = -lr$ (:func:`npdl.optim.sgd.gemm_update_sum`, the same call the
    optimizer makes): what a dense layer's backward pass and the optimizer's step do with ``W``, in
    the order they do it, for :meth:`Dense.backward` when the model hands it the step's update.
    (At batch 1 on the CPU one pass over ``W`` does both, row by row, with the bits of the two:
    :mod:`npdl.kernels.numba.rows`.)"""
    dx = da_times_W_T(da, W)
    gemm_update_sum(W, [(x, da)], alpha, beta)
    return dx


def dense_forward(x, W, b, activation="linear"):
    r"""Affine map of a batch, then an elementwise activation (none by default).

    Shapes: ``x`` (N, n_in), ``W`` (n_in, n_out), ``b`` (n_out,) or ``None``. The
    pre-activation ``a`` (N, n_out) and the output ``y`` (N, n_out) are

    $$
    a[n, j] = \sum_{i} x[n, i] W[i, j] + b[j], \quad y = f(a)
    $$

    with $f$ one of :data:`npdl.layers.activations.ELEMENTWISE` (``"linear"``:
    $y = a$). The bias is handed to $f$ with the product (for sigmoid, tanh and ReLU the
    add and $f$ are one GPU launch; ``x W`` (:func:`x_times_W`) is a fresh product, so it may be
    overwritten).
    Returns ``y`` and the cache ``(x, W, has_bias, activation, f_cache)``: the backward pass
    needs ``x`` for ``dW``, ``W`` for ``dx``, and the activation's own cache (its output ``y``
    for sigmoid and tanh) for $f'$.
    """
    if activation not in ELEMENTWISE:  # "identity", None, "Tanh" ... (Dense passes canonical names)
        activation = check_elementwise(activation, "dense_forward")
    y, f_cache = ELEMENTWISE[activation][0](x_times_W(x, W), bias=b, overwrite=True)
    return y, (x, W, b is not None, activation, f_cache)


@kernels.accelerated("activation_backward.pre_activation_and_bias_grad")
def pre_activation_and_bias_grad(dy, cache):
    r"""The two gradients that need only ``dy`` and the activation's cache: $da = dy \odot f'(a)$ (N, n_out),
    the activation's backward ($da = dy$ when linear), and $db = \sum_{n} da[n, :]$ (n_out,), ``None``
    for a layer without a bias.

    (On the CPU one pass over ``dy`` makes both, with these bits:
    :mod:`npdl.kernels.numba.activation_backward`.)"""
    _, _, has_bias, activation, f_cache = cache
    da = ELEMENTWISE[activation][1](dy, f_cache)
    return da, (backend.namespace(da).sum(da, axis=0) if has_bias else None)


def dense_backward(dy, cache, need_dx=True, need_dW=True):
    r"""Gradients of the layer, given $dy = \frac{\partial L}{\partial y}$ of shape (N, n_out).

    First through the activation: $da = dy \odot f'(a)$ ($da = dy$ without one). Then, from
    $a[n, j] = \sum_{i} x[n, i] W[i, j] + b[j]$:

    * $\frac{\partial L}{\partial b[j]} = \sum_{n} da[n, j]$, i.e. ``db`` is ``da`` summed over the batch axis:
      (n_out,). ``b`` was broadcast over the N rows in the forward pass, and a broadcast
      in the forward pass is a sum in the backward pass. (These two:
      :func:`pre_activation_and_bias_grad`.)
    * $\frac{\partial L}{\partial x[n, i]} = \sum_{j} da[n, j] W[i, j]$, i.e. $dx = da W^\top$:
      (N, n_out) @ (n_out, n_in) -> (N, n_in).
    * $\frac{\partial L}{\partial W[i, j]} = \sum_{n} x[n, i] da[n, j]$, i.e. $dW = x^\top da$:
      (n_in, N) @ (N, n_out) -> (n_in, n_out). Each example adds the outer
      product of its input and its upstream gradient; the matrix product sums them.
      (These two: :func:`affine_backward`.)

    Returns ``(dx, dW, db)``; ``db`` is ``None`` when the layer has no bias, and ``dx``
    is ``None`` with ``need_dx=False`` (the first layer of a network: nobody needs
    the gradient of the data, and skipping it saves a third of the layer's work).
    ``need_dW=False`` returns ``dW = None``: the caller keeps $dW = x^\top da$ as its
    factors ``(x, da)`` (see :meth:`Dense.backward`).
    """
    da, db = pre_activation_and_bias_grad(dy, cache)
    dx, dW = affine_backward(da, cache, need_dx, need_dW)
    return dx, dW, db


def affine_backward(da, cache, need_dx=True, need_dW=True):
    r"""The two products of :func:`dense_backward`, from $da = \frac{\partial L}{\partial a}$ (N, n_out):
    ``(dx, dW)``, each ``None`` where not needed."""
    x, W = cache[0], cache[1]
    dx = da_times_W_T(da, W) if need_dx else None
    dW = x.T @ da if need_dW else None
    return dx, dW


class Dense(Layer):
    """Fully connected layer $y = f(x W + b)$ for inputs of shape (N, n_in).

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

    #: ``(alpha, beta)``: apply this step's plain-SGD update of ``W``, $W \leftarrow \beta W + \alpha x^\top da$,
    #: in the next backward pass, with the input gradient (:func:`input_grad_then_update`). Set by
    #: :class:`npdl.models.Sequential` for one training step; the layer sets it back to None when
    #: it has applied the update, and the optimizer's step then leaves ``W`` alone.
    update_in_backward = None

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
        r""":func:`dense_backward`, with $dW = x^\top da$ kept as its factors ``(x, da)``: a
        :class:`~npdl.deferred.ProductGrad`, formed when read, or added into ``W`` by plain SGD in
        one GEMM without a (n_in, n_out) temporary. With :attr:`update_in_backward` set (and an
        input gradient to compute), that update is made here, right after ``dx`` is computed
        from ``W`` as it was: :func:`input_grad_then_update`."""
        da, db = pre_activation_and_bias_grad(dy, self.cache)
        x, W = self.cache[0], self.cache[1]
        update = self.update_in_backward
        if update is not None and self.need_input_grad and W is self.params["W"]:
            dx = input_grad_then_update(da, x, W, *update)
            self.update_in_backward = None  # applied
        else:
            dx = affine_backward(da, self.cache, self.need_input_grad, need_dW=False)[0]
        self.grads["W"] = ProductGrad([(x, da)])  # dW = x^T da
        if db is not None:
            self.grads["b"] = db
        return dx

    def output_shape(self, input_shape):
        return (self.n_out,)

    def work(self, input_shape, need_input_grad=True, dtype=None) -> dict:
        """FLOPs of :func:`dense_forward` and :func:`dense_backward` on ``input_shape`` = (N, n_in), and what
        the cache keeps (:mod:`npdl.bench.work`). Forward: ``x W`` 2 N n_in n_out, the bias and ``f`` per
        element of (N, n_out). Backward: ``f'`` per element, ``dx = da W^T`` 2 N n_out n_in (not for a
        network's first layer), ``dW = x^T da`` 2 N n_in n_out (plain SGD adds it into ``W`` in its
        update), ``db`` N n_out. The cache keeps ``x``, and ``y`` for sigmoid, tanh and ReLU."""
        N = int(input_shape[0])
        M, product = N * self.n_out, 2 * N * self.n_in * self.n_out
        forward, backward, keeps_y, mask = ELEMENTWISE_WORK[self.activation]
        bias = M if self.bias else 0
        return {"forward": product + bias + forward * M,
                "backward": backward * M + (product if need_input_grad else 0) + product + bias,
                "keeps_input": True, "keeps_output": keeps_y, "kept_bytes": mask * M}

    def get_config(self):
        config = {"n_in": self.n_in, "n_out": self.n_out, "init": initializer_name(self.init),
                  "bias": self.bias, "dtype": self.dtype, "name": self.name}
        if self.activation != "linear":  # configs of plain Dense layers stay as they were
            config["activation"] = self.activation
        return config
