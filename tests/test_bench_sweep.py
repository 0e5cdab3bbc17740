"""Batch-size sweeps: workload expansion, the timers (CPU and, with a fake event class, CUDA events),
``npdl bench --batch-sizes``, the GPU/CPU crossover on synthetic rows, and benchmarks/run.py's CSV and plots."""

import csv
import json
import os
import subprocess
import sys
import types

import pytest

from npdl import backend, cli
from npdl.bench import timing
from npdl.bench.workloads import expand, parse_batch_sizes

from helpers import BENCH, load_benchmark as _load  # noqa: E402


# ---------------------------------------------------------------------- workloads of a sweep
def test_expand_sweeps_every_family_over_every_batch_size():
    names = [w.name for w in expand(["mlp", "lenet_b500", "mlp_b20"], [1, 8])]
    assert names == ["mlp_b1", "mlp_b8", "lenet_b1", "lenet_b8"]  # FAMILY_bN gives its family; no repeats
    assert [w.batch_size for w in expand(["sda"], [32])] == [32]
    assert [w.name for w in expand(["mlp_b20", "sda_b1", "mlp_b20"])] == ["mlp_b20", "sda_b1"]


def test_expand_and_batch_sizes_errors():
    with pytest.raises(ValueError, match="family without a batch size"):
        expand(["mlp"])
    with pytest.raises(ValueError, match="unknown workload"):
        expand(["resnet"], [1])
    assert parse_batch_sizes("1, 8,32,") == [1, 8, 32]
    for bad in ("0", "8,x", "", "-4"):
        with pytest.raises(ValueError, match="batch-sizes"):
            parse_batch_sizes(bad)


# ---------------------------------------------------------------------- timers
def test_wall_timer_reads_step_and_sync_once(monkeypatch):
    """The reading spans the step and the device synchronisation (a GPU step's work ends there)."""
    clock = {"now": 100.0}
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    calls = []

    def advance(name, seconds):
        calls.append(name)
        clock["now"] += seconds

    timer = timing.WallTimer(lambda: advance("sync", 0.5))
    assert timer(lambda: advance("step", 2.0)) == 2.5
    assert calls == ["step", "sync"]


def test_measure_uses_the_timer_for_every_timed_step():
    steps, readings = [], []

    def timer(step):
        step()
        readings.append(1)
        return 0.002  # 2 ms, whatever the clock says

    result = timing.measure(lambda: steps.append(1), min_seconds=0.01, warmup_seconds=0.0, min_warmup=3,
                            min_reps=10, timer=timer)
    assert result == {"median_ms": pytest.approx(2.0), "min_ms": pytest.approx(2.0), "reps": 10}
    assert len(steps) == 3 + 10 and len(readings) == 10


class FakeCuda:
    """``cupy.cuda`` as the event timer uses it: a fake clock in ms that the step advances."""

    def __init__(self):
        self.clock = 0.0
        self.log = []
        cuda = self

        class Event:
            def __init__(self):
                self.t, self.done = None, False

            def record(self, stream=None):
                self.t, self.done = cuda.clock, False
                cuda.log.append("record")

            def synchronize(self):
                self.done = True
                cuda.log.append("synchronize")

        self.Event = Event

    def get_elapsed_time(self, start, stop):
        assert stop.done, "the stop event must be waited for before reading the time"
        self.log.append("elapsed")
        return stop.t - start.t


def test_cuda_event_timer_reads_the_time_between_its_events():
    cuda = FakeCuda()
    timer = timing.CudaEventTimer(cuda)

    def step():
        cuda.log.append("step")
        cuda.clock += 3.0  # the GPU spends 3 ms

    assert timer(step) == pytest.approx(0.003)
    assert cuda.log == ["record", "step", "record", "synchronize", "elapsed"]
    result = timing.measure(step, min_seconds=0.0, warmup_seconds=0.0, min_warmup=1, min_reps=4, timer=timer)
    assert result["median_ms"] == pytest.approx(3.0) and result["reps"] == 4


def test_timer_and_device_name_on_the_cpu():
    cpu = backend.get_device("cpu")
    timer = timing.timer_for(cpu)
    assert isinstance(timer, timing.WallTimer) and timer.sync == cpu.synchronize and timer.name == "perf_counter"
    assert timing.device_name(cpu) == timing.cpu_name() != ""


# ---------------------------------------------------------------------- npdl bench
def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_bench_batch_sizes_times_every_pair(capsys):
    code, out, _ = run_cli(capsys, "bench", "--workload", "mlp,da_b7", "--batch-sizes", "1,3", "--json",
                           "--min-seconds", "0.02")
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert code == 0 and [r["workload"] for r in records] == ["mlp_b1", "mlp_b3", "da_b1", "da_b3"]
    assert [r["batch_size"] for r in records] == [1, 3, 1, 3]
    for r in records:
        assert r["device_name"] == timing.cpu_name() and r["timer"] == "perf_counter" and "graph" not in r


@pytest.mark.parametrize("argv, message", [
    (["--graph"], "--graph needs a GPU"),
    (["--workload", "mlp"], "family without a batch size"),
    (["--workload", "mlp", "--batch-sizes", "1,0"], "not a positive integer"),
])
def test_bench_sweep_errors(capsys, argv, message):
    with pytest.raises(SystemExit):
        cli.main(["bench", *argv])
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------- crossover and plots
def _rows(curves, rounds=1):
    """Synthetic rows: ``{(impl, device): {batch: ms}}`` for family mlp."""
    rows = []
    for (impl, device), by_b in curves.items():
        for b, ms in by_b.items():
            for r in range(rounds):
                rows.append({"workload": f"mlp_b{b}", "impl": impl, "device": device, "batch_size": str(b),
                             "median_ms": str(ms * (1 + r)), "round": r + 1})
    return rows


def test_crossover_is_the_first_batch_where_the_gpu_wins():
    plots = _load("bench_plots", "plots.py")
    rows = _rows({("npdl", "cpu"): {1: 0.1, 8: 0.5, 32: 2.0, 128: 8.0},
                  ("npdl", "gpu"): {1: 0.5, 8: 0.6, 32: 0.7, 128: 0.9},
                  ("torch", "gpu"): {1: 0.01, 8: 0.01, 32: 0.01, 128: 0.01}})
    rows += [{"workload": "lenet_b1", "impl": "npdl", "device": "cpu", "batch_size": 1, "median_ms": 1.0}]
    assert plots.crossover(rows) == {"mlp": 32}  # lenet: CPU only, no crossover to report
    assert plots.speedups(rows)["mlp"][0] == (1, pytest.approx(0.2))
    never = _rows({("npdl", "cpu"): {1: 0.1, 8: 0.2}, ("npdl", "gpu"): {1: 0.5, 8: 0.6}})
    assert plots.crossover(never) == {"mlp": None}
    # three rounds (x1, x2, x3): the median round decides, and the GPU still wins from 32
    assert plots.crossover(_rows({("npdl", "cpu"): {8: 0.5, 32: 2.0}, ("npdl", "gpu"): {8: 0.6, 32: 0.7}},
                                 rounds=3)) == {"mlp": 32}
    assert plots.family_of("sda_b128") == "sda"


def test_run_table_reports_the_crossover(capsys):
    run = _load("bench_run", "run.py")
    rows = _rows({("npdl", "cpu"): {1: 0.1, 64: 4.0}, ("npdl", "gpu"): {1: 0.5, 64: 0.8}})
    for r in rows:
        r["median_ms"] = float(r["median_ms"])
    run.print_table(rows, ["mlp_b1", "mlp_b64"], ["cpu", "gpu"], ["npdl"])
    out = capsys.readouterr().out
    assert "| mlp_b64 | gpu | 0.800 | - |" in out and "mlp: batch 64" in out


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    plots = _load("bench_plots", "plots.py")
    rows = _rows({("npdl", "cpu"): {1: 0.1, 8: 0.5}, ("npdl", "gpu"): {1: 0.5, 8: 0.3}})
    paths = plots.write_plots(rows, str(tmp_path / "sweep"))
    assert paths == [str(tmp_path / "sweep-mlp.png")] and os.path.getsize(paths[0]) > 1000


def test_run_py_sweeps_npdl_on_the_cpu(tmp_path):
    """benchmarks/run.py --batch-sizes end to end on the CPU: two tiny cells, a CSV and a PNG."""
    path = tmp_path / "sweep.csv"
    done = subprocess.run([sys.executable, os.path.join(BENCH, "run.py"), "--impls", "npdl", "--workload", "mlp",
                           "--batch-sizes", "1,4", "--min-seconds", "0.02", "--rounds", "1", "--csv", str(path),
                           "--peak-elements", "100000", "--load", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with open(path) as f:
        rows = list(csv.DictReader(f))
    cells = [(r["workload"], r["device"], r["batch_size"]) for r in rows]
    assert cells == [("mlp_b1", "cpu", "1"), ("mlp_b4", "cpu", "4")]
    assert all(r["device_name"] == timing.cpu_name() and float(r["median_ms"]) > 0 for r in rows)
    assert "| mlp_b4 | cpu |" in done.stdout
    # against the ceilings measured first (written next to the CSV), under the load asked for
    peak = json.loads((tmp_path / "sweep-peak-cpu.json").read_text())
    for r in rows:
        assert r["load"] == "1" and float(r["gemm_gflops_per_s"]) == pytest.approx(peak["gemm_gflops_per_s"])
        assert float(r["peak_fraction"]) == pytest.approx(float(r["gflops_per_s"]) / peak["gemm_gflops_per_s"])
    assert "| mlp_b4 | cpu | npdl |" in done.stdout and "% of GEMM peak" in done.stdout
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in done.stderr
    else:
        assert (tmp_path / "sweep-mlp.png").exists() and (tmp_path / "sweep-roofline-cpu.png").exists()


# ---------------------------------------------------------------------- A/B of two checkouts
def test_ab_ratios_per_round_median_and_max():
    ab = _load("bench_ab", "ab.py")
    rows = [{"workload": w, "side": side, "round": k, "median_ms": ms}
            for w, side, k, ms in [("mlp_b20", "new", 1, 1.0), ("mlp_b20", "old", 1, 2.0),
                                   ("mlp_b20", "new", 2, 3.0), ("mlp_b20", "old", 2, 2.0),
                                   ("mlp_b20", "new", 3, 1.5), ("mlp_b20", "old", 3, 2.0),
                                   ("sda_b1", "new", 1, 1.0), ("sda_b1", "old", 2, 4.0)]]  # no round with both
    mlp, sda = ab.summarise(rows, ["mlp_b20", "sda_b1"])
    assert mlp["ratios"] == [0.5, 1.5, 0.75] and mlp["median_ratio"] == 0.75 and mlp["max_ratio"] == 1.5
    assert (mlp["new_ms"], mlp["old_ms"]) == (1.5, 2.0)
    assert sda["ratios"] == [] and sda["max_ratio"] is None and (sda["new_ms"], sda["old_ms"]) == (1.0, 4.0)


def test_ab_times_two_checkouts_end_to_end(tmp_path):
    """benchmarks/ab.py --against HEAD on one tiny cell: both sides timed, a report and a CSV, no worktree left."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCH, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    prefix = str(tmp_path / "ab")
    done = subprocess.run([sys.executable, os.path.join(BENCH, "ab.py"), "--against", "HEAD", "--workload", "mlp_b1",
                           "--rounds", "1", "--min-seconds", "0.01", "--threads", "1", "--out", prefix],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with open(prefix + ".csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["workload"], r["side"], r["round"]) for r in rows] == [("mlp_b1", "new", "1"), ("mlp_b1", "old", "1")]
    assert rows[1]["rev"] == head.stdout.strip() and all(float(r["median_ms"]) > 0 for r in rows)
    text = open(prefix + ".md").read()
    assert timing.cpu_name() in text and "OPENBLAS_NUM_THREADS=1" in text and "--against HEAD" in text
    assert "| mlp_b1 |" in text
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=BENCH, capture_output=True, text=True).stdout
    assert "npdl-ab-" not in worktrees


def test_cpu_features_name_the_family_and_the_simd_flags(tmp_path):
    """The results name what kernels the CPU can run (a VM's model name alone may say only "AMD EPYC")."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
                    "flags\t\t: fpu sse4_2 avx2 fma avx512f avx512bw ht\n\nprocessor\t: 1\nflags\t\t: avx512_bf16\n")
    assert timing.cpu_features(str(info)) == "family 25 model 17: sse4_2 avx2 fma avx512f avx512bw"
    info.write_text("processor\t: 0\nflags\t\t: fpu\n")
    assert timing.cpu_features(str(info)) == "no SIMD flags listed"
    assert timing.cpu_features(str(tmp_path / "missing")) == ""


def test_the_workers_keep_jax_from_preallocating_the_gpu(monkeypatch):
    """The implementations' workers share a GPU during a sliced timing: JAX must not take 75% of its
    memory at start, unless the user asked for it."""
    run = _load("bench_run", "run.py")
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    env = run._env()
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and env["PYTHONPATH"].startswith(run.ROOT)
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "true")
    assert run._env()["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"


# ---------------------------------------------------------------------- nothing lost
def test_run_py_never_replaces_an_earlier_result(tmp_path):
    """Without --csv a second run of the day takes the next free name; an existing --csv is refused
    unless --overwrite asks for it."""
    run = _load("bench_run", "run.py")

    def refuse(message):
        raise SystemExit(message)

    default = str(tmp_path / "2026-12-05-cpu.csv")
    assert run.results_path(None, default, False, refuse) == default
    open(default, "w").close()
    assert run.results_path(None, default, False, refuse) == str(tmp_path / "2026-12-05-cpu-2.csv")
    open(tmp_path / "2026-12-05-cpu-2.csv", "w").close()
    assert run.results_path(None, default, False, refuse) == str(tmp_path / "2026-12-05-cpu-3.csv")
    asked = str(tmp_path / "mine.csv")
    assert run.results_path(asked, default, False, refuse) == asked  # new: written as asked
    open(asked, "w").close()
    with pytest.raises(SystemExit, match="exists.*--overwrite"):
        run.results_path(asked, default, False, refuse)
    assert run.results_path(asked, default, True, refuse) == asked


def test_ab_refuses_an_existing_out_unless_overwrite(tmp_path, capsys):
    ab = _load("bench_ab", "ab.py")
    prefix = str(tmp_path / "ab")
    assert ab.parse_args(["--against", "HEAD", "--out", prefix]).out == prefix
    open(prefix + ".csv", "w").close()
    with pytest.raises(SystemExit):
        ab.parse_args(["--against", "HEAD", "--out", prefix])
    assert "exists" in capsys.readouterr().err
    assert ab.parse_args(["--against", "HEAD", "--out", prefix, "--overwrite"]).overwrite
