"""benchmarks/after_sweep.py: small operations timed right after a sweep, against right after nothing."""

from __future__ import annotations

import json
import time

import pytest

from helpers import load_benchmark

after_sweep = load_benchmark("bench_after_sweep", "after_sweep.py")


def _fake(cold_s: float, warm_s: float):
    """A sweep that marks the caches cold and an operation that takes ``cold_s`` right after it,
    ``warm_s`` otherwise (sleeps, so the medians are far apart whatever the machine does)."""
    state = {"cold": False}

    def sweeps(mib):
        def sweep():
            state["cold"] = bool(mib)
        return sweep

    def op():
        time.sleep(cold_s if state["cold"] else warm_s)
        state["cold"] = False

    return sweeps, op


def test_each_size_is_timed_after_its_sweep_and_compared_with_no_sweep():
    sweeps, op = _fake(cold_s=0.004, warm_s=0.001)
    rows = after_sweep.measure([0, 8], repeats=5, ops={"op": op}, sweeps=sweeps)
    assert [r["mib"] for r in rows] == [0, 8]
    assert rows[0]["ratio"]["op"] == pytest.approx(1.0, abs=0.5)
    assert rows[1]["us"]["op"] == pytest.approx(4000, rel=0.5)
    assert rows[1]["ratio"]["op"] == pytest.approx(4.0, rel=0.5)  # against the no-sweep calls beside it


def test_the_table_shows_microseconds_and_the_ratio():
    rows = [{"mib": 4, "us": {"add": 18.1, "step": 1072.2}, "ratio": {"add": 6.03, "step": 1.234}}]
    text = after_sweep.table(rows)
    assert text.splitlines()[0] == "| swept MiB | add us (x no sweep) | step us (x no sweep) |"
    assert "| 4 | 18.1 (6.03x) | 1072.2 (1.23x) |" in text


def test_a_real_sweep_streams_the_size_asked():
    assert after_sweep.sweep_of(0)() is None
    assert after_sweep.sweep_of(1)() == pytest.approx((1 << 20) // 4)  # a sum of ones: one per float32


def test_an_existing_json_is_refused_and_a_new_one_names_the_machine_and_command(tmp_path, monkeypatch, capsys):
    sweeps, op = _fake(cold_s=0.0, warm_s=0.0)
    monkeypatch.setattr(after_sweep, "operations", lambda: {"op": op})
    out = tmp_path / "a.json"
    assert after_sweep.main(["--mib", "0,2", "--repeats", "2", "--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert [r["mib"] for r in saved["rows"]] == [0, 2]
    assert saved["command"].startswith("python benchmarks/after_sweep.py --mib 0,2")
    assert saved["machine"]["cores"] >= 1
    with pytest.raises(SystemExit):
        after_sweep.main(["--mib", "0", "--json", str(out)])
    assert "exists" in capsys.readouterr().err


def test_bad_sizes_are_refused():
    with pytest.raises(SystemExit):
        after_sweep.main(["--mib", "four"])
    with pytest.raises(SystemExit):
        after_sweep.main(["--mib", "-1"])
