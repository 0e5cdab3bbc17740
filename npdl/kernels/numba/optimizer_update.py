"""The optimizer rules on the CPU: the reference itself.

A one-pass Numba loop for Adam (read ``p``, ``g``, ``m``, ``v`` once, write three of them once)
was measured and lost: 0.79 ms against the reference's 0.26 ms for a 784x300 float32 weight on
one core of a 2-core AMD EPYC, since NumPy's elementwise loops use SIMD for the square root and
the division while the Numba loop did not vectorise. Kept as its own module so the dispatch
stays uniform (every kernel has a ``numba`` entry for NumPy arrays).
"""

from ..reference.optimizer_update import RULES, adam, kernel_scalars, momentum, nesterov  # noqa: F401
from ..reference.optimizer_update import rmsprop, sgd, update_all  # noqa: F401
