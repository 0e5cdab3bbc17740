"""In float32 (the default), every forward matches the JAX reference and nothing becomes float64."""

import pytest
from conftest import reference

from npdl import backend
from npdl.deferred import formed
from npdl.gradcheck import CASES, jax_ref, relative_error

#: float32 has a 24-bit mantissa (~6e-8); a few roundings per element stay well below 1e-5
FLOAT32_TOL = 1e-5


@pytest.mark.parametrize("name", list(CASES))
def test_forward_matches_jax_in_float32(name, device):
    reference("jax")
    case = CASES[name]
    inputs = case.make(backend.Generator(device, 1), "float32")
    y, _ = case.forward(**inputs)
    expected = device.asarray(backend.to_numpy(jax_ref.forward(case, inputs)))
    assert backend.dtype_name(y) == "float32"
    assert relative_error(y, expected) <= FLOAT32_TOL


def _float64(xp, a):
    return xp.astype(a, xp.float64) if backend.dtype_name(a) == "float32" else a


@pytest.mark.parametrize("name", list(CASES))
def test_float32_backward_stays_float32_and_matches_float64(name, device):
    """The float32 gradients are the float64 gradients of the same inputs and upstream gradient
    (themselves checked against JAX and finite differences), to float32 precision."""
    case = CASES[name]
    xp = device.xp
    g = backend.Generator(device, 2)
    inputs = case.make(g, "float32")
    y, cache = case.forward(**inputs)
    dy = g.normal(tuple(y.shape), dtype="float32")
    grads = case.backward(dy, cache)
    inputs64 = {k: _float64(xp, v) for k, v in inputs.items()}
    y64, cache64 = case.forward(**inputs64)
    grads64 = case.backward(_float64(xp, dy), cache64)
    for wrt in case.wrt:
        assert backend.dtype_name(grads[wrt]) == "float32", (name, wrt)
        assert tuple(grads[wrt].shape) == tuple(inputs[wrt].shape)
        assert backend.device_of(grads[wrt]) == device
        assert relative_error(_float64(xp, formed(grads[wrt])), grads64[wrt]) <= FLOAT32_TOL, (name, wrt)
