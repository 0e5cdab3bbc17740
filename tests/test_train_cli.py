"""npdl train (recipes, resume, files, JSON) and npdl bench, on tiny data and small real-MNIST smoke runs."""

import json
import os

import numpy as np
import pytest

from npdl import cli
from npdl.recipes import get_recipe, train
from npdl.training import read_checkpoint
from npdl.training.loop import _batches

RESULT_KEYS = ("model", "device", "epochs", "seconds", "train_loss", "valid_error", "test_error")


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def tiny_digits(n_train=120, n_valid=40, n_test=40, seed=0):
    """Ten separable 784-pixel prototypes plus noise: a stand-in for MNIST the MLP can learn."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((10, 784)).astype(np.float32)

    def part(n):
        y = rng.integers(0, 10, n)
        return (prototypes[y] + 0.3 * rng.standard_normal((n, 784))).astype(np.float32), y

    return {"train": part(n_train), "valid": part(n_valid), "test": part(n_test)}


def test_and_gate_json_is_the_last_line(capsys):
    code, out, _ = run_cli(capsys, "train", "and-gate", "--json", "--quiet")
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1])
    for key in RESULT_KEYS:
        assert key in result
    assert result["model"] == "and-gate" and result["device"] == "cpu" and result["epochs"] == 500
    assert result["test_error"] == 0.0 and result["train_loss"] < 0.1


def test_regressor_learns_the_line_and_writes_files(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "train", "regressor", "--epochs", "600", "--lr", "0.05", "--out", str(tmp_path),
                           "--json", "--quiet")
    result = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and result["valid_error"] is None and result["test_error"] is None
    W, b = result["extra"]["params"]["0.W"][0], result["extra"]["params"]["0.b"][0]
    assert abs(W - 0.5) < 0.03 and abs(b - 2.0) < 0.02 and result["test_loss"] < 0.005
    assert {"history.csv", "model.npz", "checkpoint.npz"} <= set(os.listdir(tmp_path))
    rows = (tmp_path / "history.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,loss") and len(rows) == 601


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path):
    """mlp recipe (SGD fused updates, L2, patience rule) on tiny data: 2 epochs + resume to 5 == 5 epochs."""
    recipe, data = get_recipe("mlp"), tiny_digits()
    full = train(recipe, epochs=5, batch_size=20, lr=0.05, out=str(tmp_path / "full"), verbose=0, data=data)
    train(recipe, epochs=2, batch_size=20, lr=0.05, out=str(tmp_path / "cut"), verbose=0, data=data)
    resumed = train(recipe, epochs=5, batch_size=20, lr=0.05, out=str(tmp_path / "cut"), resume=True, verbose=0,
                    data=data)
    assert resumed.resumed_from_epoch == 2 and resumed.epochs == full.epochs == 5
    a = read_checkpoint(tmp_path / "full" / "checkpoint.npz")
    b = read_checkpoint(tmp_path / "cut" / "checkpoint.npz")
    assert a["params"].keys() == b["params"].keys()
    for name in a["params"]:
        assert np.array_equal(a["params"][name], b["params"][name]), name
    assert a["history"].loss == b["history"].loss
    assert (resumed.valid_error, resumed.test_error) == (full.valid_error, full.test_error)
    assert a["extra"]["patience"] == b["extra"]["patience"]
    for name, value in read_checkpoint(tmp_path / "full" / "model.npz")["params"].items():
        assert np.array_equal(value, read_checkpoint(tmp_path / "cut" / "model.npz")["params"][name]), name


def test_resume_refuses_another_model_or_settings(tmp_path):
    data = tiny_digits()
    train(get_recipe("mlp"), epochs=1, batch_size=20, out=str(tmp_path), verbose=0, data=data)
    with pytest.raises(Exception, match="npdl train mlp"):
        train(get_recipe("logreg"), epochs=2, batch_size=20, out=str(tmp_path), resume=True, verbose=0, data=data)
    with pytest.raises(Exception, match="lr"):
        train(get_recipe("mlp"), epochs=2, batch_size=20, lr=0.5, out=str(tmp_path), resume=True, verbose=0,
              data=data)


@pytest.mark.parametrize("argv,message", [
    (["train", "nosuchmodel"], "invalid choice"),
    (["train", "and-gate", "--epochs", "0"], "positive integer"),
    (["train", "and-gate", "--lr", "-1"], "positive number"),
    (["train", "and-gate", "--resume"], "--resume needs --out"),
    (["train", "and-gate", "--device", "tpu"], "unknown device"),
    (["train", "and-gate", "--seed", "-5"], "expected a seed from 0 to 4294967295, got '-5'"),
    (["train", "and-gate", "--seed", "4294967296"], "expected a seed from 0 to 4294967295"),
    (["train", "and-gate", "--overwrite"], "--overwrite needs --out"),
    (["bench", "--workload", "resnet_b1"], "unknown workload"),
])
def test_argument_errors_are_messages_not_tracebacks(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err


def test_resume_without_a_checkpoint_says_where_it_looked(capsys, tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["train", "and-gate", "--resume", "--out", str(tmp_path / "nothing")])
    assert "no checkpoint at" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()


def _cli_case(tmp_path, case):
    """Arguments after ``npdl train`` for one user error, with the folder they need made."""
    from npdl.training.rundir import RunLock

    out, held = str(tmp_path / "out"), None
    if case == "file as --out":
        (tmp_path / "out").write_text("not a folder")
    if case == "existing run":
        train(get_recipe("and-gate"), epochs=1, out=out, verbose=0)
    if case == "held folder":
        held = RunLock(out, command="npdl train logreg --out D")
        os.makedirs(out)
        held.acquire()
    argv = {"seed": ["and-gate", "--seed", "-5"], "resume without a run": ["and-gate", "--resume", "--out", out],
            "diverged in epoch 1": ["regressor", "--lr", "1e30", "--batch-size", "1", "--epochs", "3", "--out", out]}
    return argv.get(case, ["and-gate", "--epochs", "1", "--out", out]), held


@pytest.mark.parametrize("case,code,message", [
    ("seed", 2, "expected a seed from 0 to 4294967295"),
    ("file as --out", 2, "is a file, not a folder"),
    ("existing run", 2, "); continue it with --resume or replace it with --overwrite"),
    ("resume without a run", 2, "no checkpoint at"),
    ("held folder", 2, f"is in use by another run (pid {os.getpid()} on host"),
    ("diverged in epoch 1", 1, "training diverged in epoch 1: the running loss became"),
])
def test_the_command_prints_a_message_not_a_traceback(tmp_path, case, code, message):
    import subprocess
    import sys

    argv, held = _cli_case(tmp_path, case)
    try:
        done = subprocess.run([sys.executable, "-m", "npdl", "train", *argv, "--quiet"], capture_output=True,
                              text=True, timeout=120)
    finally:
        if held is not None:
            held.release()
    assert done.returncode == code and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert message in done.stderr and "npdl train" in done.stderr, done.stderr[-3000:]
    if case == "diverged in epoch 1":
        assert f"No checkpoint was written yet (in {tmp_path / 'out'})." in done.stderr
        assert "checkpoint.npz" not in done.stderr and json.loads((tmp_path / "out" / "run.json").read_text())[
            "status"] == "diverged"


def test_bench_json_lines(capsys):
    code, out, _ = run_cli(capsys, "bench", "--workload", "mlp_b20,sda_b2", "--json", "--min-seconds", "0.05")
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert code == 0 and [r["workload"] for r in records] == ["mlp_b20", "sda_b2"]
    for r in records:
        assert r["impl"] == "npdl" and r["device"] == "cpu" and r["reps"] >= 10
        assert 0 < r["min_ms"] <= r["median_ms"]
    assert records[1]["batch_size"] == 2


def test_bench_profile_splits_the_step_by_layer(capsys):
    code, out, _ = run_cli(capsys, "bench", "--workload", "lenet_b2,lstm_b3", "--profile", "3", "--json")
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert code == 0 and [r["workload"] for r in records] == ["lenet_b2", "lstm_b3"]
    parts = records[0]["parts_ms"]
    # every LeNet layer forward and backward (down to the first conv), the loss and the optimizer
    assert {"0 Conv2D forward", "1 MaxPool2D forward", "8 Dense forward", "0 Conv2D backward",
            "8 Dense backward", "loss forward", "loss backward", "optimizer step"} <= set(parts)
    assert all(ms > 0 for ms in parts.values())
    assert records[0]["sum_ms"] == pytest.approx(sum(parts.values()))
    assert {"0 LSTM forward", "1 TimeDistributed backward"} <= set(records[1]["parts_ms"])


def test_profile_leaves_the_model_unwrapped():
    from npdl.bench import parse
    from npdl.bench.npdl_step import npdl_step
    from npdl.bench.profile import profile_step

    step, sync = npdl_step(parse("mlp_b4"))
    model = step.model
    profile_step(step, sync, reps=2, warmup=1)
    assert all("forward" not in vars(layer) and "backward" not in vars(layer) for layer in model.layers)
    assert "step" not in vars(model.optimizer) and "forward" not in vars(model.loss)


def test_drop_last_batches():
    assert _batches(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert _batches(10, 4, drop_last=True) == [(0, 4), (4, 8)]
    assert _batches(3, 4, drop_last=True) == [(0, 3)]  # fewer examples than a batch: keep them


@pytest.mark.mnist
def test_logreg_one_epoch_on_real_mnist(capsys, mnist_dir):
    code, out, _ = run_cli(capsys, "train", "logreg", "--epochs", "1", "--data-dir", mnist_dir, "--json", "--quiet")
    result = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and result["epochs"] == 1
    assert 0.05 < result["test_error"] < 0.15 and 0.05 < result["valid_error"] < 0.15  # 7.3% when converged


KILLED_RUN = r"""
import os, signal, sys
sys.path.insert(0, {tests!r})
from npdl.recipes import get_recipe, train
from npdl.training import Callback
from test_train_cli import tiny_digits


class KillMidEpoch(Callback):
    def on_batch_end(self, batch, logs=None):
        if len(self.model.history) == 3 and batch == 2:  # epoch 4, after 3 checkpoints were written
            os.kill(os.getpid(), signal.SIGKILL)


train(get_recipe("mlp"), epochs=6, batch_size=20, lr=0.05, out={out!r}, verbose=0, data=tiny_digits(),
      extra_callbacks=[KillMidEpoch()])
"""


def test_a_killed_run_resumes_to_the_same_parameters(tmp_path):
    """SIGKILL in the middle of epoch 4, then --resume: the same final parameters as a run never stopped."""
    import subprocess
    import sys

    killed = tmp_path / "killed"
    code = KILLED_RUN.format(tests=os.path.dirname(os.path.abspath(__file__)), out=str(killed))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr[-2000:]  # it really was killed
    assert read_checkpoint(killed / "checkpoint.npz")["epoch"] == 3
    recipe, data = get_recipe("mlp"), tiny_digits()
    resumed = train(recipe, epochs=6, batch_size=20, lr=0.05, out=str(killed), resume=True, verbose=0, data=data)
    full = train(recipe, epochs=6, batch_size=20, lr=0.05, out=str(tmp_path / "full"), verbose=0, data=data)
    assert resumed.resumed_from_epoch == 3 and resumed.epochs == 6
    a, b = read_checkpoint(killed / "model.npz"), read_checkpoint(tmp_path / "full" / "model.npz")
    for name in a["params"]:
        assert np.array_equal(a["params"][name], b["params"][name]), name
    assert (resumed.valid_error, resumed.test_error) == (full.valid_error, full.test_error)


def test_the_same_recipe_trains_the_same_on_the_strict_backend(tmp_path):
    """The whole training path (recipe, SGD with L2, patience, checkpoints) runs unchanged on
    array-api-strict, the stand-in for a foreign device, and lands where the CPU run lands."""
    recipe, data = get_recipe("mlp"), tiny_digits()
    runs = {device: train(recipe, device=device, epochs=3, batch_size=20, lr=0.05, out=str(tmp_path / device),
                          verbose=0, data=data) for device in ("cpu", "strict")}
    assert runs["strict"].device == "strict"
    cpu = read_checkpoint(tmp_path / "cpu" / "model.npz")["params"]
    strict = read_checkpoint(tmp_path / "strict" / "model.npz")["params"]
    for name in cpu:  # float32; the CPU run's fused BLAS update rounds differently from the reference
        np.testing.assert_allclose(strict[name], cpu[name], rtol=1e-4, atol=1e-5, err_msg=name)
    assert runs["strict"].test_error == pytest.approx(runs["cpu"].test_error, abs=0.03)
