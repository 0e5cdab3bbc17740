"""What a gradient-check case is, and the input helpers every case family shares.

A :class:`Case` names the npdl pure functions it checks and builds small random inputs on
a device; :mod:`.cases` holds the registry of all of them, the ``family_*`` modules add
families of their own. This module depends on nothing else in :mod:`npdl.gradcheck`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .. import backend

#: how far from a kink at 0 (ReLU, ELU, L1, ...) a checked input is pushed: 10^5 times the
#: finite-difference step
MARGIN = 0.1


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable  # (Generator, dtype) -> dict of inputs on the generator's device
    wrt: tuple  # names of the inputs to differentiate with respect to
    forward: Callable  # (**inputs) -> (y, cache)
    backward: Callable  # (dy, cache) -> {name: gradient}
    group: str = "layer"
    options: dict = field(default_factory=dict)


def away_from_zero(x, margin=MARGIN):
    """``x`` with every entry moved ``margin`` further from 0 (its sign kept)."""
    xp = backend.namespace(x)
    return xp.where(x >= 0, x + margin, x - margin)


def named_grads(names, values) -> dict:
    """``{name: gradient}`` for a backward's tuple of gradients, leaving out the ``None`` ones."""
    return {n: v for n, v in zip(names, values) if v is not None}
