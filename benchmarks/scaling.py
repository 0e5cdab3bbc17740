"""Data-parallel scaling: the training step on 1 and 2 CPU ranks (one thread each), the allreduce's
share of it, and the allreduce time NCCL's ring would add on GPU interconnects (a model, no GPU needed).

    python benchmarks/scaling.py                                  # time, then print the tables
    python benchmarks/scaling.py --workloads mlp_b20,kcnn_b50 --steps 300 --ranks 1,2 --json scaling.json
    python benchmarks/scaling.py --model                          # the modelled NCCL table alone (no timing)

Each rank count ``P`` runs as ``mpiexec -n P python benchmarks/scaling.py --worker ...`` with every
thread pool at one thread (OpenBLAS, OpenMP, Numba), so ``P`` ranks use ``P`` cores. The global
batch is the workload's (``mlp_b20``: 20 examples per step in all, 10 per rank on 2 ranks). Per
workload and ``P`` the worker reports:

* ``step_ms``: wall time per data-parallel step (the slowest rank's), after warm-up steps;
* ``plain_ms`` (``P = 1``): ``model.train_step`` without :mod:`npdl.distributed`, the baseline;
* ``allreduce_ms``: time per step spent in the gradient allreduce, waiting for the slower rank
  included (``DataParallel.reduce_seconds``), and ``share`` = allreduce_ms / step_ms;
* ``pure_allreduce_us``: the same buckets reduced back to back after a barrier (the transfer
  alone, no imbalance); ``bytes`` and ``messages``: what one step reduces.

The model (``--model``): NCCL's ring allreduce of ``B`` bytes over ``N`` GPUs takes about
``2 (N - 1) / N * B / bandwidth + 2 (N - 1) * alpha`` (the reduce-scatter and all-gather each
send ``(N - 1) / N`` of the buffer through the slowest link, in ``N - 1`` steps of latency
``alpha``). Bandwidths are per direction: NVLink 4 (H100 SXM) ~450 GB/s, PCIe 5 x16 ~64 GB/s
(peak figures: measured NCCL bus bandwidth is lower, so these times are lower bounds); ``alpha``
is an assumption (``--alpha-us``, default 2 us over NVLink and 5 us over PCIe).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
DEFAULT_WORKLOADS = "mlp_b20,mlp_b128,sda_b128,lenet_b500,kcnn_b50,da_b20,rnn_b50,lstm_b50"
LINKS = {"NVLink 4": (450e9, 2e-6), "PCIe 5 x16": (64e9, 5e-6)}


def _step_and_model(name: str):
    from npdl.bench.npdl_step import STEP_BUILDERS
    from npdl.bench.workloads import parse

    w = parse(name)
    step = STEP_BUILDERS[w.family](w, "cpu", 0)
    return w, step


def gradient_bytes(model) -> int:
    """Bytes of one step's allreduce: every trainable parameter's gradient plus the loss."""
    total = 0
    for layer in model.layers:
        if layer.trainable:
            for p in layer.params.values():
                total += int(p.size) * p.dtype.itemsize
    return total + 4


def ring_seconds(nbytes: int, ranks: int, bandwidth: float, alpha: float) -> float:
    """NCCL ring allreduce time model (see the module docstring)."""
    return 2 * (ranks - 1) / ranks * nbytes / bandwidth + 2 * (ranks - 1) * alpha


def _gathered(comm, value: float) -> list:
    """Every rank's ``value``, in rank order (one host message)."""
    values = [0.0] * comm.size
    values[comm.rank] = float(value)
    return comm.host_sum(values)


def worker(names, steps: int, warmup: int) -> None:
    """One rank: time every workload; rank 0 prints one JSON line each."""
    import npdl.distributed as dist

    comm = dist.init()
    for name in names:
        w, step = _step_and_model(name)
        model, x, y = step.model, step.x, step.y
        plain_ms = None
        if comm.size == 1:  # the baseline: no npdl.distributed at all
            for _ in range(warmup):
                model.train_step(x, y)
            started = time.perf_counter()
            for _ in range(steps):
                model.train_step(x, y)
            plain_ms = 1e3 * (time.perf_counter() - started) / steps
        parallel = dist.attach(model, comm)
        for _ in range(warmup):
            parallel.train_batch(x, y)
        comm.barrier()
        parallel.reduce_seconds = 0.0
        started = time.perf_counter()
        for _ in range(steps):
            parallel.train_batch(x, y)
        elapsed = time.perf_counter() - started
        buckets = parallel.bucket_layout
        comm.barrier()
        reps = max(10, steps // 2)
        started = time.perf_counter()
        for _ in range(reps):
            buckets.allreduce_sum(comm)
        pure = (time.perf_counter() - started) / reps
        slowest = max(_gathered(comm, elapsed))
        reduce_s = max(_gathered(comm, parallel.reduce_seconds))
        pure = max(_gathered(comm, pure))
        if comm.rank == 0:
            print(json.dumps({"workload": name, "ranks": comm.size, "batch": w.batch_size, "steps": steps,
                              "step_ms": 1e3 * slowest / steps, "plain_ms": plain_ms,
                              "allreduce_ms": 1e3 * reduce_s / steps, "share": reduce_s / slowest,
                              "pure_allreduce_us": 1e6 * pure, "bytes": buckets.nbytes,
                              "messages": buckets.messages}), flush=True)
    dist.finalize()


def run_ranks(ranks: int, names, steps: int, warmup: int) -> list:
    """``mpiexec -n ranks`` of this script's worker; the JSON lines of rank 0."""
    mpiexec = shutil.which("mpiexec") or shutil.which("mpirun")
    if mpiexec is None:
        sys.exit('scaling.py: no mpiexec on the PATH (pip install "npdl-backprop[mpi]")')
    cmd = [mpiexec, "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--worker",
           "--workloads", ",".join(names), "--steps", str(steps), "--warmup", str(warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ONE_THREAD})
    if proc.returncode != 0:
        sys.exit(f"scaling.py: {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def timing_table(rows) -> str:
    """Markdown: per workload and rank count, step time, speed-up over one plain process, allreduce share."""
    plain = {r["workload"]: r["plain_ms"] for r in rows if r["ranks"] == 1}
    lines = ["| workload | ranks | step ms | speed-up vs 1 plain | allreduce ms (share) | pure allreduce us | "
             "bytes/step | messages |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = plain.get(r["workload"])
        speedup = f"{base / r['step_ms']:.2f}x" if base else "-"
        lines.append(f"| {r['workload']} | {r['ranks']} | {r['step_ms']:.3f} | {speedup} | "
                     f"{r['allreduce_ms']:.3f} ({100 * r['share']:.1f}%) | {r['pure_allreduce_us']:.1f} | "
                     f"{r['bytes']:,} | {r['messages']} |")
    return "\n".join(lines)


def model_table(names, ranks=(2, 8), alphas=None) -> str:
    """Markdown: bytes reduced per step and the modelled NCCL ring allreduce time on each link."""
    alphas = alphas or {}
    head = "| workload | parameters | bytes/step | " + " | ".join(
        f"{link}, N={n}" for link in LINKS for n in ranks) + " |"
    lines = [head, "|---|---|---|" + "---|" * (len(LINKS) * len(ranks))]
    for name in names:
        _, step = _step_and_model(name)
        nbytes = gradient_bytes(step.model)
        cells = []
        for link, (bandwidth, alpha) in LINKS.items():
            for n in ranks:
                cells.append(f"{1e6 * ring_seconds(nbytes, n, bandwidth, alphas.get(link, alpha)):.1f} us")
        lines.append(f"| {name} | {(nbytes - 4) // 4:,} | {nbytes:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default=DEFAULT_WORKLOADS, help=f"comma-separated (default {DEFAULT_WORKLOADS})")
    p.add_argument("--ranks", default="1,2", help="rank counts to time (default 1,2)")
    p.add_argument("--steps", type=int, default=200, help="timed steps per workload (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first (default 20)")
    p.add_argument("--model", action="store_true", help="print only the modelled NCCL table (no timing)")
    p.add_argument("--alpha-us", type=float, help="per-step ring latency in us for every link (default 2 NVLink, 5 PCIe)")
    p.add_argument("--json", metavar="PATH", help="also write the timings as JSON")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    if args.worker:
        worker(names, args.steps, args.warmup)
        return 0
    alphas = {link: args.alpha_us * 1e-6 for link in LINKS} if args.alpha_us is not None else None
    if not args.model:
        rows = []
        for ranks in [int(r) for r in args.ranks.split(",")]:
            rows += run_ranks(ranks, names, args.steps, args.warmup)
        rows.sort(key=lambda r: (names.index(r["workload"]), r["ranks"]))
        print(timing_table(rows), end="\n\n")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
    print(model_table(names, alphas=alphas))
    return 0


if __name__ == "__main__":
    sys.exit(main())
