"""benchmarks/profiles.py: the page of where each workload's step goes."""

from __future__ import annotations

from helpers import load_benchmark

profiles = load_benchmark("bench_profiles", "profiles.py")

RESULT = {"workload": "mlp_b20", "sum_ms": 0.5,
          "parts_ms": {"0 Dense forward": 0.3, "loss forward": 0.05, "optimizer step": 0.15}}


def test_the_page_names_the_cpu_model_and_features_and_each_parts_share(monkeypatch):
    monkeypatch.setattr(profiles, "cpu_name", lambda: "AMD EPYC")
    monkeypatch.setattr(profiles, "cpu_features", lambda: "family 25 model 17: avx2 fma avx512f")
    text = profiles.page([RESULT], "python benchmarks/profiles.py", 100)
    assert "Machine: AMD EPYC (family 25 model 17: avx2 fma avx512f), " in text
    assert "| 0 Dense forward | 0.300 | 60.0% |" in text and "| optimizer step | 0.150 | 30.0% |" in text
    assert "| **sum** | **0.500** | |" in text and "median of 100" in text


def test_without_cpuinfo_the_page_names_the_model_alone(monkeypatch):
    monkeypatch.setattr(profiles, "cpu_name", lambda: "Apple M2")
    monkeypatch.setattr(profiles, "cpu_features", lambda: "")
    text = profiles.page([RESULT], "python benchmarks/profiles.py", 100)
    assert "Machine: Apple M2, " in text and "()" not in text
