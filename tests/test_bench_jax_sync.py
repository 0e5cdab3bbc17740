"""benchmarks/jax_sync.py: JAX's step as the benchmark times it, against the step waited for after every call."""

from __future__ import annotations

import time

import pytest

from helpers import load_benchmark

js = load_benchmark("bench_jax_sync", "jax_sync.py")


class _Async:
    """A step whose work finishes ``seconds`` after the call returns, as a jitted JAX call does."""

    def __init__(self, seconds):
        self.seconds, self.done_at, self.calls = seconds, 0.0, []

    def step(self):
        self.calls.append("step")
        self.done_at = max(time.perf_counter(), self.done_at) + self.seconds

    def sync(self):
        self.calls.append("sync")
        while time.perf_counter() < self.done_at:
            pass


def test_a_slice_synchronises_once_or_after_every_step():
    fake = _Async(0.0)
    js.slice_time(fake.step, fake.sync, 3, each=False)
    assert fake.calls == ["step"] * 3 + ["sync"]
    fake.calls.clear()
    js.slice_time(fake.step, fake.sync, 3, each=True)
    assert fake.calls == ["step", "sync"] * 3 + ["sync"]


def test_a_reading_returns_as_run_then_synchronised_and_takes_turns(monkeypatch):
    order = []
    monkeypatch.setattr(js, "slice_time", lambda step, sync, steps, each: order.append(each) or (0.002 if each else 0.001))
    run, each = js.reading(None, None, 5, alternations=4)
    assert order == [True, False, False, True, True, False, False, True]
    assert run == pytest.approx(1.0) and each == pytest.approx(2.0)


def test_the_script_runs_a_jax_step(capsys):
    pytest.importorskip("jax")
    assert js.main(["--workload", "mlp_b2", "--readings", "1", "--alternations", "2", "--steps", "2",
                    "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "mlp_b2 in jax" in out and "ratio" in out
    with pytest.raises(ValueError, match="unknown workload"):
        js.main(["--workload", "nosuch_b2"])
