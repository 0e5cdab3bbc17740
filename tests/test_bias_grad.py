"""A dense layer's ``da`` and ``db`` in one pass (``activation_backward.pre_activation_and_bias_grad``):
the CPU kernel against the definition in ``npdl/layers/dense.py``, bit for bit."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npdl import kernels
from npdl.kernels.numba import ELEMENTWISE_PARALLEL_THRESHOLD
from npdl.kernels.numba import activation_backward as numba_act
from npdl.kernels.numba import softmax_xent as numba_sx
from npdl.layers import Dense
from npdl.layers import dense as D

DEFINITION = D.pre_activation_and_bias_grad.definition
KINDS = ("linear", "sigmoid", "tanh", "relu")


def _case(n, k, activation, seed, dtype, bias=True):
    """``(dy, cache)`` as a Dense layer's forward leaves it: ``y`` the activation of a random ``a``."""
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((n, k)) * 3.0).astype(dtype)
    y = {"linear": None, "sigmoid": 1 / (1 + np.exp(-a)), "tanh": np.tanh(a), "relu": np.maximum(a, 0)}[activation]
    dy = (rng.standard_normal((n, k)) * rng.uniform(0.01, 50.0, (1, k))).astype(dtype)
    return dy, (None, None, bias, activation, None if y is None else y.astype(dtype))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(n=st.integers(1, 150), k=st.integers(2, 40), activation=st.sampled_from(KINDS),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2 ** 16))
def test_kernel_gives_the_definitions_bits(n, k, activation, dtype, seed):
    dy, cache = _case(n, k, activation, seed, dtype)
    da, db = numba_act.pre_activation_and_bias_grad(dy, cache)
    want_da, want_db = DEFINITION(dy, cache)
    assert da.dtype == db.dtype == np.dtype(dtype) and db.shape == (k,)
    np.testing.assert_array_equal(da, want_da)
    np.testing.assert_array_equal(db, want_db)
    if activation == "linear":
        assert da is dy  # the definition's linear backward returns dy itself


@pytest.mark.parametrize("activation", KINDS)
def test_parallel_loop_gives_the_definitions_bits(activation):
    """Above the threshold the columns are shared out in blocks (the last one short); each sum still
    runs over the rows in order."""
    n = ELEMENTWISE_PARALLEL_THRESHOLD // 600 + 3
    dy, cache = _case(n, 3 * numba_act.COLUMNS + 88, activation, 7, "float32")
    assert dy.size >= ELEMENTWISE_PARALLEL_THRESHOLD
    da, db = numba_act.pre_activation_and_bias_grad(dy, cache)
    want_da, want_db = DEFINITION(dy, cache)
    np.testing.assert_array_equal(da, want_da)
    np.testing.assert_array_equal(db, want_db)


def test_declines_what_it_does_not_sum_in_order():
    """One column (NumPy sums it pairwise), no bias, other activations, odd layouts: the definition runs."""
    dy, cache = _case(20, 1, "tanh", 0, "float32")
    assert numba_act.pre_activation_and_bias_grad(dy, cache) is NotImplemented
    dy, cache = _case(20, 6, "tanh", 0, "float32", bias=False)
    assert numba_act.pre_activation_and_bias_grad(dy, cache) is NotImplemented
    dy, cache = _case(20, 6, "tanh", 0, "float32")
    assert numba_act.pre_activation_and_bias_grad(dy, cache[:3] + ("elu", cache[4])) is NotImplemented
    assert numba_act.pre_activation_and_bias_grad(np.asfortranarray(dy), cache) is NotImplemented
    assert numba_act.pre_activation_and_bias_grad(dy, cache[:4] + (cache[4].astype(np.float64),)) is NotImplemented


def test_read_only_upstream_gradient():
    for activation in KINDS:
        dy, cache = _case(9, 5, activation, 3, "float32")
        dy.flags.writeable = False
        da, db = numba_act.pre_activation_and_bias_grad(dy, cache)
        np.testing.assert_array_equal(db, DEFINITION(dy, cache)[1])


@pytest.mark.parametrize("activation", [None, "sigmoid", "tanh", "relu"])
def test_dense_layer_gradients_are_the_same_with_kernels_off(activation):
    """The layer's ``dx`` and ``db`` through the kernels, and through every definition."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((13, 7)).astype(np.float32)
    dy = rng.standard_normal((13, 5)).astype(np.float32)
    W = rng.standard_normal((7, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    grads = []
    for mode in (None, "off"):
        kernels.use(mode)
        try:
            layer = Dense(7, 5, activation=activation)
            layer.params["W"][...], layer.params["b"][...] = W, b
            layer.forward(x, training=True)
            grads.append((layer.backward(dy), layer.grads["b"]))
        finally:
            kernels.use(None)
    (dx1, db1), (dx2, db2) = grads
    np.testing.assert_allclose(dx1, dx2, rtol=1e-5, atol=1e-6)  # the forward's tanh and sigmoid round differently
    np.testing.assert_allclose(db1, db2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db1, (dy * _slope(activation, x @ W + b)).sum(axis=0), rtol=1e-4, atol=1e-5)


def _slope(activation, a):
    """f'(a) in float64, independent of npdl."""
    a = a.astype(np.float64)
    if activation == "sigmoid":
        s = 1 / (1 + np.exp(-a))
        return s * (1 - s)
    if activation == "tanh":
        return 1 - np.tanh(a) ** 2
    if activation == "relu":
        return (a > 0).astype(np.float64)
    return np.ones_like(a)


@pytest.mark.parametrize("n", [1, 7, 9, 130, 20000])
def test_softmax_xent_mean_in_the_kernel(n):
    """The kernel's mean of the row losses (summed in float64 in the same call) against float64 NumPy."""
    rng = np.random.default_rng(n)
    logits = (rng.standard_normal((n, 10)) * 4).astype(np.float32)
    labels = rng.integers(0, 10, n)
    loss, _ = numba_sx.forward(logits, labels)
    z = logits.astype(np.float64)
    want = np.mean(np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) - (z[np.arange(n), labels] - z.max(1)))
    assert loss.shape == () and loss.dtype == np.float32
    np.testing.assert_allclose(float(loss), want, rtol=2e-7)
    assert numba_sx.forward(logits[:0], labels[:0]) is NotImplemented  # no rows: the definition's nan
