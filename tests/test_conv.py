"""Convolution and pooling: compiled kernels agree with the reference, the tie rule, 'same'
padding, bad input, dtypes, and the layers on every device."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import npdl
from npdl import backend, kernels
from npdl.errors import DTypeError, ShapeError
from npdl.gradcheck import relative_error
from npdl.kernels.numba import im2col as numba_im2col, pool as numba_pool
from npdl.kernels.reference import im2col as ref_im2col, pool as ref_pool
from npdl.layers.conv import conv_geometry

HAS_GPU = backend.cupy_or_none() is not None


def _tol(dtype):
    return 1e-5 if dtype == "float32" else 1e-12


@st.composite
def geometries(draw, max_pad=3):
    """A random batch shape, window, stride and padding with a non-empty output (odd sizes, stride > kernel)."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    h, w = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    padding = draw(st.sampled_from(["valid", "same", "int"]))
    if padding == "int":
        padding = (draw(st.integers(0, max_pad)), draw(st.integers(0, max_pad)))
    h, w = max(h, kh), max(w, kw)  # 'valid' needs the window to fit
    oh, ow, pad = conv_geometry((n, c, h, w), (kh, kw), (sh, sw), padding, "test")
    return (n, c, h, w), (kh, kw), (sh, sw), pad, (oh, ow)


@settings(max_examples=60, deadline=None)
@given(geo=geometries(), seed=st.integers(0, 2 ** 16), dtype=st.sampled_from(["float32", "float64"]))
def test_numba_im2col_and_col2im_match_reference(geo, seed, dtype):
    x_shape, kernel, stride, pad, (oh, ow) = geo
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    cols = numba_im2col.im2col(x, kernel, stride, pad)
    assert cols.dtype == x.dtype and cols.shape == (x_shape[1] * kernel[0] * kernel[1], x_shape[0] * oh * ow)
    np.testing.assert_array_equal(cols, ref_im2col.im2col(x, kernel, stride, pad))  # a copy: exact
    dcols = rng.standard_normal(cols.shape).astype(dtype)
    dx = numba_im2col.col2im(dcols, x_shape, kernel, stride, pad)
    assert dx.dtype == x.dtype and dx.shape == x_shape
    np.testing.assert_allclose(dx, ref_im2col.col2im(dcols, x_shape, kernel, stride, pad), rtol=_tol(dtype),
                               atol=_tol(dtype))
    # col2im is im2col's adjoint: <im2col(x), dcols> = <x, col2im(dcols)>
    np.testing.assert_allclose(np.vdot(cols, dcols), np.vdot(x, dx), rtol=1e-4 if dtype == "float32" else 1e-10)


@settings(max_examples=60, deadline=None)
@given(geo=geometries(max_pad=0), seed=st.integers(0, 2 ** 16), dtype=st.sampled_from(["float32", "float64"]))
def test_numba_pooling_matches_reference(geo, seed, dtype):
    x_shape, kernel, stride, pad, _ = geo
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    y, arg = numba_pool.max_forward(x, kernel, stride, pad)
    y_ref, arg_ref = ref_pool.max_forward(x, kernel, stride, pad)
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = numba_pool.max_backward(dy, arg, x_shape, kernel, stride, pad)
    assert dx.dtype == x.dtype
    np.testing.assert_allclose(dx, ref_pool.max_backward(dy, arg_ref, x_shape, kernel, stride, pad),
                               rtol=_tol(dtype), atol=_tol(dtype))
    a = numba_pool.avg_forward(x, kernel, stride, pad)
    assert a.dtype == x.dtype
    np.testing.assert_allclose(a, ref_pool.avg_forward(x, kernel, stride, pad), rtol=_tol(dtype), atol=_tol(dtype))
    da = numba_pool.avg_backward(dy, x_shape, kernel, stride, pad)
    assert da.dtype == x.dtype
    np.testing.assert_allclose(da, ref_pool.avg_backward(dy, x_shape, kernel, stride, pad), rtol=_tol(dtype),
                               atol=_tol(dtype))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 4), oh=st.integers(1, 6), ow=st.integers(1, 6),
       levels=st.sampled_from([2, 3, 1000]), seed=st.integers(0, 2 ** 16),
       dtype=st.sampled_from(["float32", "float64"]))
def test_numba_2x2_max_pool_fast_path_matches_reference(n, c, oh, ow, levels, seed, dtype):
    """2x2 windows at stride 2 on an even-sized input take the tiling fast path; few value levels make ties common."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, (n, c, 2 * oh, 2 * ow)).astype(dtype)
    geo = ((2, 2), (2, 2), (0, 0, 0, 0))
    assert numba_pool._tiles_2x2(x.shape, *geo)
    y, arg = numba_pool.max_forward(x, *geo)
    y_ref, arg_ref = ref_pool.max_forward(x, *geo)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(numba_pool.max_backward(dy, arg, x.shape, *geo),
                                  ref_pool.max_backward(dy, arg_ref, x.shape, *geo))


def test_parallel_paths_match_reference():
    """Shapes above PARALLEL_THRESHOLD run the prange variants."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 6, 20, 20)).astype(np.float32)
    cols = numba_im2col.im2col(x, (5, 5), (1, 1), (2, 2, 2, 2))
    np.testing.assert_array_equal(cols, ref_im2col.im2col(x, (5, 5), (1, 1), (2, 2, 2, 2)))
    np.testing.assert_allclose(numba_im2col.col2im(cols, x.shape, (5, 5), (1, 1), (2, 2, 2, 2)),
                               ref_im2col.col2im(cols, x.shape, (5, 5), (1, 1), (2, 2, 2, 2)), rtol=1e-5, atol=1e-5)
    big = rng.standard_normal((40, 20, 24, 24)).astype(np.float32)
    y, arg = numba_pool.max_forward(big, (2, 2), (2, 2), (0, 0, 0, 0))
    y_ref, arg_ref = ref_pool.max_forward(big, (2, 2), (2, 2), (0, 0, 0, 0))
    np.testing.assert_array_equal(arg, arg_ref)
    np.testing.assert_allclose(numba_pool.max_backward(y, arg, big.shape, (2, 2), (2, 2), (0, 0, 0, 0)),
                               ref_pool.max_backward(y_ref, arg_ref, big.shape, (2, 2), (2, 2), (0, 0, 0, 0)))
    np.testing.assert_allclose(numba_pool.avg_forward(big, (3, 3), (2, 2), (0, 1, 0, 1)),
                               ref_pool.avg_forward(big, (3, 3), (2, 2), (0, 1, 0, 1)), rtol=1e-5, atol=1e-6)


def test_numba_kernels_are_cached_on_disk():
    """cache=True on every compiled function: a new process loads them instead of recompiling."""
    for module in (numba_im2col, numba_pool):
        jitted = [f for f in vars(module).values() if hasattr(f, "py_func")]
        assert jitted
        for f in jitted:
            assert type(f._cache).__name__ != "NullCache", f.__name__


def test_dispatch_picks_numba_for_numpy_and_reference_elsewhere():
    import array_api_strict

    assert "im2col" in kernels.OPS and "pool" in kernels.OPS
    assert kernels.get("im2col", np) is numba_im2col and kernels.get("pool", np) is numba_pool
    assert kernels.get("im2col", array_api_strict) is ref_im2col
    kernels.use("reference")
    try:
        assert kernels.get("pool", np) is ref_pool
    finally:
        kernels.use(None)


# ------------------------------------------------------------------------- conventions

@pytest.mark.parametrize("impl", [numba_pool, ref_pool], ids=["numba", "reference"])
def test_max_pool_tie_sends_the_gradient_to_the_first_maximum(impl):
    x = np.array([[[[1.0, 3.0, 3.0, 0.0],
                    [3.0, 2.0, 0.0, 0.0],
                    [5.0, 5.0, 7.0, 7.0],
                    [5.0, 5.0, 7.0, 7.0]]]])
    y, arg = impl.max_forward(x, (2, 2), (2, 2), (0, 0, 0, 0))
    np.testing.assert_array_equal(y[0, 0], [[3.0, 3.0], [5.0, 7.0]])
    np.testing.assert_array_equal(arg[0, 0], [[1, 0], [0, 0]])  # row-major offsets kh*KW + kw
    dx = impl.max_backward(np.ones_like(y), arg, x.shape, (2, 2), (2, 2), (0, 0, 0, 0))
    np.testing.assert_array_equal(dx[0, 0], [[0.0, 1.0, 1.0, 0.0],
                                             [0.0, 0.0, 0.0, 0.0],
                                             [1.0, 0.0, 1.0, 0.0],
                                             [0.0, 0.0, 0.0, 0.0]])


def test_tie_rule_through_the_layer_on_every_device(device):
    x = device.asarray(np.full((1, 1, 3, 3), 2.0, np.float32))
    pool = npdl.MaxPool2D(3)
    pool(x)
    dx = backend.to_numpy(pool.backward(device.asarray(np.ones((1, 1, 1, 1), np.float32))))
    expected = np.zeros((1, 1, 3, 3), np.float32)
    expected[0, 0, 0, 0] = 1.0
    np.testing.assert_array_equal(dx, expected)


def test_overlapping_max_windows_add_their_gradients():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0  # the maximum of all four 2x2 windows at stride 1
    y, cache = npdl.maxpool2d_forward(x, 2, 1)
    dx = npdl.maxpool2d_backward(np.ones_like(y), cache)
    assert dx[0, 0, 1, 1] == 4.0 and dx.sum() == 4.0


@pytest.mark.parametrize("size, k, s, out, before, after", [
    (7, 3, 2, 4, 1, 1), (6, 3, 2, 3, 0, 1), (6, 2, 1, 6, 0, 1), (5, 5, 1, 5, 2, 2), (4, 1, 3, 2, 0, 0),
    (28, 5, 1, 28, 2, 2), (5, 2, 2, 3, 0, 1)])
def test_same_padding_follows_keras(size, k, s, out, before, after):
    """out = ceil(H / s); total = max((out - 1) s + K - H, 0); the odd row at the bottom / column at the right."""
    oh, ow, pad = conv_geometry((1, 1, size, size), (k, k), (s, s), "same", "test")
    assert (oh, ow) == (out, out) and pad == (before, after, before, after)


def test_same_avg_pool_does_not_count_padding():
    x = np.ones((1, 1, 3, 3))
    y, _ = npdl.avgpool2d_forward(x, 2, 2, "same")  # windows at the border hold 2 or 1 real cells
    np.testing.assert_array_equal(y, np.ones((1, 1, 2, 2)))
    y, _ = npdl.maxpool2d_forward(-x, 2, 2, "same")  # -inf padding never wins against -1
    np.testing.assert_array_equal(y, -np.ones((1, 1, 2, 2)))


def test_conv_matches_a_direct_loop():
    rng = np.random.default_rng(3)
    x, W, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    y, _ = npdl.conv2d_forward(x, W, b, (2, 1), 1)
    xpad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.zeros((2, 4, 3, 6))
    for n in range(2):
        for o in range(4):
            for i in range(3):
                for j in range(6):
                    expected[n, o, i, j] = b[o] + np.sum(W[o] * xpad[n, :, 2 * i:2 * i + 3, j:j + 2])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------- the layers

def _layers(device, dtype="float32"):
    g = backend.Generator(device, 0)
    return [npdl.Conv2D(2, 3, 3, stride=2, padding="same", dtype=dtype, device=device, rng=g),
            npdl.MaxPool2D(2), npdl.Conv2D(3, 4, (2, 1), padding=1, bias=False, dtype=dtype, device=device, rng=g),
            npdl.AvgPool2D(3, strides=1, padding="same")]


def test_layers_on_every_device_match_the_cpu_and_stay_float32(device):
    x_np = np.random.default_rng(1).standard_normal((2, 2, 9, 8)).astype(np.float32)
    results = {}
    for where in ("cpu", device):
        stack = _layers(where)
        h = backend.get_device(where).asarray(x_np)
        shape = (2, 9, 8)
        for layer in stack:
            h = layer(h)
            shape = layer.output_shape(shape)
            assert tuple(h.shape[1:]) == tuple(shape)
            assert backend.dtype_name(h) == "float32" and backend.device_of(h) == backend.get_device(where)
        d = h * 0.0 + 1.0
        for layer in reversed(stack):
            d = layer.backward(d)
            assert backend.dtype_name(d) == "float32"
        for layer in stack:
            for k, v in layer.grads.items():
                assert backend.dtype_name(v) == "float32" and tuple(v.shape) == tuple(layer.params[k].shape)
        results[str(where)] = (backend.to_numpy(h), backend.to_numpy(d), backend.to_numpy(stack[0].grads["W"]))
    for a, b in zip(results["cpu"], results[str(device)]):
        assert relative_error(a, b) <= 1e-5


def test_conv_layer_uses_the_pure_functions_and_fans():
    g = backend.Generator("cpu", 0)
    layer = npdl.Conv2D(3, 5, (3, 2), init="he_normal", rng=g)
    assert tuple(layer.params["W"].shape) == (5, 3, 3, 2) and layer.parameter_count() == 5 * 3 * 3 * 2 + 5
    x = g.normal((4, 3, 6, 6))
    y = layer(x)
    y_ref, cache = npdl.conv2d_forward(x, layer.params["W"], layer.params["b"])
    assert relative_error(y, y_ref) == 0.0
    dy = g.normal(tuple(y.shape))
    dx = layer.backward(dy)
    dx_ref, dW_ref, db_ref = npdl.conv2d_backward(dy, cache)
    assert relative_error(dx, dx_ref) == 0.0 and relative_error(layer.grads["W"], dW_ref) == 0.0
    layer.need_input_grad = False
    layer(x)
    assert layer.backward(dy) is None and relative_error(layer.grads["W"], dW_ref) == 0.0
    # he_normal with fan_in = C_in*KH*KW
    big = npdl.Conv2D(20, 50, 5, init="he_normal", rng=g).params["W"]
    assert abs(float(np.std(big)) - np.sqrt(2 / 500)) < 0.03 * np.sqrt(2 / 500)
    bound = np.sqrt(6 / (20 * 25 + 50 * 25))
    W = npdl.Conv2D(20, 50, 5, rng=g).params["W"]
    assert np.abs(W).max() <= bound and np.abs(W).max() > 0.99 * bound


def test_workspace_is_reused_and_results_stay_right():
    g = backend.Generator("cpu", 0)
    layer = npdl.Conv2D(2, 3, 3, rng=g)
    x1, x2 = g.normal((3, 2, 7, 7)), g.normal((3, 2, 7, 7))
    layer(x1)
    buffer = layer._workspace["cols"]
    y2 = layer(x2)
    assert layer._workspace["cols"] is buffer
    assert relative_error(y2, npdl.conv2d_forward(x2, layer.params["W"], layer.params["b"])[0]) == 0.0


def test_get_config_round_trip():
    for layer in [npdl.Conv2D(3, 4, (3, 5), stride=(2, 1), padding=(1, 2), bias=False, dtype="float64"),
                  npdl.MaxPool2D(3, 2, "same"), npdl.AvgPool2D((2, 3))]:
        rebuilt = npdl.layer_from_config({"class": type(layer).__name__, "config": layer.get_config()})
        assert rebuilt.get_config() == layer.get_config()
    assert npdl.MaxPool2D(3).strides == (3, 3)
    assert npdl.Conv2D(1, 2, 3).weight_names == ("W",)


# -------------------------------------------------------------------------- bad input

def test_input_smaller_than_kernel(device):
    conv = npdl.Conv2D(1, 2, 5, device=device, rng=backend.Generator(device, 0))
    with pytest.raises(ShapeError, match=r"Conv2D\(1->2, 5x5\) 'conv2d': input of 3x4 pixels "
                                         r"\(shape \(2, 1, 3, 4\)\) is smaller than the 5x5 kernel"):
        conv(device.zeros((2, 1, 3, 4)))
    with pytest.raises(ShapeError, match=r"MaxPool2D\(3x3\).*2x2 pixels.*3x3 pooling window"):
        npdl.MaxPool2D(3)(device.zeros((1, 1, 2, 2)))


def test_channels_must_match_the_weights(device):
    conv = npdl.Conv2D(3, 2, 3, device=device, rng=backend.Generator(device, 0))
    with pytest.raises(ShapeError, match=r"Conv2D\(3->2, 3x3\).*3 channels on axis 1, got shape \(2, 1, 5, 5\)"):
        conv(device.zeros((2, 1, 5, 5)))


def test_input_must_be_4d(device):
    conv = npdl.Conv2D(1, 2, 3, device=device, rng=backend.Generator(device, 0))
    with pytest.raises(ShapeError, match=r"Conv2D.*4-D \(batch, channels, height, width\), got shape \(5, 5\)"):
        conv(device.zeros((5, 5)))
    with pytest.raises(ShapeError, match=r"AvgPool2D.*4-D.*got shape \(1, 4, 4\)"):
        npdl.AvgPool2D()(device.zeros((1, 4, 4)))


def test_padding_too_small_for_the_kernel_gives_an_empty_output_error():
    with pytest.raises(ShapeError, match=r"input of 2x2 pixels.*5x5 kernel with padding '1x1'.*output would be empty"):
        npdl.conv2d_forward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 5, 5)), None, 1, 1)


def test_dtype_rules():
    conv = npdl.Conv2D(1, 2, 3, rng=backend.Generator("cpu", 0))
    with pytest.raises(DTypeError, match=r"float64 but the layer computes in float32"):
        conv(np.zeros((1, 1, 5, 5)))
    with pytest.raises(DTypeError, match="must be a float array"):
        npdl.MaxPool2D()(np.zeros((1, 1, 4, 4), dtype=np.int64))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="in_channels and out_channels must be positive"):
        npdl.Conv2D(0, 3, 3)
    with pytest.raises(ValueError, match="kernel_size must be an int >= 1"):
        npdl.Conv2D(1, 3, 0)
    with pytest.raises(ValueError, match="stride must be an int >= 1"):
        npdl.Conv2D(1, 3, 3, stride=(1, 0))
    with pytest.raises(ValueError, match="padding must be 'valid', 'same', an int"):
        npdl.Conv2D(1, 3, 3, padding="full")
    with pytest.raises(ValueError, match="padding must be an int >= 0"):
        npdl.Conv2D(1, 3, 3, padding=-1)
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        npdl.MaxPool2D(2, padding=1)


# -------------------------------------------------------------------------------- GPU

@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_kernels_match_reference(dtype):
    """Whatever the dispatch picks for CuPy arrays (the numba.cuda kernels where numba.cuda
    can compile, else the reference) agrees with the reference on the CPU."""
    import cupy

    xp = backend.get_device("cuda:0").xp
    gpu_im2col, gpu_pool = kernels.get("im2col", xp), kernels.get("pool", xp)
    rng = np.random.default_rng(0)
    for x_shape, kernel, stride, padding in [((2, 3, 9, 8), (3, 2), (2, 1), "same"), ((1, 2, 7, 7), (2, 2), (3, 3), 1),
                                             ((3, 1, 6, 5), (3, 3), (1, 1), "valid")]:
        _, _, pad = conv_geometry(x_shape, kernel, stride, padding, "test")
        x = rng.standard_normal(x_shape).astype(dtype)
        xg = cupy.asarray(x)
        cols = ref_im2col.im2col(x, kernel, stride, pad)
        np.testing.assert_array_equal(cupy.asnumpy(gpu_im2col.im2col(xg, kernel, stride, pad)), cols)
        np.testing.assert_allclose(cupy.asnumpy(gpu_im2col.col2im(cupy.asarray(cols), x_shape, kernel, stride, pad)),
                                   ref_im2col.col2im(cols, x_shape, kernel, stride, pad), rtol=_tol(dtype),
                                   atol=_tol(dtype))
        if padding == 1:
            continue  # pooling takes 'valid' or 'same' only
        y, arg = gpu_pool.max_forward(xg, kernel, stride, pad)
        y_ref, arg_ref = ref_pool.max_forward(x, kernel, stride, pad)
        np.testing.assert_array_equal(cupy.asnumpy(y), y_ref)
        np.testing.assert_array_equal(cupy.asnumpy(arg), arg_ref)
        dy = rng.standard_normal(y_ref.shape).astype(dtype)
        np.testing.assert_allclose(cupy.asnumpy(gpu_pool.max_backward(cupy.asarray(dy), arg, x_shape, kernel, stride,
                                                                      pad)),
                                   ref_pool.max_backward(dy, arg_ref, x_shape, kernel, stride, pad), rtol=_tol(dtype),
                                   atol=_tol(dtype))
        np.testing.assert_allclose(cupy.asnumpy(gpu_pool.avg_forward(xg, kernel, stride, pad)),
                                   ref_pool.avg_forward(x, kernel, stride, pad), rtol=_tol(dtype), atol=_tol(dtype))
        np.testing.assert_allclose(cupy.asnumpy(gpu_pool.avg_backward(cupy.asarray(dy), x_shape, kernel, stride, pad)),
                                   ref_pool.avg_backward(dy, x_shape, kernel, stride, pad), rtol=_tol(dtype),
                                   atol=_tol(dtype))
