"""Which BLAS the CPU kernels call (``NPDL_BLAS``: :mod:`npdl.kernels.numba.blas`), and oneMKL's products
against float64 references where it is installed (``pip install npdl-backprop[mkl]``)."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from npdl.kernels.numba import blas, chunking, threads
from npdl.kernels.numba import conv2d as conv_kernel
from npdl.kernels.numba import dense_products, gemm_update, simple_rnn
from npdl.layers.conv import conv2d_backward, conv2d_forward

try:
    HAS_MKL = bool(blas._find_mkl())
finally:
    blas.select(None)  # the suite's choice (tests/conftest.py: NumPy's)


@pytest.fixture
def mkl():
    """oneMKL as the kernels' library for one test; NumPy's again afterwards."""
    if not HAS_MKL:
        pytest.skip("oneMKL is not installed (pip install npdl-backprop[mkl])")
    fns = blas.select("mkl")
    threads._blas = threads._UNKNOWN
    try:
        yield fns
    finally:
        blas.select(None)
        threads._blas = threads._UNKNOWN


def _bound(A, B):
    """The float32 rounding bound of ``A @ B``: K eps |A| |B|, elementwise, in float64."""
    A64, B64 = np.abs(A.astype(np.float64)), np.abs(B.astype(np.float64))
    return A.shape[-1] * np.finfo(np.float32).eps * (A64 @ B64) + 1e-30


def test_the_variable_reads_auto_numpy_or_mkl_and_refuses_anything_else(monkeypatch):
    monkeypatch.delenv(blas.ENV, raising=False)
    assert blas.requested() == "auto"
    monkeypatch.setenv(blas.ENV, " MKL ")
    assert blas.requested() == "mkl"
    monkeypatch.setenv(blas.ENV, "")
    assert blas.requested() == "auto"
    monkeypatch.setenv(blas.ENV, "openblas")
    with pytest.raises(ValueError, match="NPDL_BLAS='openblas'.*auto, numpy, mkl"):
        blas.requested()
    with pytest.raises(ValueError, match="expected one of"):
        blas.select("blis")


def test_auto_keeps_numpys_blas_off_intel_and_without_mkl(monkeypatch):
    try:
        monkeypatch.setattr(blas, "intel_cpu", lambda: False)
        assert blas.select("auto").get("provider") == "numpy"
        monkeypatch.setattr(blas, "intel_cpu", lambda: True)
        monkeypatch.setattr(blas, "_mkl_paths", lambda: [])
        assert blas.select("auto").get("provider") == "numpy"
        assert blas.numpy_own()
    finally:
        blas.select(None)


def test_asking_for_mkl_without_it_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(blas, "_mkl_paths", lambda: [])
    try:
        with pytest.raises(RuntimeError, match=r"NPDL_BLAS=mkl.*pip install npdl-backprop\[mkl\]"):
            blas.select("mkl")
    finally:
        blas.select(None)


def test_auto_takes_mkl_on_an_intel_cpu_where_it_is_installed(monkeypatch):
    if not HAS_MKL:
        pytest.skip("oneMKL is not installed")
    monkeypatch.setattr(blas, "intel_cpu", lambda: True)
    try:
        fns = blas.select("auto")
        assert fns["provider"] == "mkl" and fns["library"].startswith("mkl ")
        assert not blas.numpy_own()
        assert blas.numpy_functions()["provider"] == "numpy"  # kept apart for the recurrent cells
    finally:
        blas.select(None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [8, 20])
def test_a_dense_layers_products_through_mkl_match_float64(mkl, dtype, batch):
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 784)).astype(dtype)
    W = rng.standard_normal((784, 500)).astype(dtype)
    da = rng.standard_normal((batch, 500)).astype(dtype)
    y = dense_products.x_times_W(x, W)
    dx = dense_products.da_times_W_T(da, W)
    assert y is not NotImplemented and dx is not NotImplemented  # served by oneMKL, not declined
    assert y.dtype == dtype and dx.dtype == dtype and y.flags.c_contiguous and dx.flags.c_contiguous
    tol = 1e3 if dtype == np.float64 else 1.0  # float64 rounds far below float32's bound
    for got, A, B in ((y, x, W), (dx, da, W.T)):
        exact = A.astype(np.float64) @ B.astype(np.float64)
        assert np.all(np.abs(got - exact) <= _bound(A, B) / tol)


def test_products_under_min_work_stay_numpys_under_mkl(mkl):
    rng = np.random.default_rng(2)
    h, W = rng.standard_normal((50, 50)).astype(np.float32), rng.standard_normal((50, 10)).astype(np.float32)
    assert dense_products.x_times_W(h, W) is NotImplemented  # 25,000 multiply-adds: NumPy's @
    assert dense_products.da_times_W_T(rng.standard_normal((50, 10)).astype(np.float32), W) is NotImplemented


def test_narrow_products_from_min_work_go_to_mkl_and_below_stay_numpys(mkl, monkeypatch):
    """A 1000-10 layer at batch 128: its three products (1.28 million multiply-adds each) go to oneMKL,
    the update into a weight under SMALL_C elements too; at a batch one short of MIN_WORK, NumPy's ``@``."""
    served = []
    real_matmul, real_gemm = blas.matmul, gemm_update.gemm_at_b
    monkeypatch.setattr(blas, "matmul", lambda A, B: served.append("matmul") or real_matmul(A, B))
    monkeypatch.setattr(gemm_update, "gemm_at_b", lambda *a: served.append("update") or real_gemm(*a))
    rng = np.random.default_rng(6)
    W = rng.standard_normal((1000, 10)).astype(np.float32)
    assert W.size < gemm_update.SMALL_C and 105 * W.size >= blas.MIN_WORK > 104 * W.size
    for batch, engaged in ((128, True), (105, True), (104, False)):
        served.clear()
        x = rng.standard_normal((batch, 1000)).astype(np.float32)
        da = rng.standard_normal((batch, 10)).astype(np.float32)
        C = W.copy()
        y, dx = dense_products.x_times_W(x, W), dense_products.da_times_W_T(da, W)
        out = gemm_update.gemm_update(C, x, da, -0.1, 1.0)
        if not engaged:
            assert y is NotImplemented and dx is NotImplemented and out is NotImplemented and served == []
            np.testing.assert_array_equal(C, W)
            continue
        assert served == ["matmul", "matmul", "update"] and out is C
        for got, A, B in ((y, x, W), (dx, da, W.T)):
            assert np.all(np.abs(got - A.astype(np.float64) @ B.astype(np.float64)) <= _bound(A, B))
        exact = W.astype(np.float64) - 0.1 * (x.T.astype(np.float64) @ da.astype(np.float64))
        assert np.all(np.abs(C - exact) <= 0.1 * _bound(x.T, da) + 2 * np.finfo(np.float32).eps * np.abs(exact))


def test_narrow_products_stay_numpys_whatever_their_size_under_numpys_blas():
    """With NumPy's BLAS as the kernels' (the suite's choice) ``@`` is the same call: nothing to route."""
    assert blas.numpy_own() and not blas.serves(1 << 30)
    rng = np.random.default_rng(7)
    W = rng.standard_normal((1000, 10)).astype(np.float32)
    x, da = rng.standard_normal((256, 1000)).astype(np.float32), rng.standard_normal((256, 10)).astype(np.float32)
    assert dense_products.x_times_W(x, W) is NotImplemented
    assert gemm_update.gemm_update(W.copy(), x, da, -0.1, 1.0) is NotImplemented  # under SMALL_C: the definition


def test_mkl_reads_transposed_operands_as_numpy_does(mkl):
    rng = np.random.default_rng(3)
    xT = rng.standard_normal((300, 20)).astype(np.float32)  # x = xT.T: columns contiguous
    W = rng.standard_normal((300, 64)).astype(np.float32)
    got = blas.matmul(xT.T, W)
    exact = xT.T.astype(np.float64) @ W.astype(np.float64)
    assert np.all(np.abs(got - exact) <= _bound(xT.T, W))
    assert blas.matmul(xT.T, W[::2]) is None  # shapes that do not chain: declined
    assert blas.matmul(np.ones((4, 3), np.float32)[:, ::2], np.ones((2, 2), np.float32)) is None  # strided


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_the_sgd_update_through_mkl_matches_float64(mkl, beta):
    rng = np.random.default_rng(4)
    C = rng.standard_normal((784, 500)).astype(np.float32)
    A = rng.standard_normal((20, 784)).astype(np.float32)
    B = rng.standard_normal((20, 500)).astype(np.float32)
    exact = beta * C.astype(np.float64) - 0.1 * (A.T.astype(np.float64) @ B.astype(np.float64))
    out = gemm_update.gemm_update(C, A, B, -0.1, beta)
    assert out is C
    assert np.all(np.abs(C - exact) <= 0.1 * _bound(A.T, B) + 2 * np.finfo(np.float32).eps * np.abs(exact))


@pytest.mark.parametrize("channels", [8, 16])  # 16: the columns channels-last (conv2d_last), both passes
def test_the_convolution_through_mkl_matches_the_float64_definition(channels, mkl):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, channels, 10, 10)).astype(np.float32)
    W = (0.2 * rng.standard_normal((16, channels, 5, 5))).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    y, cache = conv_kernel.forward(x, W, b, 1, "same", {}, "relu")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dW, db = conv_kernel.backward(dy, cache, True, {})
    # the layer file's definitions themselves, in float64 (the kernel would serve float64 too)
    y64, c64 = conv2d_forward.definition(x.astype(np.float64), W.astype(np.float64), b.astype(np.float64), 1,
                                         "same")
    mask = y64 > 0
    dx64, dW64, db64 = conv2d_backward.definition(dy.astype(np.float64) * mask, c64)
    # float32 products over K = 25 C (forward, dx) and N*P = 600 (dW) terms
    K = 25 * channels
    scale = np.abs(dy).max() * np.abs(x).max() * 600 * np.finfo(np.float32).eps
    np.testing.assert_allclose(y, np.maximum(y64, 0), rtol=0, atol=K * np.finfo(np.float32).eps * 8)
    np.testing.assert_allclose(dW, dW64, rtol=0, atol=10 * scale)
    np.testing.assert_allclose(dx, dx64, rtol=0, atol=K * np.finfo(np.float32).eps * np.abs(dy).max() * 4)
    np.testing.assert_allclose(db, db64, rtol=1e-5, atol=1e-4)


def test_the_chunks_worker_threads_run_mkl_on_one_thread_each(mkl):
    get, set_ = blas.mkl_thread_count()
    saved = get()
    set_(2)
    seen = []
    try:
        def work(k, chunks):
            for _ in chunks:
                seen.append(get())
        chunking.run_chunks(work, 8)
        assert get() == 2  # the calling thread's count is left as it was
    finally:
        set_(saved)
    if chunking.workers() > 1:
        assert seen and set(seen) == {1}


def test_one_thread_here_holds_for_the_calling_thread_only(mkl):
    get, _ = blas.mkl_thread_count()
    before = get()
    seen = []

    def worker():
        blas.one_thread_here()
        seen.append(get())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [1] and get() == before


def test_the_step_thread_controller_drives_mkls_count_under_mkl(mkl):
    control = threads.blas_threads()
    get, set_ = blas.mkl_thread_count()
    saved = get()
    try:
        control.set(1)
        assert get() == 1
        control.set(2)
        assert control.get() == get() == 2
    finally:
        set_(saved)


def test_the_recurrent_cells_keep_numpys_blas_and_its_bits(mkl):
    rng = np.random.default_rng(6)
    A_in = rng.standard_normal((28, 50, 50)).astype(np.float32)
    Wh = (0.1 * rng.standard_normal((50, 50))).astype(np.float32)
    h0 = np.zeros((50, 50), np.float32)
    hs_mkl, _ = simple_rnn.forward_sequence(A_in, Wh, h0)
    blas.select("numpy")
    hs_numpy, _ = simple_rnn.forward_sequence(A_in, Wh, h0)
    np.testing.assert_array_equal(hs_mkl, hs_numpy)


def test_mkl_gives_the_same_bits_on_one_thread_and_two():
    """In a fresh process (oneMKL takes its mode when it starts): npdl asks for its strict CNR mode, in
    which these products -- which differ between one thread and two without it -- do not."""
    if not HAS_MKL:
        pytest.skip("oneMKL is not installed")
    code = """
import os
import numpy as np
from npdl.kernels.numba import blas
assert blas.select("mkl")["strict"]
# its settings are its own: nothing is left in the environment for another library's oneMKL or runtime
assert "MKL_CBWR" not in os.environ and "KMP_BLOCKTIME" not in os.environ, os.environ
get, set_ = blas.mkl_thread_count()
rng = np.random.default_rng(7)
for m, k, n in ((128, 1000, 1000), (64, 3136, 1024), (64, 800, 196)):
    A = rng.standard_normal((m, k)).astype(np.float32)
    B = rng.standard_normal((k, n)).astype(np.float32)
    set_(1)
    one = blas.matmul(A, B)
    set_(2)
    two = blas.matmul(A, B)
    assert np.array_equal(one, two), (m, k, n)
print("same")
"""
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "KMP_BLOCKTIME", "NPDL_BLAS")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "same", done.stderr[-2000:]


def test_unset_adaptive_threads_choose_blas_counts_too_under_strict_mkl(mkl, monkeypatch):
    monkeypatch.delenv("NPDL_ADAPTIVE_THREADS", raising=False)
    assert mkl["strict"] and threads.mode() == "all"
    monkeypatch.setenv("NPDL_ADAPTIVE_THREADS", "numba")  # asked for explicitly: Numba's count only
    assert threads.mode() == "numba"
    monkeypatch.delenv("NPDL_ADAPTIVE_THREADS")
    blas.select("numpy")  # OpenBLAS's bits depend on its count: Numba's only
    assert threads.mode() == "numba"


def test_mkl_loaded_after_pytorch_is_refused_and_before_it_serves():
    """``import torch`` makes its GNU OpenMP runtime's functions global: oneMKL loaded after it computes
    wrong threaded products. npdl sees that when it loads oneMKL: ``auto`` warns and keeps NumPy's
    BLAS, ``mkl`` refuses; loaded first (``blas.functions()`` before ``import torch``), both are right
    (a threaded convolution-chunk product checked)."""
    if not HAS_MKL:
        pytest.skip("oneMKL is not installed")
    pytest.importorskip("torch")
    after = """
import os
import warnings
os.environ["NPDL_BLAS"] = "numpy"  # npdl imported without loading oneMKL (whose Intel OpenMP runtime
from npdl.kernels.numba import blas  # also defines GNU OpenMP's entry points)
del os.environ["NPDL_BLAS"]
assert not blas._gnu_openmp_global()
import torch
import numpy as np
assert blas._gnu_openmp_global()
blas.intel_cpu = lambda: True
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    fns = blas.select("auto")
print(fns.get("provider"), any(w.category is blas.MKLInterferenceWarning for w in seen))
try:
    blas.select("mkl")
except RuntimeError as exc:
    print("refused", "torch" in str(exc))
"""
    before = """
import os
os.environ["NPDL_BLAS"] = "mkl"
import numpy as np
from npdl.kernels.numba import blas
blas.functions()
import torch
blas.mkl_thread_count()[1](2)
A = np.random.default_rng(0).standard_normal((64, 800)).astype(np.float32)
B = np.random.default_rng(1).standard_normal((800, 196)).astype(np.float32)
exact = A.astype(np.float64) @ B.astype(np.float64)
print(blas.functions()["provider"], float(np.abs(blas.matmul(A, B) - exact).max()) < 1e-3)
"""
    env = {k: v for k, v in os.environ.items() if k != "NPDL_BLAS"}
    for code, expected in ((after, "numpy True\nrefused True"), (before, "mkl True")):
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and done.stdout.strip() == expected, done.stdout + done.stderr[-2000:]
