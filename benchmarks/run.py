"""Time npdl against PyTorch and JAX on the same workloads, in one run, and write a CSV and a ratio table.

Each (workload, implementation) is timed in its own subprocess, so thread pools
and JIT caches of different libraries never share a process; the whole set is
repeated ``--rounds`` times, interleaved, and each cell keeps the median of its
rounds' medians, so a burst of background load hits every library alike.

    python benchmarks/run.py                           # mlp_b20, sda_b1, sda_b128 on the CPU
    python benchmarks/run.py --workload mlp_b20 --rounds 5 --csv benchmarks/results/mlp.csv
    python benchmarks/run.py --workload mlp,lenet --batch-sizes 1,8,32,128,512,2048 --device cpu,gpu

With ``--batch-sizes`` every workload family (a bare ``mlp`` or ``mlp_b20``) is timed at each
batch size; with ``--device cpu,gpu`` both devices are timed in the same run, the table ends
with each family's GPU/CPU crossover (the first batch size at which npdl's GPU step beats
its CPU step) and ``benchmarks/plots.py`` writes a PNG per family next to the CSV: step time
vs batch size for every implementation and device, and the GPU/CPU speed-up curve.
``--graph`` adds ``npdl-graph``: npdl's GPU step replayed from a CUDA graph.

The ratio is npdl's median over the faster peer's median (below 1: npdl is faster).
Peers that are not installed are skipped with a note. Only ratios from one run
compare: machines (and their load) differ from one run to the next.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
IMPLS = ("npdl", "torch", "jax")
DEVICES = ("cpu", "gpu")

sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
from npdl.bench.timing import cpu_name  # noqa: E402
from npdl.bench.workloads import expand, parse_batch_sizes  # noqa: E402
import plots  # noqa: E402  (benchmarks/plots.py)


def command(impl, workload, device, min_seconds):
    if impl in ("npdl", "npdl-graph"):
        return [sys.executable, "-m", "npdl", "bench", "--workload", workload, "--device", device, "--json",
                "--min-seconds", str(min_seconds)] + (["--graph"] if impl == "npdl-graph" else [])
    return [sys.executable, os.path.join(HERE, "peers.py"), "--impl", impl, "--workload", workload,
            "--device", device, "--min-seconds", str(min_seconds)]


def installed(impl) -> bool:
    if impl == "npdl":
        return True
    probe = subprocess.run([sys.executable, "-c", f"import {impl}"], capture_output=True)
    return probe.returncode == 0


def machine() -> dict:
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def run_one(impl, workload, device, min_seconds) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(command(impl, workload, device, min_seconds), capture_output=True, text=True, env=env,
                          cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{impl} {workload} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", default="mlp_b20,sda_b1,sda_b128",
                   help="NAME[,NAME...]: FAMILY_bBATCH, or a bare FAMILY with --batch-sizes")
    p.add_argument("--batch-sizes", metavar="N[,N...]", help="time every family at each batch size (1,8,32,...)")
    p.add_argument("--device", default="cpu", help="cpu, gpu or cpu,gpu (both in the same run)")
    p.add_argument("--graph", action="store_true", help="on the GPU also time npdl-graph (the CUDA-graph replay)")
    p.add_argument("--impls", default=",".join(IMPLS), help="which of npdl,torch,jax to time")
    p.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of the whole set (3)")
    p.add_argument("--min-seconds", type=float, default=1.5, help="timed seconds per cell and round (1.5)")
    p.add_argument("--csv", help="write every measurement here (default benchmarks/results/<date>-<device>.csv)")
    p.add_argument("--no-plots", action="store_true", help="with --batch-sizes, do not write the PNG plots")
    args = p.parse_args(argv)

    devices = [d.strip() for d in args.device.split(",") if d.strip()]
    if not devices or any(d not in DEVICES for d in devices):
        p.error(f"--device: use cpu, gpu or cpu,gpu, got {args.device!r}")
    try:
        sizes = parse_batch_sizes(args.batch_sizes) if args.batch_sizes else None
        workloads = [w.name for w in expand(args.workload.split(","), sizes)]
    except ValueError as exc:
        p.error(str(exc))
    impls = []
    for impl in args.impls.split(","):
        if installed(impl.strip()):
            impls.append(impl.strip())
        else:
            print(f"note: {impl} is not installed; skipped", file=sys.stderr)
    if args.graph and "gpu" in devices and "npdl" in impls:
        impls.insert(impls.index("npdl") + 1, "npdl-graph")
    info = machine()
    print(f"# {info['cpu']}, {info['cores']} cores, Python {info['python']}, {info['date']}"
          + (f", OPENBLAS_CORETYPE={info['OPENBLAS_CORETYPE']}" if info["OPENBLAS_CORETYPE"] else ""))
    rows = []
    for round_ in range(args.rounds):
        for workload in workloads:
            for device in devices:
                for impl in impls:
                    if impl == "npdl-graph" and device != "gpu":
                        continue
                    try:
                        r = run_one(impl, workload, device, args.min_seconds)
                    except RuntimeError as exc:  # e.g. out of memory at a large batch: note it, go on
                        print(f"note: {exc}", file=sys.stderr, flush=True)
                        continue
                    r.update(round=round_ + 1, impl=impl, device=device)
                    r.setdefault("device_name", info["cpu"] if device == "cpu" else "")
                    rows.append(r)
                    print(f"round {round_ + 1}: {workload:10s} {device:4s} {impl:10s} median {r['median_ms']:9.3f} ms"
                          f"  min {r['min_ms']:9.3f} ms  ({r['reps']} reps)", file=sys.stderr, flush=True)

    path = args.csv or os.path.join(HERE, "results", f"{info['date'][:10]}-{'-'.join(devices)}.csv")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    keys = ["workload", "impl", "device", "batch_size", "round", "median_ms", "min_ms", "reps", "version",
            "device_name", "graph", "timer"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys + ["cpu", "cores"], extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "cpu": info["cpu"], "cores": info["cores"]})

    print_table(rows, workloads, devices, impls)
    print(f"\nwrote {path}")
    if sizes and not args.no_plots:
        for png in plots.write_plots(rows, os.path.splitext(path)[0]):
            print(f"wrote {png}")
    return 0


def print_table(rows, workloads, devices, impls) -> dict:
    """The markdown table of medians (and npdl over the fastest peer), then the GPU/CPU crossovers."""
    print(f"\n| workload | device | {' | '.join(f'{i} median ms' for i in impls)} | npdl / fastest peer |")
    print(f"|---|---|{'---:|' * len(impls)}---:|")
    summary = {}
    for workload in workloads:
        for device in devices:
            cells = {}
            for impl in impls:
                medians = [r["median_ms"] for r in rows
                           if r["workload"] == workload and r["impl"] == impl and r["device"] == device]
                if medians:
                    cells[impl] = statistics.median(medians)
            if not cells:
                continue
            peers = [cells[i] for i in cells if not i.startswith("npdl")]
            ratio = cells["npdl"] / min(peers) if peers and "npdl" in cells else None
            summary[(workload, device)] = {**cells, "ratio": ratio}
            print(f"| {workload} | {device} | {' | '.join(f'{cells[i]:.3f}' if i in cells else '-' for i in impls)} | "
                  f"{'-' if ratio is None else f'{ratio:.2f}x'} |")
    cross = plots.crossover(rows)
    if cross:
        print("\nGPU/CPU crossover (npdl: first batch size at which the GPU step is faster):")
        for family, b in cross.items():
            sizes = sorted({int(r["batch_size"]) for r in rows if plots.family_of(r["workload"]) == family})
            print(f"  {family}: batch {b}" if b is not None else
                  f"  {family}: GPU not faster at any measured batch size (up to {sizes[-1]})")
    return summary


if __name__ == "__main__":
    sys.exit(main())
