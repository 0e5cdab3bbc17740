"""The chunked convolution's channels-last columns (:mod:`npdl.kernels.numba.conv2d_last`): its copy is
the definition's ``im2col`` with the rows reordered to ``(kh, kw, c)``, its adjoint the definition's
``col2im``, and a convolution with enough input channels runs through them and still equals the
definition (``tests/test_conv_kernels.py`` checks the whole layer on cases of both kinds)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npdl.kernels.geometry import conv_geometry
from npdl.kernels.numba import conv2d as numba_conv2d, conv2d_last
from npdl.layers import conv

from test_conv_kernels import REPRODUCIBLE, _off


@st.composite
def geometries(draw):
    """A random batch with up to 20 channels, window, stride and padding with a non-empty output."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 20))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.sampled_from([1, 1, 2, 3])), draw(st.sampled_from([1, 1, 2, 3]))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    padding = draw(st.sampled_from(["valid", "same", (1, 2), (0, 3)]))
    h, w = max(h, kh), max(w, kw)
    oh, ow, pad = conv_geometry((n, c, h, w), (kh, kw), (sh, sw), padding, "test")
    return (n, c, h, w), (kh, kw), (sh, sw), pad, (oh, ow)


def _padded_last(x, pad):
    n, c, h, w = x.shape
    xpT = np.full((n, h + pad[0] + pad[1], w + pad[2] + pad[3], c), np.nan, x.dtype)  # the border must be written
    conv2d_last.pad_last(x, 0, n, xpT, pad[0], pad[2])
    return xpT


def _columns_last(xpT, kernel, stride, oh, ow):
    n, c = xpT.shape[0], xpT.shape[3]
    colsT = np.full((n * oh * ow, kernel[0] * kernel[1] * c), np.nan, xpT.dtype)
    if stride == (1, 1):
        conv2d_last.im2col_last_s1(xpT, colsT, kernel[0], kernel[1], oh, ow)
    else:
        conv2d_last.im2col_last(xpT, colsT, kernel[0], kernel[1], stride[0], stride[1], oh, ow)
    return colsT


def _reordered(cols, c, kernel):
    """The definition's ``cols`` ((c, kh, kw), (n, oh, ow)) as ((n, oh, ow), (kh, kw, c))."""
    return cols.reshape(c, kernel[0], kernel[1], -1).transpose(3, 1, 2, 0).reshape(cols.shape[1], -1)


@settings(REPRODUCIBLE, max_examples=60)
@given(geo=geometries(), seed=st.integers(0, 2 ** 16), dtype=st.sampled_from(["float32", "float64"]))
def test_channels_last_columns_are_the_definitions_reordered(geo, seed, dtype):
    x_shape, kernel, stride, pad, (oh, ow) = geo
    x = np.random.default_rng(seed).standard_normal(x_shape).astype(dtype)
    colsT = _columns_last(_padded_last(x, pad), kernel, stride, oh, ow)
    cols = conv.im2col.definition(x, kernel, stride, pad)
    np.testing.assert_array_equal(colsT, _reordered(cols, x_shape[1], kernel))  # copies: exact


@settings(REPRODUCIBLE, max_examples=60)
@given(geo=geometries(), seed=st.integers(0, 2 ** 16), dtype=st.sampled_from(["float32", "float64"]))
def test_channels_last_col2im_is_the_definitions_col2im(geo, seed, dtype):
    x_shape, kernel, stride, pad, (oh, ow) = geo
    rng = np.random.default_rng(seed)
    n, c, h, w = x_shape
    dcols = rng.standard_normal((c * kernel[0] * kernel[1], n * oh * ow)).astype(dtype)
    dxpT = np.full((n, h + pad[0] + pad[1], w + pad[2] + pad[3], c), np.nan, dtype)  # zeroed by col2im
    dcolsT = np.ascontiguousarray(_reordered(dcols, c, kernel))
    if stride == (1, 1):
        conv2d_last.col2im_last_s1(dcolsT, dxpT, kernel[0], kernel[1], oh, ow)
    else:
        conv2d_last.col2im_last(dcolsT, dxpT, kernel[0], kernel[1], stride[0], stride[1], oh, ow)
    dx = np.full(x_shape, np.nan, dtype)
    conv2d_last.unpad_last(dxpT, dx, 0, n, pad[0], pad[2])
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(dx, conv.col2im.definition(dcols, x_shape, kernel, stride, pad), **tol)


@pytest.mark.parametrize("channels, last", [(conv2d_last.MIN_CHANNELS - 1, False), (conv2d_last.MIN_CHANNELS, True)])
@pytest.mark.parametrize("forward_last", [False, True])
def test_convolutions_with_enough_channels_take_the_channels_last_columns(channels, last, forward_last, monkeypatch):
    """From MIN_CHANNELS input channels a float32 convolution with a CBLAS builds its columns channels-last
    backward, and forward too unless its BLAS is NumPy's (the suite's: forward_last stands for oneMKL),
    and equals the definition; below, the definition's layout both ways."""
    if numba_conv2d.sgemm() is None:
        pytest.skip("no CBLAS found")
    monkeypatch.setattr(conv2d_last, "FORWARD_WITH_NUMPYS_BLAS", forward_last)
    calls = []
    for name in ("forward_chunk32", "backward_run32"):
        compiled = getattr(conv2d_last, name)
        monkeypatch.setattr(conv2d_last, name, lambda *a, _f=compiled, _n=name: calls.append(_n) or _f(*a))
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((3, channels, 6, 7)).astype("float32")
    W = rng.standard_normal((5, channels, 3, 3)).astype("float32")
    b = rng.standard_normal(5).astype("float32")
    y, cache = numba_conv2d.forward(x, W, b, 1, "same", {}, "relu")
    dy = rng.standard_normal(y.shape).astype("float32")
    grads = numba_conv2d.backward(dy, cache, True, {})
    assert set(calls) == ({"forward_chunk32", "backward_run32"} if forward_last else {"backward_run32"}) if last \
        else not calls
    y_ref, cache_ref = _off(conv.conv2d_forward, x, W, b, 1, "same", activation="relu")
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for g, g_ref in zip(grads, _off(conv.conv2d_backward, dy, cache_ref)):
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-4)
