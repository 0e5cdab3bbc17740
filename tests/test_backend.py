"""Device selection, moving arrays, random generators and the dtype policy."""

import os
import numpy as np
import pytest

import npdl
from npdl import backend
from npdl.errors import DeviceError, DTypeError


def test_device_names():
    assert backend.get_device("cpu").name == "cpu" and backend.get_device("numpy").kind == "numpy"
    assert backend.get_device("strict").name == "strict"
    assert backend.get_device(backend.get_device("cpu")) == backend.get_device("cpu")
    assert "cpu" in backend.available_devices()


def test_unknown_device_lists_valid_ones():
    with pytest.raises(DeviceError, match="unknown device 'tpu'.*cpu, strict, gpu, cuda, cuda:N"):
        backend.get_device("tpu")


@pytest.mark.skipif(backend.cupy_or_none() is not None, reason="a GPU is present")
def test_gpu_without_cupy_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cupy)
    for name in ("gpu", "cuda", "cuda:1"):
        with pytest.raises(DeviceError, match=r'pip install "npdl-backprop\[gpu\]"'):
            backend.get_device(name)


@pytest.mark.gpu
@pytest.mark.skipif(backend.cupy_or_none() is None, reason="needs CuPy and a CUDA device")
def test_gpu_index_out_of_range():
    with pytest.raises(DeviceError, match="out of range"):
        backend.get_device("cuda:99")


def test_round_trip_between_devices(device):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    on = backend.to_device(x, device)
    assert backend.device_of(on) == device
    back = backend.to_numpy(on)
    assert back.dtype == np.float32 and (back == x).all()


def test_generator_repeats_and_saves_state(device):
    g1, g2 = backend.Generator(device, 5), backend.Generator(device, 5)
    a, b = backend.to_numpy(g1.normal((3, 4))), backend.to_numpy(g2.normal((3, 4)))
    assert (a == b).all() and a.dtype == np.float32
    if device.is_gpu:
        return  # CuPy's generator state cannot be read back (documented)
    state = g1.get_state()
    x = backend.to_numpy(g1.uniform((5,)))
    g1.set_state(state)
    assert (backend.to_numpy(g1.uniform((5,))) == x).all()
    perm = backend.to_numpy(g1.permutation(10))
    assert sorted(perm.tolist()) == list(range(10)) and perm.dtype == np.int64
    ints = backend.to_numpy(g1.integers(0, 3, (100,)))
    assert sorted(set(ints.tolist())) == [0, 1, 2] and ints.dtype == np.int64  # high is exclusive, low is not
    assert backend.dtype_name(g1.normal((2,), dtype="float64")) == "float64"


def test_cpu_and_strict_generators_draw_numpys_pcg64():
    """A seed gives NumPy's PCG64 numbers on both, so a CPU run and a strict run start alike."""
    expected = np.random.Generator(np.random.PCG64(11)).standard_normal(4, dtype=np.float32)
    for name in ("cpu", "strict"):
        np.testing.assert_array_equal(backend.to_numpy(backend.Generator(name, 11).normal((4,))), expected)


def test_dtype_policy():
    assert backend.resolve_float(None) == "float32"
    assert backend.resolve_float("float64") == "float64"
    with pytest.raises(DTypeError, match="unsupported float dtype 'int32'"):
        backend.resolve_float("int32")


def test_float32_model_never_becomes_float64(device):
    """Python-float constants (0.5, 1.0, ...) in the layer code must not promote float32."""
    g = backend.Generator(device, 0)
    x = g.normal((4, 5))
    for layer in [npdl.Dense(5, 5, rng=g, device=device), npdl.Sigmoid(), npdl.Tanh(), npdl.ELU(),
                  npdl.LeakyReLU(), npdl.Softmax(), npdl.Dropout(0.3, rng=g)]:
        y = layer(x, training=True)
        assert backend.dtype_name(y) == "float32", type(layer).__name__
        assert backend.dtype_name(layer.backward(y)) == "float32", type(layer).__name__
    loss = npdl.SoftmaxCrossEntropy()
    value = loss(x, g.integers(0, 5, (4,)))
    assert backend.dtype_name(value) == "float32" and backend.dtype_name(loss.backward()) == "float32"


def test_import_sets_openblas_idle_spin_unless_user_set_it():
    """``import npdl`` shortens OpenBLAS's idle spin before NumPy loads, and keeps a user's value."""
    import subprocess
    import sys

    code = "import os, npdl; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "4"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(env, OPENBLAS_THREAD_TIMEOUT="7"))
    assert out.stdout.strip() == "7"
    late = "import os, numpy, npdl; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"  # too late to matter
    out = subprocess.run([sys.executable, "-c", late], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "None"


def test_import_lets_blas_threads_spin_when_the_step_chooses_their_count():
    """With ``NPDL_ADAPTIVE_THREADS`` handing BLAS's thread count to the training step, ``import npdl``
    sets the longer spin (2^20 cycles); with the default, ``0`` or ``off``, the short one; a user's
    value is kept either way."""
    import subprocess
    import sys

    code = "import os, npdl; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "NPDL_ADAPTIVE_THREADS")}
    seen = {}
    for value in ("1", "all", "0", "off", "numba"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env=dict(env, NPDL_ADAPTIVE_THREADS=value))
        seen[value] = out.stdout.strip()
    assert seen == {"1": "20", "all": "20", "0": "4", "off": "4", "numba": "4"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(env, NPDL_ADAPTIVE_THREADS="1", OPENBLAS_THREAD_TIMEOUT="9"))
    assert out.stdout.strip() == "9"


@pytest.mark.parametrize("value", ["", "1", "2", " All ", "all", "0", "-1", "off", "OFF", "numba", " 3 "])
def test_the_import_reads_npdl_adaptive_threads_as_the_step_does(monkeypatch, value):
    """The reading ``import npdl`` makes before NumPy loads agrees with the training step's own."""
    from npdl.kernels.numba import threads

    monkeypatch.setenv("NPDL_ADAPTIVE_THREADS", value)
    assert npdl._adaptive_threads_mode(value) == threads.mode()


def test_row_major_copies_only_column_major_numpy_arrays():
    x = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    assert backend.row_major(x) is x
    y = backend.row_major(x.T)
    assert y.flags.c_contiguous and y.dtype == np.float32
    np.testing.assert_array_equal(y, x.T)
    import array_api_strict as xs

    t = xs.asarray([[1.0, 2.0], [3.0, 4.0]]).T
    assert backend.row_major(t) is t  # no layout notion there: returned as is
