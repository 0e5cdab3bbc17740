"""Gradient descent: plain, with classical momentum, and with Nesterov momentum."""

from __future__ import annotations

from .. import backend, kernels
from .base import Optimizer, check_number


class SGD(Optimizer):
    """Plain stochastic gradient descent: ``p <- p - lr * g``.

    When the gradient is a product, ``g = A^T B + 2 l2 p`` (a dense layer's
    ``x^T dy`` plus its L2 penalty), the step is
    ``p <- (1 - 2 lr l2) p - lr A^T B``: one GEMM ``C <- alpha A^T B + beta C``
    with ``alpha = -lr``, ``beta = 1 - 2 lr l2`` (times the decoupled decay's
    ``1 - lr wd``), and no gradient array at all (:meth:`step_products`).
    A weight used twice (a tied autoencoder's ``W``) has a sum of products as its
    gradient, ``g = sum_p A_p^T B_p``, given as a list of pairs and applied in the
    same single pass (``kernels gemm_update_sum``).
    """

    takes_products = True
    # the ``optimizer_update`` kernel's rule, per parameter: p -= lr g (the parameters not given as products)
    kernel_rule = "sgd"

    def __init__(self, lr: float = 0.01, **kw):
        super().__init__(lr, **kw)

    def _rule_scalars(self, lr):
        return (lr,)

    def step_products(self, params, products, lr, shrink):
        for name, p in params.items():
            kernel = kernels.get("gemm_update", backend.namespace(p))
            pairs = products[name]
            if isinstance(pairs, tuple):  # one product (A, B)
                kernel.gemm_update(p, pairs[0], pairs[1], -lr, shrink[name])
            else:  # a list of products whose sum is the gradient
                kernel.gemm_update_sum(p, pairs, -lr, shrink[name])


class Momentum(Optimizer):
    """Classical (heavy-ball) momentum, in the form Keras uses:

    ``v <- mu v - lr g``;  ``p <- p + v``.

    ``v`` is a running, decaying sum of past steps; along a direction where the
    gradient keeps its sign the step grows towards ``lr g / (1 - mu)``, across a
    ravine the alternating signs cancel. ``v`` starts at zero, so the first step
    is plain SGD. With a constant ``lr`` this equals PyTorch's ``b <- mu b + g``,
    ``p <- p - lr b`` (``v = -lr b``); under a schedule, Keras's form keeps old
    steps at the learning rate they were taken with.
    """

    slot_kinds = ("velocity",)
    # the ``optimizer_update`` kernel's rule, per parameter: v *= mu; v -= lr g; p += v
    kernel_rule = "momentum"

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, **kw):
        super().__init__(lr, **kw)
        self.momentum = check_number(type(self).__name__, "momentum", momentum, 0.0, 1.0)

    def _rule_scalars(self, lr):
        return (lr, self.momentum)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum}


class Nesterov(Momentum):
    """Nesterov's accelerated gradient, rewritten so the gradient is taken at the stored parameters.

    Nesterov's method (as Sutskever et al. 2013 write it) evaluates the gradient
    at the look-ahead point ``theta + mu v``, where momentum is about to carry the
    parameters anyway:

    ``v' = mu v - lr grad(theta + mu v)``;  ``theta' = theta + v'``.

    A layer can only give the gradient at the parameters it holds, so store the
    look-ahead point itself, ``p = theta + mu v``. Then ``g = grad(p)`` and

    ``p' = theta' + mu v' = (p - mu v) + v' + mu v'``
    ``   = p + mu v' + (v' - mu v) = p + mu v' - lr g``.

    So the update is ``v <- mu v - lr g``; ``p <- p + mu v - lr g`` (with the new
    ``v``): Keras's ``SGD(nesterov=True)``, and with a constant ``lr`` PyTorch's
    ``SGD(nesterov=True)`` (``b <- mu b + g``; ``p <- p - lr (g + mu b)``, ``v = -lr b``).
    ``v`` starts at zero, so before the first step ``p = theta``.
    """

    # the ``optimizer_update`` kernel's rule, per parameter: v *= mu; v -= lr g; p += mu v; p -= lr g
    kernel_rule = "nesterov"
