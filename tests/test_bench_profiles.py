"""benchmarks/profiles.py: the page of where each workload's step goes, on one machine or several."""

from __future__ import annotations

import json

import pytest

from helpers import load_benchmark

profiles = load_benchmark("bench_profiles", "profiles.py")

RESULT = {"workload": "mlp_b20", "sum_ms": 0.5,
          "parts_ms": {"0 Dense forward": 0.3, "loss forward": 0.05, "optimizer step": 0.15}}


def _machine(monkeypatch, name, features, results, label):
    monkeypatch.setattr(profiles, "cpu_name", lambda: name)
    monkeypatch.setattr(profiles, "cpu_features", lambda: features)
    return dict(profiles.machine_of(results, "python benchmarks/profiles.py", 100), label=label)


def test_the_page_names_the_cpu_model_and_features_and_each_parts_share(monkeypatch):
    m = _machine(monkeypatch, "AMD EPYC", "family 25 model 17: avx2 fma avx512f", [RESULT], "Zen 4")
    text = profiles.page([m])
    assert "**Zen 4**: AMD EPYC (family 25 model 17: avx2 fma avx512f), " in text and "median of 100" in text
    assert "| part | Zen 4 ms | share |" in text
    assert "| 0 Dense forward | 0.300 | 60.0% |" in text and "| optimizer step | 0.150 | 30.0% |" in text
    assert "| **sum** | **0.500** | |" in text


def test_without_cpuinfo_the_page_names_the_model_alone(monkeypatch):
    text = profiles.page([_machine(monkeypatch, "Apple M2", "", [RESULT], "M2")])
    assert "**M2**: Apple M2, " in text and "()" not in text


def test_two_machines_side_by_side_each_share_of_its_own_step(monkeypatch):
    slow = {"workload": "mlp_b20", "sum_ms": 2.0,
            "parts_ms": {"0 Dense forward": 0.5, "loss forward": 0.5, "optimizer step": 1.0}}
    only_here = {"workload": "da_b1", "sum_ms": 1.0, "parts_ms": {"optimizer step": 1.0}}
    a = _machine(monkeypatch, "AMD EPYC", "family 25 model 17: avx512f", [RESULT], "Zen 4")
    b = _machine(monkeypatch, "AMD EPYC", "family 23 model 1: avx2", [slow, only_here], "Zen 1")
    text = profiles.page([a, b])
    assert "| part | Zen 4 ms | share | Zen 1 ms | share |" in text
    assert "| 0 Dense forward | 0.300 | 60.0% | 0.500 | 25.0% |" in text
    assert "| optimizer step | 0.150 | 30.0% | 1.000 | 50.0% |" in text
    assert "| **sum** | **0.500** | | **2.000** | |" in text
    da = text.split("## da_b1")[1]  # measured on one machine only: the other's cells are dashes
    assert "| optimizer step | – | – | 1.000 | 100.0% |" in da and "| **sum** | – | | **1.000** | |" in da


def test_saved_results_render_the_same_page_and_are_never_written_over(monkeypatch, tmp_path):
    m = _machine(monkeypatch, "AMD EPYC", "family 23 model 1: avx2", [RESULT], "Zen 1")
    path = tmp_path / "2026-12-05-profiles-zen1.json"
    path.write_text(json.dumps({k: v for k, v in m.items() if k != "label"}))
    loaded = profiles.load([str(path)])
    assert loaded[0]["label"] == "zen1"  # from the file's name when the file names no label
    assert profiles.page(loaded) == profiles.page([dict(m, label="zen1")])
    out = tmp_path / "page.md"
    assert profiles.main(["--render", str(path), "--out", str(out)]) == 0
    assert "| 0 Dense forward | 0.300 | 60.0% |" in out.read_text()
    with pytest.raises(SystemExit):
        profiles.main(["--workload", "mlp_b20", "--json", str(path), "--out", str(out)])
    with pytest.raises(SystemExit):
        profiles.main(["--render", str(tmp_path / "missing.json"), "--out", str(out)])
