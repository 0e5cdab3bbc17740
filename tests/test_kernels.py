"""Every kernel agrees with the definition it accelerates (the layer, loss or optimizer file's code)."""

import contextlib

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npdl import backend, kernels
from npdl.kernels.numba import activation_backward as numba_act
from npdl.kernels.numba import softmax_xent as numba_sx
from npdl.layers import activations as A
from npdl.losses import cross_entropy as CE

SX_FORWARD = CE.softmax_cross_entropy_forward.definition
SX_BACKWARD = CE.softmax_cross_entropy_backward.definition
ACTIVATIONS = ("sigmoid", "tanh", "relu")


def _close(dtype) -> dict:
    """Tolerances for comparing two computations of the same math in ``dtype``."""
    return {"rtol": 1e-5, "atol": 1e-6} if np.dtype(dtype) == np.float32 else {"rtol": 1e-12, "atol": 1e-13}


@contextlib.contextmanager
def _kernels(mode):
    """Run the block with ``kernels.use(mode)``, the mode before restored after it."""
    before = kernels.mode()
    kernels.use(mode)
    try:
        yield
    finally:
        kernels.use(before)


@contextlib.contextmanager
def _recorded(module, *names):
    """Record the calls of ``module.<name>`` (kernel functions) made through the dispatch: each is
    wrapped, with the dispatch's caches cleared on entry and exit so that it finds the wrappers."""
    calls, saved = [], {name: getattr(module, name) for name in names}

    def wrap(name, fn):
        def recording(*args, **kwargs):
            calls.append(name)
            return fn(*args, **kwargs)
        return recording

    for name, fn in saved.items():
        setattr(module, name, wrap(name, fn))
    kernels.use(kernels.mode())  # clears the caches
    try:
        yield calls
    finally:
        for name, fn in saved.items():
            setattr(module, name, fn)
        kernels.use(kernels.mode())


def _logits_labels(n, k, scale, seed, dtype):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, k)) * scale).astype(dtype), rng.integers(0, k, n)


# ------------------------------------------------------------------ softmax_xent


@settings(max_examples=40, deadline=None, derandomize=True)
@given(n=st.integers(1, 70), k=st.integers(1, 13), scale=st.sampled_from([0.1, 3.0, 80.0]),
       seed=st.integers(0, 2 ** 16), dtype=st.sampled_from(["float32", "float64"]))
def test_numba_softmax_xent_matches_definition(n, k, scale, seed, dtype):
    """Same results and cache as ``softmax_cross_entropy_forward`` / ``_backward``; ``dloss`` random,
    as a Python float (what the loss object passes) and as a 0-d array."""
    logits, labels = _logits_labels(n, k, scale, seed, dtype)
    loss, (probs, cached_labels) = numba_sx.forward(logits, labels)
    want_loss, (want_probs, want_labels) = SX_FORWARD(logits, labels)
    assert cached_labels is labels and want_labels is labels
    assert loss.shape == () and loss.dtype == probs.dtype == want_loss.dtype == logits.dtype
    np.testing.assert_allclose(probs, want_probs, **_close(dtype))
    np.testing.assert_allclose(loss, want_loss, **_close(dtype))
    rng = np.random.default_rng(seed + 1)
    for dloss in (float(rng.uniform(-3.0, 3.0)), np.asarray(rng.uniform(-3.0, 3.0), dtype)):
        d = numba_sx.backward(dloss, (probs, labels))
        want = SX_BACKWARD(dloss, (want_probs, labels))
        assert d.dtype == want.dtype == logits.dtype
        np.testing.assert_allclose(d, want, **_close(dtype))


def test_numba_softmax_xent_parallel_path_matches_definition():
    logits, labels = _logits_labels(20000, 10, 2.0, 0, "float32")  # above PARALLEL_THRESHOLD
    loss, (probs, _) = numba_sx.forward(logits, labels)
    want_loss, (want_probs, _) = SX_FORWARD(logits, labels)
    np.testing.assert_allclose(probs, want_probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)


def test_softmax_xent_extreme_logits_stay_finite():
    logits = np.array([[1000.0, -1000.0, 0.0], [-1e4, -1e4, -1e4]], dtype=np.float32)
    for forward in (numba_sx.forward, SX_FORWARD):
        loss, (probs, _) = forward(logits, np.array([1, 2]))
        assert np.isfinite(loss) and np.isfinite(probs).all()
        assert abs(float(loss) - (2000.0 + np.log(3.0)) / 2) < 1e-2


def test_softmax_xent_definition_runs_on_strict_and_agrees():
    logits, labels = _logits_labels(6, 4, 1.0, 1, "float64")
    strict = backend.get_device("strict")
    loss, cache = CE.softmax_cross_entropy_forward(strict.asarray(logits), strict.asarray(labels))
    want_loss, (want_probs, _) = numba_sx.forward(logits, labels)
    np.testing.assert_allclose(backend.to_numpy(cache[0]), want_probs, rtol=1e-12)
    np.testing.assert_allclose(float(loss), float(want_loss), rtol=1e-12)
    d = CE.softmax_cross_entropy_backward(strict.asarray(np.asarray(0.3)), cache)
    want = numba_sx.backward(0.3, (want_probs, labels))
    np.testing.assert_allclose(backend.to_numpy(d), want, rtol=1e-12, atol=1e-15)


def test_softmax_xent_dispatch_numba_for_numpy_definition_elsewhere():
    import array_api_strict

    assert CE.softmax_cross_entropy_forward.operation == "softmax_xent.forward"
    assert kernels.DEFINITIONS["softmax_xent.backward"] is SX_BACKWARD
    assert kernels.implementation(np, "softmax_xent") == "numba"
    assert kernels.get("softmax_xent", np) is numba_sx
    assert kernels.get("softmax_xent", array_api_strict) is None
    assert kernels.implementation(array_api_strict, "softmax_xent") == kernels.DEFINITION
    with _kernels("off"):
        assert kernels.get("softmax_xent", np) is None
        assert kernels.implementation(np, "softmax_xent") == kernels.DEFINITION
    with pytest.raises(ValueError, match="unknown kernel"):
        kernels.get("conv9d", np)


def test_softmax_cross_entropy_loss_runs_the_kernel_and_kernels_off_runs_the_definition():
    """The loss object goes through the kernels; with ``kernels.use("off")`` it gives the same numbers
    (to float32 round-off) without them."""
    logits, labels = _logits_labels(33, 7, 3.0, 5, "float32")
    dloss = np.asarray(0.37, np.float32)

    def run():
        loss = CE.SoftmaxCrossEntropy()
        return loss.forward(logits, labels), loss.backward(dloss)

    with _recorded(numba_sx, "forward", "backward") as calls:
        on = run()
    assert calls == ["forward", "backward"]
    with _kernels("off"), _recorded(numba_sx, "forward", "backward") as calls:
        off = run()
    assert calls == []
    for got, want in zip(on, off):
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_allclose(got, want, **_close(np.float32))


def test_numba_softmax_xent_declines_what_it_was_not_written_for():
    """Integer logits, or an empty batch's backward (``dloss / 0``): ``NotImplemented``, the definition runs."""
    assert numba_sx.forward(np.zeros((2, 3), np.int64), np.array([0, 1])) is NotImplemented
    empty = (np.zeros((0, 3), np.float32), np.zeros(0, np.int64))
    assert numba_sx.backward(np.asarray(1.0, np.float32), empty) is NotImplemented
    with np.errstate(divide="ignore"):  # dloss / 0: inf, times no element
        d = CE.softmax_cross_entropy_backward(np.asarray(1.0, np.float32), empty)
    assert d.shape == (0, 3) and d.dtype == np.float32


# ------------------------------------------------------------------ gemm_update


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 9), m=st.integers(1, 9), k=st.integers(1, 9), a_fortran=st.booleans(),
       b_fortran=st.booleans(), alpha=st.sampled_from([-0.3, 1.0]), beta=st.sampled_from([1.0, 0.99, 0.0]),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2 ** 16))
def test_cpu_gemm_update_matches_the_definition(n, m, k, a_fortran, b_fortran, alpha, beta, dtype, seed):
    from npdl.kernels.numba import gemm_update as cpu
    from npdl.optim.sgd import gemm_update_sum

    rng = np.random.default_rng(seed)
    A = np.asarray(rng.standard_normal((n, m)), dtype, order="F" if a_fortran else "C")
    B = np.asarray(rng.standard_normal((n, k)), dtype, order="F" if b_fortran else "C")
    C = rng.standard_normal((m, k)).astype(dtype)
    expected = gemm_update_sum.definition(C.copy(), [(A, B)], alpha, beta)
    with mock.patch.object(cpu, "SMALL_C", 0):  # the BLAS path at these small sizes too
        out = cpu.gemm_update_sum(C, [(A, B)], alpha, beta)
    if out is NotImplemented:  # declined (a one-row or one-column C): the definition runs instead
        assert 1 in C.shape
        out = gemm_update_sum(C, [(A, B)], alpha, beta)
    assert out is C and C.dtype == np.dtype(dtype)  # in place, dtype kept
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(C, expected, rtol=tol, atol=tol)


def test_cpu_gemm_update_uses_blas_and_falls_back_for_odd_layouts(monkeypatch):
    from npdl.kernels.numba import blas
    from npdl.kernels.numba import gemm_update as cpu

    monkeypatch.setattr(cpu, "SMALL_C", 0)

    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((6, 8))[:, ::2], rng.standard_normal((6, 3))  # A: strided columns
    C = np.zeros((4, 3))
    assert not blas.gemm_at_b(C.copy(), A, B, 1.0, 1.0)  # no layout BLAS can read directly...
    assert cpu.gemm_update(C, A, B, 1.0, 1.0) is NotImplemented  # ...so the kernel declines, C untouched
    assert not C.any()
    from npdl.optim.sgd import gemm_update_sum

    gemm_update_sum(C, [(A, B)], 1.0, 1.0)  # and the definition does it
    np.testing.assert_allclose(C, A.T @ B, rtol=1e-12)
    if blas.available():
        A = np.ascontiguousarray(A)
        C2 = np.zeros((4, 3))
        assert blas.gemm_at_b(C2, A, B, 1.0, 1.0)
        np.testing.assert_allclose(C2, A.T @ B, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("beta", [1.0, 0.75])
def test_cpu_gemm_update_at_batch_one_is_a_one_thread_rank_one_update(dtype, beta, monkeypatch):
    """Batch 1 is a rank-1 update done by a one-thread loop (x and y may be strided rows of a
    transposed view), with beta != 1 too; above ONE_THREAD_MAX elements by the same rows on Numba's threads."""
    from npdl.kernels.numba import gemm_update as cpu
    from npdl.kernels.numba import rows

    rng = np.random.default_rng(3)
    A = np.asarray(rng.standard_normal((7, 1)), dtype).T      # (1, 7): a row of an F-ordered view
    B = np.asarray(rng.standard_normal((5, 2)), dtype)[:, :1].T  # (1, 5) with stride 2 items
    C = rng.standard_normal((7, 5)).astype(dtype)
    expected = beta * C.astype("float64") + -0.5 * A.T.astype("float64") @ B.astype("float64")
    loops = {"rank_one": [], "rank_one_parallel": []}
    for name in loops:
        real = getattr(rows, name)
        monkeypatch.setattr(rows, name, lambda *a, _n=name, _r=real: loops[_n].append(a) or _r(*a))
    monkeypatch.setattr(cpu, "SMALL_C", 0)
    assert cpu.gemm_update(C, A, B, -0.5, beta) is C
    assert (len(loops["rank_one"]), len(loops["rank_one_parallel"])) == (1, 0) and C.dtype == np.dtype(dtype)
    assert loops["rank_one"][0][3].dtype == np.dtype(dtype)  # alpha in C's dtype: a float32 loop stays float32
    tol = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(C, expected, rtol=tol, atol=tol)
    monkeypatch.setattr(cpu, "ONE_THREAD_MAX", C.size - 1)  # too large for one thread: the parallel rows
    expected = beta * C.astype("float64") + 0.25 * A.T.astype("float64") @ B.astype("float64")
    assert cpu.gemm_update(C, A, B, 0.25, beta) is C
    assert (len(loops["rank_one"]), len(loops["rank_one_parallel"])) == (1, 1)
    np.testing.assert_allclose(C, expected, rtol=tol, atol=tol)
    assert not cpu.rank_one_update(C, A[0].astype("float16"), B[0], 1.0)  # refused, not miscomputed
    assert not cpu.rank_one_update(np.asfortranarray(C), A[0], B[0], 1.0)  # C must be row-major


@pytest.mark.parametrize("shape", [(128, 127), (1, 20000), (128, 128)])
def test_cpu_gemm_update_leaves_small_products_to_the_definition(shape, monkeypatch):
    """Under SMALL_C elements of C (and for a one-row or one-column C) the kernel declines, C
    untouched, and the decorated function gives the definition's result; from SMALL_C on BLAS does it."""
    from npdl.kernels.numba import blas
    from npdl.kernels.numba import gemm_update as cpu
    from npdl.optim.sgd import gemm_update_sum

    if not blas.available():
        pytest.skip("no CBLAS found in NumPy's BLAS")
    calls = []
    real = cpu.gemm_at_b
    monkeypatch.setattr(cpu, "gemm_at_b", lambda *a: calls.append(a) or real(*a))
    rng = np.random.default_rng(11)
    A = rng.standard_normal((3, shape[0])).astype("float32")
    B = rng.standard_normal((3, shape[1])).astype("float32")
    C = rng.standard_normal(shape).astype("float32")
    before = C.copy()
    expected = gemm_update_sum.definition(C.copy(), [(A, B)], -0.25, 0.5)
    out = cpu.gemm_update_sum(C, [(A, B)], -0.25, 0.5)
    engaged = C.size >= cpu.SMALL_C and 1 not in shape
    assert (out is C) == engaged and len(calls) == int(engaged)
    if not engaged:
        assert out is NotImplemented
        np.testing.assert_array_equal(C, before)
        assert gemm_update_sum(C, [(A, B)], -0.25, 0.5) is C
    np.testing.assert_allclose(C, expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------ activation_backward


@settings(max_examples=40, deadline=None, derandomize=True)
@given(shape=st.lists(st.integers(0, 7), min_size=1, max_size=4).map(tuple), dtype=st.sampled_from(["float32", "float64"]),
       transposed=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_numba_activation_backward_is_bit_identical_to_definition(shape, dtype, transposed, seed):
    """One Numba pass with the definition's operations in its order: the same bits, float32 kept float32.
    Another layout is declined, and the decorated function then gives the definition's result."""
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal(shape).astype(dtype)
    y = rng.uniform(-1.0, 1.0, shape).astype(dtype)
    if y.size:
        y.flat[0] = 0.0  # ReLU's kink
    if transposed and dy.ndim > 1 and dy.size > 1:
        dy, y = dy.T, y.T
    for name in ACTIVATIONS:
        backward = getattr(A, f"{name}_backward")
        assert backward.operation == f"activation_backward.{name}"
        want = backward.definition(dy, y)
        got = getattr(numba_act, name)(dy, y)
        if not (dy.flags.c_contiguous and y.flags.c_contiguous):
            assert got is NotImplemented
            got = backward(dy, y)
        assert got.dtype == want.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, want)


def test_numba_activation_backward_parallel_path_and_special_values():
    from npdl.kernels import numba as numba_kernels

    rng = np.random.default_rng(1)
    n = numba_kernels.ELEMENTWISE_PARALLEL_THRESHOLD + 3  # the prange loop
    dy = rng.standard_normal(n).astype(np.float32)
    y = rng.uniform(-1.0, 1.0, n).astype(np.float32)
    dy[:4] = [np.inf, -np.inf, np.nan, -0.0]
    y[:4] = [-0.5, 0.5, 0.5, -0.5]
    with np.errstate(invalid="ignore"):  # inf * 0 is nan, in both
        for name in ACTIVATIONS:
            np.testing.assert_array_equal(getattr(numba_act, name)(dy, y),
                                          getattr(A, f"{name}_backward").definition(dy, y))


def test_numba_activation_backward_declines_mismatched_arrays():
    dy, y = np.ones((2, 3), np.float32), np.ones((2, 3), np.float64)
    for name in ACTIVATIONS:
        assert getattr(numba_act, name)(dy, y) is NotImplemented
        assert getattr(numba_act, name)(dy, y[:, :2].copy().astype(np.float32)) is NotImplemented


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_layers_run_the_backward_kernel_and_kernels_off_the_definition(name):
    """Sigmoid/Tanh/ReLU layers' backward goes through the ``activation_backward`` kernel; with
    ``kernels.use("off")`` forward and backward give the same numbers without it."""
    from npdl.layers import get_activation

    rng = np.random.default_rng(4)
    x = (rng.standard_normal((6, 9)) * 2).astype(np.float32)
    dy = rng.standard_normal((6, 9)).astype(np.float32)

    def run():
        layer = get_activation(name)
        return layer.forward(x, training=True), layer.backward(dy)

    with _recorded(numba_act, name) as calls:
        y, dx = run()
    assert calls == [name]
    with _kernels("off"), _recorded(numba_act, name) as calls:
        y_off, dx_off = run()
    assert calls == []
    np.testing.assert_allclose(y, y_off, **_close(np.float32))
    np.testing.assert_allclose(dx, dx_off, **_close(np.float32))
    assert dx.dtype == dx_off.dtype == np.float32


# ------------------------------------------------------------ bias_activation

_NUMPY_F = {"sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)), "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0),
            "linear": lambda z: z}


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "linear"])
def test_bias_activation_adds_the_bias_and_respects_overwrite(device, name):
    """``f(x + bias)`` with ``bias`` broadcast over the rows, on every backend (through whatever serves
    there) and as the definition; ``x`` is changed only with ``overwrite=True``, and the definition then
    leaves ``x + bias`` in it. The cache is ``y`` (nothing for linear)."""
    forward = getattr(A, f"{name}_forward")
    f = _NUMPY_F[name]
    g = backend.Generator(device, 3)
    x, b = g.normal((4, 5), dtype="float64"), g.normal((5,), dtype="float64")
    x_np, b_np = backend.to_numpy(x).copy(), backend.to_numpy(b)
    for fn in (forward, getattr(forward, "definition", forward)):
        y, cache = fn(x, bias=b)
        np.testing.assert_allclose(backend.to_numpy(y), f(x_np + b_np), rtol=1e-12, atol=1e-15)
        assert cache is (None if name == "linear" else y)
        np.testing.assert_array_equal(backend.to_numpy(x), x_np)  # overwrite=False: untouched
        np.testing.assert_allclose(backend.to_numpy(fn(x)[0]), f(x_np), rtol=1e-12, atol=1e-15)
        scratch = g.normal((4, 5), dtype="float64")
        scratch[...] = x
        y, _ = fn(scratch, bias=b, overwrite=True)
        np.testing.assert_allclose(backend.to_numpy(y), f(x_np + b_np), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(backend.to_numpy(scratch), x_np + b_np, rtol=1e-15)  # the definition's in-place add


def test_bias_activation_cpu_kernels_are_sigmoid_and_tanh():
    """On NumPy Numba serves the float32 sigmoid and tanh forwards (tests/test_fast_tanh.py checks them);
    ReLU has no CPU kernel (NumPy's maximum is one pass already), so its definition serves."""
    assert kernels.implementation(np, "bias_activation") == ("numba" if kernels.enabled() else kernels.DEFINITION)
    x = np.zeros((2, 3), np.float32)
    if kernels.enabled():
        assert kernels.kernel_for("bias_activation.relu", x) is None
        assert all(kernels.kernel_for(f"bias_activation.{name}", x) is not None for name in ("sigmoid", "tanh"))
    for name in ACTIVATIONS:
        assert getattr(A, f"{name}_forward").operation == f"bias_activation.{name}"


def test_float32_stays_float32_through_bias_activation():
    x, b = np.ones((2, 3), np.float32), np.ones(3, np.float32)
    for name in ("sigmoid", "tanh", "relu", "linear"):
        assert getattr(A, f"{name}_forward")(x, bias=b)[0].dtype == np.float32


def test_layers_fuse_the_bias_into_the_activation(monkeypatch):
    """Dense and the autoencoders hand their fresh products and biases to the ``ELEMENTWISE`` forwards
    (``overwrite=True``), and give the same numbers as adding the bias first."""
    from npdl.layers import Dense, TiedAutoencoder

    calls = []
    forward, backward = A.ELEMENTWISE["sigmoid"]

    def recording(x, **kwargs):
        calls.append(kwargs)
        return forward(x, **kwargs)

    monkeypatch.setitem(A.ELEMENTWISE, "sigmoid", (recording, backward))
    ae = TiedAutoencoder(4, 3, encoder="sigmoid", decoder="sigmoid", dtype="float64")
    ae.params["b"][...] = [0.5, -1.0, 2.0]
    ae.params["b_prime"][...] = [0.1, 0.2, -0.3, 0.4]
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    z = ae.forward(x, training=True)
    assert [sorted(c) for c in calls] == [["bias", "overwrite"]] * 2 and all(c["overwrite"] for c in calls)
    sig = _NUMPY_F["sigmoid"]
    W, p = ae.params["W"], ae.params
    np.testing.assert_allclose(z, sig(sig(x @ W + p["b"]) @ W.T + p["b_prime"]), rtol=1e-12)
    calls.clear()
    dense = Dense(4, 3, activation="sigmoid", dtype="float64", rng=backend.Generator("cpu", 0))
    dense.params["b"][...] = [0.3, -0.2, 0.1]
    y = dense.forward(x, training=True)
    assert len(calls) == 1 and calls[0]["bias"] is dense.params["b"]
    np.testing.assert_allclose(y, sig(x @ dense.params["W"] + dense.params["b"]), rtol=1e-12)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "linear"])
def test_dense_with_activation_same_with_kernels_off(activation):
    """A Dense layer with a fused activation gives the same output and gradients with every kernel off."""
    from npdl.layers import Dense

    rng = np.random.default_rng(6)
    x, dy = rng.standard_normal((7, 5)).astype(np.float32), rng.standard_normal((7, 4)).astype(np.float32)
    results = []
    for mode in ("auto", "off"):
        with _kernels(mode):
            layer = Dense(5, 4, activation=activation, rng=backend.Generator("cpu", 1))
            layer.params["b"][...] = rng.standard_normal(4).astype(np.float32) if not results else results[0][2]
            y = layer.forward(x, training=True)
            results.append((y, layer.backward(dy), layer.params["b"].copy()))
    for got, want in zip(results[0][:2], results[1][:2]):
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_allclose(got, want, **_close(np.float32))


def test_gemm_update_on_every_device(device):
    from npdl.optim.sgd import gemm_update_sum

    g = backend.Generator(device, 0)
    A, B, C = g.normal((5, 4), dtype="float64"), g.normal((5, 3), dtype="float64"), g.normal((4, 3), dtype="float64")
    expected = 0.5 * backend.to_numpy(C) - 2.0 * backend.to_numpy(A).T @ backend.to_numpy(B)
    out = gemm_update_sum(C, [(A, B)], -2.0, 0.5)  # the kernel where one serves, else the definition
    assert out is C
    np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=1e-12)


def test_direct_blas_is_numpys_own():
    """Importing Numba loads SciPy's OpenBLAS too; the fused update must call NumPy's (one thread pool)."""
    from npdl.kernels.numba import blas

    if not blas.available():
        pytest.skip("no CBLAS symbols found in the loaded BLAS libraries")
    try:
        version = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["version"]
    except Exception:  # noqa: BLE001 -- NumPy without dict-mode config
        pytest.skip("NumPy does not report its BLAS version")
    assert version.split(".")[:3] == blas.functions()["library"].split()[1].split(".")[:3]


# ------------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(backend.cupy_or_none() is None, reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_softmax_xent_matches_definition(dtype):
    """The kernel the dispatch picks for CuPy arrays (numba.cuda where it can compile), with a random
    ``dloss`` as the loss object passes it (a Python float) and as a 0-d device array."""
    import cupy

    xp = backend.get_device("cuda:0").xp
    assert kernels.implementation(xp, "softmax_xent") == ("cuda" if kernels.cuda_available() else kernels.DEFINITION)
    impl = kernels.get("softmax_xent", xp)
    if impl is None:
        pytest.skip("no GPU kernel for softmax_xent here (numba.cuda cannot compile)")
    rng = np.random.default_rng(7)
    for n, k, scale in [(1, 1, 1.0), (7, 10, 3.0), (300, 13, 80.0)]:
        logits, labels = _logits_labels(n, k, scale, n, dtype)
        dev_labels = cupy.asarray(labels)
        loss, (probs, cached_labels) = impl.forward(cupy.asarray(logits), dev_labels)
        want_loss, (want_probs, _) = SX_FORWARD(logits, labels)
        assert cached_labels is dev_labels
        assert loss.shape == () and loss.dtype == probs.dtype == logits.dtype
        np.testing.assert_allclose(cupy.asnumpy(probs), want_probs, **_close(dtype))
        np.testing.assert_allclose(float(loss), float(want_loss), **_close(dtype))
        value = float(rng.uniform(-3.0, 3.0))
        for dloss, host_dloss in ((value, value), (cupy.asarray(value, dtype=dtype), np.asarray(value, dtype=dtype))):
            d = impl.backward(dloss, (probs, dev_labels))
            np.testing.assert_allclose(cupy.asnumpy(d), SX_BACKWARD(host_dloss, (want_probs, labels)), **_close(dtype))


@pytest.mark.gpu
@pytest.mark.skipif(backend.cupy_or_none() is None, reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("impl", ["cuda", "cupy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_activation_kernels_match_definitions(impl, dtype):
    """Both GPU versions (CuPy's ElementwiseKernels, the default; numba.cuda, NPDL_KERNELS=cuda) of the
    activation backward and bias + activation kernels on CuPy arrays, against the definitions on NumPy
    arrays: with and without a bias, in place too."""
    import importlib

    import cupy

    if impl == "cuda" and not kernels.cuda_available():
        pytest.skip("numba.cuda cannot compile for this GPU (no libNVVM?)")
    act, bias_act = (importlib.import_module(f"npdl.kernels.{impl}.{op}")
                     for op in ("activation_backward", "bias_activation"))
    tol = _close(dtype)
    rng = np.random.default_rng(3)
    dy, y = rng.standard_normal((64, 33)).astype(dtype), rng.uniform(-1, 1, (64, 33)).astype(dtype)
    for name in ACTIVATIONS:
        got = getattr(act, name)(cupy.asarray(dy), cupy.asarray(y))
        np.testing.assert_allclose(cupy.asnumpy(got), getattr(A, f"{name}_backward").definition(dy, y), **tol)
    x, b = (rng.standard_normal((4, 16, 33)) * 3).astype(dtype), rng.standard_normal(33).astype(dtype)
    for name in ACTIVATIONS:
        definition = getattr(A, f"{name}_forward").definition
        want, _ = definition(x, bias=b)
        y_dev, cache = getattr(bias_act, name)(cupy.asarray(x), bias=cupy.asarray(b))
        assert cache is y_dev
        np.testing.assert_allclose(cupy.asnumpy(y_dev), want, **tol)
        x_dev = cupy.asarray(x)
        out, _ = getattr(bias_act, name)(x_dev, bias=cupy.asarray(b), overwrite=True)
        np.testing.assert_allclose(cupy.asnumpy(out), want, **tol)
        assert out.data.ptr == x_dev.data.ptr  # written over the product, as asked
        no_bias = getattr(bias_act, name)(cupy.asarray(x))
        if no_bias is not NotImplemented:  # tanh and ReLU without a bias: one CuPy launch, declined
            np.testing.assert_allclose(cupy.asnumpy(no_bias[0]), definition(x)[0], **tol)


@pytest.mark.gpu
@pytest.mark.skipif(backend.cupy_or_none() is None, reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("impl", ["cuda", "cupy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_optimizer_update_kernels_match_the_definition(impl, dtype):
    """Both GPU versions of the optimizer rules (CuPy's ElementwiseKernels, the default; numba.cuda,
    NPDL_KERNELS=cuda) on CuPy arrays, over a whole model's parameters, several steps."""
    import importlib

    import cupy

    if impl == "cuda" and not kernels.cuda_available():
        pytest.skip("numba.cuda cannot compile for this GPU (no libNVVM?)")
    opt = importlib.import_module(f"npdl.kernels.{impl}.optimizer_update")
    from npdl.optim import base as ref_opt  # update_all.definition and the rules of npdl.optim

    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-13}
    rng = np.random.default_rng(3)
    shapes = [(33, 17), (17,), (5, 3, 2), (1,)]
    for rule, scalars in {"sgd": (0.1,), "momentum": (0.1, 0.9), "nesterov": (0.1, 0.9),
                          "rmsprop": (0.01, 0.9, 1e-7), "adam": (0.9, 0.999, 1e-7, 0.1, 0.05)}.items():
        n_slots = {"sgd": 0, "adam": 2}.get(rule, 1)
        ps = [rng.standard_normal(s).astype(dtype) for s in shapes]
        gs = [rng.standard_normal(s).astype(dtype) for s in shapes]
        slots = [[np.abs(rng.standard_normal(s)).astype(dtype) for s in shapes] for _ in range(n_slots)]
        dev = [[cupy.asarray(x) for x in group] for group in (ps, gs, *slots)]
        for _ in range(3):
            opt.update_all(rule, dev[0], dev[1], dev[2:], scalars)
            ref_opt.update_all.definition(rule, ps, gs, slots, scalars)
        for got_group, want_group in zip([dev[0], *dev[2:]], [ps, *slots]):
            for got, want in zip(got_group, want_group):
                np.testing.assert_allclose(cupy.asnumpy(got), want, **tol)


# ------------------------------------------------------------------ simple_rnn, lstm_cell


def _loop_tol(dtype):
    """Whole loops over up to 7 steps: float64 to round-off; float32 fitted (worst |a - b| / (1 + |b|)
    measured 7e-7 over 300 random cases, from the definition's float32 slope of tanh against the kernel's)."""
    return {"rtol": 1e-12, "atol": 1e-12} if dtype == "float64" else {"rtol": 5e-6, "atol": 5e-6}


def _assert_all_close(got, want, dtype, what):
    assert len(got) == len(want), what
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.dtype == b.dtype == np.dtype(dtype) and a.shape == b.shape, f"{what}[{i}]"
        np.testing.assert_allclose(a, b, err_msg=f"{what}[{i}]", **_loop_tol(dtype))


def _rnn_inputs(rng, T, N, H, K, dtype):
    """``(Z_in (T, N, K), Wh (H, K), dy (N, T, H), h0, c0 (N, H))``, all random (never ones)."""
    Z_in = (rng.standard_normal((T, N, K)) * 1.5).astype(dtype)
    Wh = (rng.standard_normal((H, K)) * 0.7).astype(dtype)
    dy = rng.standard_normal((N, T, H)).astype(dtype)
    return Z_in, Wh, dy, rng.standard_normal((N, H)).astype(dtype), rng.standard_normal((N, H)).astype(dtype)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(T=st.integers(1, 7), N=st.integers(1, 5), H=st.integers(1, 6), trunc=st.sampled_from([None, 1, 2, 3, 50]),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2 ** 16))
def test_numba_simple_rnn_loops_equal_their_definitions(T, N, H, trunc, dtype, seed):
    """Forward (states and tanh's caches) and backward through time, every step's output gradient
    (a strided (T, N, H) view, as the layer passes it) or the last one's, with and without truncation."""
    from npdl.kernels.numba import simple_rnn as fast
    from npdl.layers.simple_rnn import simple_rnn_backward_sequence as backward, simple_rnn_forward_sequence as forward

    A_in, Wh, dy, h0, _ = _rnn_inputs(np.random.default_rng(seed), T, N, H, H, dtype)
    hs, acts = forward.definition(A_in, Wh, h0)
    got = fast.forward_sequence(A_in, Wh, h0)
    _assert_all_close([got[0], *got[1]], [hs, *acts], dtype, "forward (hs, caches)")
    for dy_seq, dy_last in ((dy.transpose(1, 0, 2), None), (None, dy[:, -1])):
        _assert_all_close(fast.backward_sequence(dy_seq, dy_last, hs, acts, Wh, "tanh", trunc),
                          backward.definition(dy_seq, dy_last, hs, acts, Wh, "tanh", trunc), dtype,
                          f"backward (dA, dh0), {'every step' if dy_last is None else 'last step'}")


def test_simple_rnn_kernel_serves_tanh_and_declines_the_rest():
    """The dispatch reaches the Numba loops for tanh; other activations and mixed dtypes are declined,
    and the decorated functions then give exactly the definition's numbers."""
    from npdl.kernels.numba import simple_rnn as fast
    from npdl.layers.simple_rnn import simple_rnn_backward_sequence as backward, simple_rnn_forward_sequence as forward

    A_in, Wh, dy, h0, _ = _rnn_inputs(np.random.default_rng(0), 4, 3, 5, 5, "float64")
    assert kernels.get("simple_rnn", np) is fast
    assert kernels.kernel_for("simple_rnn.forward_sequence", A_in) is fast.forward_sequence
    assert kernels.kernel_for("simple_rnn.backward_sequence", A_in) is fast.backward_sequence
    assert fast.forward_sequence(A_in.astype("float32"), Wh, h0) is NotImplemented
    for activation in ("sigmoid", "relu", "linear"):
        hs, acts = forward.definition(A_in, Wh, h0, activation)
        assert fast.forward_sequence(A_in, Wh, h0, activation) is NotImplemented
        got_hs, _ = forward(A_in, Wh, h0, activation)
        np.testing.assert_array_equal(got_hs, hs)
        assert fast.backward_sequence(None, dy[:, -1], hs, acts, Wh, activation, 2) is NotImplemented
        for a, b in zip(backward(None, dy[:, -1], hs, acts, Wh, activation, 2),
                        backward.definition(None, dy[:, -1], hs, acts, Wh, activation, 2)):
            np.testing.assert_array_equal(a, b)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(T=st.integers(1, 7), N=st.integers(1, 5), H=st.integers(1, 6), trunc=st.sampled_from([None, 1, 2, 3, 50]),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2 ** 16))
def test_numba_lstm_loops_equal_their_definitions(T, N, H, trunc, dtype, seed):
    """Forward (hs, cs, gates, tanh(c)) and backward through time (dZ, dh0, dc0), every step's
    output gradient or the last one's, with and without truncation."""
    from npdl.kernels.numba import lstm_cell as fast
    from npdl.layers.lstm import lstm_backward_sequence as backward, lstm_forward_sequence as forward

    Z_in, Wh, dy, h0, c0 = _rnn_inputs(np.random.default_rng(seed), T, N, H, 4 * H, dtype)
    hs, cs, gates, tanh_cs = want = forward.definition(Z_in, Wh, h0, c0)
    _assert_all_close(fast.forward_sequence(Z_in, Wh, h0, c0), want, dtype, "forward (hs, cs, gates, tanh_cs)")
    for dy_seq, dy_last in ((dy.transpose(1, 0, 2), None), (None, dy[:, -1])):
        _assert_all_close(fast.backward_sequence(dy_seq, dy_last, gates, tanh_cs, cs, Wh, trunc),
                          backward.definition(dy_seq, dy_last, gates, tanh_cs, cs, Wh, trunc), dtype,
                          f"backward (dZ, dh0, dc0), {'every step' if dy_last is None else 'last step'}")


def test_lstm_kernel_dispatch_on_the_cpu():
    """NumPy arrays: the whole loops are Numba's (found from the gates when ``dy_seq`` is None); the
    single steps have no CPU kernel, so the definition's loops run the definition's steps."""
    from npdl.kernels.numba import lstm_cell as fast
    from npdl.layers import lstm as L

    Z_in, Wh, dy, h0, c0 = _rnn_inputs(np.random.default_rng(1), 5, 2, 3, 12, "float64")
    assert kernels.get("lstm_cell", np) is fast
    assert kernels.kernel_for("lstm_cell.forward_sequence", Z_in) is fast.forward_sequence
    assert kernels.kernel_for("lstm_cell.backward_step", Z_in) is None
    assert kernels.DEFINITIONS["lstm_cell.backward_step"] is L.lstm_backward_step.definition
    hs, cs, gates, tanh_cs = L.lstm_forward_sequence(Z_in, Wh, h0, c0)
    _assert_all_close(L.lstm_backward_sequence(None, dy[:, -1], gates, tanh_cs, cs, Wh, 2),
                      L.lstm_backward_sequence.definition(None, dy[:, -1], gates, tanh_cs, cs, Wh, 2), "float64",
                      "backward through the dispatch")
    assert fast.forward_sequence(Z_in.astype("float32"), Wh, h0, c0) is NotImplemented


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm_cell"])
@pytest.mark.parametrize("trunc", [None, 2])
def test_float32_loops_in_one_numba_call_give_the_python_loops_bits(cell, trunc, monkeypatch):
    """Where NumPy's CBLAS can be called directly, the float32 loops are one Numba call each that calls
    ``cblas_sgemm`` itself; without it, the same loops step in Python and call NumPy's ``matmul``. Both
    reach the same sgemm with the same arguments, so the results are the same bits: states, caches and
    every gradient, from every step's output gradient (a strided view) or the last one's."""
    import importlib

    fast = importlib.import_module(f"npdl.kernels.numba.{cell}")
    if fast.sgemm() is None:
        pytest.skip("no CBLAS found in NumPy's BLAS")
    T, N, H = 6, 5, 7
    K = 4 * H if cell == "lstm_cell" else H
    Z_in, Wh, dy, h0, c0 = _rnn_inputs(np.random.default_rng(7), T, N, H, K, "float32")
    first = (h0, c0) if cell == "lstm_cell" else (h0,)

    def run():
        fwd = fast.forward_sequence(Z_in, Wh, *first)
        fwd = fwd if cell == "lstm_cell" else (fwd[0],)
        caches = (fwd[2], fwd[3], fwd[1]) if cell == "lstm_cell" else (fwd[0], list(fwd[0][1:]))
        extra = (Wh, trunc) if cell == "lstm_cell" else (Wh, "tanh", trunc)
        bwd = [fast.backward_sequence(dy_seq, dy_last, *caches, *extra)
               for dy_seq, dy_last in ((dy.transpose(1, 0, 2), None), (None, dy[:, -1]))]
        return [*fwd, *bwd[0], *bwd[1]]

    calls = []
    for name in ("_forward32", "_backward32"):
        compiled = getattr(fast, name)
        monkeypatch.setattr(fast, name, lambda *a, _f=compiled, _n=name: calls.append(_n) or _f(*a))
    one_call = run()
    assert calls == ["_forward32", "_backward32", "_backward32"]
    monkeypatch.setattr(fast, "sgemm", lambda: None)
    per_step = run()
    assert len(calls) == 3 and len(one_call) == len(per_step)
    for i, (a, b) in enumerate(zip(one_call, per_step)):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b, err_msg=f"{cell} result {i}")
