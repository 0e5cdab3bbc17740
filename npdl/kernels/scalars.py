"""Scalars as the GPU optimizer kernels take them (shared by the ``cuda`` and ``cupy`` versions).

The rules themselves are defined in :mod:`npdl.optim` (``RULES``); their kernels take the
``1 - rho``-style constants computed once on the host instead of per element.
"""

from __future__ import annotations


def kernel_scalars(rule: str, scalars) -> tuple:
    """The rule's Python floats (as :func:`npdl.optim.base.update_all` gets them) in the kernels' order."""
    if rule == "rmsprop":
        lr, rho, eps = scalars
        return lr, rho, 1.0 - rho, eps
    if rule == "adam":
        beta1, beta2, eps, step_size, sqrt_correction2 = scalars
        return beta1, 1.0 - beta1, beta2, 1.0 - beta2, eps, step_size, sqrt_correction2
    return tuple(scalars)
