"""Optimizers, learning-rate schedules and gradient clipping, each update rule derived in its docstring.

Like the layers, these never import NumPy: they take the array namespace from the
parameters, so the same update runs on NumPy, array-api-strict and CuPy, in place.
"""

from .adam import Adam
from .base import OPTIMIZERS, Optimizer, get_optimizer, optimizer_from_config
from .clip import clip_by_global_norm, global_norm
from .rmsprop import RMSprop
from .schedules import (SCHEDULES, Constant, ExponentialDecay, Schedule, StepDecay, get_schedule,
                        schedule_from_config)
from .sgd import SGD, Momentum, Nesterov

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "RMSprop", "Adam", "OPTIMIZERS", "get_optimizer",
           "optimizer_from_config", "Schedule", "Constant", "StepDecay", "ExponentialDecay", "SCHEDULES",
           "get_schedule", "schedule_from_config", "clip_by_global_norm", "global_norm"]
