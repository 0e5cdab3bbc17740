"""Every compiled kernel agrees with its array-API reference."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npdl import backend, kernels
from npdl.kernels.numba import softmax_xent as numba_sx
from npdl.kernels.reference import softmax_xent as ref_sx


def _logits_labels(n, k, scale, seed, dtype):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, k)) * scale).astype(dtype), rng.integers(0, k, n)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 70), k=st.integers(1, 13), scale=st.sampled_from([0.1, 3.0, 80.0]),
       seed=st.integers(0, 2 ** 16), dtype=st.sampled_from(["float32", "float64"]))
def test_numba_softmax_xent_matches_reference(n, k, scale, seed, dtype):
    logits, labels = _logits_labels(n, k, scale, seed, dtype)
    loss, probs = numba_sx.forward(logits, labels)
    loss_ref, probs_ref = ref_sx.forward(logits, labels)
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert probs.dtype == logits.dtype and loss.dtype == logits.dtype
    np.testing.assert_allclose(probs, probs_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(loss, loss_ref, rtol=tol, atol=tol)
    dloss = np.asarray(0.7, dtype)
    d = numba_sx.backward(dloss, probs, labels)
    d_ref = ref_sx.backward(dloss, probs_ref, labels)
    assert d.dtype == logits.dtype
    np.testing.assert_allclose(d, d_ref, rtol=tol, atol=tol)


def test_parallel_path_matches_reference():
    logits, labels = _logits_labels(20000, 10, 2.0, 0, "float32")  # above PARALLEL_THRESHOLD
    loss, probs = numba_sx.forward(logits, labels)
    loss_ref, probs_ref = ref_sx.forward(logits, labels)
    np.testing.assert_allclose(probs, probs_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-5)


def test_extreme_logits_stay_finite():
    logits = np.array([[1000.0, -1000.0, 0.0], [-1e4, -1e4, -1e4]], dtype=np.float32)
    for impl in (numba_sx, ref_sx):
        loss, probs = impl.forward(logits, np.array([1, 2]))
        assert np.isfinite(loss) and np.isfinite(probs).all()
        assert abs(float(loss) - (2000.0 + np.log(3.0)) / 2) < 1e-2


def test_reference_runs_on_strict_and_agrees():
    logits, labels = _logits_labels(6, 4, 1.0, 1, "float64")
    strict = backend.get_device("strict")
    loss, probs = ref_sx.forward(strict.asarray(logits), strict.asarray(labels))
    loss_np, probs_np = numba_sx.forward(logits, labels)
    np.testing.assert_allclose(backend.to_numpy(probs), probs_np, rtol=1e-12)


def test_dispatch_picks_numba_for_numpy_and_reference_elsewhere():
    import array_api_strict

    assert kernels.implementation(np) == "numba"
    assert kernels.get("softmax_xent", np) is numba_sx
    assert kernels.get("softmax_xent", array_api_strict) is ref_sx
    kernels.use("reference")
    try:
        assert kernels.get("softmax_xent", np) is ref_sx
    finally:
        kernels.use(None)
    with pytest.raises(ValueError, match="unknown kernel"):
        kernels.get("conv9d", np)


# ------------------------------------------------------------------ gemm_update


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 9), m=st.integers(1, 9), k=st.integers(1, 9), a_fortran=st.booleans(),
       b_fortran=st.booleans(), alpha=st.sampled_from([-0.3, 1.0]), beta=st.sampled_from([1.0, 0.99, 0.0]),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2 ** 16))
def test_cpu_gemm_update_matches_reference(n, m, k, a_fortran, b_fortran, alpha, beta, dtype, seed):
    from npdl.kernels.numba import gemm_update as cpu
    from npdl.kernels.reference import gemm_update as ref

    rng = np.random.default_rng(seed)
    A = np.asarray(rng.standard_normal((n, m)), dtype, order="F" if a_fortran else "C")
    B = np.asarray(rng.standard_normal((n, k)), dtype, order="F" if b_fortran else "C")
    C = rng.standard_normal((m, k)).astype(dtype)
    expected = ref.gemm_update(C.copy(), A, B, alpha, beta)
    out = cpu.gemm_update(C, A, B, alpha, beta)
    assert out is C and C.dtype == np.dtype(dtype)  # in place, dtype kept
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(C, expected, rtol=tol, atol=tol)


def test_cpu_gemm_update_uses_blas_and_falls_back_for_odd_layouts():
    from npdl.kernels.numba import blas
    from npdl.kernels.numba import gemm_update as cpu

    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((6, 8))[:, ::2], rng.standard_normal((6, 3))  # A: strided columns
    C = np.zeros((4, 3))
    assert not blas.gemm_at_b(C.copy(), A, B, 1.0, 1.0)  # no layout BLAS can read directly...
    cpu.gemm_update(C, A, B, 1.0, 1.0)  # ...so the reference does it
    np.testing.assert_allclose(C, A.T @ B, rtol=1e-12)
    if blas.available():
        A = np.ascontiguousarray(A)
        C2 = np.zeros((4, 3))
        assert blas.gemm_at_b(C2, A, B, 1.0, 1.0)
        np.testing.assert_allclose(C2, A.T @ B, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cpu_gemm_update_at_batch_one_is_a_blas_rank_one_update(dtype, monkeypatch):
    """Batch 1 goes through GER (x and y may be a strided row of a transposed view), same result."""
    from npdl.kernels.numba import blas
    from npdl.kernels.numba import gemm_update as cpu

    if not blas.functions().get("ger"):
        pytest.skip("the loaded BLAS has no cblas_?ger")
    rng = np.random.default_rng(3)
    A = np.asarray(rng.standard_normal((7, 1)), dtype).T      # (1, 7): a row of an F-ordered view
    B = np.asarray(rng.standard_normal((5, 2)), dtype)[:, :1].T  # (1, 5) with stride 2 items
    C = rng.standard_normal((7, 5)).astype(dtype)
    expected = C + -0.5 * A.T.astype("float64") @ B.astype("float64")
    calls = []
    real_ger = cpu.ger
    monkeypatch.setattr(cpu, "ger", lambda *a: calls.append(a) or real_ger(*a))
    cpu.gemm_update(C, A, B, -0.5, 1.0)
    assert len(calls) == 1 and C.dtype == np.dtype(dtype)
    np.testing.assert_allclose(C, expected, rtol=1e-5 if dtype == "float32" else 1e-12)
    # beta != 1 is not a rank-1 update: GEMM (or the reference) does it
    cpu.gemm_update(C, A, B, 1.0, 0.5)
    assert len(calls) == 1
    assert not blas.ger(C, A[0].astype("float16"), B[0], 1.0)  # dtype mismatch: refused, not miscomputed


# ------------------------------------------------------------ activation_backward


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 7), min_size=1, max_size=4).map(tuple), dtype=st.sampled_from(["float32", "float64"]),
       transposed=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_cpu_activation_backward_is_bit_identical_to_reference(shape, dtype, transposed, seed):
    """One Numba pass with the reference's operations in its order: the same bits, float32 kept float32."""
    from npdl.kernels.numba import activation_backward as cpu
    from npdl.kernels.reference import activation_backward as ref

    rng = np.random.default_rng(seed)
    dy = rng.standard_normal(shape).astype(dtype)
    y = rng.uniform(-1.0, 1.0, shape).astype(dtype)
    if y.size:
        y.flat[0] = 0.0  # ReLU's kink
    if transposed:  # another layout: the kernel hands it to the reference
        dy, y = dy.T, y.T
    for name in ("sigmoid", "tanh", "relu"):
        got, want = getattr(cpu, name)(dy, y), getattr(ref, name)(dy, y)
        assert got.dtype == want.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, want)


def test_cpu_activation_backward_parallel_path_and_special_values():
    from npdl.kernels import numba as numba_kernels
    from npdl.kernels.numba import activation_backward as cpu
    from npdl.kernels.reference import activation_backward as ref

    rng = np.random.default_rng(1)
    n = numba_kernels.PARALLEL_THRESHOLD + 3  # the prange loop
    dy = rng.standard_normal(n).astype(np.float32)
    y = rng.uniform(-1.0, 1.0, n).astype(np.float32)
    dy[:4] = [np.inf, -np.inf, np.nan, -0.0]
    y[:4] = [-0.5, 0.5, 0.5, -0.5]
    with np.errstate(invalid="ignore"):  # inf * 0 is nan, in both
        for name in ("sigmoid", "tanh", "relu"):
            np.testing.assert_array_equal(getattr(cpu, name)(dy, y), getattr(ref, name)(dy, y))


def test_activation_layers_use_the_kernel(monkeypatch):
    """Sigmoid/Tanh/ReLU backward go through kernels.get("activation_backward", xp)."""
    from npdl.layers import get_activation

    calls = []
    real_get = kernels.get
    monkeypatch.setattr(kernels, "get", lambda op, xp: calls.append(op) or real_get(op, xp))
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    for name in ("sigmoid", "tanh", "relu"):
        layer = get_activation(name)
        layer.forward(x, training=True)
        layer.backward(np.ones_like(x))
    assert calls.count("activation_backward") == 3


# ------------------------------------------------------------ bias_activation


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "linear"])
def test_reference_bias_activation_adds_the_bias_and_respects_overwrite(device, name):
    """``f(a + b)`` with ``b`` broadcast over the rows, on every backend; ``a`` is changed only
    with ``overwrite=True``, and then holds ``a + b`` (the reference adds in place)."""
    from npdl.kernels.reference import bias_activation as ref

    f = {"sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)), "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0),
         "linear": lambda z: z}[name]
    g = backend.Generator(device, 3)
    a, b = g.normal((4, 5), dtype="float64"), g.normal((5,), dtype="float64")
    a_np, b_np = backend.to_numpy(a).copy(), backend.to_numpy(b)
    y = getattr(ref, name)(a, b)
    np.testing.assert_allclose(backend.to_numpy(y), f(a_np + b_np), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(backend.to_numpy(a), a_np)  # overwrite=False: untouched
    np.testing.assert_allclose(backend.to_numpy(getattr(ref, name)(a)), f(a_np), rtol=1e-12, atol=1e-15)
    y = getattr(ref, name)(a, b, overwrite=True)
    np.testing.assert_allclose(backend.to_numpy(y), f(a_np + b_np), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(backend.to_numpy(a), a_np + b_np, rtol=1e-15)


def test_cpu_bias_activation_is_the_reference():
    """On NumPy the reference serves (a Numba loop without SVML lost 10x, see the module)."""
    from npdl.kernels.numba import bias_activation as cpu
    from npdl.kernels.reference import bias_activation as ref

    assert kernels.get("bias_activation", np) is cpu or kernels.implementation(np, "bias_activation") == "reference"
    for name in ("sigmoid", "tanh", "relu", "linear"):
        assert getattr(cpu, name) is getattr(ref, name)


def test_float32_stays_float32_through_bias_activation():
    from npdl.kernels.reference import bias_activation as ref

    a, b = np.ones((2, 3), np.float32), np.ones(3, np.float32)
    for name in ("sigmoid", "tanh", "relu", "linear"):
        assert getattr(ref, name)(a, b).dtype == np.float32


def test_layers_fuse_the_bias_into_the_activation(monkeypatch):
    """The activation forwards go through kernels.get("bias_activation", xp); the autoencoders hand their
    fresh products and biases to it, and give the same numbers as adding the bias first."""
    from npdl.layers import TiedAutoencoder, get_activation

    calls = []
    real_get = kernels.get
    monkeypatch.setattr(kernels, "get", lambda op, xp: calls.append(op) or real_get(op, xp))
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    for name in ("sigmoid", "tanh", "relu"):
        get_activation(name).forward(x, training=True)
    assert calls.count("bias_activation") == 3
    calls.clear()
    ae = TiedAutoencoder(4, 3, encoder="sigmoid", decoder="sigmoid", dtype="float64")
    ae.params["b"][...] = [0.5, -1.0, 2.0]
    ae.params["b_prime"][...] = [0.1, 0.2, -0.3, 0.4]
    x64 = x.astype(np.float64)
    z = ae.forward(x64, training=True)
    assert calls.count("bias_activation") == 2
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    W, p = ae.params["W"], ae.params
    np.testing.assert_allclose(z, sig(sig(x64 @ W + p["b"]) @ W.T + p["b_prime"]), rtol=1e-12)


def test_reference_gemm_update_on_strict(device):
    from npdl.kernels.reference import gemm_update as ref

    g = backend.Generator(device, 0)
    A, B, C = g.normal((5, 4), dtype="float64"), g.normal((5, 3), dtype="float64"), g.normal((4, 3), dtype="float64")
    expected = 0.5 * backend.to_numpy(C) - 2.0 * backend.to_numpy(A).T @ backend.to_numpy(B)
    impl = kernels.get("gemm_update", backend.namespace(C))
    out = impl.gemm_update(C, A, B, -2.0, 0.5)
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
def test_gpu_softmax_xent_matches_reference(dtype):
    """The kernel the dispatch picks for CuPy arrays (numba.cuda where it can compile), with
    ``dloss`` as the loss layer passes it (a Python float) and as a 0-d device array."""
    import cupy

    xp = backend.get_device("cuda:0").xp
    assert kernels.implementation(xp, "softmax_xent") == ("cuda" if kernels.cuda_available() else "reference")
    impl = kernels.get("softmax_xent", xp)
    for n, k, scale in [(1, 1, 1.0), (7, 10, 3.0), (300, 13, 80.0)]:
        logits, labels = _logits_labels(n, k, scale, n, dtype)
        loss, probs = impl.forward(cupy.asarray(logits), cupy.asarray(labels))
        loss_ref, probs_ref = ref_sx.forward(logits, labels)
        tol = 1e-5 if dtype == "float32" else 1e-12
        assert loss.shape == () and loss.dtype == probs.dtype == logits.dtype
        np.testing.assert_allclose(cupy.asnumpy(probs), probs_ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(float(loss), float(loss_ref), rtol=tol, atol=tol)
        for dloss, dloss_ref in ((1.0, 1.0), (cupy.asarray(0.7, dtype=dtype), np.asarray(0.7, dtype=dtype))):
            d = impl.backward(dloss, probs, cupy.asarray(labels))
            np.testing.assert_allclose(cupy.asnumpy(d), ref_sx.backward(dloss_ref, probs_ref, labels), rtol=tol,
                                       atol=tol)


@pytest.mark.gpu
@pytest.mark.skipif(backend.cupy_or_none() is None, reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("impl", ["cuda", "cupy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_elementwise_kernels_match_reference(impl, dtype):
    """Both GPU versions of the elementwise kernels (numba.cuda, the default; CuPy's ElementwiseKernels,
    NPDL_KERNELS=cupy) on CuPy arrays: activation backward, bias + activation (in place too), and
    the optimizer rules over a whole model's parameters, several steps."""
    import importlib

    import cupy

    if impl == "cuda" and not kernels.cuda_available():
        pytest.skip("numba.cuda cannot compile for this GPU (no libNVVM?)")
    act, bias_act, opt = (importlib.import_module(f"npdl.kernels.{impl}.{op}")
                          for op in ("activation_backward", "bias_activation", "optimizer_update"))
    from npdl.kernels.reference import activation_backward as ref_act, bias_activation as ref_bias_act
    from npdl.kernels.reference import optimizer_update as ref_opt

    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-13}
    rng = np.random.default_rng(3)
    dy, y = rng.standard_normal((64, 33)).astype(dtype), rng.uniform(-1, 1, (64, 33)).astype(dtype)
    for name in ("sigmoid", "tanh", "relu"):
        got = getattr(act, name)(cupy.asarray(dy), cupy.asarray(y))
        np.testing.assert_allclose(cupy.asnumpy(got), getattr(ref_act, name)(dy, y), **tol)
    a, b = (rng.standard_normal((4, 16, 33)) * 3).astype(dtype), rng.standard_normal(33).astype(dtype)
    for name in ("sigmoid", "tanh", "relu"):
        want = getattr(ref_bias_act, name)(a, b)
        np.testing.assert_allclose(cupy.asnumpy(getattr(bias_act, name)(cupy.asarray(a), cupy.asarray(b))), want, **tol)
        a_dev = cupy.asarray(a)
        out = getattr(bias_act, name)(a_dev, cupy.asarray(b), overwrite=True)
        np.testing.assert_allclose(cupy.asnumpy(out), want, **tol)
        assert out.data.ptr == a_dev.data.ptr  # written over the product, as asked
        np.testing.assert_allclose(cupy.asnumpy(getattr(bias_act, name)(cupy.asarray(a))),
                                   getattr(ref_bias_act, name)(a), **tol)
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
            ref_opt.update_all(rule, ps, gs, slots, scalars)
        for got_group, want_group in zip([dev[0], *dev[2:]], [ps, *slots]):
            for got, want in zip(got_group, want_group):
                np.testing.assert_allclose(cupy.asnumpy(got), want, **tol)
