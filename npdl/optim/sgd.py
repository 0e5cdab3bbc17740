"""Gradient descent: plain, with classical momentum, and with Nesterov momentum."""

from __future__ import annotations

from .. import kernels
from .base import Optimizer, check_number, rule


@kernels.accelerated("gemm_update.gemm_update_sum")
def gemm_update_sum(C, pairs, alpha: float, beta: float = 1.0):
    r"""$C \leftarrow \beta C + \alpha \sum_{k} A_k^\top B_k$ in place for ``pairs = [(A_1, B_1), ...]``; returns ``C``.

    Shapes: ``A_k`` (N_k, M), ``B_k`` (N_k, K), ``C`` (M, K); ``alpha``, ``beta`` Python floats.
    Plain SGD's step for a weight whose gradient is a sum of products, with $\alpha = -lr$ and
    $\beta = 1 - lr (2 \, l2 + wd)$. Written here term by term; the CPU and GPU kernels do it in
    one GEMM (BLAS's $C \leftarrow \alpha A^\top B + \beta C$) over the stacked factors, with no
    gradient array and one pass over ``C``.
    """
    if beta != 1.0:
        C *= beta
    for A, B in pairs:
        C += alpha * (A.T @ B)
    return C


@rule("sgd")
def sgd_rule(p, g, lr: float):
    r"""$p \leftarrow p - lr \, g$ in place."""
    p -= g * lr


@rule("momentum")
def momentum_rule(p, g, v, lr: float, mu: float):
    r"""$v \leftarrow \mu v - lr \, g$; $p \leftarrow p + v$ in place."""
    v *= mu
    v -= g * lr
    p += v


@rule("nesterov")
def nesterov_rule(p, g, v, lr: float, mu: float):
    r"""$v \leftarrow \mu v - lr \, g$; $p \leftarrow p + \mu v - lr \, g$ (with the new $v$) in place."""
    lr_g = g * lr  # the one temporary, used twice
    v *= mu
    v -= lr_g
    p += v * mu
    p -= lr_g


class SGD(Optimizer):
    r"""Plain stochastic gradient descent: $p \leftarrow p - lr \, g$ (:func:`sgd_rule`).

    When the data gradient is a product left unformed (:class:`npdl.deferred.ProductGrad`,
    a dense layer's $x^\top da$), the whole gradient is $G = A^\top B + 2 \, l2 \, p + l1 \, \text{sign}(p)$
    and the step, with decoupled decay ``wd``, is

    $$
    p \leftarrow (1 - lr (2 \, l2 + wd)) p - lr A^\top B - lr \, l1 \, \text{sign}(p)
    $$

    one GEMM $C \leftarrow \alpha A^\top B + \beta C$ with $\alpha = -lr$, $\beta = 1 - lr (2 \, l2 + wd)$
    (:func:`gemm_update_sum`), then the L1 term, and no gradient array at all. A weight used
    twice (a tied autoencoder's ``W``) has a sum of products as its gradient,
    $\sum_{k} A_k^\top B_k$, applied in the same single pass. ``fuse_products = False`` forms
    every gradient instead (the same terms, one array more).
    """

    takes_products = True
    kernel_rule = "sgd"  # :func:`sgd_rule` (for the gradients not applied from their factors)

    def __init__(self, lr: float = 0.01, **kw):
        super().__init__(lr, **kw)

    def _rule_scalars(self, lr):
        return (lr,)

    def _apply_factors(self, p, pairs, lr, beta):
        gemm_update_sum(p, pairs, -lr, beta)

    def update_in_backward(self, l1: float = 0.0, l2: float = 0.0, decayed: bool = True):
        r"""``(-lr, beta)``: the step's update of a weight whose gradient is a product,
        $p \leftarrow \beta p - lr A^\top B$, the very call :meth:`step` would make
        (:func:`gemm_update_sum`), so a dense layer may make it in its backward pass
        (:meth:`npdl.layers.Dense.backward`). None with ``clip_norm`` (the norm needs every gradient
        first), an L1 penalty (its term is applied after the product), or ``fuse_products`` off."""
        if self.clip_norm is not None or not self.fuse_products or l1:
            return None
        lr = self.current_lr()
        return -lr, self._factors_beta(lr, float(l2), decayed)


class Momentum(Optimizer):
    r"""Classical (heavy-ball) momentum, in the form Keras uses ($\mu$ = ``momentum``):

    $v \leftarrow \mu v - lr \, g$; $p \leftarrow p + v$.

    ``v`` is a running, decaying sum of past steps; along a direction where the
    gradient keeps its sign the step grows towards $\frac{lr \, g}{1 - \mu}$, across a
    ravine the alternating signs cancel. ``v`` starts at zero, so the first step
    is plain SGD. With a constant ``lr`` this equals PyTorch's $b \leftarrow \mu b + g$,
    $p \leftarrow p - lr \, b$ ($v = -lr \, b$); under a schedule, Keras's form keeps old
    steps at the learning rate they were taken with.
    """

    slot_kinds = ("velocity",)
    kernel_rule = "momentum"  # :func:`momentum_rule`

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, **kw):
        super().__init__(lr, **kw)
        self.momentum = check_number(type(self).__name__, "momentum", momentum, 0.0, 1.0)

    def _rule_scalars(self, lr):
        return (lr, self.momentum)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum}


class Nesterov(Momentum):
    r"""Nesterov's accelerated gradient, rewritten so the gradient is taken at the stored parameters.

    Nesterov's method (as Sutskever et al. 2013 write it) evaluates the gradient
    at the look-ahead point $\theta + \mu v$, where momentum is about to carry the
    parameters anyway:

    $v' = \mu v - lr \, \text{grad}(\theta + \mu v)$; $\theta' = \theta + v'$.

    A layer can only give the gradient at the parameters it holds, so store the
    look-ahead point itself, $p = \theta + \mu v$. Then $g = \text{grad}(p)$ and

    $$
    p' = \theta' + \mu v' = (p - \mu v) + v' + \mu v' = p + \mu v' + (v' - \mu v) = p + \mu v' - lr \, g
    $$

    So the update is $v \leftarrow \mu v - lr \, g$; $p \leftarrow p + \mu v - lr \, g$ (with the new
    $v$): Keras's ``SGD(nesterov=True)``, and with a constant ``lr`` PyTorch's
    ``SGD(nesterov=True)`` ($b \leftarrow \mu b + g$; $p \leftarrow p - lr (g + \mu b)$, $v = -lr \, b$).
    ``v`` starts at zero, so before the first step $p = \theta$.
    """

    kernel_rule = "nesterov"  # :func:`nesterov_rule`
