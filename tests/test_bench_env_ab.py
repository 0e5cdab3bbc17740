"""benchmarks/env_ab.py: npdl under two settings of one environment variable, in alternating slices."""

from __future__ import annotations

import json
import sys

import pytest

from helpers import load_benchmark

env_ab = load_benchmark("bench_env_ab", "env_ab.py")


class FakeWorker:
    """Stands in for an npdl worker process: its step time is read off the variable it was given."""

    log: list = []
    step_s = {"20": 0.004, None: 0.001}

    def __init__(self, impl, workload, device, env):
        self.value = env.get("OPENBLAS_THREAD_TIMEOUT")
        self.times = []
        self.log.append(("start", workload, self.value))

    def run(self, seconds):
        self.log.append(("run", self.value, round(seconds, 6)))
        self.times.append(self.step_s[self.value])

    def close(self):
        self.log.append(("close", self.value))


@pytest.fixture
def fake(monkeypatch):
    FakeWorker.log = []
    monkeypatch.setattr(env_ab, "Worker", FakeWorker)
    monkeypatch.setattr(sys.modules[env_ab.take_turns.__module__], "GAP_S", 0.0)
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "9")  # the caller's own value reaches neither side
    return FakeWorker


def test_each_side_gets_its_value_and_they_take_turns(fake, tmp_path, capsys):
    out = tmp_path / "ab.json"
    env_ab.main(["OPENBLAS_THREAD_TIMEOUT", "20", "-", "--workload", "mlp_b4,sda_b1", "--rounds", "2",
                 "--seconds", "1", "--slice", "0.25", "--json", str(out)])
    starts = [e for e in fake.log if e[0] == "start"]
    assert starts == [("start", "mlp_b4", "20"), ("start", "mlp_b4", None)] * 2 + [("start", "sda_b1", "20"),
                                                                                     ("start", "sda_b1", None)] * 2
    first_round = [e[1] for e in fake.log[2:10]]
    assert first_round == ["20", None, None, "20", "20", None, None, "20"]  # each cycle led by the other side
    assert {e[2] for e in fake.log if e[0] == "run"} == {0.25}
    saved = json.loads(out.read_text())
    assert saved["sides"] == ["A: OPENBLAS_THREAD_TIMEOUT=20", "B: OPENBLAS_THREAD_TIMEOUT unset"]
    assert len(saved["medians_ms"]["sda_b1"]) == 2
    assert saved["medians_ms"]["mlp_b4"][0] == {saved["sides"][0]: pytest.approx(4.0), saved["sides"][1]: pytest.approx(1.0)}
    assert "mlp_b4     B / A median 0.250" in capsys.readouterr().out


def test_the_same_value_twice_is_refused(fake):
    with pytest.raises(SystemExit):
        env_ab.main(["OPENBLAS_THREAD_TIMEOUT", "4", "4"])
    assert fake.log == []
