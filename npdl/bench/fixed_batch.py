"""A training step on one fixed batch already on the device, shared by every workload family."""

from __future__ import annotations


def fixed_batch_step(model, x, y):
    """``step()`` running ``model.train_step(x, y)``; ``step.model`` is the model, ``step.x`` and
    ``step.y`` the batch (``npdl bench --graph`` captures the step on them).

    The loss's per-batch label range check is switched off (where it has one): the labels
    are in range by construction, and ``fit`` also checks them once, not every step.
    """
    if hasattr(model.loss, "check_range"):
        model.loss.check_range = False

    def step():
        model.train_step(x, y)

    step.model, step.x, step.y = model, x, y
    return step
