"""The elementwise optimizer rules, one parameter at a time, in place (array-API reference).

Each function updates ``p`` and its state slots (same shape and dtype as the gradient ``g``)
in place; the scalars are Python floats, so no float64 reaches a float32 parameter. The rules
and their derivations are in :mod:`npdl.optim` (each class's docstring); this module is the
code they run. Written with in-place operators, each rule is still three to ten elementwise
passes with temporaries: on a GPU as many kernel launches per parameter, which the ``cuda``
version makes one for all the parameters (:func:`update_all`).

* :func:`sgd`: ``p <- p - lr g``
* :func:`momentum`: ``v <- mu v - lr g``;  ``p <- p + v``
* :func:`nesterov`: ``v <- mu v - lr g``;  ``p <- p + mu v - lr g``
* :func:`rmsprop`: ``v <- rho v + (1 - rho) g^2``;  ``p <- p - lr g / (sqrt(v) + eps)``
* :func:`adam`, with the bias corrections folded into ``step_size = lr / (1 - beta1^t)`` and
  ``sqrt_correction2 = sqrt(1 - beta2^t)``:
  ``m <- beta1 m + (1 - beta1) g``;  ``v <- beta2 v + (1 - beta2) g^2``;
  ``p <- p - step_size m / (sqrt(v) / sqrt_correction2 + eps)``
"""

from __future__ import annotations

from ... import backend


def sgd(p, g, lr: float):
    p -= g * lr


def momentum(p, g, v, lr: float, mu: float):
    v *= mu
    v -= g * lr
    p += v


def nesterov(p, g, v, lr: float, mu: float):
    lr_g = g * lr  # the one temporary, used twice
    v *= mu
    v -= lr_g
    p += v * mu
    p -= lr_g


def rmsprop(p, g, v, lr: float, rho: float, eps: float):
    xp = backend.namespace(p, g)
    g2 = g * g
    g2 *= 1.0 - rho
    v *= rho
    v += g2
    denom = xp.sqrt(v)
    denom += eps
    step = g / denom
    step *= lr
    p -= step


def adam(p, g, m, v, beta1: float, beta2: float, eps: float, step_size: float, sqrt_correction2: float):
    xp = backend.namespace(p, g)
    m *= beta1
    m += g * (1.0 - beta1)
    g2 = g * g
    g2 *= 1.0 - beta2
    v *= beta2
    v += g2
    denom = xp.sqrt(v)
    denom /= sqrt_correction2
    denom += eps
    step = m / denom
    step *= step_size
    p -= step


#: rule name -> the function above
RULES = {"sgd": sgd, "momentum": momentum, "nesterov": nesterov, "rmsprop": rmsprop, "adam": adam}


def kernel_scalars(rule: str, scalars) -> tuple:
    """The scalars as the GPU kernels take them: the ``1 - rho``-style constants computed once, on the host."""
    if rule == "rmsprop":
        lr, rho, eps = scalars
        return lr, rho, 1.0 - rho, eps
    if rule == "adam":
        beta1, beta2, eps, step_size, sqrt_correction2 = scalars
        return beta1, 1.0 - beta1, beta2, 1.0 - beta2, eps, step_size, sqrt_correction2
    return tuple(scalars)


def update_all(rule: str, ps, gs, slots, scalars):
    """``RULES[rule](p, g, *state, *scalars)`` for every parameter ``p`` of the list ``ps``.

    ``gs`` are the gradients, ``slots`` one list per kind of state aligned with ``ps`` (``[vs]``;
    Adam's ``[ms, vs]``), ``scalars`` the rule's Python floats after ``g`` and the state. Here a
    loop over the parameters; on a GPU one launch for many of them.
    """
    update = RULES[rule]
    for p, g, *state in zip(ps, gs, *slots):
        update(p, g, *state, *scalars)
