"""Host time per launch on a GPU: CuPy's operations against npdl's numba.cuda kernels.

At small batches a training step on a GPU is bound by the host's time per launch, so whether a
fused ``numba.cuda`` kernel pays depends on what its launch costs next to the CuPy launches it
replaces (Numba packs each argument through ctypes, and npdl hands each CuPy array over with
``cuda.as_cuda_array``). This times, on the GPU in hand:

* single launches: a CuPy in-place add; trivial ``numba.cuda`` kernels of 1 and 4 arrays
  launched as npdl launches them, and with the CuPy arrays passed to Numba directly;
* npdl's kernels (``numba.cuda``, and the CuPy ``ElementwiseKernel`` versions) against the
  reference's CuPy operations on the same arrays: the optimizer
  update of the SdA's eight parameters (Adam, ``update_all``), a (20, 1000) sigmoid with its
  bias (``bias_activation``) and its backward pass (``activation_backward``).

For each, ``host_us`` is the time per call with the GPU left to run behind (what a launch-bound
step pays) and ``total_us`` the time per call including the GPU's work. One JSON object per
line, the versions first. Needs CuPy, numba.cuda and a GPU::

    PYTHONPATH=. python benchmarks/launch_overhead.py
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import time

import cupy
import numpy as np
from numba import cuda

from npdl import backend, kernels
from npdl.kernels.cuda import activation_backward as cuda_act, bias_activation as cuda_bias_act
from npdl.kernels.cuda import launch, optimizer_update as cuda_opt
from npdl.kernels.cupy import activation_backward as cupy_act, bias_activation as cupy_bias_act
from npdl.kernels.cupy import optimizer_update as cupy_opt
from npdl.layers.activations import sigmoid_backward, sigmoid_forward
from npdl.optim import base as ref_opt  # update_all.definition: the rules of npdl.optim as array operations


@cuda.jit
def _touch1(a):
    i = cuda.grid(1)
    if i < a.size:
        a[i] += 1


@cuda.jit
def _touch4(a, b, c, d):
    i = cuda.grid(1)
    if i < a.size:
        a[i] += b[i] + c[i] + d[i]


CALLS = 1000  # per case; --calls


def per_call(fn, calls: int | None = None) -> dict:
    """Microseconds per call of ``fn``: host only (the GPU runs behind), and with the GPU's work."""
    calls = calls or CALLS
    fn()  # compile, allocate
    stream = cupy.cuda.get_current_stream()
    stream.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    host = time.perf_counter() - start
    stream.synchronize()
    total = time.perf_counter() - start
    return {"host_us": round(host / calls * 1e6, 2), "total_us": round(total / calls * 1e6, 2)}


def set_cai_sync(value: bool) -> None:
    """Numba's switch for synchronizing the stream a foreign array names (``NUMBA_CUDA_ARRAY_INTERFACE_SYNC``)."""
    for name in ("numba.cuda.core.config", "numba.core.config"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "CUDA_ARRAY_INTERFACE_SYNC"):
            module.CUDA_ARRAY_INTERFACE_SYNC = value


def versions() -> dict:
    out = {"cupy": cupy.__version__, "device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()}
    for dist in ("numba", "numba-cuda"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    out["npdl kernels for cupy"] = {op: kernels.implementation(cupy, op)
                                    for op in ("optimizer_update", "bias_activation", "activation_backward")}
    return out


def main(width: int = 1000) -> None:
    print(json.dumps({"versions": versions()}), flush=True)
    xp = backend.get_device("gpu").xp
    a, b, c, d = (cupy.ones(width, cupy.float32) for _ in range(4))
    stream = cuda.external_stream(cupy.cuda.get_current_stream().ptr)
    cases = {
        "cupy a += 1 (1 array)": lambda: a.__iadd__(1.0),
        "numba kernel, 1 array, npdl launch": lambda: launch(_touch1, a.size, a),
        "numba kernel, 4 arrays, npdl launch": lambda: launch(_touch4, a.size, a, b, c, d),
        "numba kernel, 4 arrays, CuPy arrays passed directly":
            lambda: _touch4[-(-width // 256), 256, stream](a, b, c, d),
    }
    for name, fn in cases.items():
        print(json.dumps({"case": name, **per_call(fn)}), flush=True)
    set_cai_sync(False)  # as npdl's launch does with sync=False, here for arrays Numba converts itself
    cases = {"numba kernel, 4 arrays, CuPy arrays passed directly, no stream sync":
             lambda: _touch4[-(-width // 256), 256, stream](a, b, c, d)}
    # the SdA's parameters: three 1000-unit sigmoid layers on 784 inputs and a 10-way top layer, Adam's state
    g = backend.Generator("gpu", 0)
    w = width
    shapes = [(784 * w // 1000, w), (w,), (w, w), (w,), (w, w), (w,), (w, 10), (10,)]
    ps = [g.normal(s, dtype="float32") for s in shapes]
    gs = [g.normal(s, dtype="float32") * 0.01 for s in shapes]
    ms = [xp.zeros(s, dtype=xp.float32) for s in shapes]
    vs = [xp.zeros(s, dtype=xp.float32) for s in shapes]
    scalars = (0.9, 0.999, 1e-7, 0.001 / 0.1, 0.001 ** 0.5)
    cases["Adam, SdA's 8 parameters: npdl numba.cuda update_all (1 launch)"] = \
        lambda: cuda_opt.update_all("adam", ps, gs, [ms, vs], scalars)
    cases["Adam, SdA's 8 parameters: npdl CuPy ElementwiseKernels (8 launches)"] = \
        lambda: cupy_opt.update_all("adam", ps, gs, [ms, vs], scalars)
    cases["Adam, SdA's 8 parameters: reference CuPy operations"] = \
        lambda: ref_opt.update_all.definition("adam", ps, gs, [ms, vs], scalars)
    # fewer calls where one call is many launches: about 1000 launches in flight at most, so that the
    # GPU's queue never fills and host_us stays the host's own time
    launches = {"(8 launches)": 8, "reference CuPy operations": 80}
    z, bias, dy = g.normal((20, w), dtype="float32"), g.normal((w,), dtype="float32"), g.normal((20, w))
    y, _ = sigmoid_forward.definition(z, bias=bias)
    cases[f"sigmoid(z + b), (20, {w}): npdl numba.cuda"] = lambda: cuda_bias_act.sigmoid(z, bias=bias)
    cases[f"sigmoid(z + b), (20, {w}): npdl CuPy ElementwiseKernel"] = lambda: cupy_bias_act.sigmoid(z, bias=bias)
    cases[f"sigmoid(z + b), (20, {w}): reference CuPy operations"] = lambda: sigmoid_forward.definition(z, bias=bias)
    cases[f"sigmoid backward, (20, {w}): npdl numba.cuda"] = lambda: cuda_act.sigmoid(dy, y)
    cases[f"sigmoid backward, (20, {w}): npdl CuPy ElementwiseKernel"] = lambda: cupy_act.sigmoid(dy, y)
    cases[f"sigmoid backward, (20, {w}): reference CuPy operations"] = lambda: sigmoid_backward.definition(dy, y)
    for name, fn in cases.items():
        per_launch = max((n for key, n in launches.items() if name.startswith("Adam") and key in name), default=5)
        calls = min(CALLS, max(10, 1000 // per_launch))
        print(json.dumps({"case": name, "calls": calls, **per_call(fn, calls)}), flush=True)
    # the two Adam paths must agree (one step from the same state)
    p1 = [p.copy() for p in ps]
    m1, v1 = [m.copy() for m in ms], [v.copy() for v in vs]
    p2, m2, v2 = [p.copy() for p in ps], [m.copy() for m in ms], [v.copy() for v in vs]
    cuda_opt.update_all("adam", p1, gs, [m1, v1], scalars)
    ref_opt.update_all.definition("adam", p2, gs, [m2, v2], scalars)
    err = max(float(cupy.max(cupy.abs(u - w))) for u, w in zip(p1, p2))
    print(json.dumps({"check": "update_all adam, numba.cuda vs reference, max abs difference", "value": err,
                      "ok": bool(np.isfinite(err) and err < 1e-5)}), flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1000, help="the SdA's layer width and the arrays' length (1000)")
    parser.add_argument("--calls", type=int, default=CALLS, help="timed calls per case (1000)")
    args = parser.parse_args()
    CALLS = args.calls
    main(args.width)
