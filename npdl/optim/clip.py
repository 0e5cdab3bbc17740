"""Gradient clipping by global norm (Pascanu, Mikolov & Bengio 2013; ``tf.clip_by_global_norm``)."""

from __future__ import annotations

import math

from .. import backend


def global_norm(grads: dict):
    r"""$norm = \sqrt{\sum_{k} \sum grads[k]^2}$: the Euclidean norm of all gradients laid end to end,
    as a 0-d array on their device (no host sync)."""
    xp = backend.namespace(*grads.values())
    total = sum(xp.sum(g * g) for g in grads.values())
    # NumPy reductions return scalars; asarray gives back the 0-d array the other backends return
    return xp.asarray(xp.sqrt(total))


def clip_by_global_norm(grads: dict, max_norm: float):
    r"""Scale every gradient in ``grads`` in place by $scale = \frac{max\_norm}{\max(norm, max\_norm)}$.

    ``norm`` is :func:`global_norm`. When ``norm <= max_norm`` the scale is exactly
    1 and the gradients keep their values; otherwise all of them are multiplied by
    the same ``max_norm / norm < 1``, so the clipped global norm is ``max_norm``.

    Why one global scale rather than clipping each array to its own norm: the
    gradient is one vector over all parameters, and a single scale shrinks its
    length while keeping its direction, so the step still points downhill along
    the true gradient. Per-array clipping would shrink some coordinates more than
    others and turn the step towards a different direction.

    The scale is computed on the device with ``xp.maximum``, so clipping never
    waits for the GPU; the price is one multiply over every gradient even when
    nothing is clipped (multiplying by exactly 1.0 changes no bits).

    Returns the global norm before clipping, a 0-d array (``backend.to_float`` it
    for logging; on a GPU that waits for the device). A non-finite norm gives a
    NaN scale: the step will show it rather than hide it.
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not math.isfinite(max_norm) \
            or max_norm <= 0:
        raise ValueError(f"clip_by_global_norm: max_norm must be a positive finite number, got {max_norm!r}")
    if not grads:
        return 0.0
    xp = backend.namespace(*grads.values())
    norm = global_norm(grads)
    scale = float(max_norm) / xp.maximum(norm, xp.full_like(norm, float(max_norm)))
    for g in grads.values():
        # a float32 gradient next to a float64 one would get a float64 scale: cast it, never the gradient
        g *= scale if g.dtype == scale.dtype else xp.astype(scale, g.dtype)
    return norm
