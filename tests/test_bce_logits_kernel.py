"""The vectorising float32 ``log(1 + exp(-a))`` (``npdl.kernels.numba.fast_softplus``) against float64,
and the CPU kernel of the binary cross-entropy on logits (``npdl.kernels.numba.bce_logits``) against
its definition (``npdl.losses.binary``)."""

import numba
import numpy as np
import pytest

from npdl import kernels
from npdl.kernels.numba import bce_logits as K
from npdl.kernels.numba.fast_softplus import exp_neg32, softplus_neg32
from npdl.losses import binary as B

LEAST_NORMAL = 2.0 ** -126


@numba.njit(error_model="numpy")
def _softplus_into(a, out):
    for i in range(a.size):
        out[i] = softplus_neg32(a[i])


@numba.njit(error_model="numpy")
def _exp_into(a, out):
    for i in range(a.size):
        out[i] = exp_neg32(a[i])


def _sample(top=104.0, step=997):
    """Every ``step``-th float32 bit pattern in [0, top], and ``top`` itself."""
    end = int(np.float32(top).view(np.uint32))
    return np.append(np.arange(0, end, step, dtype=np.uint32), np.uint32(end)).view(np.float32)


def _ulps(got, want):
    """|got - want| in units in the last place of float32 at ``want`` (float64), where ``want`` is normal."""
    keep = want >= LEAST_NORMAL
    spacing = np.spacing(want[keep].astype(np.float32)).astype(np.float64)
    return np.abs(got[keep].astype(np.float64) - want[keep]) / spacing


def test_softplus_and_exp_are_within_a_few_ulp_of_float64():
    a = _sample()
    got = np.empty_like(a)
    _softplus_into(a, got)
    assert got.dtype == np.float32
    assert _ulps(got, np.log1p(np.exp(-a.astype(np.float64)))).max() <= 4.0
    _exp_into(a, got)
    assert _ulps(got, np.exp(-a.astype(np.float64))).max() <= 2.0


def test_softplus_special_values():
    a = np.array([0.0, 1e-30, 87.0, 87.4, 200.0, np.inf, np.nan], np.float32)
    got = np.empty_like(a)
    _softplus_into(a, got)
    assert got[0] == np.float32(np.log(2.0)) and got[1] == np.float32(np.log(2.0))
    assert 0 < got[2] < 2e-38  # exp(-87) is still normal
    assert got[3] == 0 and got[4] == 0 and got[5] == 0  # under float32's least normal number: 0
    assert np.isnan(got[6])


def _inputs(rng, shape, spread=6.0):
    z = (rng.standard_normal(shape) * spread).astype(np.float32)
    special = np.array([0.0, 95.0, -95.0], np.float32)  # exactly 0, and beyond the exponential's range both ways
    z.reshape(-1)[:3] = special[:z.size]
    return z, rng.random(shape).astype(np.float32)


@pytest.mark.parametrize("shape", [(20, 784), (7,), (3, 4, 5), (1, 1)])
@pytest.mark.parametrize("reduction", ["mean", "batch_mean", "sum"])
def test_kernel_equals_the_definition(shape, reduction):
    """Loss and cache as the definition's; the gradient for a random dloss. The loss sums terms >= 0,
    so the kernel's softplus (within 4 ulps) leaves it within 1e-6 relative; in the gradient
    sigmoid(z) - t can cancel, so tanh32's error (at most 2.1e-7 in sigmoid(z)) is absolute there."""
    z, t = _inputs(np.random.default_rng(len(shape) + len(reduction)), shape)
    assert kernels.kernel_for("bce_logits.forward", z) is K.forward
    loss, cache = B.bce_logits_forward(z, t, reduction)
    want, want_cache = B.bce_logits_forward.definition(z, t, reduction)
    assert loss.dtype == want.dtype == np.float32
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    assert cache[0] is z and cache[1] is t and cache[2] == want_cache[2]
    dloss = float(np.random.default_rng(5).uniform(0.5, 2.0))
    got = B.bce_logits_backward(dloss, cache)
    ref = B.bce_logits_backward.definition(dloss, want_cache)
    assert got.dtype == ref.dtype == np.float32 and got.shape == z.shape
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=3e-7 * dloss * want_cache[2])


def test_kernel_declines_what_it_does_not_serve():
    """float64, a strided view, mixed dtypes and an array dloss go to the definition: the same numbers."""
    rng = np.random.default_rng(2)
    z, t = _inputs(rng, (6, 8))
    cases = [(z.astype(np.float64), t.astype(np.float64)), (z[:, ::2], t[:, ::2]), (z, t.astype(np.float64))]
    for zz, tt in cases:
        assert K.forward(zz, tt, "mean") is NotImplemented
        assert K.backward(1.0, (zz, tt, 0.5)) is NotImplemented
        got, _ = B.bce_logits_forward(zz, tt, "mean")
        np.testing.assert_array_equal(got, B.bce_logits_forward.definition(zz, tt, "mean")[0])
    assert K.backward(np.float64(1.0), (z, t, 0.5)) is NotImplemented
    assert K.forward(z, t, "none") is NotImplemented
