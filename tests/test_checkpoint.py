"""Checkpoints: one atomic .npz, refused when damaged or foreign, device-neutral, exact resume."""

import json
import os
import stat

import numpy as np
import pytest
from conftest import HAS_GPU

import npdl
from npdl import backend
from npdl.layers import Dense, Dropout, Tanh
from npdl.models import Sequential
from npdl.optim import SGD, Adam, Momentum
from npdl.training import (FORMAT_VERSION, Callback, CheckpointError, ModelCheckpoint, TrainingDivergedError,
                           load_checkpoint, read_checkpoint, save_checkpoint)
from npdl.training.errors import FileWriteError


def data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = ((x[:, 0] * x[:, 1] + x[:, 2]) > 0).astype("int64")
    return x, y


def build(device="cpu", seed=0, optimizer=None, hidden=16):
    npdl.manual_seed(seed)
    model = Sequential([Dense(4, hidden), Tanh(), Dropout(0.3), Dense(hidden, 2)], name="net").to(device)
    return model.compile("softmax_cross_entropy", optimizer or Adam(lr=0.01), l2=1e-4)


def host_state(model):
    return {k: np.array(backend.to_numpy(v)) for k, v in model.state_dict().items()}


def trained(tmp_path, device="cpu"):
    x, y = data()
    model = build(device, optimizer=Momentum(lr=0.05))
    rng = backend.Generator(device, 7)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, rng=rng)
    path = str(tmp_path / "ck.npz")
    save_checkpoint(path, model, model.optimizer, rng, epoch=2, history=history, extra={"note": "hi"})
    return model, rng, path


# ------------------------------------------------------------------------- round trip


def test_round_trip_restores_everything(tmp_path):
    model, rng, path = trained(tmp_path)
    ck = read_checkpoint(path)
    assert ck["format_version"] == FORMAT_VERSION and ck["epoch"] == 2 and ck["extra"] == {"note": "hi"}
    assert ck["model_config"] == model.get_config()
    assert ck["history"].history == model.history.history
    assert ck["optimizer"]["class"] == "Momentum" and ck["optimizer"]["iterations"] == 16
    assert set(ck["rng"]["layers"]) == {"2"}  # the Dropout's mask generator
    for k, v in host_state(model).items():
        assert np.array_equal(ck["params"][k], v) and ck["params"][k].dtype == np.float32

    fresh = build(seed=99, optimizer=Momentum(lr=0.05))
    restored = fresh.load_checkpoint(path)
    for k, v in host_state(model).items():
        assert np.array_equal(host_state(fresh)[k], v)
    assert fresh.optimizer.iterations == 16
    assert restored["rng"].get_state() == rng.get_state()
    assert fresh.layers[2].rng.get_state() == model.layers[2].rng.get_state()


def test_load_without_a_model_rebuilds_and_compiles(tmp_path):
    model, _, path = trained(tmp_path)
    ck = load_checkpoint(path)
    clone = ck["model"]
    assert clone.get_config() == model.get_config() and clone.l2 == model.l2
    assert type(clone.optimizer) is Momentum and clone.optimizer.iterations == model.optimizer.iterations
    x, y = data(30, seed=1)
    assert np.array_equal(backend.to_numpy(clone.predict(x)), backend.to_numpy(model.predict(x)))
    assert clone.evaluate(x, y) == model.evaluate(x, y)


@pytest.mark.parametrize("other", ["strict", pytest.param("cuda:0", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a CUDA device")])])
def test_saved_on_another_device_loads_on_cpu_and_back(tmp_path, other):
    """Device-neutral checkpoints: written on ``other`` (a GPU, or strict here), read on the CPU, and back."""
    model, _, path = trained(tmp_path, other)
    on_cpu = build("cpu", seed=5, optimizer=Momentum(lr=0.05))
    on_cpu.load_checkpoint(path)
    assert on_cpu.optimizer.iterations == model.optimizer.iterations
    for name, slot in on_cpu.optimizer.state_dict()["slots"].items():
        assert backend.device_of(slot) == backend.get_device("cpu")
        np.testing.assert_array_equal(slot, backend.to_numpy(model.optimizer.state_dict()["slots"][name]))
    x, _ = data(30, seed=1)
    expected = np.array(backend.to_numpy(model.predict(x)))
    # the same parameters, bit for bit; the products of another device's BLAS may differ in the last bits
    for k, v in host_state(model).items():
        assert np.array_equal(host_state(on_cpu)[k], v), k
    np.testing.assert_allclose(backend.to_numpy(on_cpu.predict(x)), expected, rtol=1e-5, atol=1e-6)
    on_cpu.save_checkpoint(tmp_path / "cpu.npz", epoch=2)
    back = load_checkpoint(tmp_path / "cpu.npz", device=other)["model"]
    assert backend.device_of(back.layers[0].params["W"]) == backend.get_device(other)
    for k, v in host_state(on_cpu).items():
        assert np.array_equal(host_state(back)[k], v), k
    np.testing.assert_allclose(backend.to_numpy(back.predict(x)), expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------- atomicity


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    model, rng, path = trained(tmp_path)
    original = open(path, "rb").read()

    def savez_that_dies(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")  # something is written, then the disk "fills up"
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "savez", savez_that_dies)
    with pytest.raises(FileWriteError, match="cannot write .*ck.npz: No space left on device; the file that was there"):
        save_checkpoint(path, model, model.optimizer, rng, epoch=3)
    assert open(path, "rb").read() == original
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]
    monkeypatch.undo()
    assert read_checkpoint(path)["epoch"] == 2


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_the_mode_of_any_new_file_and_keep_an_existing_one(tmp_path, umask):
    model, rng, _ = trained(tmp_path)
    old = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "new.npz", model, model.optimizer, rng)
        (tmp_path / "plain.txt").write_text("a file written the ordinary way")
        os.chmod(tmp_path / "new.npz", 0o640)
        save_checkpoint(tmp_path / "new.npz", model, model.optimizer, rng, epoch=1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(os.stat(tmp_path / "new.npz").st_mode) == 0o640
    save_checkpoint(tmp_path / "other.npz", model)
    assert stat.S_IMODE(os.stat(tmp_path / "other.npz").st_mode) == 0o666 & ~old


# ------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("drop", ["optimizer", "history", "slot/"])
def test_a_checkpoint_without_a_member_says_which_and_what_to_do(tmp_path, drop):
    _, _, path = trained(tmp_path)  # Momentum: one velocity slot per parameter
    with np.load(path) as archive:
        drop = [k for k in archive.files if k.startswith(drop)][0]
        members = {k: archive[k] for k in archive.files if k != drop}
    np.savez(tmp_path / "cut.npz", **members)
    with pytest.raises(CheckpointError, match=f"without the member.s. {drop}|no {drop} member") as refused:
        read_checkpoint(tmp_path / "cut.npz")
    assert "use the file as npdl.training.save_checkpoint wrote it" in str(refused.value)



def test_truncated_file_is_refused(tmp_path):
    _, _, path = trained(tmp_path)
    blob = open(path, "rb").read()
    for cut in (len(blob) // 2, len(blob) - 10, 10):
        damaged = tmp_path / f"cut{cut}.npz"
        damaged.write_bytes(blob[:cut])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            read_checkpoint(damaged)


def test_foreign_npz_is_refused(tmp_path):
    np.savez(tmp_path / "weights.npz", W=np.zeros((2, 2)))
    with pytest.raises(CheckpointError, match="not an npdl checkpoint"):
        read_checkpoint(tmp_path / "weights.npz")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "plain.npy")


def test_other_format_version_is_refused(tmp_path):
    _, _, path = trained(tmp_path)
    with np.load(path) as archive:
        members = {k: archive[k] for k in archive.files}
    members["__version__"] = np.array(FORMAT_VERSION + 1)
    np.savez(tmp_path / "future.npz", **members)
    with pytest.raises(CheckpointError, match=f"version {FORMAT_VERSION + 1}"):
        read_checkpoint(tmp_path / "future.npz")


def test_mismatched_shapes_are_refused(tmp_path):
    _, _, path = trained(tmp_path)
    smaller = build(hidden=8, optimizer=Momentum(lr=0.05))
    before = host_state(smaller)
    with pytest.raises(CheckpointError, match="do not fit"):
        smaller.load_checkpoint(path)
    for k, v in host_state(smaller).items():
        assert np.array_equal(v, before[k])
    with pytest.raises(CheckpointError, match="Momentum"):
        build(optimizer=SGD(lr=0.1)).load_checkpoint(path)


# ------------------------------------------------------------------------- exact resume


@pytest.mark.parametrize("device", ["cpu", "strict"])
@pytest.mark.parametrize("make_optimizer", [lambda: Adam(lr=0.01), lambda: Momentum(lr=0.05, momentum=0.9)],
                         ids=["adam", "momentum"])
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, device, make_optimizer):
    x, y = data(100)
    val = data(40, seed=3)
    epochs, interrupted_after = 5, 2

    straight = build(device, seed=0, optimizer=make_optimizer())
    straight_history = straight.fit(x, y, epochs=epochs, batch_size=16, validation_data=val, verbose=0,
                                    rng=backend.Generator(device, 123))

    first = build(device, seed=0, optimizer=make_optimizer())
    saver = ModelCheckpoint(str(tmp_path / "run.npz"))
    first.fit(x, y, epochs=interrupted_after, batch_size=16, validation_data=val, verbose=0,
              rng=backend.Generator(device, 123), callbacks=[saver])
    del first  # the "crash": nothing survives but the file

    resumed = build(device, seed=42, optimizer=make_optimizer())  # different initial weights, fresh state
    ck = resumed.load_checkpoint(tmp_path / "run.npz")
    assert ck["epoch"] == interrupted_after
    history = resumed.fit(x, y, epochs=epochs, batch_size=16, validation_data=val, verbose=0,
                          initial_epoch=ck["epoch"], rng=ck["rng"], history=ck["history"])

    expected, got = host_state(straight), host_state(resumed)
    for k in expected:
        assert np.array_equal(got[k], expected[k]), k
    assert resumed.optimizer.iterations == straight.optimizer.iterations
    assert history.epoch == list(range(epochs))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert history[key] == straight_history[key], key


def test_resume_without_the_rng_state_differs(tmp_path):
    """The resume test can fail: a freshly seeded shuffling generator gives other parameters."""
    x, y = data(100)
    straight = build(seed=0)
    straight.fit(x, y, epochs=3, batch_size=16, verbose=0, rng=backend.Generator("cpu", 123))
    first = build(seed=0)
    first.fit(x, y, epochs=1, batch_size=16, verbose=0, rng=backend.Generator("cpu", 123),
              callbacks=[ModelCheckpoint(tmp_path / "run.npz")])
    resumed = build(seed=0)
    ck = resumed.load_checkpoint(tmp_path / "run.npz")
    resumed.fit(x, y, epochs=3, batch_size=16, verbose=0, initial_epoch=1, rng=backend.Generator("cpu", 123))
    assert any(not np.array_equal(a, b) for a, b in zip(host_state(straight).values(),
                                                         host_state(resumed).values()))
    assert ck["rng"] is not None


class Poison(Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            self.model.layers[0].params["W"][0, 0] = float("inf")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy warns about the inf it is told to use
def test_divergence_never_overwrites_the_last_good_checkpoint(tmp_path):
    x, y = data(100)
    model = build(optimizer=SGD(lr=0.05))
    path = tmp_path / "last.npz"
    with pytest.raises(TrainingDivergedError, match="epoch 3"):
        model.fit(x, y, epochs=5, batch_size=16, verbose=0, callbacks=[Poison(), ModelCheckpoint(path)])
    ck = read_checkpoint(path)
    assert ck["epoch"] == 2 and all(np.isfinite(v).all() for v in ck["params"].values())


def test_checkpoint_skips_non_finite_parameters(tmp_path):
    model = build()
    model.layers[3].params["b"][0] = float("nan")
    saver = ModelCheckpoint(tmp_path / "x.npz")
    saver.set_model(model)
    with pytest.warns(RuntimeWarning, match="not saving"):
        saver.on_epoch_end(0, {"loss": 0.5})
    assert not os.path.exists(tmp_path / "x.npz")


def test_non_json_extra_is_a_clear_error(tmp_path):
    model = build()
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(tmp_path / "x.npz", model, extra={"f": object()})
    assert json.dumps(model.get_config())  # the model config itself is plain JSON


# ------------------------------------------------ checkpoints of separate activation layers

def _activation_net(folded, seed):
    rng = backend.Generator("cpu", seed)
    if folded:
        layers = [Dense(4, 6, rng=rng, activation="tanh"), Dropout(0.3, rng=backend.Generator("cpu", 9)),
                  Dense(6, 5, rng=rng, activation="elu"), Dense(5, 2, rng=rng)]
    else:
        layers = [Dense(4, 6, rng=rng), Tanh(), Dropout(0.3, rng=backend.Generator("cpu", 9)),
                  Dense(6, 5, rng=rng), npdl.ELU(), Dense(5, 2, rng=rng)]
    return Sequential(layers, name="net").compile("softmax_cross_entropy", Momentum(lr=0.05))


def test_a_checkpoint_with_activation_layers_resumes_into_dense_with_activation(tmp_path):
    """Runs saved when the recipes built ``Dense, Tanh`` resume into ``Dense(activation="tanh")``: the
    parameters, momentum slots and Dropout's generator move to the renumbered layers, and the
    continued training is the one the old network would have done."""
    from npdl.training import restore
    from npdl.training.checkpoint import rename_parameters

    x, y = data()
    old = _activation_net(folded=False, seed=0)
    for i in range(3):
        old.train_step(x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)])
    path = save_checkpoint(tmp_path / "ck.npz", old, old.optimizer, epoch=1)
    new = _activation_net(folded=True, seed=1)  # other initial values: all must come from the file
    ck = restore(new, new.optimizer, None, path)
    assert ck["layer_map"] == {0: 0, 1: 0, 2: 1, 3: 2, 4: 2, 5: 3}
    assert sorted(rename_parameters(host_state(old), ck)) == sorted(new.state_dict())
    for k_old, k_new in (("0.W", "0.W"), ("3.W", "2.W"), ("5.b", "3.b")):
        np.testing.assert_array_equal(old.state_dict()[k_old], new.state_dict()[k_new])
    for model in (old, new):
        for i in range(3, 6):
            model.train_step(x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)])
    for k_old, k_new in (("0.W", "0.W"), ("3.W", "2.W"), ("5.W", "3.W"), ("5.b", "3.b")):
        np.testing.assert_array_equal(old.state_dict()[k_old], new.state_dict()[k_new])


@pytest.mark.parametrize("other", ["relu_first", "relu_last", "sigmoid_layer", "wider_dropout"])
def test_a_checkpoint_of_another_network_is_not_renamed_to_fit(tmp_path, other):
    """Only the saved network with its activations folded, layer for layer, is accepted: another activation
    anywhere (even in a layer that had none), another layer class or configuration is refused."""
    from npdl.training import restore

    old = _activation_net(folded=False, seed=0)
    path = save_checkpoint(tmp_path / "ck.npz", old, old.optimizer)
    rng = backend.Generator("cpu", 0)
    first = "relu" if other == "relu_first" else "tanh"
    last = "relu" if other == "relu_last" else None
    middle = [npdl.Sigmoid()] if other == "sigmoid_layer" else [Dropout(0.5 if other == "wider_dropout" else 0.3)]
    layers = [Dense(4, 6, rng=rng, activation=first), *middle, Dense(6, 5, rng=rng, activation="elu"),
              Dense(5, 2, rng=rng, activation=last)]
    model = Sequential(layers, name="net").compile("softmax_cross_entropy", Momentum(lr=0.05))
    with pytest.raises(CheckpointError, match="do not fit this model"):
        restore(model, model.optimizer, None, path)


def test_folded_checkpoints_load_and_best_arrays_are_renamed_once(tmp_path):
    """load_checkpoint(path, model) returns the renamed checkpoint; arrays saved beside it under the old names
    are renamed, arrays already under the new names (written after the resume) are left alone."""
    from npdl.training.checkpoint import rename_parameters

    old = _activation_net(folded=False, seed=0)
    path = save_checkpoint(tmp_path / "ck.npz", old, old.optimizer)
    new = _activation_net(folded=True, seed=1)
    ck = load_checkpoint(path, model=new)
    assert ck["layer_map"] == {0: 0, 1: 0, 2: 1, 3: 2, 4: 2, 5: 3}
    saved_beside = host_state(old)
    renamed = rename_parameters(saved_beside, ck)
    assert sorted(renamed) == sorted(new.state_dict())
    assert rename_parameters(renamed, ck) is renamed  # new names: nothing to do
