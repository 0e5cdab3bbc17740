"""What one diagnosed training step measures, and the hooks that measure it.

A diagnosed step is an ordinary ``model.train_batch(xb, yb)`` with three kinds of hook
set on the model for that one call (and removed after it, whatever happens):

* on every layer's ``forward``: statistics of the layer's output ``y`` (any shape),
  ``activation_mean = mean(y)``, ``activation_std = std(y)`` and, for a layer whose output
  goes through a saturating nonlinearity, ``saturation``, the fraction of entries where its
  slope is almost zero (:func:`saturated_fraction`);
* on every layer's ``backward``: ``grad_norm/input = ||dL/dx||_2`` of the gradient the layer
  returns for its input (the layers the backward pass reaches; the lowest trainable layer
  computes no input gradient, so it has none);
* on the optimizer's ``step``: for every trainable parameter ``p`` (global name ``"<i>.<k>"``)
  the norm of its data gradient ``grad_norm/<k> = ||dL/dp||_2`` (as ``layer.grads[k]`` holds it,
  before any penalty or clipping), its norm before the update ``weight_norm/<k> = ||p||_2`` and
  the update's norm ``update_norm/<k> = ||p_after - p_before||_2`` (the ratio
  ``update_norm / weight_norm`` is ``|dW| / |W|``, formed on the host).

Every number is a 0-d array on the model's device; the caller reads them back together,
once per diagnosed step. Nothing here changes what the step computes: a gradient kept as
factors (:class:`npdl.deferred.ProductGrad`) is multiplied out into a temporary for its norm
and left unformed, so the optimizer applies it as it would have.
"""

from __future__ import annotations

import contextlib

from .. import backend
from ..deferred import ProductGrad

#: an entry of a sigmoid output is saturated within this distance of 0 or 1, of a tanh output of -1 or 1
SATURATION_MARGIN = 0.01

#: activations whose saturation is measured (ReLU: the entries at 0, where the slope is 0)
SATURATING = ("sigmoid", "tanh", "relu")


def output_activation(layer) -> str | None:
    """The saturating activation (one of :data:`SATURATING`) that makes ``layer``'s output, or None.

    Read from the layer's configuration: an activation layer's own (``Sigmoid`` -> ``"sigmoid"``),
    a Dense or SimpleRNN layer's ``activation``, a stacked autoencoder's ``output``, an
    autoencoder's ``decoder``, or the wrapped layer's for ``TimeDistributed``.
    """
    from ..layers.activations import ACTIVATIONS

    for name, cls in ACTIVATIONS.items():
        if type(layer) is cls:
            return name if name in SATURATING else None
    for attr in ("activation", "output", "decoder"):
        value = getattr(layer, attr, None)
        if isinstance(value, str):
            return value if value in SATURATING else None
    inner = getattr(layer, "layer", None)
    return output_activation(inner) if inner is not None and inner is not layer else None


def saturated_fraction(y, activation: str):
    """The fraction of entries of ``y = f(a)`` where ``f'`` is almost 0, for ``f`` = ``activation``:

    * sigmoid: ``y <= m`` or ``y >= 1 - m`` (``f' = y (1 - y) <= m``);
    * tanh: ``|y| >= 1 - m`` (``f' = 1 - y^2 <= 2 m``);
    * relu: ``y <= 0`` (``f' = 0``),

    with ``m`` = :data:`SATURATION_MARGIN`. A 0-d array on ``y``'s device.
    """
    xp = backend.namespace(y)
    m = SATURATION_MARGIN
    if activation == "sigmoid":
        mask = (y <= m) | (y >= 1.0 - m)
    elif activation == "tanh":
        mask = xp.abs(y) >= 1.0 - m
    elif activation == "relu":
        mask = y <= 0.0
    else:
        raise ValueError(f"saturated_fraction: no saturation defined for {activation!r}; one of {SATURATING}")
    return xp.mean(xp.astype(mask, y.dtype))


def norm(a):
    """``||a||_2 = sqrt(sum a^2)`` over every entry, a 0-d array on ``a``'s device."""
    xp = backend.namespace(a)
    return xp.sqrt(xp.sum(a * a))


def gradient_array(g):
    """A gradient as an array; a :class:`ProductGrad` ``sum_p A_p^T B_p`` not yet formed is multiplied
    out into a temporary (not kept in it), so the optimizer still sees it unformed."""
    if isinstance(g, ProductGrad):
        if g.is_formed:
            return g.form()
        total = None
        for A, B in g.pairs:
            term = A.T @ B  # (M, N_p) @ (N_p, K) -> (M, K)
            total = term if total is None else total + term
        return total
    return g


def layer_label(index: int, layer) -> str:
    """``"<index>.<name>"``: the layer's place in the model and its name (``"0.dense"``)."""
    return f"{index}.{layer.name}"


def activation_stats(y, activation):
    """``{"activation_mean", "activation_std"[, "saturation"]}`` of a layer's output, 0-d device arrays."""
    xp = backend.namespace(y)
    stats = {"activation_mean": xp.mean(y), "activation_std": xp.std(y)}
    if activation is not None:
        stats["saturation"] = saturated_fraction(y, activation)
    return stats


def _set_hook(obj, attr, hook, undo):
    """Put ``hook`` in ``obj.__dict__[attr]`` (shadowing the method) and remember how to undo it."""
    had, previous = attr in vars(obj), vars(obj).get(attr)
    setattr(obj, attr, hook)
    undo.append((obj, attr, had, previous))


def _forward_hook(layer, label, found):
    forward, activation = layer.forward, output_activation(layer)

    def hooked(*args, **kwargs):
        y = forward(*args, **kwargs)
        for quantity, value in activation_stats(y, activation).items():
            found[(label, quantity)] = value
        return y
    return hooked


def _backward_hook(layer, label, found):
    backward = layer.backward

    def hooked(dy):
        dx = backward(dy)
        if dx is not None:
            found[(label, "grad_norm/input")] = norm(dx)
        return dx
    return hooked


def _step_hook(optimizer, labels, found, before, kept):
    step = optimizer.step

    def hooked(params, grads, *args, **kwargs):
        for name, p in params.items():
            index, key = name.split(".", 1)
            label = labels[int(index)]
            xp = backend.namespace(p)
            g = gradient_array(grads[name])
            found[(label, f"grad_norm/{key}")] = norm(g)
            if kept is not None:  # a copy: clipping scales the gradients in place
                kept[name] = xp.asarray(g, copy=True)
            before[name] = xp.asarray(p, copy=True)
            found[(label, f"weight_norm/{key}")] = norm(before[name])
        result = step(params, grads, *args, **kwargs)
        for name, p in params.items():
            index, key = name.split(".", 1)
            found[(labels[int(index)], f"update_norm/{key}")] = norm(p - before[name])
        before.clear()
        return result
    return hooked


@contextlib.contextmanager
def probing(model, gradients=None):
    """Hooks on ``model``'s layers and optimizer for the steps run inside; yields the dict they fill,
    ``{(layer label, quantity): 0-d device array}``. The hooks are gone when the block ends.
    ``gradients``, a dict, also receives a copy of each parameter's data gradient (global name -> array)."""
    found, before, undo = {}, {}, []
    labels = [layer_label(i, layer) for i, layer in enumerate(model.layers)]
    try:
        for layer, label in zip(model.layers, labels):
            _set_hook(layer, "forward", _forward_hook(layer, label, found), undo)
            _set_hook(layer, "backward", _backward_hook(layer, label, found), undo)
        _set_hook(model.optimizer, "step", _step_hook(model.optimizer, labels, found, before, gradients), undo)
        yield found
    finally:
        for obj, attr, had, previous in reversed(undo):
            if had:
                setattr(obj, attr, previous)
            else:
                delattr(obj, attr)
