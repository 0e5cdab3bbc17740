"""Learning-rate schedules: ``lr_t = schedule(base_lr, iteration)``.

A schedule is a pure function of the optimizer's base learning rate and its
iteration counter (steps already taken, so the first step uses ``iteration = 0``).
It holds no state of its own, which is why a checkpoint only needs the
optimizer's ``iterations`` to resume the schedule exactly. All arithmetic is on
Python floats: the result never carries a dtype into float32 parameters.
"""

from __future__ import annotations

import math

SCHEDULES: dict[str, type] = {}


def check_positive(who: str, name: str, value, integer: bool = False):
    """``value`` as a positive finite float (or int), else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0 \
            or (integer and int(value) != value):
        kind = "a positive integer" if integer else "a positive finite number"
        raise ValueError(f"{who}: {name} must be {kind}, got {value!r}")
    return int(value) if integer else float(value)


class Schedule:
    """Base class: ``__call__(base_lr, iteration) -> float`` plus a JSON config."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        SCHEDULES[cls.__name__] = cls

    def __call__(self, base_lr: float, iteration: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Schedule":
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class Constant(Schedule):
    r"""$lr_t = base\_lr$ at every iteration."""

    def __call__(self, base_lr, iteration):
        return float(base_lr)


class StepDecay(Schedule):
    r"""$lr_t = base\_lr \cdot \gamma^{\lfloor iteration / step\_size \rfloor}$: multiply by $\gamma$ = ``gamma`` every ``step_size`` steps
    (PyTorch's ``StepLR``, Keras's ``ExponentialDecay(staircase=True)``)."""

    def __init__(self, step_size: int, gamma: float = 0.1):
        self.step_size = check_positive("StepDecay", "step_size", step_size, integer=True)
        self.gamma = check_positive("StepDecay", "gamma", gamma)

    def __call__(self, base_lr, iteration):
        return float(base_lr) * self.gamma ** (int(iteration) // self.step_size)

    def get_config(self):
        return {"step_size": self.step_size, "gamma": self.gamma}


class ExponentialDecay(Schedule):
    r"""$lr_t = base\_lr \cdot decay\_rate^{iteration / decay\_steps}$: a smooth decay that reaches
    ``base_lr * decay_rate`` after ``decay_steps`` steps (Keras's ``ExponentialDecay``)."""

    def __init__(self, decay_rate: float, decay_steps: float):
        self.decay_rate = check_positive("ExponentialDecay", "decay_rate", decay_rate)
        self.decay_steps = check_positive("ExponentialDecay", "decay_steps", decay_steps)

    def __call__(self, base_lr, iteration):
        return float(base_lr) * self.decay_rate ** (int(iteration) / self.decay_steps)

    def get_config(self):
        return {"decay_rate": self.decay_rate, "decay_steps": self.decay_steps}


def schedule_from_config(config: dict) -> Schedule:
    """Rebuild a schedule from ``{"class": name, "config": {...}}``."""
    cls = SCHEDULES.get(config.get("class"))
    if cls is None:
        raise ValueError(f"unknown schedule class {config.get('class')!r}; known: {', '.join(sorted(SCHEDULES))}")
    return cls.from_config(dict(config.get("config", {})))


def get_schedule(spec) -> Schedule:
    """``None`` (constant), a :class:`Schedule`, or its ``{"class", "config"}`` dict, as a Schedule."""
    if spec is None:
        return Constant()
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, dict):
        return schedule_from_config(spec)
    raise ValueError(f"schedule must be None, a Schedule ({', '.join(sorted(SCHEDULES))}) or its config dict, "
                     f"got {type(spec).__name__}")


def schedule_config(schedule: Schedule) -> dict:
    """The ``{"class", "config"}`` dict that :func:`schedule_from_config` turns back into ``schedule``."""
    return {"class": type(schedule).__name__, "config": schedule.get_config()}
