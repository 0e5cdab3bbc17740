"""Shared fixtures, the Hypothesis profile and the autodiff references.

``device`` is ``"cpu"`` (NumPy + Numba), ``"strict"`` (array-api-strict, the CPU
stand-in for a foreign device) and ``"cuda:0"`` (CuPy, marked ``gpu``, skipped
cleanly where CuPy or a CUDA device is missing): every device-aware test runs once
per backend, never copied.

Hypothesis: the ``npdl`` profile, loaded for every test, draws the same examples on
every run (``derandomize``), keeps no example database, and prints a failing example
with the ``@reproduce_failure`` blob that replays it. ``--hypothesis-profile=explore``
draws fresh random examples, more of them, for hunting bugs locally.

JAX and PyTorch, the independent autodiff references, are optional for a developer
(their checks are skipped without them) but required where ``NPDL_REQUIRE_REFERENCES=1``
(CI, ``.ci/run``): there a missing one fails the run before any test starts, and
:func:`reference` fails instead of skipping.
"""

import datetime
import importlib
import os

import pytest
from hypothesis import settings

# JAX (the autodiff reference) takes 75% of a GPU's memory when it starts unless told not to, and
# then CuPy, cuBLAS and the other test processes (pytest -n) fail to allocate on the same GPU
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

# The kernels' products through NumPy's own BLAS, whatever NPDL_BLAS says outside: the suite compares
# many of them bit for bit with the definitions' ``@``. tests/test_blas_choice.py selects oneMKL
# itself where it is installed (npdl.kernels.numba.blas.select).
os.environ["NPDL_BLAS"] = "numpy"

from npdl import backend
from npdl.kernels.numba import blas as _blas

# oneMKL, where it is installed, is loaded now, before any test imports PyTorch: loaded after it,
# its threaded products come out wrong and npdl refuses it (npdl.kernels.numba.blas._gnu_openmp_global). The kernels
# still call NumPy's BLAS; tests/test_blas_choice.py selects oneMKL itself.
if _blas._mkl_paths():
    try:
        _blas.select("mkl")
    except RuntimeError:
        pass
    _blas.select(None)

HAS_GPU = backend.cupy_or_none() is not None

# -------------------------------------------------------------------------- Hypothesis
# A deadline catches an example that hangs or turns pathologically slow, not ordinary jitter:
# one example may compile a Numba kernel or trace a JAX function on a slow 2-core CI machine,
# where Hypothesis's default (200 ms) fails healthy tests. Tests whose every new shape compiles
# (JAX references, Numba kernels) say ``deadline=None`` themselves.
settings.register_profile("npdl", derandomize=True, database=None, print_blob=True,
                          deadline=datetime.timedelta(seconds=10))
settings.register_profile("explore", parent=settings.get_profile("npdl"), derandomize=False, max_examples=500)
settings.load_profile("npdl")

# -------------------------------------------------------------------- autodiff references
REFERENCES = ("jax", "torch")
REQUIRE_REFERENCES = os.environ.get("NPDL_REQUIRE_REFERENCES", "0") not in ("", "0")


def _missing(name):
    try:
        importlib.import_module(name)
    except ImportError as exc:
        return f"{name} cannot be imported ({exc})"
    return None


def pytest_configure(config):
    if REQUIRE_REFERENCES:
        missing = [why for why in map(_missing, REFERENCES) if why]
        if missing:
            raise pytest.UsageError("NPDL_REQUIRE_REFERENCES=1 needs JAX and PyTorch, the autodiff references: "
                                    + "; ".join(missing) + ' (pip install ".[test]")')


def has_reference(name) -> bool:
    """Whether the autodiff reference ``name`` (``"jax"`` or ``"torch"``) can be imported; where
    ``NPDL_REQUIRE_REFERENCES=1`` it must be, else the caller fails: in CI no check quietly runs
    without its reference."""
    if name not in REFERENCES:
        raise ValueError(f"unknown autodiff reference {name!r}, expected one of {REFERENCES}")
    why = _missing(name)
    if why is not None and REQUIRE_REFERENCES:
        pytest.fail(f"{why}, and NPDL_REQUIRE_REFERENCES=1 requires it", pytrace=False)
    return why is None


def reference(name):
    """The autodiff reference ``name``, imported; without it the calling test (or, called at import,
    module) is skipped, or fails where ``NPDL_REQUIRE_REFERENCES=1``."""
    if not has_reference(name):
        pytest.skip(_missing(name), allow_module_level=True)
    return importlib.import_module(name)


# ----------------------------------------------------------------------------- fixtures

DEVICES = [
    "cpu",
    "strict",
    pytest.param("cuda:0", marks=[pytest.mark.gpu,
                                  pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a CUDA device")]),
]


@pytest.fixture(params=DEVICES)
def device(request):
    """A :class:`npdl.backend.Device` for each backend in turn."""
    return backend.get_device(request.param)


@pytest.fixture
def mnist_dir():
    """The directory holding the real MNIST files, or skip.

    Looks at ``$NPDL_DATA_DIR`` and then at the shared checkout copy ``../shared/data/mnist``.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.environ.get("NPDL_DATA_DIR", ""),
                  os.path.join(here, "..", "..", "shared", "data", "mnist")]
    for path in candidates:
        if path and os.path.exists(os.path.join(path, "train-images-idx3-ubyte.gz")):
            return os.path.abspath(path)
    pytest.skip("MNIST files not found (set NPDL_DATA_DIR to the folder holding the LeCun .gz files)")
