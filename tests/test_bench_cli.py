"""``npdl bench`` against the machine's ceilings (``--peak``, the roofline fields and columns) and its input
checks: every bad input ends in a message and exit status 2, never a traceback or an allocation error."""

import json
import math
import subprocess
import sys

import pytest
from conftest import HAS_GPU

from npdl import cli
from npdl.bench import fits, parse
from npdl.bench.roofline import ridge_point, roofline_fields
from npdl.bench.work import workload_work

SMALL_PEAK = ["--peak-elements", "100000"]


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *argv):
    """The stderr of a refused command line (exit 2, no traceback)."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    return err


# ------------------------------------------------------------------------ the ceilings
def test_peak_json_names_the_device_dtype_and_threads(capsys):
    code, out, _ = run_cli(capsys, "bench", "--peak", "--json", "--min-seconds", "0", *SMALL_PEAK, "--blas-threads", "1")
    peak = json.loads(out)
    assert code == 0 and peak["device"] == "cpu" and peak["dtype"] == "float32" and peak["device_name"]
    assert peak["blas_threads"] == 1 and peak["numba_threads"] >= 1 and peak["stream_elements"] == 100000
    assert peak["gemm_gflops_per_s"] > 0 and peak["gemm_n"] >= 512
    assert peak["bandwidth_gb_per_s"] == max(peak["copy_gb_per_s"], peak["triad_gb_per_s"]) > 0
    code, out, _ = run_cli(capsys, "bench", "--peak", "--min-seconds", "0", *SMALL_PEAK)
    assert code == 0 and "GEMM" in out and "triad" in out and "ridge point" in out


def test_roofline_fields_by_hand():
    peak = {"gemm_gflops_per_s": 100.0, "bandwidth_gb_per_s": 10.0}
    f = roofline_fields(4e9, 2e8, 80.0, peak)  # 4 GFLOP and 0.2 GB in 80 ms
    assert f["gflops_per_s"] == pytest.approx(50.0) and f["peak_fraction"] == pytest.approx(0.5)
    assert f["intensity"] == pytest.approx(20.0) and ridge_point(peak) == pytest.approx(10.0)
    assert f["roofline_ms"] == pytest.approx(40.0) and f["overhead_ms"] == pytest.approx(40.0)  # compute-bound
    f = roofline_fields(1e8, 1e9, 150.0, peak)  # memory-bound: 1 GB at 10 GB/s is 100 ms
    assert f["roofline_ms"] == pytest.approx(100.0) and f["overhead_ms"] == pytest.approx(50.0)
    assert roofline_fields(1e8, 1e9, 150.0, None)["peak_fraction"] is None


def test_bench_json_records_the_work_against_a_peak_file(capsys, tmp_path):
    path = tmp_path / "peak.json"
    path.write_text(json.dumps({"device": "cpu", "gemm_gflops_per_s": 50.0, "bandwidth_gb_per_s": 5.0}) + "\n")
    code, out, _ = run_cli(capsys, "bench", "--workload", "mlp_b3,lstm_b2", "--min-seconds", "0.01", "--json",
                           "--peak-file", str(path))
    assert code == 0
    for line in out.strip().splitlines():
        r = json.loads(line)
        work = workload_work(parse(r["workload"]))
        assert (r["flops"], r["bytes"]) == (work.flops, work.bytes)
        seconds = r["median_ms"] / 1e3
        assert r["gflops_per_s"] == pytest.approx(r["flops"] / seconds / 1e9)
        assert r["peak_fraction"] == pytest.approx(r["gflops_per_s"] / 50.0)
        assert r["intensity"] == pytest.approx(r["flops"] / r["bytes"])
        floor_ms = max(r["flops"] / 50e9, r["bytes"] / 5e9) * 1e3
        assert r["overhead_ms"] == pytest.approx(r["median_ms"] - floor_ms)
        assert r["peak_gemm_gflops_per_s"] == 50.0


def test_bench_table_measures_the_ceilings_first(capsys):
    code, out, _ = run_cli(capsys, "bench", "--workload", "mlp_b2", "--min-seconds", "0", *SMALL_PEAK)
    lines = out.splitlines()
    assert code == 0 and lines[1].startswith("# ceilings: GEMM") and "GFLOP/s" in lines[2] and "% peak" in lines[2]
    assert lines[3].split()[0] == "mlp_b2" and lines[3].split()[7] != "-"  # a fraction of the measured peak
    code, out, _ = run_cli(capsys, "bench", "--workload", "mlp_b2", "--min-seconds", "0", "--json", "--no-peak")
    r = json.loads(out)
    assert r["peak_fraction"] is None and r["overhead_ms"] is None and r["gflops_per_s"] > 0


# ------------------------------------------------------------------------ input checks
def test_a_batch_too_large_for_memory_is_refused_before_allocating(capsys):
    err = refused(capsys, "--workload", "mlp", "--batch-sizes", "100000000", "--no-peak")
    assert "mlp_b100000000" in err and "needs at least" in err and "largest batch" in err


def test_the_largest_batch_suggested_fits():
    w = parse("kcnn_b1")
    budget = 2 * 10 ** 9
    largest = fits.largest_batch(w, budget)
    assert workload_work(parse(f"kcnn_b{largest}")).bytes <= budget < workload_work(parse(f"kcnn_b{largest + 1}")).bytes
    fits.check_fits([parse(f"kcnn_b{largest}")], None, available=budget)
    with pytest.raises(fits.WorkloadTooLargeError, match=f"about {largest:,}"):
        fits.check_fits([parse(f"kcnn_b{largest + 1}")], None, available=budget)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf", "soon"])
def test_min_seconds_must_be_a_finite_non_negative_number(capsys, value):
    assert "--min-seconds" in refused(capsys, "--workload", "mlp_b2", "--min-seconds", value)


@pytest.mark.parametrize("argv, message", [
    (["--profile", "0"], "--profile: must be at least 1"),
    (["--profile", "-3"], "--profile: must be at least 1"),
    (["--blas-threads", "0"], "--blas-threads: must be at least 1"),
    (["--workload", "mlp_b0"], "the batch size must be a positive integer, got 0"),
    (["--workload", "mlp_b20", "--peak-file", "/nonexistent/peak.json"], "not the output of `npdl bench --peak"),
    (["--peak", "--profile"], "--peak measures the machine's ceilings only"),
    (["--no-peak", "--peak-file", "x.json"], "do not combine"),
])
def test_bench_input_errors(capsys, argv, message):
    assert message in refused(capsys, *argv)


def test_a_peak_file_of_another_device_is_refused(capsys, tmp_path):
    path = tmp_path / "gpu-peak.json"
    path.write_text(json.dumps({"device": "gpu", "gemm_gflops_per_s": 1.0, "bandwidth_gb_per_s": 1.0}))
    assert "not of --device cpu" in refused(capsys, "--workload", "mlp_b2", "--peak-file", str(path))


def test_running_out_of_memory_mid_run_is_a_message(capsys, monkeypatch):
    import npdl.bench.npdl_step as npdl_step

    def no_memory(w, device, seed=0):
        raise MemoryError("Unable to allocate 1.2 TiB for an array")

    monkeypatch.setattr(npdl_step, "npdl_step", no_memory)
    code, _, err = run_cli(capsys, "bench", "--workload", "mlp_b2", "--no-peak")
    assert code == 2 and "out of CPU memory" in err and "Traceback" not in err


def test_the_command_line_prints_no_traceback():
    done = subprocess.run([sys.executable, "-m", "npdl", "bench", "--workload", "mlp", "--batch-sizes", "100000000"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "needs at least" in done.stderr


# ------------------------------------------------------------------------ on a GPU
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("tf32", [False, True])
def test_gpu_peak(capsys, tf32):
    code, out, _ = run_cli(capsys, "bench", "--peak", "--device", "gpu", "--json", "--min-seconds", "0.05",
                           "--peak-elements", "10000000", *(["--tf32"] if tf32 else []))
    peak = json.loads(out)
    assert code == 0 and peak["device"] == "gpu" and peak["tf32"] is tf32 and peak["gemm_gflops_per_s"] > 100
    assert peak["bandwidth_gb_per_s"] > 50 and math.isfinite(peak["triad_gb_per_s"])


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a CUDA device")
def test_gpu_bench_records_the_roofline_fields(capsys):
    code, out, _ = run_cli(capsys, "bench", "--device", "gpu", "--workload", "mlp_b20,sda_b128", "--json",
                           "--min-seconds", "0.05", "--peak-elements", "10000000")
    for line in out.strip().splitlines():
        r = json.loads(line)
        assert r["flops"] == workload_work(parse(r["workload"])).flops and 0 < r["peak_fraction"] < 1.5
        assert r["overhead_ms"] == pytest.approx(r["median_ms"] - r["roofline_ms"])
