"""Adam (Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015)."""

from __future__ import annotations

import math

from .. import backend
from .base import Optimizer, check_number, rule


@rule("adam")
def adam_rule(p, g, m, v, beta1: float, beta2: float, eps: float, step_size: float, sqrt_correction2: float):
    r"""In place, with the bias corrections folded into $step\_size = \frac{lr}{1 - \beta_1^t}$ and
    $sqrt\_correction2 = \sqrt{1 - \beta_2^t}$ (see :class:`Adam`):
    $m \leftarrow \beta_1 m + (1 - \beta_1) g$; $v \leftarrow \beta_2 v + (1 - \beta_2) g^2$;
    $p \leftarrow p - step\_size \frac{m}{\sqrt{v} / sqrt\_correction2 + \epsilon}$."""
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


class Adam(Optimizer):
    r"""Moving averages of the gradient and its square, bias-corrected (Algorithm 1 of the paper).

    With $t$ = ``iterations + 1`` (the step being taken, counted from 1), $\beta_1$ = ``beta1``,
    $\beta_2$ = ``beta2``, $\epsilon$ = ``eps``:

    * $m \leftarrow \beta_1 m + (1 - \beta_1) g$: the first moment, a smoothed gradient;
    * $v \leftarrow \beta_2 v + (1 - \beta_2) g^2$: the second moment, its mean square;
    * $\hat{m} = \frac{m}{1 - \beta_1^t}$, $\hat{v} = \frac{v}{1 - \beta_2^t}$;
    * $p \leftarrow p - lr \frac{\hat{m}}{\sqrt{\hat{v}} + \epsilon}$.

    Bias correction: ``m`` and ``v`` start at zero, so after $t$ steps of a
    constant gradient $m = (1 - \beta_1^t) g$; dividing by $1 - \beta_1^t$ removes
    that pull towards zero (and likewise for ``v``), so even the first step has
    size about ``lr`` per coordinate.

    The code folds the corrections into scalars, never forming ``m_hat`` or
    ``v_hat``: $p \leftarrow p - \frac{lr}{1 - \beta_1^t} \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}$,
    the same expression PyTorch's ``Adam`` evaluates. Keras instead uses the
    paper's "eps hat" form $lr \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t} \frac{m}{\sqrt{v} + \epsilon}$,
    i.e. our formula with $\epsilon$ replaced by $\frac{\epsilon}{\sqrt{1 - \beta_2^t}}$; the two
    differ only while $\sqrt{v}$ is comparable to $\epsilon$. Defaults are Keras's
    (``eps = 1e-7``; PyTorch's is ``1e-8``). With ``weight_decay`` this is AdamW.
    """

    slot_kinds = ("m", "v")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7, **kw):
        super().__init__(lr, **kw)
        self.beta1 = check_number("Adam", "beta1", beta1, 0.0, 1.0)
        self.beta2 = check_number("Adam", "beta2", beta2, 0.0, 1.0)
        self.eps = check_number("Adam", "eps", eps, 0.0)

    # :func:`adam_rule` (on a GPU one launch for up to 16 parameters instead of ten per parameter)
    kernel_rule = "adam"

    def _rule_scalars(self, lr):
        t = self.iterations + 1
        step_size = lr / (1.0 - self.beta1 ** t)  # Python floats: no dtype reaches the arrays
        sqrt_correction2 = math.sqrt(1.0 - self.beta2 ** t)
        return (self.beta1, self.beta2, self.eps, step_size, sqrt_correction2)

    def get_config(self):
        return {**super().get_config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}
