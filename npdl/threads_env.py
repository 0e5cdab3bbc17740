"""What ``NPDL_ADAPTIVE_THREADS`` asks for, read without importing NumPy.

``import npdl`` needs the answer before NumPy loads OpenBLAS (it decides OpenBLAS's idle spin),
and the training step's thread controller (:mod:`npdl.kernels.numba.threads`) reads the same
variable: both read it here.
"""

from __future__ import annotations

#: the environment variable: unset (or ``numba``) Numba's count only, the default; ``1`` (or
#: ``all``) BLAS's and Numba's; ``0`` (or ``off``) nothing
ENV = "NPDL_ADAPTIVE_THREADS"

_WORDS = {"": "numba", "numba": "numba", "all": "all", "off": "off"}


def parse(raw: str) -> str | None:
    """``"numba"``, ``"all"`` (an integer > 0) or ``"off"`` (an integer <= 0) for the value ``raw``;
    None for anything else."""
    value = raw.strip().lower()
    found = _WORDS.get(value)
    if found is None:
        try:
            found = "all" if int(value) > 0 else "off"
        except ValueError:
            return None
    return found
