"""In float32 (the default), every forward matches the JAX reference and nothing becomes float64."""

import pytest

from npdl import backend
from npdl.gradcheck import CASES, relative_error

jax_ref = pytest.importorskip("npdl.gradcheck.jax_ref")
pytest.importorskip("jax")

#: float32 has a 24-bit mantissa (~6e-8); a few roundings per element stay well below 1e-5
FLOAT32_TOL = 1e-5


@pytest.mark.parametrize("name", list(CASES))
def test_forward_matches_jax_in_float32(name, device):
    case = CASES[name]
    inputs = case.make(backend.Generator(device, 1), "float32")
    y, _ = case.forward(**inputs)
    expected = device.asarray(backend.to_numpy(jax_ref.forward(case, inputs)))
    assert backend.dtype_name(y) == "float32"
    assert relative_error(y, expected) <= FLOAT32_TOL


@pytest.mark.parametrize("name", list(CASES))
def test_float32_stays_float32_through_backward(name, device):
    case = CASES[name]
    g = backend.Generator(device, 2)
    inputs = case.make(g, "float32")
    y, cache = case.forward(**inputs)
    grads = case.backward(g.normal(tuple(y.shape), dtype="float32"), cache)
    for wrt in case.wrt:
        assert backend.dtype_name(grads[wrt]) == "float32", (name, wrt)
        assert tuple(grads[wrt].shape) == tuple(inputs[wrt].shape)
        assert backend.device_of(grads[wrt]) == device
