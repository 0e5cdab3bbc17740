"""benchmarks/fuse_update_ab.py: a workload's step with and without the update in the backward pass."""

from __future__ import annotations

import time

import pytest

from helpers import load_benchmark

ab = load_benchmark("bench_fuse_update_ab", "fuse_update_ab.py")


def test_the_two_steps_differ_only_in_fuse_update_and_end_with_the_same_parameters(capsys):
    fused, separate = ab.steps("sda_b1")
    assert fused.model.fuse_update and not separate.model.fuse_update
    assert ab.main(["--workload", "sda_b1", "--readings", "1", "--alternations", "2", "--block", "1",
                    "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "in backward" in out and "the same bits" in out


def test_a_reading_times_each_side_and_swaps_which_goes_first():
    calls = []

    def side(name, seconds):
        def step():
            calls.append(name)
            time.sleep(seconds)
        return step

    a, b = ab.reading(side("a", 0.002), side("b", 0.001), alternations=4, block=1)
    assert calls == ["b", "a", "a", "b", "b", "a", "a", "b"]
    assert a == pytest.approx(2.0, rel=0.5) and b == pytest.approx(1.0, rel=0.6)


def test_different_parameters_fail_the_run(monkeypatch, capsys):
    monkeypatch.setattr(ab, "same_parameters", lambda a, b: False)
    assert ab.main(["--workload", "sda_b1", "--readings", "1", "--alternations", "2", "--block", "1",
                    "--warmup", "0"]) == 1
    assert "DIFFERENT" in capsys.readouterr().out
