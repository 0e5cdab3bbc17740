"""Time npdl against PyTorch and JAX on the same workloads, in one run, and write a CSV and a ratio table.

Each (workload, implementation) is timed in its own subprocess, so thread pools
and JIT caches of different libraries never share a process; the whole set is
repeated ``--rounds`` times, interleaved, and each cell keeps the median of its
rounds' medians, so a burst of background load hits every library alike.

    python benchmarks/run.py                           # mlp_b20, sda_b1, sda_b128 on the CPU
    python benchmarks/run.py --workload mlp_b20 --rounds 5 --csv benchmarks/results/mlp.csv

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


def command(impl, workload, device, min_seconds):
    if impl == "npdl":
        return [sys.executable, "-m", "npdl", "bench", "--workload", workload, "--device", device, "--json",
                "--min-seconds", str(min_seconds)]
    return [sys.executable, os.path.join(HERE, "peers.py"), "--impl", impl, "--workload", workload,
            "--device", device, "--min-seconds", str(min_seconds)]


def installed(impl) -> bool:
    if impl == "npdl":
        return True
    probe = subprocess.run([sys.executable, "-c", f"import {impl}"], capture_output=True)
    return probe.returncode == 0


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    p.add_argument("--workload", default="mlp_b20,sda_b1,sda_b128", help="NAME[,NAME...]")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--impls", default=",".join(IMPLS), help="which of npdl,torch,jax to time")
    p.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of the whole set (3)")
    p.add_argument("--min-seconds", type=float, default=1.5, help="timed seconds per cell and round (1.5)")
    p.add_argument("--csv", help="write every measurement here (default benchmarks/results/<date>-<device>.csv)")
    args = p.parse_args(argv)

    workloads = [w.strip() for w in args.workload.split(",") if w.strip()]
    impls = []
    for impl in args.impls.split(","):
        if installed(impl.strip()):
            impls.append(impl.strip())
        else:
            print(f"note: {impl} is not installed; skipped", file=sys.stderr)
    info = machine()
    print(f"# {info['cpu']}, {info['cores']} cores, Python {info['python']}, {info['date']}"
          + (f", OPENBLAS_CORETYPE={info['OPENBLAS_CORETYPE']}" if info["OPENBLAS_CORETYPE"] else ""))
    rows = []
    for round_ in range(args.rounds):
        for workload in workloads:
            for impl in impls:
                r = run_one(impl, workload, args.device, args.min_seconds)
                r.update(round=round_ + 1, impl=impl)
                rows.append(r)
                print(f"round {round_ + 1}: {workload:10s} {impl:6s} median {r['median_ms']:9.3f} ms  "
                      f"min {r['min_ms']:9.3f} ms  ({r['reps']} reps)", file=sys.stderr, flush=True)

    path = args.csv or os.path.join(HERE, "results", f"{info['date'][:10]}-{args.device}.csv")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    keys = ["workload", "impl", "device", "batch_size", "round", "median_ms", "min_ms", "reps", "version"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys + ["cpu", "cores"], extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "cpu": info["cpu"], "cores": info["cores"]})

    print(f"\n| workload | {' | '.join(f'{i} median ms' for i in impls)} | npdl / fastest peer |")
    print(f"|---|{'---:|' * len(impls)}---:|")
    summary = {}
    for workload in workloads:
        cells = {}
        for impl in impls:
            medians = [r["median_ms"] for r in rows if r["workload"] == workload and r["impl"] == impl]
            cells[impl] = statistics.median(medians)
        peers = [cells[i] for i in impls if i != "npdl"]
        ratio = cells["npdl"] / min(peers) if peers and "npdl" in cells else None
        summary[workload] = {**cells, "ratio": ratio}
        print(f"| {workload} | {' | '.join(f'{cells[i]:.3f}' for i in impls)} | "
              f"{'-' if ratio is None else f'{ratio:.2f}x'} |")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
