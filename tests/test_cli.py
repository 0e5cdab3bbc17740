"""The npdl command: info, gradcheck (table, JSON, exit codes), argument errors."""

import json
import subprocess
import sys

import pytest

from npdl import cli
from npdl.gradcheck import runner


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info_json(capsys):
    code, out, _ = run_cli(capsys, "info", "--json")
    info = json.loads(out)
    assert code == 0
    for key in ("python", "numpy", "numba", "cupy", "blas", "devices", "kernels"):
        assert key in info
    assert "cpu" in info["devices"] and "numba for softmax_xent" in info["kernels"]["cpu"]
    assert info["kernels"]["strict"] == "definition"
    assert info["cupy"]["available"] or info["cupy"]["reason"]
    from npdl.kernels import numba as nb  # the batch-1 bound in force, and how idle Numba threads wait
    assert info["blas"]["one_thread_max"] == nb.ONE_THREAD_MAX
    assert set(info["numba"]["idle_wait"]) == {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"}


def test_info_text(capsys):
    code, out, _ = run_cli(capsys, "info")
    assert code == 0 and "numpy" in out and "devices" in out and "threading layer" in out
    from npdl.kernels import numba as nb
    assert f"batch-1 products on one thread up to {nb.ONE_THREAD_MAX:,} weights, above on Numba's threads" in out


def test_gradcheck_json_records(capsys):
    code, out, _ = run_cli(capsys, "gradcheck", "--layer", "dense", "tanh", "--json")
    records = json.loads(out)
    assert code == 0
    assert [(r["layer"], r["wrt"]) for r in records] == [
        ("Dense", "x"), ("Dense", "W"), ("Dense", "b"), ("Dense[no_bias]", "x"), ("Dense[no_bias]", "W"),
        *[(f"Dense[{act}]", wrt) for act in ("sigmoid", "tanh") for wrt in ("x", "W", "b")], ("Tanh", "x")]
    for r in records:
        for key in ("layer", "wrt", "backend", "dtype", "numeric_rel_err", "autodiff", "autodiff_rel_err", "passed"):
            assert key in r
        assert r["passed"] is True and r["dtype"] == "float64" and r["backend"] == "numpy"


def test_gradcheck_table_and_strict_backend(capsys):
    code, out, _ = run_cli(capsys, "gradcheck", "--layer", "softmax_cross_entropy", "--backend", "strict",
                           "--autodiff", "none")
    assert code == 0
    assert "SoftmaxCrossEntropy" in out and "strict" in out and "1 passed, 0 failed" in out


def test_gradcheck_exit_code_1_when_a_row_fails(capsys, monkeypatch):
    real = runner.check_case

    def sabotaged(case, *args, **kwargs):
        records = real(case, *args, **kwargs)
        records[0].passed = False
        return records

    monkeypatch.setattr(runner, "check_case", sabotaged)
    code, out, _ = run_cli(capsys, "gradcheck", "--layer", "relu", "--autodiff", "none")
    assert code == 1 and "FAIL" in out


def test_gradcheck_without_jax_says_so(capsys, monkeypatch):
    monkeypatch.setattr(runner, "_reference", lambda autodiff: (None, "JAX is not installed"))
    code, out, err = run_cli(capsys, "gradcheck", "--layer", "sigmoid", "--json")
    assert code == 0 and "JAX is not installed" in err
    assert json.loads(out)[0]["autodiff"] is None


def test_unknown_layer_and_bad_arguments(capsys):
    code, _, err = run_cli(capsys, "gradcheck", "--layer", "conv9d")
    assert code == 2 and "no gradient check named 'conv9d'" in err
    with pytest.raises(SystemExit) as exc:
        cli.main(["gradcheck", "--backend", "tpu"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_console_entry_point_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "npdl", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("npdl ")


def test_info_names_the_gpu_kernels_that_serve():
    from npdl import environment, kernels

    default = environment._gpu_kernels(False)
    assert "CuPy ElementwiseKernel for activation_backward, bias_activation, optimizer_update" in default
    assert "numba.cuda for softmax_xent, im2col, pool, lstm_cell" in default and "cuBLAS for gemm_update" in default
    kernels.use("cuda")
    try:
        text = environment._gpu_kernels(False)
    finally:
        kernels.use(None)
    assert "numba.cuda for softmax_xent, im2col, pool, lstm_cell, activation_backward, bias_activation, " \
           "optimizer_update" in text
    assert "ElementwiseKernel" not in text and "cuBLAS for gemm_update" in text
