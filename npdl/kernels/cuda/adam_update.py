"""One Adam step on one parameter, numba.cuda version of :mod:`npdl.kernels.reference.adam_update`.

One launch with one thread per element reads ``p``, ``g``, ``m`` and ``v`` once and writes
``p``, ``m`` and ``v`` once, where the reference's ten CuPy operations launch ten kernels
and allocate temporaries. The scalars are passed as the parameter's own float type
(``np.float32(beta1)`` ...), as NumPy casts a Python float against a float32 array, so
the arithmetic is float32 throughout with the reference's operations in its order.
(The GPU compiler may fuse a multiply and an add into one FMA, so results agree with the
reference to round-off, not always bit for bit.)
"""

from __future__ import annotations

import math

from numba import cuda

from ..reference import adam_update as _reference
from . import contiguous, launch


@cuda.jit(cache=True)
def _update(p, g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size, sqrt_correction2):
    i = cuda.grid(1)
    if i >= p.size:
        return
    gi = g[i]
    mi = m[i] * beta1 + gi * one_minus_beta1
    vi = v[i] * beta2 + (gi * gi) * one_minus_beta2
    m[i] = mi
    v[i] = vi
    denom = math.sqrt(vi) / sqrt_correction2 + eps
    p[i] -= (mi / denom) * step_size


def update(p, g, m, v, beta1: float, beta2: float, eps: float, step_size: float, sqrt_correction2: float):
    """Apply the step to ``p``, ``m`` and ``v`` in place (see the reference)."""
    arrays = (p, g, m, v)
    if (any(a.shape != p.shape or a.dtype != p.dtype for a in arrays)
            or not all(a.flags.c_contiguous for a in (p, m, v))):
        return _reference.update(p, g, m, v, beta1, beta2, eps, step_size, sqrt_correction2)
    g = contiguous(g)
    t = p.dtype.type  # numpy.float32 / float64 for NumPy and CuPy arrays alike
    launch(_update, p.size, p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), t(beta1), t(1.0 - beta1),
           t(beta2), t(1.0 - beta2), t(eps), t(step_size), t(sqrt_correction2))
