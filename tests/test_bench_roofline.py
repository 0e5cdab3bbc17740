"""benchmarks/run.py and benchmarks/plots.py against the ceilings: the roofline points and plots, the table of
achieved rates, the peers' FLOP counts and the competing load (``--load``)."""

import json
import os
import subprocess
import sys

import pytest

from npdl.bench import parse
from npdl.bench.work import workload_work

from helpers import BENCH, load_benchmark as _load  # noqa: E402


def _rows():
    work = workload_work(parse("mlp_b20"))
    rows = []
    for impl, times in (("npdl", [2.0, 4.0, 3.0]), ("torch", [1.0, 1.0, 5.0])):
        for k, ms in enumerate(times):
            rows.append({"workload": "mlp_b20", "impl": impl, "device": "cpu", "batch_size": "20", "round": k + 1,
                         "median_ms": str(ms), "flops": str(work.flops), "bytes": str(work.bytes),
                         "gemm_gflops_per_s": "80.0", "bandwidth_gb_per_s": "8.0", "device_name": "a CPU"})
    return rows, work


def test_roofline_points_use_the_median_round():
    plots = _load("bench_plots_r", "plots.py")
    rows, work = _rows()
    points = plots.roofline_points(rows)["cpu"]
    intensity, rate = points[("mlp_b20", "npdl")]
    assert intensity == pytest.approx(work.flops / work.bytes)
    assert rate == pytest.approx(work.flops / 3e-3 / 1e9)  # median of 2, 4, 3 ms
    assert points[("mlp_b20", "torch")][1] == pytest.approx(work.flops / 1e-3 / 1e9)
    assert plots.peaks_from_rows(rows) == {"cpu": {"gemm_gflops_per_s": 80.0, "bandwidth_gb_per_s": 8.0}}
    assert plots.roofline_points([{**rows[0], "flops": ""}]) == {}  # rows without a count are left out


def test_roofline_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    plots = _load("bench_plots_r", "plots.py")
    rows, _ = _rows()
    paths = plots.write_rooflines(rows, plots.peaks_from_rows(rows), str(tmp_path / "r"))
    assert paths == [str(tmp_path / "r-roofline-cpu.png")] and os.path.getsize(paths[0]) > 1000
    assert plots.write_rooflines(rows, {}, str(tmp_path / "none")) == []  # no ceilings, no roofline


def test_run_table_of_achieved_rates(capsys):
    run = _load("bench_run_r", "run.py")
    rows, work = _rows()
    peak = {"gemm_gflops_per_s": 80.0, "bandwidth_gb_per_s": 8.0}
    run.print_roofline(rows, ["mlp_b20"], ["cpu"], ["npdl", "torch"], {"cpu": peak})
    out = capsys.readouterr().out
    rate = work.flops / 3e-3 / 1e9  # the median round, 3 ms
    floor = max(work.flops / 80e9, work.bytes / 8e9) * 1e3
    assert (f"| mlp_b20 | cpu | npdl | 3.000 | {rate:.2f} | {100 * rate / 80:.1f} | {work.flops / work.bytes:.1f} | "
            f"{floor:.3f} | {3.0 - floor:.3f} |") in out
    assert f"| mlp_b20 | cpu | torch | 1.000 | {work.flops / 1e-3 / 1e9:.2f} |" in out


def test_peers_report_npdls_count_for_the_workload():
    pytest.importorskip("torch")
    done = subprocess.run([sys.executable, os.path.join(BENCH, "peers.py"), "--impl", "torch", "--workload", "rnn_b2",
                           "--min-seconds", "0.01"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout.strip().splitlines()[-1])
    work = workload_work(parse("rnn_b2"))
    assert (r["flops"], r["bytes"]) == (work.flops, work.bytes)


def test_load_runs_busy_processes_and_ends_them():
    run = _load("bench_run_r", "run.py")
    with run.Load(2) as load:
        assert len(load.procs) == 2 and all(p.poll() is None for p in load.procs)
    assert all(p.poll() is not None for p in load.procs)
    with run.Load(0) as load:
        assert load.procs == []
