"""The optimizer rules, numba.cuda version of :func:`npdl.optim.base.update_all` (rules in :mod:`npdl.optim`).

:func:`update_all` updates many parameters in one launch, one thread per element of all of
them together: the parameters, gradients and state arrays come as tuples (Numba passes a tuple
of arrays to a kernel as its members), with the offsets where each parameter's elements start,
and a thread finds its parameter by walking the offsets. Each thread reads its ``p``, ``g`` and
state once and writes ``p`` and the state once, where the definition's CuPy operations launch
two (SGD) to ten (Adam) kernels per parameter and allocate temporaries. A model's step thus
ends with one launch per 16 parameters instead of dozens (the launch itself costs host time per
array argument, so the saving is the per-launch part).

The scalars are passed as the parameters' own float type (``np.float32(lr)`` ...), as NumPy
casts a Python float against a float32 array, so the arithmetic is float32 throughout with the
definition's operations in its order. (The GPU compiler may fuse a multiply and an add into one
FMA, so results agree with the definition to round-off, not always bit for bit.) Parameters are
grouped by dtype, one launch per group of up to :data:`MAX_PER_LAUNCH` (kernel arguments are
limited in size), parameters that share memory in separate launches; an array the kernel
cannot update in place (another layout, shape or dtype than its parameter's) makes the whole
call decline, and the definition runs.
"""

from __future__ import annotations

import math

from numba import cuda

from ... import backend
from ..scalars import kernel_scalars
from . import launch

# One kernel per rule over all parameters: ps, gs and the state are tuples of flat arrays, and
# thread i first finds its parameter t (offsets[t] <= i < offsets[t + 1]) and its element j there.
# (Written out in each kernel, not as a device function: compiling a call to a device function
# needs a GPU, and the tests compile every kernel to PTX without one.)


@cuda.jit(cache=True)
def _sgd(ps, gs, offsets, lr):
    i = cuda.grid(1)
    if i < offsets[len(offsets) - 1]:
        t = 0
        while offsets[t + 1] <= i:
            t += 1
        p, g, j = ps[t], gs[t], i - offsets[t]
        p[j] -= g[j] * lr


@cuda.jit(cache=True)
def _momentum(ps, gs, vs, offsets, lr, mu):
    i = cuda.grid(1)
    if i < offsets[len(offsets) - 1]:
        t = 0
        while offsets[t + 1] <= i:
            t += 1
        p, g, v, j = ps[t], gs[t], vs[t], i - offsets[t]
        vj = v[j] * mu - g[j] * lr
        v[j] = vj
        p[j] += vj


@cuda.jit(cache=True)
def _nesterov(ps, gs, vs, offsets, lr, mu):
    i = cuda.grid(1)
    if i < offsets[len(offsets) - 1]:
        t = 0
        while offsets[t + 1] <= i:
            t += 1
        p, g, v, j = ps[t], gs[t], vs[t], i - offsets[t]
        lr_g = g[j] * lr
        vj = v[j] * mu - lr_g
        v[j] = vj
        p[j] = (p[j] + vj * mu) - lr_g


@cuda.jit(cache=True)
def _rmsprop(ps, gs, vs, offsets, lr, rho, one_minus_rho, eps):
    i = cuda.grid(1)
    if i < offsets[len(offsets) - 1]:
        t = 0
        while offsets[t + 1] <= i:
            t += 1
        p, g, v, j = ps[t], gs[t], vs[t], i - offsets[t]
        gj = g[j]
        vj = v[j] * rho + (gj * gj) * one_minus_rho
        v[j] = vj
        p[j] -= (gj / (math.sqrt(vj) + eps)) * lr


@cuda.jit(cache=True)
def _adam(ps, gs, ms, vs, offsets, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size, sqrt_correction2):
    i = cuda.grid(1)
    if i < offsets[len(offsets) - 1]:
        t = 0
        while offsets[t + 1] <= i:
            t += 1
        p, g, m, v, j = ps[t], gs[t], ms[t], vs[t], i - offsets[t]
        gj = g[j]
        mj = m[j] * beta1 + gj * one_minus_beta1
        vj = v[j] * beta2 + (gj * gj) * one_minus_beta2
        m[j] = mj
        v[j] = vj
        p[j] -= (mj / (math.sqrt(vj) / sqrt_correction2 + eps)) * step_size


_KERNELS = {"sgd": _sgd, "momentum": _momentum, "nesterov": _nesterov, "rmsprop": _rmsprop, "adam": _adam}


def _fits(p, g, state) -> bool:
    """Same shape and dtype everywhere, and the arrays updated in place C-contiguous."""
    return (all(a.shape == p.shape and a.dtype == p.dtype for a in (g, *state))
            and all(a.flags.c_contiguous for a in (p, *state)))


#: parameters per launch at most: Numba passes each 1-D array as 56 bytes of kernel arguments, and
#: 16 parameters of Adam (4 arrays each) stay under the 4 KB that CUDA before 12.1 allows
MAX_PER_LAUNCH = 16


def _span(a) -> tuple:
    """``[start, end)`` of ``a``'s memory, to keep overlapping parameters out of one launch."""
    interface = getattr(a, "__cuda_array_interface__", None) or a.__array_interface__
    start = int(interface["data"][0])
    return start, start + int(a.size) * a.dtype.itemsize


def _launches(ks, ps):
    """``ks`` cut into launches of at most :data:`MAX_PER_LAUNCH` parameters, none of which share memory
    with another of its launch: two threads of one launch updating one element would lose an update
    (a parameter given twice, e.g. one array under two names, is updated twice, as the definition does)."""
    launch_ks, spans = [], []
    for k in ks:
        span = _span(ps[k])
        overlaps = any(span[0] < end and start < span[1] for start, end in spans)
        if len(launch_ks) == MAX_PER_LAUNCH or overlaps:
            yield launch_ks
            launch_ks, spans = [], []
        launch_ks.append(k)
        spans.append(span)
    if launch_ks:
        yield launch_ks


def update_all(rule: str, ps, gs, slots, scalars):
    """:func:`npdl.optim.base.update_all` in one launch per dtype (per 16 parameters). Declines
    (``NotImplemented``: the definition runs) when any parameter is not laid out for it, e.g. a
    strided view, before changing anything."""
    if rule not in _KERNELS:
        return NotImplemented
    groups: dict = {}
    for k, (p, g, *state) in enumerate(zip(ps, gs, *slots)):
        if not _fits(p, g, state):
            return NotImplemented
        groups.setdefault(p.dtype, []).append(k)
    for dtype, ks in groups.items():
        t = dtype.type  # numpy.float32 / float64 for NumPy and CuPy arrays alike
        constants = tuple(t(c) for c in kernel_scalars(rule, scalars))
        for launch_ks in _launches([k for k in ks if ps[k].size], ps):
            offsets = [0]
            for k in launch_ks:
                offsets.append(offsets[-1] + int(ps[k].size))
            flat = [tuple(ps[k].reshape(-1) for k in launch_ks),
                    tuple(backend.row_major(gs[k]).reshape(-1) for k in launch_ks),
                    *(tuple(state[k].reshape(-1) for k in launch_ks) for state in slots)]
            launch(_KERNELS[rule], offsets[-1], *flat, tuple(offsets), *constants)
