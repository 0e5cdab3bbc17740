"""Convolution and pooling: the tie rule, 'same' padding, the layers on every device and with the
kernels off, bad input and dtypes. (The kernels against the definitions: tests/test_conv_kernels.py.)"""

import numpy as np
import pytest

import npdl
from npdl import backend, kernels
from npdl.errors import DTypeError, ShapeError
from npdl.gradcheck import relative_error
from npdl.kernels.numba import pool as numba_pool
from npdl.layers import pooling
from npdl.layers.conv import col2im, conv_geometry, im2col

HAS_GPU = backend.cupy_or_none() is not None


def _tol(dtype):
    return 1e-5 if dtype == "float32" else 1e-12


#: the definitions of the pooling windows, with the signatures of the kernels' module
DEFINED_POOL = type("DefinedPool", (), {name: staticmethod(getattr(pooling, f"{kind}_pool_{step}").definition)
                                        for name, kind, step in (("max_forward", "max", "forward"),
                                                                 ("max_backward", "max", "backward"),
                                                                 ("avg_forward", "avg", "forward"),
                                                                 ("avg_backward", "avg", "backward"))})


# ------------------------------------------------------------------------- conventions

@pytest.mark.parametrize("impl", [numba_pool, DEFINED_POOL], ids=["numba", "definition"])
def test_max_pool_tie_sends_the_gradient_to_the_first_maximum(impl):
    x = np.array([[[[1.0, 3.0, 3.0, 0.0],
                    [3.0, 2.0, 0.0, 0.0],
                    [5.0, 5.0, 7.0, 7.0],
                    [5.0, 5.0, 7.0, 7.0]]]])
    y, arg = impl.max_forward(x, (2, 2), (2, 2), (0, 0, 0, 0))
    np.testing.assert_array_equal(y[0, 0], [[3.0, 3.0], [5.0, 7.0]])
    np.testing.assert_array_equal(arg[0, 0], [[1, 0], [0, 0]])  # row-major offsets kh*KW + kw
    d = np.random.default_rng(0).standard_normal(y.shape)
    dx = impl.max_backward(d, arg, x.shape, (2, 2), (2, 2), (0, 0, 0, 0))
    (a, b), (c, e) = d[0, 0]
    np.testing.assert_array_equal(dx[0, 0], [[0.0, a, b, 0.0],
                                             [0.0, 0.0, 0.0, 0.0],
                                             [c, 0.0, e, 0.0],
                                             [0.0, 0.0, 0.0, 0.0]])


def test_tie_rule_through_the_layer_on_every_device(device):
    x = device.asarray(np.full((1, 1, 3, 3), 2.0, np.float32))
    pool = npdl.MaxPool2D(3)
    pool(x)
    dy = np.random.default_rng(0).standard_normal((1, 1, 1, 1)).astype(np.float32)
    dx = backend.to_numpy(pool.backward(device.asarray(dy)))
    expected = np.zeros((1, 1, 3, 3), np.float32)
    expected[0, 0, 0, 0] = dy[0, 0, 0, 0]
    np.testing.assert_array_equal(dx, expected)


def test_overlapping_max_windows_add_their_gradients():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0  # the maximum of all four 2x2 windows at stride 1
    y, cache = npdl.maxpool2d_forward(x, 2, 1)
    dy = np.random.default_rng(0).integers(-64, 65, y.shape) / 16  # sixteenths: every order adds them exactly
    dx = npdl.maxpool2d_backward(dy, cache)
    assert dx[0, 0, 1, 1] == dy.sum() and np.count_nonzero(dx) == 1


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
    rng = np.random.default_rng(1)
    x_np = rng.standard_normal((2, 2, 9, 8)).astype(np.float32)
    dy_np = rng.standard_normal((2, 4, 3, 4)).astype(np.float32)  # the stack's output shape
    results = {}
    for where in ("cpu", device):
        stack = _layers(where)
        # the CPU's initial weights: a GPU's generator draws other numbers from the same seed
        for layer, ref in zip(stack, _layers("cpu")):
            layer.params = {k: backend.get_device(where).asarray(v) for k, v in ref.params.items()}
        h = backend.get_device(where).asarray(x_np)
        shape = (2, 9, 8)
        for layer in stack:
            h = layer(h)
            shape = layer.output_shape(shape)
            assert tuple(h.shape[1:]) == tuple(shape)
            assert backend.dtype_name(h) == "float32" and backend.device_of(h) == backend.get_device(where)
        d = backend.get_device(where).asarray(dy_np)
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


def test_workspace_is_reused_and_each_cache_stays_right():
    """The layer's workspace keeps the kernel's buffers between calls; a cache holds the input, so two
    forward passes before a backward pass (a layer used twice) each keep their own."""
    g = backend.Generator("cpu", 0)
    layer = npdl.Conv2D(2, 3, 3, rng=g)
    x1, x2 = g.normal((3, 2, 7, 7)), g.normal((3, 2, 7, 7))
    y1 = layer(x1)
    cache1 = layer.cache
    buffer = layer._workspace["conv2d.cols"][0]
    y2 = layer(x2)
    assert layer._workspace["conv2d.cols"][0] is buffer
    assert relative_error(y2, npdl.conv2d_forward(x2, layer.params["W"], layer.params["b"])[0]) == 0.0
    dy = g.normal(tuple(y1.shape))
    layer.cache = cache1
    dx1 = layer.backward(dy)
    kernels.use("off")
    try:
        y1_ref, cache = npdl.conv2d_forward(x1, layer.params["W"], layer.params["b"])
        dx1_ref, dW1_ref, _ = npdl.conv2d_backward(dy, cache)
    finally:
        kernels.use(None)
    assert relative_error(y1, y1_ref) < 1e-6
    assert relative_error(dx1, dx1_ref) < 1e-6 and relative_error(layer.grads["W"], dW1_ref) < 1e-6


def test_the_conv_cache_is_the_same_on_every_device(device):
    """``(x, W, stride, pad, has_bias, activation, f_cache)`` whichever code ran: the definition or a kernel."""
    g = backend.Generator(device, 0)
    x, W, b = g.normal((2, 3, 7, 6)), g.normal((4, 3, 3, 3)), g.normal((4,))
    for kernels_on in (True, False):
        kernels.use(None if kernels_on else "off")
        try:
            _, cache = npdl.conv2d_forward(x, W, b, 2, "same")
        finally:
            kernels.use(None)
        assert len(cache) == 7 and tuple(cache[2:]) == ((2, 2), (1, 1, 0, 1), True, "linear", None)
        np.testing.assert_array_equal(backend.to_numpy(cache[0]), backend.to_numpy(x))
        assert cache[1] is W


def _small_cnn(dtype):
    g = backend.Generator("cpu", 0)
    return npdl.Sequential([
        npdl.Conv2D(2, 4, 3, padding="same", dtype=dtype, rng=g), npdl.MaxPool2D(2), npdl.ReLU(),
        npdl.Conv2D(4, 3, (2, 3), stride=(1, 2), padding=1, dtype=dtype, rng=g),
        npdl.AvgPool2D(2, padding="same"), npdl.Flatten(), npdl.Dense(9, 3, dtype=dtype, rng=g)])


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_a_conv_net_trains_to_the_same_parameters_with_kernels_off(dtype, tol):
    """A few SGD steps of conv -> max pool -> conv -> average pool -> dense, once with the kernels and
    once with ``kernels.use("off")`` (the layer files' code only): the same parameters."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((12, 2, 10, 9)).astype(dtype)
    labels = rng.integers(0, 3, 12)
    trained = []
    for mode in (None, "off"):
        kernels.use(mode)
        try:
            model = _small_cnn(dtype).compile("softmax_cross_entropy", npdl.optim.SGD(lr=0.2))
            for step in range(4):
                batch = slice(3 * step, 3 * step + 6)
                model.train_batch(x[batch], labels[batch])
            trained.append([backend.to_numpy(p) for layer in model.layers for p in layer.params.values()])
        finally:
            kernels.use(None)
    with_kernels, without = trained
    assert len(with_kernels) == 6
    for a, b in zip(with_kernels, without):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    first = _small_cnn(dtype).layers[0].params["W"]
    assert relative_error(with_kernels[0], first) > 1e-3  # the steps did move the parameters


def test_get_config_round_trip():
    for layer in [npdl.Conv2D(3, 4, (3, 5), stride=(2, 1), padding=(1, 2), bias=False, dtype="float64"),
                  npdl.Conv2D(3, 4, 3, activation="ReLU"),
                  npdl.MaxPool2D(3, 2, "same"), npdl.AvgPool2D((2, 3))]:
        rebuilt = npdl.layer_from_config({"class": type(layer).__name__, "config": layer.get_config()})
        assert rebuilt.get_config() == layer.get_config()
    assert npdl.MaxPool2D(3).strides == (3, 3)
    assert npdl.Conv2D(1, 2, 3).weight_names == ("W",)
    assert npdl.Conv2D(1, 2, 3, activation="relu").get_config()["activation"] == "relu"
    assert "activation" not in npdl.Conv2D(1, 2, 3).get_config()  # configs of plain layers stay as they were


@pytest.mark.parametrize("activation, layer", [("relu", npdl.ReLU), ("tanh", npdl.Tanh)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv_with_an_activation_is_the_conv_then_that_layer(activation, layer, dtype, device):
    """Conv2D(activation=f) against Conv2D then f's layer, from the same weights, on every device: the
    output and dx bit for bit, dW too where one kernel computes both (ReLU's fused kernel included); db
    to round-off (the fused ReLU kernel sums the masked gradient in another order)."""
    rng = np.random.default_rng(11)
    x_np = rng.standard_normal((3, 2, 7, 6)).astype(dtype)
    dy_np = rng.standard_normal((3, 4, 7, 6)).astype(dtype)
    dev = backend.get_device(device)
    fused = npdl.Conv2D(2, 4, 3, padding="same", activation=activation, dtype=dtype, device=device)
    plain = npdl.Conv2D(2, 4, 3, padding="same", dtype=dtype, device=device)
    W, b = rng.standard_normal((4, 2, 3, 3)).astype(dtype), rng.standard_normal(4).astype(dtype)
    for conv in (fused, plain):
        conv.params = {"W": dev.asarray(W), "b": dev.asarray(b)}
    act = layer()
    y = fused(dev.asarray(x_np))
    y_ref = act(plain(dev.asarray(x_np)))
    np.testing.assert_array_equal(backend.to_numpy(y), backend.to_numpy(y_ref))
    if activation == "relu":
        assert (backend.to_numpy(y) == 0).mean() > 0.2
    dx = fused.backward(dev.asarray(dy_np))
    dx_ref = plain.backward(act.backward(dev.asarray(dy_np)))
    np.testing.assert_array_equal(backend.to_numpy(dx), backend.to_numpy(dx_ref))
    tol = 1e-5 if dtype == "float32" else 1e-12
    if activation == "relu" or dev.kind != "numpy":
        np.testing.assert_array_equal(backend.to_numpy(fused.grads["W"]), backend.to_numpy(plain.grads["W"]))
    else:  # on the CPU the chunked kernel serves the plain conv and the definition the tanh one: dW is
        # the same sums as dy_t cols^T, in the other orientation, so equal bits on OpenBLAS's AVX-512
        # kernels but not on its AVX2 (Haswell) kernels
        np.testing.assert_allclose(backend.to_numpy(fused.grads["W"]), backend.to_numpy(plain.grads["W"]),
                                   rtol=tol, atol=tol)
    np.testing.assert_allclose(backend.to_numpy(fused.grads["b"]), backend.to_numpy(plain.grads["b"]),
                               rtol=tol, atol=tol)


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
    with pytest.raises(ValueError, match="Conv2D: unknown activation 'softmax'; choose one of sigmoid, tanh"):
        npdl.Conv2D(1, 3, 3, activation="softmax")
    with pytest.raises(ValueError, match="conv2d_forward: unknown activation 'swish'"):
        npdl.conv2d_forward(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 2, 2)), None, activation="swish")


# -------------------------------------------------------------------------------- GPU

@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_kernels_match_the_definitions(dtype):
    """Whatever the dispatch picks for CuPy arrays (the numba.cuda kernels where numba.cuda
    can compile, else the definitions) agrees with the definitions on the CPU; and the
    whole convolution on the GPU agrees with it on the CPU, kernels on and off."""
    import cupy

    rng = np.random.default_rng(0)
    for x_shape, kernel, stride, padding in [((2, 3, 9, 8), (3, 2), (2, 1), "same"), ((1, 2, 7, 7), (2, 2), (3, 3), 1),
                                             ((3, 1, 6, 5), (3, 3), (1, 1), "valid")]:
        _, _, pad = conv_geometry(x_shape, kernel, stride, padding, "test")
        x = rng.standard_normal(x_shape).astype(dtype)
        xg = cupy.asarray(x)
        cols = im2col.definition(x, kernel, stride, pad)
        np.testing.assert_array_equal(cupy.asnumpy(im2col(xg, kernel, stride, pad)), cols)
        dcols = rng.standard_normal(cols.shape).astype(dtype)
        np.testing.assert_allclose(cupy.asnumpy(col2im(cupy.asarray(dcols), x_shape, kernel, stride, pad)),
                                   col2im.definition(dcols, x_shape, kernel, stride, pad), rtol=_tol(dtype),
                                   atol=_tol(dtype))
        W = rng.standard_normal((4, x_shape[1], *kernel)).astype(dtype)
        b = rng.standard_normal(4).astype(dtype)
        y_ref, cache_ref = npdl.conv2d_forward(x, W, b, stride, padding)
        dy = rng.standard_normal(y_ref.shape).astype(dtype)
        grads_ref = npdl.conv2d_backward(dy, cache_ref)
        for mode in (None, "off"):
            kernels.use(mode)
            try:
                y, cache = npdl.conv2d_forward(xg, cupy.asarray(W), cupy.asarray(b), stride, padding)
                grads = npdl.conv2d_backward(cupy.asarray(dy), cache)
            finally:
                kernels.use(None)
            for got, want in zip((y, *grads), (y_ref, *grads_ref)):
                np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=10 * _tol(dtype), atol=10 * _tol(dtype))
        if padding == 1:
            continue  # pooling takes 'valid' or 'same' only
        y, arg = pooling.max_pool_forward(xg, kernel, stride, pad)
        y_ref, arg_ref = DEFINED_POOL.max_forward(x, kernel, stride, pad)
        np.testing.assert_array_equal(cupy.asnumpy(y), y_ref)
        np.testing.assert_array_equal(cupy.asnumpy(arg), arg_ref)
        dy = rng.standard_normal(y_ref.shape).astype(dtype)
        np.testing.assert_allclose(cupy.asnumpy(pooling.max_pool_backward(cupy.asarray(dy), arg, x_shape, kernel,
                                                                          stride, pad)),
                                   DEFINED_POOL.max_backward(dy, arg_ref, x_shape, kernel, stride, pad),
                                   rtol=_tol(dtype), atol=_tol(dtype))
        np.testing.assert_allclose(cupy.asnumpy(pooling.avg_pool_forward(xg, kernel, stride, pad)),
                                   DEFINED_POOL.avg_forward(x, kernel, stride, pad), rtol=_tol(dtype),
                                   atol=_tol(dtype))
        np.testing.assert_allclose(cupy.asnumpy(pooling.avg_pool_backward(cupy.asarray(dy), x_shape, kernel, stride,
                                                                          pad)),
                                   DEFINED_POOL.avg_backward(dy, x_shape, kernel, stride, pad), rtol=_tol(dtype),
                                   atol=_tol(dtype))
