"""The vectorising float32 tanh (``npdl.kernels.numba.fast_tanh``) against float64 ``tanh``, and the CPU
bias + activation kernels built on it (``npdl.kernels.numba.bias_activation``) against their definitions."""

import zlib

import numba
import numpy as np
import pytest

import npdl
from npdl import kernels
from npdl.kernels.numba import bias_activation as B
from npdl.layers import activations as A

NAMES = ("tanh", "sigmoid")
TWELVE = int(np.float32(12.0).view(np.uint32))

# Kernel against definition: both are float32, the kernel's tanh within 4.2e-7 relative of the exact
# value, NumPy's within 1.4 ulps (1.7e-7 relative), so the two tanh results differ by < 6e-7
# relative: rtol 1e-6. atol 1e-7 only matters where tanh rounds to 0. The sigmoid's
# (t + 1) * 0.5 turns that relative error of t near -1 into an absolute one in y near 0:
# (4.2e-7 + 1.7e-7) / 2 < 3e-7, hence its atol (the exhaustive maximum over float32 is 2.4e-7).
TOL = {"tanh": {"rtol": 1e-6, "atol": 1e-7}, "sigmoid": {"rtol": 1e-6, "atol": 3e-7}}


def _definition(name):
    return kernels.DEFINITIONS[f"bias_activation.{name}"]


def _kernel(name):
    return getattr(B, name)


# ------------------------------------------------------------------------------ tanh32


def _sample():
    """Every 1009th float32 bit pattern in [0, 12] (and 12 itself), and their negatives."""
    bits = np.append(np.arange(0, TWELVE, 1009, dtype=np.uint32), np.uint32(TWELVE))
    x = bits.view(np.float32)
    return np.concatenate([x, -x])


@pytest.mark.parametrize("into", [B._tanh_flat, B._tanh_flat_parallel])  # tanh32 over a flat array
def test_tanh32_is_within_7_ulp_of_float64_tanh(into):
    x = _sample()
    got = np.empty_like(x)
    into(x, got)
    want = np.tanh(x.astype(np.float64))
    err = np.abs(got.astype(np.float64) - want)
    ulps = err / np.spacing(np.abs(want.astype(np.float32))).astype(np.float64)
    rel = np.divide(err, np.abs(want), out=np.zeros_like(err), where=want != 0)
    assert got.dtype == np.float32
    assert ulps.max() <= 7.0, (ulps.max(), x[ulps.argmax()])
    assert rel.max() <= 5e-7, (rel.max(), x[rel.argmax()])
    # the sample reaches both ends of the approximation: the tiny range and the saturated one
    assert np.any(got == x) and np.any(got == 1.0) and np.any(got == -1.0)


def test_tanh32_special_values():
    tiny = np.finfo(np.float32).smallest_subnormal
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 9.5, -9.5, 1e30, -1e30, tiny, -tiny, 1e-40, -3e-39,
                  np.finfo(np.float32).max], dtype=np.float32)
    got = np.empty_like(x)
    B._tanh_flat(x, got)
    assert np.isnan(got[0])
    np.testing.assert_array_equal(got[1:3], [1.0, -1.0])
    assert got[3] == 0.0 and not np.signbit(got[3])
    assert got[4] == 0.0 and np.signbit(got[4])
    np.testing.assert_array_equal(got[5:9], [1.0, -1.0, 1.0, -1.0])
    np.testing.assert_array_equal(got[9:13], x[9:13])  # tanh(x) = x for denormals, the sign kept
    assert got[13] == 1.0


def test_the_serial_loops_vectorise():
    """The serial loops compile to packed float32 division (``divps``, 4 or 8 lanes) and call no scalar
    ``tanhf`` (which would make the kernel slower than NumPy), and never convert to float64 (a float64
    constant would: the results would no longer round as the definition's float32 arithmetic does).
    Compiled afresh with the kernels' own options (``inspect_asm`` has nothing for cached code)."""
    flat, rows = numba.types.float32[::1], numba.types.float32[:, ::1]
    for loop, sig in [(B._tanh_flat, (flat, flat)), (B._sigmoid_flat, (flat, flat)),
                      (B._tanh_rows, (rows, flat, rows)), (B._sigmoid_rows, (rows, flat, rows)),
                      (B._tanh_flat_inplace, (flat,)), (B._sigmoid_flat_inplace, (flat,)),
                      (B._tanh_rows_inplace, (rows, flat)), (B._sigmoid_rows_inplace, (rows, flat))]:
        options = {k: v for k, v in loop.targetoptions.items() if k != "nopython"}  # error_model among them
        fresh = numba.njit(**options)(loop.py_func)
        fresh.compile(sig)
        asm = fresh.inspect_asm(sig)
        assert "divps" in asm and "tanhf" not in asm, loop.__name__
        assert "cvtss2sd" not in asm and "cvtps2pd" not in asm, loop.__name__


# ------------------------------------------------------------------- the bias + activation kernels


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(20, 37), (3, 4, 5, 6), (2, 3, 256, 192)])  # the last one runs parallel
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("overwrite", [False, True])
def test_kernel_matches_definition(name, shape, with_bias, overwrite):
    rng = np.random.default_rng(zlib.crc32(repr((name, shape, with_bias, overwrite)).encode()))
    x = (rng.standard_normal(shape) * 6).astype(np.float32)  # reaches the saturated ends of both
    b = (rng.standard_normal(shape[-1:]) * 2).astype(np.float32) if with_bias else None
    x_before = x.copy()
    want, _ = _definition(name)(x.copy(), bias=b, overwrite=overwrite)
    y, cache = _kernel(name)(x, bias=b, overwrite=overwrite)
    assert cache is y and y.dtype == np.float32 and y.shape == shape
    np.testing.assert_allclose(y, want, **TOL[name])
    if overwrite:
        assert y is x  # written over the caller's scratch array
    else:
        assert not np.shares_memory(y, x)
        np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(20, 37), (2, 3, 256, 192)])  # serial and parallel loops
@pytest.mark.parametrize("with_bias", [True, False])
def test_in_place_gives_the_bits_of_a_fresh_output(name, shape, with_bias):
    """``overwrite=True`` runs loops of its own (x alone, see below): the same formula, so the same bits as
    the loops that write a fresh ``y``."""
    rng = np.random.default_rng(zlib.crc32(repr((name, shape, with_bias)).encode()))
    x = (rng.standard_normal(shape) * 6).astype(np.float32)
    b = (rng.standard_normal(shape[-1:]) * 2).astype(np.float32) if with_bias else None
    fresh, _ = _kernel(name)(x, bias=b)
    scratch = x.copy()
    y, _ = _kernel(name)(scratch, bias=b, overwrite=True)
    assert y is scratch
    np.testing.assert_array_equal(y, fresh)


def test_large_arrays_run_the_parallel_loops(monkeypatch):
    """The elementwise kernels' threshold: serial below it, the prange loops from it on."""
    from npdl.kernels import numba as numba_kernels

    threshold = numba_kernels.ELEMENTWISE_PARALLEL_THRESHOLD
    assert B.PARALLEL_THRESHOLD == threshold
    for size, parallel in [(threshold - 1, False), (threshold, True)]:
        calls = []
        monkeypatch.setattr(B, "_TANH", tuple((lambda *args, _i=i: calls.append(_i)) for i in range(8)))
        B.tanh(np.ones((size,), np.float32))
        B.tanh(np.ones((size // 8, 8), np.float32), bias=np.ones(8, np.float32), overwrite=True)
        assert calls == ([1, 7] if parallel else [0, 6]), size


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(20, 37), (2, 3, 256, 192)])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("overwrite", [False, True])
def test_no_loop_is_given_one_array_twice(monkeypatch, name, shape, with_bias, overwrite):
    """Given ``x`` as both its input and its output, a loop's check that they do not overlap fails at
    run time and LLVM runs its scalar version (8x slower for a (20, 500) tanh): ``overwrite`` must
    reach the loops that take ``x`` alone. Every loop is replaced by a recorder of its arguments."""
    calls = []
    table = getattr(B, f"_{name.upper()}")
    monkeypatch.setattr(B, f"_{name.upper()}", tuple(
        (lambda *args, _i=i: calls.append((_i, args))) for i in range(len(table))))
    x = np.ones(shape, np.float32)
    b = np.ones(shape[-1:], np.float32) if with_bias else None
    _kernel(name)(x, bias=b, overwrite=overwrite)
    assert len(calls) == 1
    index, args = calls[0]
    assert (index >= 4) == overwrite  # the in-place loops are the last four
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    assert not any(np.shares_memory(a, c) for i, a in enumerate(arrays) for c in arrays[i + 1:])


@pytest.mark.parametrize("name", NAMES)
def test_kernel_declines_what_it_was_not_built_for(name):
    """float64 (gradient checks), a bias of another dtype or shape, a non-contiguous ``x``: declined,
    and the dispatched forward gives the definition's result bit for bit."""
    rng = np.random.default_rng(7)
    x32 = rng.standard_normal((6, 5)).astype(np.float32)
    b32 = rng.standard_normal(5).astype(np.float32)
    cases = [(x32.astype(np.float64), b32.astype(np.float64)),  # float64 throughout
             (x32, b32.astype(np.float64)),                      # bias of another dtype
             (x32, b32[:4]),                                     # bias of another shape
             (x32.T, None),                                      # not C-contiguous
             (x32[None], np.float32(1.0))]                       # 0-d bias
    for x, b in cases:
        assert _kernel(name)(x, bias=b) is NotImplemented
        if b is not None and np.ndim(b) and b.shape != x.shape[-1:]:
            continue  # broadcasting error either way
        got, _ = getattr(A, f"{name}_forward")(x, bias=b)
        want, _ = _definition(name)(x, bias=b)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert _kernel(name)(x32.tolist()) is NotImplemented


def test_the_dispatch_serves_the_numba_kernels_on_numpy():
    assert kernels.has_module("numba", "bias_activation")
    x = np.zeros((2, 3), np.float32)
    if kernels.enabled():
        assert kernels.kernel_for("bias_activation.tanh", x) is B.tanh
        assert kernels.kernel_for("bias_activation.sigmoid", x) is B.sigmoid
        assert kernels.kernel_for("bias_activation.relu", x) is None  # NumPy's maximum serves


@pytest.fixture
def recorded(monkeypatch):
    """Calls of ``B.tanh``/``B.sigmoid`` made through the dispatch (its caches cleared around the test)."""
    calls = []
    for name in NAMES:
        fn = getattr(B, name)
        monkeypatch.setattr(B, name, lambda *a, _fn=fn, _name=name, **k: calls.append(_name) or _fn(*a, **k))
    before = kernels.mode()
    kernels.use(None)
    yield calls
    monkeypatch.undo()
    kernels.use(before)


@pytest.mark.parametrize("name", NAMES)
def test_dense_layer_forward_uses_the_kernel(recorded, name):
    rng = np.random.default_rng(11)
    layer = npdl.Dense(17, 9, activation=name, dtype="float32", rng=npdl.backend.Generator("cpu", 3))
    layer.params["b"][...] = rng.standard_normal(9).astype(np.float32)
    x = (rng.standard_normal((32, 17)) * 3).astype(np.float32)
    y = layer.forward(x)
    assert recorded == [name]
    kernels.use("off")
    y_off = layer.forward(x)
    assert recorded == [name]  # the definition ran
    assert y.dtype == y_off.dtype == np.float32
    np.testing.assert_allclose(y, y_off, **TOL[name])
