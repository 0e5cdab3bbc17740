"""The CuPy ElementwiseKernel snippets (``npdl/kernels/cupy/*.SPECS``) without a GPU.

CuPy compiles each snippet into a loop over the elements with the parameters in scope (the
arrays' element type as ``T``, an element of each array argument, ``raw`` arrays whole, the
element's index ``i``). This test writes the same: each snippet as a ``__host__ __device__``
C++ function of those names, a host loop around it for float and double, and a ``__global__``
kernel instantiating it for the device; nvcc compiles both (so the snippets must compile as
device code too) into a library the test loads with ctypes and checks against the definitions
the kernels accelerate (the layer and optimizer files' array-API code) on NumPy arrays. What it
cannot check is CuPy itself (its launch, its typing of the arguments): the ``gpu``-marked tests
in ``tests/test_kernels.py`` do, on a GPU.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from npdl.kernels.cupy import activation_backward as cupy_act, bias_activation as cupy_bias_act
from npdl.kernels.cupy import optimizer_update as cupy_opt
from npdl.kernels.scalars import kernel_scalars
from npdl.layers import activations as A
from npdl.optim.base import RULES, update_all

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc (a CUDA toolkit) and a host compiler")

MODULES = {"activation_backward": cupy_act, "bias_activation": cupy_bias_act, "optimizer_update": cupy_opt}
CTYPES = {"float": (np.float32, ctypes.c_float), "double": (np.float64, ctypes.c_double)}


def _params(text: str):
    """``"T a, raw T b, int64 K"`` -> ``[("a", "T", False), ("b", "T", True), ("K", "int64", False)]``."""
    out = []
    for part in text.split(","):
        words = part.split()
        out.append((words[-1], words[-2], words[0] == "raw"))
    return out


def _scalars(module: str, name: str, inputs) -> set:
    """The inputs that are scalars in npdl's calls: the optimizer's constants, the bias's width."""
    if module == "optimizer_update":
        return {n for n, _, _ in inputs[1:]}
    return {n for n, t, _ in inputs if t == "int64"}


def _source() -> str:
    lines = ["#include <cmath>", "using std::tanh; using std::sqrt;", ""]
    for module, mod in MODULES.items():
        for name, (ins, outs, operation) in mod.SPECS.items():
            inputs, outputs = _params(ins), _params(outs)
            scalars = _scalars(module, name, inputs)
            fn = f"npdl_{module}_{name}"

            def cxx(n, t, raw, out=False):
                base = "long long" if t == "int64" else "T"
                return f"{base}& {n}" if out else f"const {base}* {n}" if raw else f"const {base} {n}"
            args = [cxx(*p) for p in inputs] + [cxx(*p, out=True) for p in outputs]
            lines += ["template <typename T>",
                      f"__host__ __device__ inline void {fn}({', '.join(args)}, long long i) {{",
                      f"    {operation};", "}"]
            for ctype in CTYPES:
                def c_arg(n, t, raw):
                    base = "long long" if t == "int64" else ctype
                    return f"{base} {n}" if n in scalars else f"{base}* {n}"

                def use(n, raw):
                    return n if n in scalars or raw else f"{n}[i]"
                c_args = [c_arg(*p) for p in inputs] + [c_arg(*p) for p in outputs]
                call = ", ".join([use(n, raw) for n, _, raw in inputs] + [use(n, False) for n, _, _ in outputs])
                lines += [f'extern "C" void run_{fn}_{ctype}({", ".join(c_args)}, long long n) {{',
                          f"    for (long long i = 0; i < n; ++i) {fn}<{ctype}>({call}, i);", "}",
                          f"__global__ void device_{fn}_{ctype}({', '.join(c_args)}, long long n) {{",
                          "    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;",
                          f"    if (i < n) {fn}<{ctype}>({call}, i);", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    folder = tmp_path_factory.mktemp("snippets")
    source, library = folder / "snippets.cu", folder / "libsnippets.so"
    source.write_text(_source())
    done = subprocess.run(["nvcc", "-shared", "-Xcompiler", "-fPIC", "-o", str(library), str(source)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0 and "cannot find" in done.stderr + done.stdout and "lcudart" in done.stderr:
        pytest.skip(f"nvcc cannot link here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, f"the snippets do not compile:\n{done.stderr}\n{source.read_text()}"
    return ctypes.CDLL(str(library))


def _call(lib, module, name, ctype, args):
    """Run the host loop of a snippet on NumPy arrays (in place on the outputs), scalars passed by value."""
    dtype, c_scalar = CTYPES[ctype]
    converted = []
    for a in args:
        if isinstance(a, np.ndarray):
            assert a.dtype == dtype and a.flags.c_contiguous
            converted.append(a.ctypes.data_as(ctypes.c_void_p))
        elif isinstance(a, (int, np.integer)):
            converted.append(ctypes.c_longlong(int(a)))
        else:
            converted.append(c_scalar(a))
    n = next(a.size for a in args if isinstance(a, np.ndarray))
    getattr(lib, f"run_npdl_{module}_{name}_{ctype}")(*converted, ctypes.c_longlong(n))


def _tol(dtype):
    return {"rtol": 2e-6, "atol": 1e-7} if dtype == np.float32 else {"rtol": 1e-14, "atol": 1e-15}


@pytest.mark.parametrize("ctype", list(CTYPES))
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu"])
def test_activation_backward_snippets(lib, name, ctype):
    """Against ``npdl.layers.activations.<name>_backward``'s definition, with a random upstream gradient."""
    dtype = CTYPES[ctype][0]
    rng = np.random.default_rng(0)
    dy = rng.standard_normal((5, 7)).astype(dtype)
    y = rng.uniform(-1, 1, (5, 7)).astype(dtype)
    y[0, 0] = 0.0  # ReLU's kink
    dx = np.empty_like(dy)
    _call(lib, "activation_backward", name, ctype, [dy, y, dx])
    np.testing.assert_allclose(dx, getattr(A, f"{name}_backward").definition(dy, y), **_tol(dtype))


@pytest.mark.parametrize("ctype", list(CTYPES))
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "sigmoid_no_bias"])
def test_bias_activation_snippets(lib, name, ctype):
    """Against ``npdl.layers.activations.<name>_forward``'s definition. Rank 3, so that ``i % K`` must
    pick the last axis; nan passes ReLU and -0.0 becomes 0.0."""
    dtype = CTYPES[ctype][0]
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((2, 3, 5)) * 3).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    y = np.empty_like(a)
    if name == "sigmoid_no_bias":
        _call(lib, "bias_activation", name, ctype, [a, y])
        want, _ = A.sigmoid_forward.definition(a)
    else:
        _call(lib, "bias_activation", name, ctype, [a, b, 5, y])
        want, _ = getattr(A, f"{name}_forward").definition(a, bias=b)
    np.testing.assert_allclose(y, want, **_tol(dtype))
    if name == "relu":
        special = np.array([np.nan, -0.0, 1.0, -1.0, 0.0], dtype)
        out = np.empty_like(special)
        _call(lib, "bias_activation", "relu", ctype, [special, np.full(5, -0.0, dtype), 5, out])
        assert np.isnan(out[0]) and not np.signbit(out[1]) and list(out[2:]) == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("ctype", list(CTYPES))
@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov", "rmsprop", "adam"])
def test_optimizer_update_snippets(lib, rule, ctype):
    """Three steps, the state carrying over, in place on p and the state, against the definition
    (``npdl.optim.base.update_all`` with the rules of ``npdl.optim``)."""
    dtype = CTYPES[ctype][0]
    rng = np.random.default_rng(2)
    n_slots = {"sgd": 0, "adam": 2}.get(rule, 1)
    p, g = (rng.standard_normal(11).astype(dtype) for _ in range(2))
    state = [np.abs(rng.standard_normal(11)).astype(dtype) for _ in range(n_slots)]
    want_p, want_state = p.copy(), [s.copy() for s in state]
    for t in (1, 2, 3):
        scalars = {"sgd": (0.1,), "momentum": (0.1, 0.9), "nesterov": (0.1, 0.9), "rmsprop": (0.01, 0.9, 1e-7),
                   "adam": (0.9, 0.999, 1e-7, 0.01 / (1 - 0.9 ** t), (1 - 0.999 ** t) ** 0.5)}[rule]
        _call(lib, "optimizer_update", rule, ctype, [g, *kernel_scalars(rule, scalars), p, *state])
        update_all.definition(rule, [want_p], [g], [[s] for s in want_state], scalars)
    np.testing.assert_allclose(p, want_p, **_tol(dtype))
    for got, want in zip(state, want_state):
        np.testing.assert_allclose(got, want, **_tol(dtype))


def test_every_snippet_is_checked():
    assert set(cupy_act.SPECS) == {"sigmoid", "tanh", "relu"}
    assert set(cupy_bias_act.SPECS) == {"sigmoid", "tanh", "relu", "sigmoid_no_bias"}
    assert set(cupy_opt.SPECS) == set(RULES)
