"""``npdl info``: what npdl runs on -- versions, BLAS and threads, kernels, devices."""

from __future__ import annotations

import json

from ..environment import collect


def _print(info: dict) -> None:
    def line(key, value):
        print(f"{key:<18}{value}")

    code = info.get("source")
    line("npdl", info["npdl"] + (f" (commit {code['commit'][:12]}{', modified' if code['modified'] else ''})"
                                 if code else ""))
    line("python", f"{info['python']} ({info['platform']})")
    line("cpu", info["cpu"])
    line("numpy", info["numpy"])
    blas = info["blas"]
    line("blas", f"{blas.get('name', '?')} {blas.get('version', '')}, threads: {blas.get('threads', '?')}, "
                 f"kernels: {blas.get('architecture') or '?'}")
    if blas.get("coretype_override"):
        line("", f"OPENBLAS_CORETYPE={blas['coretype_override']} is set in the environment")
    spin = blas.get("idle_spin")
    line("", f"idle threads sleep after 2^{spin} cycles (OPENBLAS_THREAD_TIMEOUT)" if spin else
         "idle threads spin for OpenBLAS's default 2^28 cycles (NumPy was imported before npdl)")
    line("", f"kernels' GEMM (NPDL_BLAS={blas.get('kernels_blas', 'auto')}): "
             f"{blas.get('direct_gemm') or 'not available (the definition runs: NumPy operations)'}")
    if blas.get("one_thread_max"):
        line("", f"batch-1 products on one thread up to {blas['one_thread_max']:,} weights, above on Numba's threads")
    nb = info["numba"]
    line("numba", f"{nb['version']}, threads: {nb['threads']}, threading layer: {nb['threading_layer']}"
         if nb["available"] else f"not available ({nb['reason']})")
    if nb["available"] and nb["threading_layer"] == "omp":
        wait = nb["idle_wait"]
        line("", f"idle threads spin GOMP_SPINCOUNT={wait['GOMP_SPINCOUNT']} iterations, then sleep"
             if wait["GOMP_SPINCOUNT"] and wait["OMP_WAIT_POLICY"] == "PASSIVE" else
             f"idle threads: OMP_WAIT_POLICY={wait['OMP_WAIT_POLICY']}, GOMP_SPINCOUNT={wait['GOMP_SPINCOUNT']}")
    cp = info["cupy"]
    if cp["available"]:
        line("cupy", f"{cp['version']}, CUDA runtime {cp['cuda_runtime']}, driver {cp['cuda_driver']}")
        for g in cp["gpus"]:
            line("", f"{g['device']}: {g['name']}, {g['memory_gib']} GiB, compute {g['compute_capability']}")
    else:
        line("cupy", f"not available: {cp['reason']}")
    line("gpu matmul", info["gpu_matmul"]["status"])
    st = info["array_api_strict"]
    line("array-api-strict", st.get("version", "not installed"))
    line("kernels", " | ".join(f"{k}: {v}" for k, v in info["kernels"].items()))
    line("devices", ", ".join(info["devices"]))
    mp = info.get("distributed")
    if mp is not None:  # data-parallel training (npdl.distributed): MPI between processes, NCCL between GPUs
        line("mpi", f"{mp['library']}, mpi4py {mp['mpi4py']}, mpiexec: {mp['mpiexec'] or 'not on the PATH'}"
             if mp["library"] else f"not available: {mp['reason']}")
        if info["cupy"]["available"]:
            line("nccl", mp["nccl"] or "not available (CuPy without NCCL)")
    source = info["mnist"]["source"]
    line("mnist", f"{source['kind']} files in {source['dir']} ({source['where']})" if source else
         "not found (looked in " + ", ".join(info["mnist"]["searched"]) + "; npdl downloads it on first use)")


def run(args) -> int:
    info = collect()
    from ..distributed import mpi_info

    info["distributed"] = mpi_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print(info)
    return 0


def register(sub) -> None:
    p = sub.add_parser("info", help="versions, BLAS, threads, kernels and devices npdl can use")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)
