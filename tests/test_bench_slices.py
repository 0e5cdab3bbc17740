"""benchmarks/slices.py: implementations timed in alternating slices, every process warm."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

import pytest

from helpers import BENCH, load_benchmark

slices = load_benchmark("bench_slices", "slices.py")


class FakeWorker:
    """Stands in for a worker process: each slice gives step times from its own list."""

    log: list = []
    fail: set = set()
    steps = {"a": [0.003, 0.001], "b": [0.010, 0.030, 0.020], "c": [0.5]}

    def __init__(self, impl, workload, device, env):
        if impl in self.fail:
            raise RuntimeError(f"{impl} worker failed:\nImportError")
        self.impl, self.info, self.times, self.closed = impl, {"version": f"{impl} 1.0", "batch_size": 4}, [], False
        self.log.append(("start", impl))

    def run(self, seconds):
        self.log.append((self.impl, round(seconds, 6)))
        self.times.extend(self.steps[self.impl])

    def close(self):
        self.log.append(("close", self.impl))


@pytest.fixture
def fake(monkeypatch):
    FakeWorker.log, FakeWorker.fail = [], set()
    monkeypatch.setattr(slices, "Worker", FakeWorker)
    monkeypatch.setattr(slices, "GAP_S", 0.0)
    return FakeWorker


def test_slices_take_turns_in_a_rotating_order(fake):
    out = slices.time_sliced(["a", "b", "c"], "mlp_b4", "cpu", seconds=1.0, slice_s=0.25, env={})
    runs = [entry for entry in fake.log if entry[0] in "abc"]
    order = [impl for impl, _ in runs]
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]  # 4 cycles, each led by the next
    assert {seconds for _, seconds in runs} == {0.25}
    # every worker is started before any timing, and closed after all of them
    assert [e for e in fake.log[:3]] == [("start", "a"), ("start", "b"), ("start", "c")]
    assert sorted(e for e in fake.log[-3:]) == [("close", "a"), ("close", "b"), ("close", "c")]
    b = out["b"]
    assert b["reps"] == 12 and b["slices"] == 4 and b["version"] == "b 1.0" and b["batch_size"] == 4
    assert b["median_ms"] == pytest.approx(statistics.median([10.0, 30.0, 20.0] * 4)) and b["min_ms"] == pytest.approx(10.0)
    assert out["a"]["median_ms"] == pytest.approx(2.0)


def test_the_seconds_split_into_whole_slices(fake):
    slices.time_sliced(["a"], "mlp_b4", "cpu", seconds=0.02, slice_s=0.25, env={})
    assert [e for e in fake.log if e[0] == "a"] == [("a", 0.02)]  # shorter than a slice: one slice of all of it
    fake.log.clear()
    slices.time_sliced(["a"], "mlp_b4", "cpu", seconds=1.0, slice_s=0.3, env={})
    assert [e for e in fake.log if e[0] == "a"] == [("a", 0.333333)] * 3


def test_a_worker_that_fails_to_start_is_left_out_with_a_note(fake, capsys):
    fake.fail = {"b"}
    out = slices.time_sliced(["a", "b"], "mlp_b4", "cpu", seconds=0.5, slice_s=0.25, env={})
    assert set(out) == {"a"} and "b worker failed" in capsys.readouterr().err
    fake.fail = {"a", "b"}
    with pytest.raises(RuntimeError, match="a worker failed"):
        slices.time_sliced(["a", "b"], "mlp_b4", "cpu", seconds=0.5, slice_s=0.25, env={})


def test_a_real_worker_times_npdl_steps():
    env = dict(os.environ, PYTHONPATH=os.path.dirname(BENCH))
    out = slices.time_sliced(["npdl"], "mlp_b2", "cpu", seconds=0.05, slice_s=0.02, env=env)
    cell = out["npdl"]
    assert cell["slices"] == 2 and cell["reps"] >= 2 and cell["batch_size"] == 2
    assert 0 < cell["min_ms"] <= cell["median_ms"] < 1000 and cell["version"].startswith("npdl ")


def test_the_worker_answers_each_run_with_step_times():
    argv = [sys.executable, os.path.join(BENCH, "slices.py"), "--impl", "npdl", "--workload", "mlp_b2"]
    done = subprocess.run(argv, input="run 0.01\nrun 0\nquit\n", capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=os.path.dirname(BENCH)))
    assert done.returncode == 0, done.stderr
    import json

    ready, first, second = [json.loads(line) for line in done.stdout.splitlines()]
    assert ready["ready"] is True and ready["batch_size"] == 2
    assert sum(first) >= 0.01 and len(second) == 1  # a budget of 0 still runs one step


def test_the_npdl_worker_keeps_freed_memory_as_npdl_bench_does(monkeypatch):
    """run.py times npdl through ``npdl bench`` with ``--slices 0`` and through this worker by default:
    both must set the heap as ``npdl bench`` does, or the two ways time different steps."""
    import npdl.cli.memory
    from npdl.bench import parse

    calls = []
    monkeypatch.setattr(npdl.cli.memory, "retain_freed_memory", lambda *a, **k: calls.append(a) or True)
    step, sync, version = slices._build("npdl", parse("mlp_b2"), "cpu")
    step()
    sync()
    assert calls == [()] and version.startswith("npdl ")
