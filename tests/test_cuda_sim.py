"""The numba.cuda kernels (``npdl.kernels.cuda``) without a GPU: under Numba's CUDA simulator
against the reference, compiled to PTX for a real GPU, and the GPU dispatch rule.

Numba reads ``NUMBA_ENABLE_CUDASIM`` when ``numba.cuda`` is first imported, so the simulator
and the PTX compile each run in a fresh process (``tests/cuda_sim_checks.py``, which says
what it checks); none of this is marked ``gpu``.
"""

import os
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest

from npdl import kernels

CHECKS = pathlib.Path(__file__).with_name("cuda_sim_checks.py")
ROOT = CHECKS.parent.parent


def _run_checks(mode: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)  # the script sets it for "sim" and must not inherit it for "ptx"
    env.pop("NPDL_KERNELS", None)  # the dispatch checks expect the automatic choice
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, str(CHECKS), mode], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_cuda_kernels_match_reference_under_the_simulator():
    done = _run_checks("sim")
    assert done.returncode == 0, f"exit status {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "sim: checked" in done.stdout


def test_cuda_kernels_compile_to_ptx():
    done = _run_checks("ptx")
    if done.returncode == 3:
        pytest.skip(done.stdout.strip() or "libNVVM not found")
    assert done.returncode == 0, f"exit status {done.returncode}\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("op, with_cuda, without_cuda", [
    ("im2col", "cuda", "definition"), ("pool", "cuda", "definition"), ("softmax_xent", "cuda", "definition"),
    ("gemm_update", "cupy", "cupy"), ("lstm_cell", "cuda", "definition"), ("simple_rnn", "definition", "definition"),
    ("conv2d", "definition", "definition"),
    ("activation_backward", "cupy", "cupy"), ("optimizer_update", "cupy", "cupy"),
    ("bias_activation", "cupy", "cupy"),
])
def test_gpu_dispatch_rule(op, with_cuda, without_cuda):
    """CuPy arrays: CuPy's kernel where there is one, else numba.cuda's where written and numba.cuda works,
    else the definition."""
    assert kernels.choose(op, numpy=False, cupy=True, have_numba=True, have_cuda=True) == with_cuda
    assert kernels.choose(op, numpy=False, cupy=True, have_numba=True, have_cuda=False) == without_cuda
    # NPDL_KERNELS=cuda: the numba.cuda kernel first where there is one
    preferred = "cuda" if kernels.has_module("cuda", op) else with_cuda
    assert kernels.choose(op, numpy=False, cupy=True, have_numba=True, have_cuda=True,
                          prefer_numba_cuda=True) == preferred
    on_cpu = "numba" if kernels.has_module("numba", op) else "definition"
    assert kernels.choose(op, numpy=True, cupy=False, have_numba=True, have_cuda=True, prefer_numba_cuda=True) == on_cpu
    # NumPy and array-api-strict are untouched by the GPU rule
    assert kernels.choose(op, numpy=True, cupy=False, have_numba=True, have_cuda=True) == on_cpu
    assert kernels.choose(op, numpy=True, cupy=False, have_numba=False, have_cuda=True) == "definition"
    assert kernels.choose(op, numpy=False, cupy=False, have_numba=True, have_cuda=True) == "definition"


def test_implementation_for_a_cupy_namespace(monkeypatch):
    """``implementation`` recognises CuPy by the namespace's name, so a stand-in module is enough."""
    import array_api_strict

    for name in ("cupy", "array_api_compat.cupy"):
        fake = types.ModuleType(name)
        monkeypatch.setattr(kernels, "cuda_available", lambda: True)
        assert kernels.implementation(fake, "pool") == "cuda"
        assert kernels.implementation(fake, "gemm_update") == "cupy"
        monkeypatch.setattr(kernels, "cuda_available", lambda: False)
        assert kernels.implementation(fake, "pool") == "definition"
        assert kernels.implementation(fake, "gemm_update") == "cupy"
    assert kernels.implementation(np, "pool") == "numba"
    assert kernels.implementation(array_api_strict, "pool") == "definition"


def test_cuda_available_is_false_without_a_gpu():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("the CUDA simulator is on in this process")
    from numba import cuda

    if cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert kernels.cuda_available() is False


def test_a_numba_cuda_that_cannot_compile_is_not_used(monkeypatch):
    """A numba.cuda that imports, sees a GPU and finds libNVVM but fails at every compile (numba-cuda 0.30
    under NumPy 2.5) is reported unusable with the reason, so CuPy's kernels or the definitions serve."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("the CUDA simulator is on in this process")
    from numba import cuda
    from numba.cuda.cudadrv import nvvm

    def broken_compile(*args, **kwargs):
        raise AttributeError("module 'numpy' has no attribute 'row_stack'")

    compiled = []
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(nvvm, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "compile_ptx_for_current_device", broken_compile)
    kernels.cuda_available.cache_clear()
    try:
        assert kernels.cuda_available() is False
        assert "row_stack" in kernels.cuda_unusable_reason
        fake = types.ModuleType("cupy")
        assert kernels.implementation(fake, "pool") == "definition"
        assert kernels.implementation(fake, "softmax_xent") == "definition"
        # a Numba that compiles is used
        monkeypatch.setattr(cuda, "compile_ptx_for_current_device", lambda *a, **k: compiled.append(a) or ("", ""))
        kernels.cuda_available.cache_clear()
        assert kernels.cuda_available() is True
        assert compiled and compiled[0][0] is kernels._probe_kernel
    finally:
        kernels.cuda_available.cache_clear()
        monkeypatch.setattr(kernels, "cuda_unusable_reason", "")
