"""Where a training step's time goes: each layer's forward and backward, the loss and the optimizer.

:func:`profile_step` wraps those methods of the step's model with timers (a device
synchronisation before each reading, so on a GPU every part is charged its own kernels),
runs the step ``reps`` times after a warm-up and returns each part's median. The wrappers
add a few microseconds per call and the synchronisations stop a GPU from overlapping
parts, so the parts' sum is a little above :func:`npdl.bench.measure`'s step time:
read the split, not the total. ``npdl bench --profile`` prints it.
"""

from __future__ import annotations

import statistics
import time


def _timed(record, key, fn, sync):
    def wrapper(*args, **kwargs):
        sync()
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        sync()
        record.setdefault(key, []).append(time.perf_counter() - t0)
        return out

    # a timer reads no weights: an optimizer step wrapped in one still lets dense layers make their
    # update in the backward pass (npdl.models.updates), so the profile is of the step as it runs
    wrapper.reads_weights = False
    return wrapper


def profile_step(step, sync=lambda: None, reps: int = 20, warmup: int = 3) -> list[tuple[str, float]]:
    """``[(part, median ms)]`` in execution order for ``step`` (a :func:`fixed_batch_step`)."""
    model = step.model
    record: dict[str, list[float]] = {}
    restore = []

    def wrap(obj, method, key):
        original = getattr(obj, method)
        restore.append((obj, method, obj.__dict__.get(method)))
        setattr(obj, method, _timed(record, key, original, sync))

    keys = []
    for i, layer in enumerate(model.layers):
        keys.append((f"{i} {type(layer).__name__} forward", layer, "forward"))
    keys.append(("loss forward", model.loss, "forward"))
    keys.append(("loss backward", model.loss, "backward"))
    for i in range(len(model.layers) - 1, -1, -1):
        keys.append((f"{i} {type(model.layers[i]).__name__} backward", model.layers[i], "backward"))
    keys.append(("optimizer step", model.optimizer, "step"))
    for key, obj, method in keys:
        wrap(obj, method, key)
    try:
        for _ in range(warmup):
            step()
        sync()
        record.clear()
        for _ in range(reps):
            step()
        sync()
    finally:
        for obj, method, own in reversed(restore):
            if own is None:
                delattr(obj, method)
            else:
                setattr(obj, method, own)
    return [(key, statistics.median(record[key]) * 1e3) for key, _, _ in keys if key in record]
