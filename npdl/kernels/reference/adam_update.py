"""One Adam step on one parameter, in place (array-API reference).

With ``m``, ``v`` the parameter's moment slots and the bias corrections folded into two
scalars by :class:`npdl.optim.Adam` (``step_size = lr / (1 - beta1^t)``,
``sqrt_correction2 = sqrt(1 - beta2^t)``)::

    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) g^2
    p <- p - step_size m / (sqrt(v) / sqrt_correction2 + eps)

The derivation is in :class:`npdl.optim.Adam`'s docstring. Written with in-place
operators (no new ``m``, ``v`` or ``p``), it is still ten elementwise passes with a
few temporaries: on a GPU, ten kernel launches per parameter, which the ``cuda``
version makes one. The scalars are Python floats, so no float64 reaches a float32
parameter.
"""

from __future__ import annotations

from ... import backend


def update(p, g, m, v, beta1: float, beta2: float, eps: float, step_size: float, sqrt_correction2: float):
    """Apply the step to ``p``, ``m`` and ``v`` (same shape and dtype as ``g``) in place."""
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
