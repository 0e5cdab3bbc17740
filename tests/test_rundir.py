"""Run folders: one run at a time, no run overwritten by accident, failed writes named, a manifest."""

import errno
import json
import os
import re
import socket
import stat
import subprocess
import sys

import numpy as np
import pytest

from npdl.recipes import get_recipe, runner, train
from npdl.recipes.runner import RunError
from npdl.training import Callback, History, read_checkpoint
from npdl.training.errors import FileWriteError, RunFolderBusyError, RunFolderError, TrainingDivergedError
from npdl.training import rundir
from npdl.training.rundir import LOCK, OUTPUTS, RunLock, _is_output

HOLD_LOCK = ("import sys; from npdl.training.rundir import RunLock; "
             "RunLock(sys.argv[1], command='npdl train logreg --out D').acquire(); print('held', flush=True); "
             "sys.stdin.read()")


@pytest.fixture(autouse=True)
def no_pictures(monkeypatch):
    """Drawing curves.png takes longer than these runs (and report.html: ``report=False``); nothing
    here looks at them."""
    monkeypatch.setattr(runner, "_plot", lambda history, path: None)


def run(out, epochs=2, **kw):
    """The AND gate: a run of a few milliseconds with every file of a run."""
    return train(get_recipe("and-gate"), epochs=epochs, out=str(out), verbose=0, report=False, **kw)


def manifest(out):
    return json.loads((out / "run.json").read_text())


class Raise(Callback):
    """Raise ``error`` at the end of epoch ``at`` (1-based)."""

    def __init__(self, error, at=1):
        super().__init__()
        self.error, self.at = error, at

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.at:
            raise self.error


# ----------------------------------------------------------------------------------- the lock


def test_a_held_folder_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path, capsys):
    """Another process holds the folder: refused with its pid and command; once it is killed (no
    clean-up), the next run takes the lock over with a notice, and releases it at its end."""
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusyError, match=f"pid {holder.pid} on host") as refused:
            run(out)
        assert "npdl train logreg --out D" in str(refused.value) and refused.value.holder["pid"] == holder.pid
        assert sorted(os.listdir(out)) == [LOCK]  # the refused run wrote nothing
    finally:
        holder.kill()
        holder.wait()
    run(out)
    err = capsys.readouterr().err
    assert "taking over" in err and f"pid {holder.pid}" in err
    assert not (out / LOCK).exists() and manifest(out)["status"] == "finished"


def test_the_lock_is_exclusive_within_one_process_too(tmp_path):
    with RunLock(tmp_path, command="first") as lock:
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
        with pytest.raises(RunFolderBusyError, match="first"):
            RunLock(tmp_path, command="second").acquire()
        assert lock.holder["command"] == "first"
    assert not (tmp_path / LOCK).exists()
    RunLock(tmp_path).acquire().release()


def test_a_lock_left_by_another_host_is_not_taken_over(tmp_path):
    (tmp_path / LOCK).write_text(json.dumps({"host": socket.gethostname() + "-other", "pid": 1, "command": "npdl x"}))
    with pytest.raises(RunFolderBusyError, match="if that run has ended, delete"):
        run(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [LOCK]


# --------------------------------------------------------------------------- existing runs


def test_an_existing_run_is_never_replaced_without_resume_or_overwrite(tmp_path):
    run(tmp_path, epochs=3)
    before = {name: (tmp_path / name).read_bytes() for name in ("model.npz", "checkpoint.npz", "history.csv")}
    with pytest.raises(RunFolderError, match="already holds a run") as refused:
        run(tmp_path, epochs=1)
    assert "--resume" in str(refused.value) and "--overwrite" in str(refused.value)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert manifest(tmp_path)["settings"]["epochs"] == 3


def test_overwrite_deletes_only_the_files_npdl_writes(tmp_path, monkeypatch):
    run(tmp_path, epochs=3)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "pretrain_0.npz").write_bytes(b"left by an older run")
    (tmp_path / ".checkpoint.npz.0123456789ab.tmp").write_bytes(b"half a write")
    for folder in ("logs", "kept"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "events").write_text("old")
    monkeypatch.setattr(rundir, "OUTPUTS", rundir.OUTPUTS + ["logs/"])
    run(tmp_path, epochs=1, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "kept" / "events").exists()
    assert not (tmp_path / "logs").exists()
    assert not (tmp_path / "pretrain_0.npz").exists() and not (tmp_path / ".checkpoint.npz.0123456789ab.tmp").exists()
    assert read_checkpoint(tmp_path / "checkpoint.npz")["epoch"] == 1 and manifest(tmp_path)["settings"]["epochs"] == 1


def test_a_run_without_checkpoint_is_refused_with_overwrite_as_the_way(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(RunFolderError, match="no checkpoint to continue from: replace it with --overwrite"):
        run(tmp_path)


def test_resume_and_overwrite_together_are_refused(tmp_path):
    run(tmp_path, epochs=1)
    with pytest.raises(RunFolderError, match="give one"):
        run(tmp_path, resume=True, overwrite=True)


def test_a_failed_resume_makes_no_folder(tmp_path):
    with pytest.raises(RunFolderError, match="no checkpoint at"):
        run(tmp_path / "missing", resume=True)
    assert not (tmp_path / "missing").exists()


def test_a_file_as_out_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        run(tmp_path / "f")


def test_every_file_the_recipes_write_is_listed_as_an_output():
    """A name written into a run folder but missing from OUTPUTS would survive --overwrite."""
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "npdl", "recipes")
    names = set()
    for folder, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                text = open(os.path.join(folder, f)).read()
                names |= set(re.findall(r'f?"([\w{}()\[\]. +*-]+\.(?:png|npz|csv|json))"', text))
    names = {re.sub(r"\{[^}]*\}", "7", n) for n in names}
    assert {"reconstructions.png", "codes.png", "pretrain_7.npz", "filters_corruption_7.png"} <= names
    assert [n for n in names if not _is_output(n)] == [], OUTPUTS


# ------------------------------------------------------------------------------- the manifest


def test_the_manifest_says_running_during_the_run_and_finished_at_its_end(tmp_path):
    seen = []

    class Read(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(manifest(tmp_path))

    result = run(tmp_path, epochs=2, seed=11, extra_callbacks=[Read()])
    during, after = seen[0], manifest(tmp_path)
    assert during["status"] == "running" and during["ended"] is None and during["result"] is None
    assert after["status"] == "finished" and after["ended"] >= after["started"] and after["seconds"] > 0
    assert after["seed"] == 11 and after["settings"]["recipe"] == "and-gate" and after["settings"]["epochs"] == 2
    assert after["result"]["epochs"] == result.epochs == 2 and after["pid"] == os.getpid()
    assert after["command"]  # this process's command line
    env = after["environment"]
    assert env["numpy"] == np.__version__ and env["cpu"] and "threads" in env["blas"]
    assert "version" in env["numba"] and "available" in env["cupy"]
    import npdl

    assert after["npdl"]["version"] == npdl.__version__


def test_a_resumed_run_keeps_the_manifest_of_the_first(tmp_path):
    run(tmp_path, epochs=1, seed=3)
    first = manifest(tmp_path)
    run(tmp_path, epochs=2, seed=3, resume=True)
    second = manifest(tmp_path)
    assert second["settings"]["resume"] and second["result"]["resumed_from_epoch"] == 1
    assert [m["started"] for m in second["previous"]] == [first["started"]]


@pytest.mark.parametrize("error,status", [(KeyboardInterrupt(), "interrupted"),
                                          (TrainingDivergedError("loss is nan"), "diverged"),
                                          (ValueError("a bug"), "failed")])
def test_the_manifest_records_how_a_run_ended(tmp_path, error, status):
    with pytest.raises(type(error)):
        run(tmp_path, epochs=3, extra_callbacks=[Raise(error, at=2)])
    record = manifest(tmp_path)
    assert record["status"] == status and record["ended"] is not None and record["result"] is None
    assert not (tmp_path / LOCK).exists()
    if status == "failed":
        assert record["error"] == "a bug"


# ----------------------------------------------------------------------------- failed writes


def fill_disk_after(monkeypatch, n):
    """np.savez writes ``n`` archives, then the disk is full."""
    calls, savez = [0], np.savez

    def full(file, **arrays):
        calls[0] += 1
        if calls[0] > n:
            file.write(b"PK\x03\x04 part")
            raise OSError(errno.ENOSPC, "No space left on device")
        return savez(file, **arrays)

    monkeypatch.setattr(np, "savez", full)


@pytest.mark.parametrize("written,note", [(1, "the last good checkpoint, {out}/checkpoint.npz (epoch 1), is kept"),
                                          (0, "no checkpoint was written yet")])
def test_a_full_disk_is_one_error_naming_the_file_and_what_is_kept(tmp_path, monkeypatch, written, note):
    fill_disk_after(monkeypatch, written)
    with pytest.raises(FileWriteError) as failed:
        run(tmp_path, epochs=3)
    message = str(failed.value)
    assert f"cannot write {tmp_path}/checkpoint.npz: No space left on device" in message
    assert note.format(out=tmp_path) in message and "--resume" in message
    assert failed.value.errno == errno.ENOSPC and failed.value.filename == f"{tmp_path}/checkpoint.npz"
    monkeypatch.undo()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert manifest(tmp_path)["status"] == "failed" and not (tmp_path / LOCK).exists()
    if written:
        assert read_checkpoint(tmp_path / "checkpoint.npz")["epoch"] == 1


def test_a_full_disk_while_writing_the_history_is_named_too(tmp_path, monkeypatch):
    def full(self, path):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(History, "to_csv", full)
    with pytest.raises(FileWriteError, match=r"history\.csv\.tmp: No space left on device; the last good checkpoint"):
        run(tmp_path, epochs=2)


def test_an_unwritable_folder_fails_before_training(tmp_path, monkeypatch):
    """A read-only folder (simulated: the tests may run as root, whom a mode does not stop)."""
    epochs, real_open = [], os.open

    def read_only(path, *args, **kw):
        if os.fspath(path).startswith(str(tmp_path)):
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real_open(path, *args, **kw)

    class Count(Callback):
        def on_epoch_end(self, epoch, logs=None):
            epochs.append(epoch)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(RunFolderError, match=f"cannot write in {tmp_path} .Read-only file system"):
        run(tmp_path, extra_callbacks=[Count()])
    assert epochs == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_fails_before_training(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(RunFolderError, match="cannot write in"):
            run(tmp_path)
    finally:
        tmp_path.chmod(0o755)


def test_run_files_get_the_mode_of_any_new_file(tmp_path):
    from test_train_cli import tiny_digits

    old = os.umask(0o022)
    try:
        train(get_recipe("mlp"), epochs=2, batch_size=20, out=str(tmp_path), verbose=0, data=tiny_digits(),
              report=False)
    finally:
        os.umask(old)
    modes = {n: stat.S_IMODE((tmp_path / n).stat().st_mode) for n in os.listdir(tmp_path)}
    assert {"checkpoint.npz", "best.npz", "model.npz", "history.csv", "run.json"} <= set(modes)
    assert set(modes.values()) == {0o644}, modes


# ------------------------------------------------------------------------------------ seeds


@pytest.mark.parametrize("seed", [-5, 2 ** 32, 1.5, True, "3"])
def test_a_bad_seed_is_a_clear_error(tmp_path, seed):
    with pytest.raises(RunError, match="seed must be an integer from 0 to 4294967295"):
        run(tmp_path, seed=seed)
    assert not os.listdir(tmp_path)
