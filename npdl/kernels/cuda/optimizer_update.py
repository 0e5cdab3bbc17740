"""The optimizer rules, numba.cuda version of :mod:`npdl.kernels.reference.optimizer_update`.

One launch per parameter with one thread per element reads ``p``, ``g`` and the state once and
writes ``p`` and the state once, where the reference's CuPy operations launch three (momentum)
to ten (Adam) kernels and allocate temporaries. The scalars are passed as the parameter's own
float type (``np.float32(lr)`` ...), as NumPy casts a Python float against a float32 array, so
the arithmetic is float32 throughout with the reference's operations in its order. (The GPU
compiler may fuse a multiply and an add into one FMA, so results agree with the reference to
round-off, not always bit for bit.) Arrays the kernels cannot take in place (another layout or
dtype) go to the reference.
"""

from __future__ import annotations

import math

from numba import cuda

from ... import backend
from ..reference import optimizer_update as _reference
from . import launch


@cuda.jit(cache=True)
def _momentum(p, g, v, lr, mu):
    i = cuda.grid(1)
    if i < p.size:
        vi = v[i] * mu - g[i] * lr
        v[i] = vi
        p[i] += vi


@cuda.jit(cache=True)
def _nesterov(p, g, v, lr, mu):
    i = cuda.grid(1)
    if i < p.size:
        lr_g = g[i] * lr
        vi = v[i] * mu - lr_g
        v[i] = vi
        p[i] = (p[i] + vi * mu) - lr_g


@cuda.jit(cache=True)
def _rmsprop(p, g, v, lr, rho, one_minus_rho, eps):
    i = cuda.grid(1)
    if i < p.size:
        gi = g[i]
        vi = v[i] * rho + (gi * gi) * one_minus_rho
        v[i] = vi
        p[i] -= (gi / (math.sqrt(vi) + eps)) * lr


@cuda.jit(cache=True)
def _adam(p, g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size, sqrt_correction2):
    i = cuda.grid(1)
    if i < p.size:
        gi = g[i]
        mi = m[i] * beta1 + gi * one_minus_beta1
        vi = v[i] * beta2 + (gi * gi) * one_minus_beta2
        m[i] = mi
        v[i] = vi
        p[i] -= (mi / (math.sqrt(vi) / sqrt_correction2 + eps)) * step_size


def _fits(p, g, *slots) -> bool:
    """Same shape and dtype everywhere, and the arrays updated in place C-contiguous."""
    return (all(a.shape == p.shape and a.dtype == p.dtype for a in (g,) + slots)
            and all(a.flags.c_contiguous for a in (p,) + slots))


def _flat(*arrays):
    return tuple(a.reshape(-1) for a in arrays)


def momentum(p, g, v, lr: float, mu: float):
    if not _fits(p, g, v):
        return _reference.momentum(p, g, v, lr, mu)
    t = p.dtype.type  # numpy.float32 / float64 for NumPy and CuPy arrays alike
    launch(_momentum, p.size, *_flat(p, backend.row_major(g), v), t(lr), t(mu))


def nesterov(p, g, v, lr: float, mu: float):
    if not _fits(p, g, v):
        return _reference.nesterov(p, g, v, lr, mu)
    t = p.dtype.type
    launch(_nesterov, p.size, *_flat(p, backend.row_major(g), v), t(lr), t(mu))


def rmsprop(p, g, v, lr: float, rho: float, eps: float):
    if not _fits(p, g, v):
        return _reference.rmsprop(p, g, v, lr, rho, eps)
    t = p.dtype.type
    launch(_rmsprop, p.size, *_flat(p, backend.row_major(g), v), t(lr), t(rho), t(1.0 - rho), t(eps))


def adam(p, g, m, v, beta1: float, beta2: float, eps: float, step_size: float, sqrt_correction2: float):
    if not _fits(p, g, m, v):
        return _reference.adam(p, g, m, v, beta1, beta2, eps, step_size, sqrt_correction2)
    t = p.dtype.type
    launch(_adam, p.size, *_flat(p, backend.row_major(g), m, v), t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2),
           t(eps), t(step_size), t(sqrt_correction2))
