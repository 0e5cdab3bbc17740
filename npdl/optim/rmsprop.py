"""RMSprop (Hinton, Coursera lecture 6e, 2012): divide each step by a running RMS of the gradient."""

from __future__ import annotations

from .. import backend
from .base import Optimizer, check_number, rule


@rule("rmsprop")
def rmsprop_rule(p, g, v, lr: float, rho: float, eps: float):
    r"""$v \leftarrow \rho v + (1 - \rho) g^2$; $p \leftarrow p - lr \frac{g}{\sqrt{v} + \epsilon}$ in place."""
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


class RMSprop(Optimizer):
    r"""$v \leftarrow \rho v + (1 - \rho) g^2$; $p \leftarrow p - lr \frac{g}{\sqrt{v} + \epsilon}$
    ($\rho$ = ``rho``, $\epsilon$ = ``eps``).

    ``v`` (elementwise) is an exponential moving average of squared gradients, so
    $\sqrt{v}$ is the recent RMS size of each coordinate's gradient and every
    coordinate moves about ``lr`` per step whatever its scale. ``v`` starts at zero
    and is not bias-corrected, so early steps are larger (the first is
    $lr \frac{g}{\sqrt{1 - \rho} |g| + \epsilon}$, about $3.2 \, lr$ for $\rho = 0.9$).

    ``eps`` is added *outside* the square root, as in PyTorch's ``RMSprop`` and
    Keras 2; Keras 3 adds it inside, ``sqrt(v + eps)``, which for the default
    ``eps = 1e-7`` acts like a much larger ``sqrt(1e-7) ~ 3e-4`` here. Defaults are
    Keras's (``lr = 0.001``, ``rho = 0.9``, ``eps = 1e-7``); PyTorch's are
    ``lr = 0.01``, ``alpha = 0.99``, ``eps = 1e-8`` (its ``alpha`` is our ``rho``).
    """

    slot_kinds = ("v",)
    kernel_rule = "rmsprop"  # :func:`rmsprop_rule`

    def __init__(self, lr: float = 0.001, rho: float = 0.9, eps: float = 1e-7, **kw):
        super().__init__(lr, **kw)
        self.rho = check_number("RMSprop", "rho", rho, 0.0, 1.0)
        self.eps = check_number("RMSprop", "eps", eps, 0.0)

    def _rule_scalars(self, lr):
        return (lr, self.rho, self.eps)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "eps": self.eps}
