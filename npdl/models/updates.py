"""Plain SGD's update of a dense layer's weights made in the layer's backward pass, where that changes
no result: one pass over ``W`` instead of two.

At batch 1 a dense layer's backward pass reads ``W`` for its input gradient ``dx = da W^T``, and
the optimizer's step then reads and writes ``W`` again, ``W <- W - lr x^T da``. With plain SGD the
update needs nothing but ``W`` and its own factors ``(x, da)``, all known as soon as ``dx`` is
computed, so the layer can make it right then, in the same pass over the rows of ``W``
(:func:`npdl.layers.dense.input_grad_then_update`). The result is the same, bit for bit: the same
update from the same weights, ``dx`` still from the weights before it (``tests/test_updates.py``).

:class:`npdl.models.Sequential` asks for it in each training step (``fuse_update``, on by default)
and the layers that made their update tell the optimizer's step to leave their weights alone. It
is asked for only where nothing else can see the difference; see :func:`updates_in_backward`.
"""

from __future__ import annotations

from ..layers.dense import Dense


def updates_in_backward(model) -> dict:
    """``{layer index: (alpha, beta)}``: the dense layers of ``model`` that may make this step's update
    of their weights in their backward pass, or ``{}``.

    Only where that changes nothing: ``model.fuse_update`` is on; the optimizer offers it (plain SGD
    without clipping or an L1 term: :meth:`npdl.optim.Optimizer.update_in_backward`); its ``step``
    is not wrapped (by the diagnostics' probe or a hook of your own, which may look at the weights
    before the step; a wrapper with ``reads_weights = False``, as :mod:`npdl.bench.profile`'s
    timers, does not count); every trainable layer is a :class:`~npdl.layers.Dense` (whose gradients the
    optimizer's checks cannot refuse, so no step is refused after a weight has moved); and no
    array is held by two layers (a tied weight would be read again further down the backward pass).
    """
    optimizer = model.optimizer
    hook = vars(optimizer).get("step")  # a wrapper set on the instance, shadowing the method
    if not getattr(model, "fuse_update", True) or hook is not None and getattr(hook, "reads_weights", True):
        return {}
    found, seen, count = [], set(), 0
    for index, layer in enumerate(model.layers):
        for p in layer.params.values():
            seen.add(id(p))
            count += 1
        if layer.trainable and layer.params:
            if not isinstance(layer, Dense):
                return {}
            found.append(index)
    if count != len(seen) or not found:
        return {}
    update = optimizer.update_in_backward(model.l1, model.l2, decayed=True)
    return {} if update is None else dict.fromkeys(found, update)


def backward_updating(model, dloss, batch_size: int) -> list:
    """``model.backward(dloss)``, at batch size 1 with the updates of :func:`updates_in_backward` handed
    to their layers (:attr:`npdl.layers.Dense.update_in_backward`); returns the names (``"0.W"``) of
    the weights the layers updated, for the optimizer's step to leave alone. From batch 2 the two
    products are matrix products (BLAS) that one pass cannot share, and every update waits for the step."""
    updates = updates_in_backward(model) if batch_size == 1 else None
    if not updates:
        model.backward(dloss)
        return []
    applied = []
    try:
        for index, update in updates.items():
            model.layers[index].update_in_backward = update
        model.backward(dloss)
    finally:
        for index in updates:
            layer = model.layers[index]
            if layer.update_in_backward is None:  # taken and applied by the layer
                applied.append(f"{index}.W")
            layer.update_in_backward = None
    return applied
