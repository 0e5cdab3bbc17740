"""The Numba kernels of convolution and pooling equal the definitions in the layer files:
im2col/col2im, the chunked convolution, max and average pooling (serial, parallel and
the 2x2 fast path), on random geometries in float32 and float64."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from npdl import kernels
from npdl.kernels.geometry import conv_geometry
from npdl.kernels.numba import chunking, conv2d as numba_conv2d, conv2d_last, im2col as numba_im2col, pool as numba_pool
from npdl.layers import conv, pooling

#: every property test here draws the same examples on every run and prints a failing one
REPRODUCIBLE = settings(derandomize=True, database=None, print_blob=True, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow])


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}


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


# ------------------------------------------------------------------- im2col, col2im

@settings(REPRODUCIBLE, max_examples=60)
@given(geo=geometries(), seed=st.integers(0, 2 ** 16), dtype=st.sampled_from(["float32", "float64"]))
def test_numba_im2col_and_col2im_match_the_definitions(geo, seed, dtype):
    x_shape, kernel, stride, pad, (oh, ow) = geo
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    cols = numba_im2col.im2col(x, kernel, stride, pad)
    assert cols.dtype == x.dtype and cols.shape == (x_shape[1] * kernel[0] * kernel[1], x_shape[0] * oh * ow)
    np.testing.assert_array_equal(cols, conv.im2col.definition(x, kernel, stride, pad))  # a copy: exact
    dcols = rng.standard_normal(cols.shape).astype(dtype)
    dx = numba_im2col.col2im(dcols, x_shape, kernel, stride, pad)
    assert dx.dtype == x.dtype and dx.shape == x_shape
    np.testing.assert_allclose(dx, conv.col2im.definition(dcols, x_shape, kernel, stride, pad), **_tol(dtype))
    # col2im is im2col's adjoint: <im2col(x), dcols> = <x, col2im(dcols)>. Summed in float64; the two
    # sides may nearly cancel, so the tolerance scales with the sum of the terms' sizes, not the result
    lhs = np.vdot(cols.astype(np.float64), dcols.astype(np.float64))
    rhs = np.vdot(x.astype(np.float64), dx.astype(np.float64))
    scale = np.vdot(np.abs(cols).astype(np.float64), np.abs(dcols).astype(np.float64))
    assert abs(lhs - rhs) <= (1e-5 if dtype == "float32" else 1e-12) * scale, (lhs, rhs, scale)


def test_numba_im2col_reuses_its_workspace_buffer():
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((2, 3, 6, 6))
    ws = {}
    a = numba_im2col.im2col(x1, (3, 3), (1, 1), (1, 1, 1, 1), ws)
    b = numba_im2col.im2col(x2, (3, 3), (1, 1), (1, 1, 1, 1), ws)
    assert a is b is ws["cols"]
    np.testing.assert_array_equal(b, conv.im2col.definition(x2, (3, 3), (1, 1), (1, 1, 1, 1)))


def test_numba_kernels_decline_dtypes_they_were_not_compiled_for():
    x = np.zeros((1, 1, 4, 4), np.float16)
    geo = ((2, 2), (2, 2), (0, 0, 0, 0))
    assert numba_im2col.im2col(x, *geo) is NotImplemented
    assert numba_pool.max_forward(x, *geo) is NotImplemented
    assert numba_conv2d.forward(x, np.zeros((1, 1, 2, 2), np.float16), None) is NotImplemented
    y, cache = conv.conv2d_forward(x, np.ones((1, 1, 2, 2), np.float16), None, 2)  # the definition runs
    assert y.dtype == np.float16 and np.all(y == 0)


# -------------------------------------------------------------- chunked convolution

CONV_CASES = [((7, 3, 9, 8), (4, 3, 3, 2), (1, 1), (1, 2), True),
              ((5, 2, 7, 7), (3, 2, 3, 3), (2, 2), "same", False),
              ((9, 1, 6, 6), (2, 1, 5, 5), (1, 1), "valid", True),
              ((6, 2, 11, 10), (3, 2, 2, 4), (3, 1), 0, True),
              ((1, 2, 5, 5), (2, 2, 5, 5), (1, 1), 2, True),
              ((3, 2, 8, 7), (2, 2, 2, 4), (1, 1), "same", True),  # pad (0, 1, 1, 2): the odd row and column
              # from conv2d_last.MIN_CHANNELS input channels, float32 chunks lay their columns out channels-last
              ((3, 16, 7, 6), (4, 16, 3, 3), (1, 1), "same", True),
              ((2, 17, 9, 8), (3, 17, 2, 3), (2, 1), (1, 2), False)]


def _off(fn, *args, **kwargs):
    """``fn`` with every kernel off: the definitions all the way down (im2col too)."""
    kernels.use("off")
    try:
        return fn(*args, **kwargs)
    finally:
        kernels.use(None)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("chunk", [50, 1 << 18])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("forward_last", [False, True])
def test_chunked_conv_matches_the_definition(case, chunk, dtype, activation, forward_last, monkeypatch):
    """Forward, cache and backward (with and without dx) against the definitions; chunk = 50 makes one
    image per chunk, shared among several workers; either pass takes the other's cache. forward_last:
    the forward pass channels-last too where it is (conv2d_last), as with oneMKL."""
    x_shape, w_shape, stride, padding, bias = case
    monkeypatch.setattr(numba_conv2d, "CHUNK_ELEMENTS", chunk)
    monkeypatch.setattr(conv2d_last, "FORWARD_WITH_NUMPYS_BLAS", forward_last)
    rng = np.random.default_rng(sum(x_shape) + chunk)
    x, W = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    ws = {}
    y, cache = numba_conv2d.forward(x, W, b, stride, padding, ws, activation)
    y_ref, cache_ref = _off(conv.conv2d_forward, x, W, b, stride, padding, activation=activation)
    assert y.dtype == x.dtype
    np.testing.assert_allclose(y, y_ref, **_tol(dtype))
    if activation == "relu":
        assert (y > 0).any() and (y == 0).any()
    # (x, W, stride, pad, has_bias, activation, f_cache)
    assert len(cache) == len(cache_ref) == 7 and cache[2:6] == cache_ref[2:6]
    np.testing.assert_array_equal(cache[0], cache_ref[0])
    assert cache[1] is W
    if activation == "relu":
        np.testing.assert_allclose(cache[6], cache_ref[6], **_tol(dtype))
    else:
        assert cache[6] is None and cache_ref[6] is None
    dy = rng.standard_normal(y.shape).astype(dtype)
    for need_dx in (True, False):
        dx, dW, db = numba_conv2d.backward(dy, cache, need_dx, ws)
        dx_ref, dW_ref, db_ref = _off(conv.conv2d_backward, dy, cache_ref, need_dx)
        assert dW.dtype == x.dtype
        np.testing.assert_allclose(dW, dW_ref, **_tol(dtype))
        if need_dx:
            np.testing.assert_allclose(dx, dx_ref, **_tol(dtype))
        else:
            assert dx is None and dx_ref is None
        if bias:
            np.testing.assert_allclose(db, db_ref, **_tol(dtype))
        else:
            assert db is None and db_ref is None
    # the caches are interchangeable: the definition's backward on the kernel's cache
    np.testing.assert_allclose(_off(conv.conv2d_backward, dy, cache)[1], dW_ref, **_tol(dtype))


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("chunk", [50, 1 << 18])
@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_float32_chunks_in_one_numba_call_give_the_python_steps_bits(case, chunk, activation, monkeypatch):
    """Where NumPy's CBLAS can be called directly, each float32 chunk (a run of chunks backward) is one
    Numba call that calls ``cblas_sgemm`` itself; without it, the chunk steps in Python and calls
    ``np.matmul``. Both reach the same sgemm with the same arguments: the same bits, every output."""
    if numba_conv2d.sgemm() is None:
        pytest.skip("no CBLAS found in NumPy's BLAS")
    x_shape, w_shape, stride, padding, bias = case
    monkeypatch.setattr(numba_conv2d, "CHUNK_ELEMENTS", chunk)
    monkeypatch.setattr(conv2d_last, "MIN_CHANNELS", 1 << 30)  # the definition's layout (channels-last: its own file)
    rng = np.random.default_rng(sum(x_shape) + chunk + 1)
    x, W = rng.standard_normal(x_shape).astype("float32"), rng.standard_normal(w_shape).astype("float32")
    b = rng.standard_normal(w_shape[0]).astype("float32") if bias else None
    calls = []
    for name in ("_forward_chunk32", "_backward_run32"):
        compiled = getattr(numba_conv2d, name)
        monkeypatch.setattr(numba_conv2d, name, lambda *a, _f=compiled, _n=name: calls.append(_n) or _f(*a))

    def run():
        y, cache = numba_conv2d.forward(x, W, b, stride, padding, {}, activation)
        dy = np.random.default_rng(3).standard_normal(y.shape).astype("float32")
        return [y, *numba_conv2d.backward(dy, cache, True, {}), numba_conv2d.backward(dy, cache, False, {})[1]]

    one_call = run()
    assert set(calls) == {"_forward_chunk32", "_backward_run32"}
    monkeypatch.setattr(numba_conv2d, "sgemm", lambda: None)
    count = len(calls)
    per_chunk = run()
    assert len(calls) == count  # the fallback ran
    for i, (a, b_) in enumerate(zip(one_call, per_chunk)):
        if a is None:
            assert b_ is None
            continue
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b_, err_msg=f"result {i}")


def test_chunked_conv_workspace_never_changes_the_result():
    rng = np.random.default_rng(1)
    x, W, b = rng.standard_normal((4, 2, 8, 8)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    ws = {}
    y1, cache = numba_conv2d.forward(x, W, b, 1, "same", ws)
    g1 = numba_conv2d.backward(y1, cache, True, ws)
    assert {"conv2d.cols", "conv2d.out", "conv2d.xpad", "conv2d.dW"} <= set(ws)
    for k in ws:  # scratch only: garbage left in the buffers must not show
        for buf in ws[k]:
            buf[...] = np.nan
    y2, cache = numba_conv2d.forward(x, W, b, 1, "same", ws)
    g2 = numba_conv2d.backward(y2, cache, True, ws)
    y3, cache = numba_conv2d.forward(x, W, b, 1, "same")
    g3 = numba_conv2d.backward(y3, cache, True)
    for a, b_, c in zip((y1, *g1), (y2, *g2), (y3, *g3)):
        np.testing.assert_allclose(a, b_, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_images", [24, 5])
@pytest.mark.parametrize("channels", [3, 16])  # 16: channels-last columns (conv2d_last)
def test_chunked_conv_dW_is_the_same_whatever_the_threads(n_images, channels, monkeypatch):
    """dW and db sum the chunks in fixed runs, added in order: the same bits with 1, 2 or 3 workers, from
    call to call, and whichever worker takes which run (here the runs are taken in reverse too)."""
    monkeypatch.setattr(numba_conv2d, "CHUNK_ELEMENTS", 50)  # one image per chunk
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n_images, channels, 9, 9)).astype("float32")
    W = rng.standard_normal((4, channels, 3, 3)).astype("float32")
    y, cache = numba_conv2d.forward(x, W, rng.standard_normal(4).astype("float32"), 1, "valid")
    dy = rng.standard_normal(y.shape).astype("float32")
    results = []
    real_run = chunking.run_chunks
    for n, reverse in ((1, False), (2, False), (3, False), (2, True), (1, False)):
        monkeypatch.setattr(numba_conv2d, "workers", lambda n=n: n)
        monkeypatch.setattr(chunking, "workers", lambda n=n: n)
        if reverse:  # one worker takes every run, last to first
            monkeypatch.setattr(numba_conv2d, "run_chunks", lambda work, k: [work(0, iter(range(k - 1, -1, -1)))])
        else:
            monkeypatch.setattr(numba_conv2d, "run_chunks", real_run)
        results.append(numba_conv2d.backward(dy, cache, True, {}))
    for dx, dW, db in results[1:]:
        np.testing.assert_array_equal(dW, results[0][1])
        np.testing.assert_array_equal(dx, results[0][0])
        np.testing.assert_array_equal(db, results[0][2])
    _, dW_ref, db_ref = _off(conv.conv2d_backward, dy, cache)
    np.testing.assert_allclose(results[0][1], dW_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(results[0][2], db_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chunk_buffers_are_aligned(dtype):
    for size in (1, 7, 1000):
        buf = chunking.aligned_empty(size, dtype)
        assert buf.size == size and buf.dtype == np.dtype(dtype) and buf.flags.c_contiguous
        assert buf.ctypes.data % chunking.ALIGN == 0
        buf[...] = 1.0  # writeable, and the whole range is ours
        assert buf.sum() == size


# ------------------------------------------------------------------------- pooling

@settings(REPRODUCIBLE, max_examples=60)
@given(geo=geometries(max_pad=0), seed=st.integers(0, 2 ** 16), dtype=st.sampled_from(["float32", "float64"]),
       ties=st.booleans())
def test_numba_pooling_matches_the_definitions(geo, seed, dtype, ties):
    """'valid' and 'same' padding (every window holds a real cell); small integers make ties."""
    x_shape, kernel, stride, pad, _ = geo
    rng = np.random.default_rng(seed)
    x = (rng.integers(-2, 3, x_shape) if ties else rng.standard_normal(x_shape)).astype(dtype)
    y, arg = numba_pool.max_forward(x, kernel, stride, pad)
    y_ref, arg_ref = pooling.max_pool_forward.definition(x, kernel, stride, pad)
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = numba_pool.max_backward(dy, arg, x_shape, kernel, stride, pad)
    assert dx.dtype == x.dtype
    np.testing.assert_allclose(dx, pooling.max_pool_backward.definition(dy, arg_ref, x_shape, kernel, stride, pad),
                               **_tol(dtype))
    a = numba_pool.avg_forward(x, kernel, stride, pad)
    assert a.dtype == x.dtype
    np.testing.assert_allclose(a, pooling.avg_pool_forward.definition(x, kernel, stride, pad), **_tol(dtype))
    da = numba_pool.avg_backward(dy, x_shape, kernel, stride, pad)
    assert da.dtype == x.dtype
    np.testing.assert_allclose(da, pooling.avg_pool_backward.definition(dy, x_shape, kernel, stride, pad),
                               **_tol(dtype))


@settings(REPRODUCIBLE, max_examples=40)
@given(n=st.integers(1, 3), c=st.integers(1, 4), oh=st.integers(1, 6), ow=st.integers(1, 6),
       levels=st.sampled_from([2, 3, 1000]), seed=st.integers(0, 2 ** 16),
       dtype=st.sampled_from(["float32", "float64"]))
def test_numba_2x2_max_pool_fast_path_matches_the_definition(n, c, oh, ow, levels, seed, dtype):
    """2x2 windows at stride 2 on an even-sized input take the tiling fast path; few value levels make ties common."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, (n, c, 2 * oh, 2 * ow)).astype(dtype)
    geo = ((2, 2), (2, 2), (0, 0, 0, 0))
    assert numba_pool._tiles_2x2(x.shape, *geo)
    y, arg = numba_pool.max_forward(x, *geo)
    y_ref, arg_ref = pooling.max_pool_forward.definition(x, *geo)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(numba_pool.max_backward(dy, arg, x.shape, *geo),
                                  pooling.max_pool_backward.definition(dy, arg_ref, x.shape, *geo))


def test_parallel_paths_match_the_definitions():
    """Shapes above PARALLEL_THRESHOLD run the prange variants."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 6, 20, 20)).astype(np.float32)
    geo = ((5, 5), (1, 1), (2, 2, 2, 2))
    cols = numba_im2col.im2col(x, *geo)
    np.testing.assert_array_equal(cols, conv.im2col.definition(x, *geo))
    dcols = rng.standard_normal(cols.shape).astype(np.float32)
    np.testing.assert_allclose(numba_im2col.col2im(dcols, x.shape, *geo),
                               conv.col2im.definition(dcols, x.shape, *geo), rtol=1e-5, atol=1e-5)
    big = rng.standard_normal((40, 20, 24, 24)).astype(np.float32)
    for geo in (((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (2, 2), (0, 1, 0, 1))):
        y, arg = numba_pool.max_forward(big, *geo)
        y_ref, arg_ref = pooling.max_pool_forward.definition(big, *geo)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(arg, arg_ref)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        np.testing.assert_allclose(numba_pool.max_backward(dy, arg, big.shape, *geo),
                                   pooling.max_pool_backward.definition(dy, arg_ref, big.shape, *geo), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(numba_pool.avg_forward(big, *geo), pooling.avg_pool_forward.definition(big, *geo),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(numba_pool.avg_backward(dy, big.shape, *geo),
                                   pooling.avg_pool_backward.definition(dy, big.shape, *geo), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------ the dispatch

def test_numba_kernels_are_cached_on_disk():
    """cache=True on every compiled function: a new process loads them instead of recompiling."""
    for module in (numba_im2col, numba_pool, numba_conv2d):
        jitted = [f for f in vars(module).values() if hasattr(f, "py_func")]
        assert jitted
        for f in jitted:
            assert type(f._cache).__name__ != "NullCache", f.__name__


def test_dispatch_picks_numba_for_numpy_and_the_definition_elsewhere():
    import array_api_strict

    for op, module in (("im2col", numba_im2col), ("conv2d", numba_conv2d), ("pool", numba_pool)):
        assert op in kernels.OPS and kernels.get(op, np) is module
        assert kernels.get(op, array_api_strict) is None
    for fn in (conv.im2col, conv.col2im, conv.conv2d_forward, conv.conv2d_backward, pooling.max_pool_forward,
               pooling.max_pool_backward, pooling.avg_pool_forward, pooling.avg_pool_backward):
        module, function = fn.operation.split(".")
        assert kernels.DEFINITIONS[fn.operation] is fn.definition
        assert callable(getattr(kernels.get(module, np), function))  # every operation has its Numba kernel
    kernels.use("off")
    try:
        assert kernels.get("pool", np) is None and kernels.implementation(np, "conv2d") == kernels.DEFINITION
    finally:
        kernels.use(None)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_relu_keeps_nan_as_the_definition_does(dtype):
    """The ReLU applied in the kernel's scatter is the definition's ``maximum``: a ``nan`` from the
    input stays ``nan`` (``v > 0`` would have made it 0), and the mask of a ``nan`` output is 0."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 1, 6, 6)).astype(dtype)
    x[1, 0, 2, 3] = np.nan
    W = rng.standard_normal((3, 1, 3, 3)).astype(dtype)
    y, cache = numba_conv2d.forward(x, W, None, 1, "valid", {}, "relu")
    y_ref, _ = _off(conv.conv2d_forward, x, W, None, 1, "valid", activation="relu")
    assert np.isnan(y[1]).any() and not np.isnan(y[0]).any()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref))
    np.testing.assert_allclose(y, y_ref, **_tol(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dW, _ = numba_conv2d.backward(dy, cache, True, {})
    dx_ref, dW_ref, _ = _off(conv.conv2d_backward, dy, cache)
    np.testing.assert_allclose(dx[0], dx_ref[0], **_tol(dtype))
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(dx_ref))
