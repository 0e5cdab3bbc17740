"""The optimizer rules as CuPy ``ElementwiseKernel``\\ s (see :mod:`npdl.kernels.cupy`).

One launch per parameter, each thread reading its element of ``p``, ``g`` and the state once
and writing ``p`` and the state once (the outputs are read too: CuPy passes them by
reference). The scalars are passed as the parameter's own float type, so float32 arithmetic
throughout, in the definition's operations and order; NVRTC may fuse a multiply and an add into
one FMA, so results agree with the definition to round-off. Another dtype or shape than the
parameter's makes the call decline, and the definition runs.
"""

from __future__ import annotations

from ..scalars import kernel_scalars
from . import elementwise_kernel

SPECS = {
    "sgd": ("T g, T lr", "T p", "p -= g * lr"),
    "momentum": ("T g, T lr, T mu", "T p, T v", "const T vj = v * mu - g * lr; v = vj; p += vj"),
    "nesterov": ("T g, T lr, T mu", "T p, T v",
                 "const T lr_g = g * lr; const T vj = v * mu - lr_g; v = vj; p = (p + vj * mu) - lr_g"),
    "rmsprop": ("T g, T lr, T rho, T one_minus_rho, T eps", "T p, T v",
                "const T vj = v * rho + (g * g) * one_minus_rho; v = vj; p -= (g / (sqrt(vj) + eps)) * lr"),
    "adam": ("T g, T beta1, T one_minus_beta1, T beta2, T one_minus_beta2, T eps, T step_size, T sqrt_correction2",
             "T p, T m, T v",
             "const T mj = m * beta1 + g * one_minus_beta1; const T vj = v * beta2 + (g * g) * one_minus_beta2; "
             "m = mj; v = vj; p -= (mj / (sqrt(vj) / sqrt_correction2 + eps)) * step_size"),
}


def update_all(rule: str, ps, gs, slots, scalars):
    """:func:`npdl.optim.base.update_all`, one launch per parameter. Declines (``NotImplemented``: the
    definition runs) when shapes or dtypes differ, before changing anything."""
    if rule not in SPECS:
        return NotImplemented
    for p, g, *state in zip(ps, gs, *slots):
        if any(a.shape != p.shape or a.dtype != p.dtype for a in (g, *state)):
            return NotImplemented
    kernel = elementwise_kernel("optimizer_update", rule, SPECS[rule])
    constants = kernel_scalars(rule, scalars)
    for p, g, *state in zip(ps, gs, *slots):
        t = p.dtype.type
        kernel(g, *(t(c) for c in constants), p, *state)
