"""Shared fixtures: every device-aware test runs once per backend, never copied.

``device`` is ``"cpu"`` (NumPy + Numba), ``"strict"`` (array-api-strict, the CPU
stand-in for a foreign device) and ``"cuda:0"`` (CuPy, marked ``gpu``, skipped
cleanly where CuPy or a CUDA device is missing).
"""

import os

import pytest

from npdl import backend

HAS_GPU = backend.cupy_or_none() is not None

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
