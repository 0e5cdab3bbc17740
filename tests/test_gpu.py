"""GPU backend: the TF32 switch and out-of-memory errors (checked on the CPU with fake CuPy
modules and exceptions), and a GPU run against the CPU (marked ``gpu``; the same test runs on
``strict`` here, the CPU stand-in for a foreign device)."""

import contextlib
import sys
import types

import numpy as np
import pytest
from conftest import HAS_GPU

import npdl
from npdl import backend, cli
from npdl.errors import DeviceError, GPUOutOfMemoryError
from npdl.layers import LSTM, Conv2D, Dense, Flatten, MaxPool2D, ReLU, Tanh
from npdl.models import Sequential
from npdl.optim import SGD, Momentum

NEEDS_GPU = pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a CUDA device")
GPU = pytest.param("cuda:0", marks=[pytest.mark.gpu, NEEDS_GPU])

# CuPy's cupy.cuda.memory.OutOfMemoryError, as far as npdl can tell without CuPy: its name and module
FakeCupyOOM = type("OutOfMemoryError", (MemoryError,), {"__module__": "cupy.cuda.memory"})
OOM_TEXT = "Out of memory allocating 188,160,000 bytes (allocated so far: 1,024 bytes)."


# ----------------------------------------------------------------------------- TF32


@pytest.fixture
def env(monkeypatch):
    """No CUPY_TF32 and no CuPy imported; both restored afterwards."""
    monkeypatch.delenv("CUPY_TF32", raising=False)
    for name in ("cupy", "cupy._core", "cupy._core._routines_linalg"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return monkeypatch


def fake_cupy(monkeypatch, with_switch=True):
    """Put a fake, already-imported CuPy in sys.modules; returns the calls to its compute-type switch."""
    calls = []
    cupy = types.ModuleType("cupy")
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    if not with_switch:
        monkeypatch.setitem(sys.modules, "cupy._core", None)  # `from cupy._core import ...` fails
        return calls
    core, linalg = types.ModuleType("cupy._core"), types.ModuleType("cupy._core._routines_linalg")
    linalg.COMPUTE_TYPE_TBD, linalg.COMPUTE_TYPE_TF32 = 0, 7
    linalg.set_compute_type = lambda dtype, kind: calls.append((np.dtype(dtype), kind))
    core._routines_linalg, cupy._core = linalg, core
    monkeypatch.setitem(sys.modules, "cupy._core", core)
    monkeypatch.setitem(sys.modules, "cupy._core._routines_linalg", linalg)
    return calls


def test_tf32_is_off_by_default_and_says_how_to_enable(env):
    assert backend.tf32_allowed() is False
    status = backend.tf32_status()
    assert "exact float32" in status and "--tf32" in status and "allow_tf32" in status


def test_allow_tf32_before_cupy_is_imported_sets_cupys_variable(env):
    import os

    backend.allow_tf32(True)
    assert os.environ["CUPY_TF32"] == "1" and backend.tf32_allowed() and "TF32 allowed" in backend.tf32_status()
    backend.allow_tf32(False)
    assert os.environ["CUPY_TF32"] == "0" and not backend.tf32_allowed()


def test_cupy_tf32_in_the_environment_counts_as_asking(env):
    env.setenv("CUPY_TF32", "1")
    assert backend.tf32_allowed()
    env.setenv("CUPY_TF32", "0")
    assert not backend.tf32_allowed()


def test_unreadable_cupy_tf32_is_a_clear_error(env):
    env.setenv("CUPY_TF32", "yes")
    with pytest.raises(DeviceError, match=r"CUPY_TF32='yes'.*CUPY_TF32=0.*CUPY_TF32=1"):
        backend.tf32_allowed()
    backend.allow_tf32(False)  # replaces it
    assert not backend.tf32_allowed()


def test_allow_tf32_after_cupy_is_imported_resets_its_cached_choice(env):
    calls = fake_cupy(env)
    backend.allow_tf32(True)
    backend.allow_tf32(False)
    # each time back to "to be decided", so CuPy's next float32 product reads CUPY_TF32 again
    assert calls == [(np.dtype("float32"), 0), (np.dtype("float32"), 0)]
    assert not backend.tf32_allowed()


def test_allow_tf32_refuses_a_change_cupy_can_no_longer_take(env):
    fake_cupy(env, with_switch=False)
    backend.allow_tf32(False)  # what CuPy already uses (CUPY_TF32 unset): fine
    with pytest.raises(DeviceError, match="already imported.*CUPY_TF32=1.*before starting Python"):
        backend.allow_tf32(True)


def test_info_states_the_matmul_precision(env, capsys):
    assert cli.main(["info"]) == 0
    assert "exact float32" in capsys.readouterr().out
    env.setenv("CUPY_TF32", "1")
    assert cli.main(["info", "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["gpu_matmul"]["tf32"] is True


def test_train_and_bench_take_tf32(env, capsys):
    import os

    assert cli.build_parser().parse_args(["train", "and-gate", "--tf32"]).tf32
    assert not cli.build_parser().parse_args(["train", "and-gate"]).tf32
    assert cli.main(["bench", "--workload", "mlp_b2", "--min-seconds", "0.01", "--json", "--tf32"]) == 0
    assert os.environ["CUPY_TF32"] == "1"  # no effect on the CPU run itself; a GPU run would use it
    capsys.readouterr()


# ------------------------------------------------------------------------ out of memory


def test_out_of_memory_is_recognised_without_cupy(monkeypatch):
    assert backend.is_out_of_memory(FakeCupyOOM(OOM_TEXT))
    assert backend.is_out_of_memory(type("Sub", (FakeCupyOOM,), {})("x"))  # a subclass of CuPy's
    alloc = type("CUBLASError", (RuntimeError,), {"__module__": "cupy_backends.cuda.libs.cublas"})
    assert backend.is_out_of_memory(alloc("CUBLAS_STATUS_ALLOC_FAILED"))
    assert not backend.is_out_of_memory(alloc("CUBLAS_STATUS_EXECUTION_FAILED"))
    assert not backend.is_out_of_memory(MemoryError("host memory"))  # the host's: not ours to rename
    assert not backend.is_out_of_memory(ValueError("x"))

    class MyOOM(Exception):
        pass

    assert not backend.is_out_of_memory(MyOOM())
    monkeypatch.setattr(backend.oom, "OOM_ERRORS", (MyOOM,))
    assert backend.is_out_of_memory(MyOOM())


@pytest.fixture
def full_gpu(monkeypatch):
    """``Device("cupy", 0)`` backed by a fake CuPy that keeps arrays on the host and runs out of
    memory for any array over ``limit`` bytes (0: every array)."""
    state = {"limit": 0}

    def asarray(x, dtype=None):
        x = np.asarray(x, dtype=dtype)
        if x.nbytes > state["limit"]:
            raise FakeCupyOOM(OOM_TEXT)
        return x

    cupy = types.SimpleNamespace(asarray=asarray,
                                 cuda=types.SimpleNamespace(Device=lambda index: contextlib.nullcontext()))
    monkeypatch.setattr(backend.devices, "require_cupy", lambda index: cupy)
    return backend.Device("cupy", 0), state


def test_device_asarray_names_the_allocation(full_gpu):
    full_gpu, _ = full_gpu
    with pytest.raises(GPUOutOfMemoryError) as info:
        full_gpu.asarray(np.zeros((60000, 784), np.float32))
    msg = str(info.value)
    assert "on cuda:0" in msg and "shape (60000, 784) float32, 179.4 MiB" in msg
    assert "smaller batch size" in msg and OOM_TEXT in msg
    assert isinstance(info.value, DeviceError) and isinstance(info.value.__cause__, FakeCupyOOM)
    with pytest.raises(GPUOutOfMemoryError, match="179.4 MiB"):
        backend.to_device(np.zeros((60000, 784), np.float32), full_gpu)


def test_other_errors_pass_through_unchanged(monkeypatch):
    def asarray(x, dtype=None):
        raise ValueError("not memory")

    cupy = types.SimpleNamespace(asarray=asarray, cuda=types.SimpleNamespace(Device=lambda i: contextlib.nullcontext()))
    monkeypatch.setattr(backend.devices, "require_cupy", lambda index: cupy)
    with pytest.raises(ValueError, match="not memory"):
        backend.Device("cupy", 0).asarray(np.zeros(3))


def classifier(seed=0):
    npdl.manual_seed(seed)
    model = Sequential([Dense(4, 8), Tanh(), Dense(8, 3)], name="net")
    return model.compile("softmax_cross_entropy", SGD(lr=0.1))


def toy(n=32):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 3, n)


def test_model_to_a_full_gpu_names_the_model(full_gpu):
    full_gpu, _ = full_gpu
    model = classifier()
    expected = r"moving model 'net' \(0\.0 MiB of parameters\) to cuda:0.*model\.to\('cpu'\)"
    with pytest.raises(GPUOutOfMemoryError, match=expected):
        model.to(full_gpu)


def test_fit_names_the_dataset_and_suggests_keeping_it_on_the_host(full_gpu, monkeypatch):
    full_gpu, limit = full_gpu
    model = classifier()
    monkeypatch.setattr(Sequential, "device", property(lambda self: full_gpu))
    x, y = toy()
    with pytest.raises(GPUOutOfMemoryError) as info:
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    msg = str(info.value)
    assert "moving the training data x (shape (32, 4) float32, 0.0 MiB) to cuda:0" in msg
    assert "keep the data on the host" in msg and "smaller batch size does not help" in msg
    limit["limit"] = 32 * 4 * 4  # x fits; the validation set does not
    with pytest.raises(GPUOutOfMemoryError, match="moving the validation data x"):
        model.fit(x, y, epochs=1, batch_size=8, verbose=0,
                  validation_data=(np.zeros((64, 4), np.float32), np.zeros(64, np.int64)))


def run_out_of_memory_in(layer, monkeypatch):
    """``layer.forward`` runs out of memory on batches of more than one example."""
    original = layer.forward

    def forward(x, training=False):
        if int(x.shape[0]) > 1:
            raise FakeCupyOOM(OOM_TEXT)
        return original(x, training)

    monkeypatch.setattr(layer, "forward", forward)


def test_training_step_names_model_and_batch_size(monkeypatch):
    model = classifier()
    x, y = toy()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # fills caches and works
    run_out_of_memory_in(model.layers[2], monkeypatch)
    with pytest.raises(GPUOutOfMemoryError) as info:
        model.train_step(x[:8], y[:8])
    msg = str(info.value)
    assert "in a training step of model 'net' (batch size 8) on cpu" in msg
    assert "smaller batch size" in msg and OOM_TEXT in msg
    assert all(layer.cache is None for layer in model.layers)  # activations freed for a retry
    with pytest.raises(GPUOutOfMemoryError, match=r"model 'net' \(batch size 16\)"):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)


def test_evaluate_and_predict_name_model_and_batch_size(monkeypatch):
    model = classifier()
    x, y = toy()
    run_out_of_memory_in(model.layers[2], monkeypatch)
    with pytest.raises(GPUOutOfMemoryError, match=r"in evaluation of model 'net' \(batch size 256\)"):
        model.evaluate(x, y)
    with pytest.raises(GPUOutOfMemoryError, match=r"in predict of model 'net' \(batch size 4\).*smaller batch"):
        model.predict(x, batch_size=4)


def test_cli_prints_the_out_of_memory_message(monkeypatch, capsys):
    from npdl.models import sequential

    def train_batch(self, xb, yb):
        raise backend.out_of_memory(FakeCupyOOM(OOM_TEXT), f"in a training step of model '{self.name}'")

    monkeypatch.setattr(sequential.Sequential, "train_batch", train_batch)
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "and-gate", "--quiet"])
    assert info.value.code == 2
    assert "npdl train: error: out of GPU memory in a training step" in capsys.readouterr().err


# ------------------------------------------------------------------- the GPU against the CPU


def conv_net():
    model = Sequential([Conv2D(1, 3, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(27, 4)], name="conv")
    rng = np.random.default_rng(1)
    return model, "softmax_cross_entropy", rng.normal(size=(16, 1, 8, 8)).astype(np.float32), rng.integers(0, 4, 16)


def lstm_net():
    model = Sequential([LSTM(3, 5), Dense(5, 2)], name="lstm")
    rng = np.random.default_rng(2)
    return model, "mse", rng.normal(size=(16, 6, 3)).astype(np.float32), rng.normal(size=(16, 2)).astype(np.float32)


@pytest.mark.parametrize("build", [conv_net, lstm_net], ids=["conv", "lstm"])
@pytest.mark.parametrize("other", ["strict", GPU])
def test_training_on_another_device_matches_the_cpu(build, other, monkeypatch):
    """A few steps from the same initial parameters agree within float32 tolerance (TF32 off): the
    parameters differ from the CPU's by ~1e-7 on ``strict``, by the rounding of another summation order
    on a GPU."""
    monkeypatch.setenv("CUPY_TF32", "0")
    backend.allow_tf32(False)
    npdl.manual_seed(0)
    cpu_model, loss, x, y = build()
    npdl.manual_seed(0)
    dev_model, *_ = build()
    dev_model.load_state_dict(cpu_model.state_dict())
    dev_model.to(other)
    cpu_model.compile(loss, Momentum(lr=0.05, momentum=0.9))
    dev_model.compile(loss, Momentum(lr=0.05, momentum=0.9))
    device = backend.get_device(other)
    xd, yd = device.asarray(x), device.asarray(y)
    cpu_losses, dev_losses = [], []
    for step in range(5):
        batch = slice(4 * (step % 4), 4 * (step % 4) + 4)
        cpu_losses.append(backend.to_float(cpu_model.train_step(x[batch, ...], y[batch, ...])))
        dev_losses.append(backend.to_float(dev_model.train_step(xd[batch, ...], yd[batch, ...])))
    np.testing.assert_allclose(dev_losses, cpu_losses, rtol=1e-5, atol=1e-6)
    assert backend.device_of(dev_model.layers[0].params["W" if build is conv_net else "Wx"]) == device
    for name, value in cpu_model.state_dict().items():
        np.testing.assert_allclose(backend.to_numpy(dev_model.state_dict()[name]), value, rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    np.testing.assert_allclose(backend.to_numpy(dev_model.predict(xd)), cpu_model.predict(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("other", ["strict", GPU])
def test_a_layer_refuses_input_from_another_device(other):
    model, on_cpu = classifier().to(other), classifier()
    x, y = toy(8)
    with pytest.raises(DeviceError, match="on device 'cpu' but the layer's parameters are on"):
        model.forward(x)
    # predict and evaluate move the data once, themselves, and compute what the CPU computes
    np.testing.assert_allclose(backend.to_numpy(model.predict(x)), on_cpu.predict(x), rtol=1e-5, atol=1e-6)
    assert model.evaluate(x, y)["loss"] == pytest.approx(on_cpu.evaluate(x, y)["loss"], rel=1e-5)
