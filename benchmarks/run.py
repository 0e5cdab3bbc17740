"""Time npdl against PyTorch and JAX on the same workloads, in one run, and write a CSV and a ratio table.

Each (workload, implementation) is timed in its own subprocess, so thread pools
and JIT caches of different libraries never share a process. By default the
implementations of one workload are all started and warmed up, then take turns in
slices of ``--slices`` seconds (0.25) until each has run ``--min-seconds``
(:mod:`slices`): a slow stretch of a noisy machine then falls on all of them alike.
``--slices 0`` times them one after another instead. The whole set is repeated
``--rounds`` times, interleaved, and each cell keeps the median of its rounds' medians.

    python benchmarks/run.py                           # mlp_b20, sda_b1, sda_b128 on the CPU
    python benchmarks/run.py --workload mlp_b20 --rounds 5 --csv benchmarks/results/mlp.csv
    python benchmarks/run.py --workload mlp,lenet --batch-sizes 1,8,32,128,512,2048 --device cpu,gpu

With ``--batch-sizes`` every workload family (a bare ``mlp`` or ``mlp_b20``) is timed at each
batch size; with ``--device cpu,gpu`` both devices are timed in the same run, the table ends
with each family's GPU/CPU crossover (the first batch size at which npdl's GPU step beats
its CPU step) and ``benchmarks/plots.py`` writes a PNG per family next to the CSV: step time
vs batch size for every implementation and device, and the GPU/CPU speed-up curve.
``--graph`` adds ``npdl-graph``: npdl's GPU step replayed from a CUDA graph.

Against the hardware: the ceilings of each device are measured once at the start (``npdl bench
--peak --json``, written next to the CSV as ``<csv>-peak-<device>.json``), and every row, of every
implementation, gains the step's FLOPs and minimum bytes (the same count for all: npdl's analytic
count, docs/roofline.md), ``gflops_per_s``, ``peak_fraction`` (of the measured GEMM rate),
``intensity`` (FLOP per byte) and ``overhead_ms`` (the time neither ceiling explains). A second
table lists them, and ``benchmarks/plots.py`` draws a roofline per device (``<csv>-roofline-<device>.png``).
``--load N`` runs N busy-looping Python processes throughout the timings (every implementation
alike) and records N in every row.

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
from npdl.bench.roofline import roofline_fields  # noqa: E402
from npdl.bench.timing import cpu_features, cpu_name  # noqa: E402
from npdl.bench.work import workload_work  # noqa: E402
from npdl.bench.workloads import expand, parse, parse_batch_sizes  # noqa: E402
import plots  # noqa: E402  (benchmarks/plots.py)
from slices import time_sliced  # noqa: E402  (benchmarks/slices.py)

#: columns of the CSV, in order (``cpu``, ``cores``, ``load`` and ``cpu_features`` follow)
KEYS = ["workload", "impl", "device", "batch_size", "round", "median_ms", "min_ms", "reps", "version", "device_name",
        "graph", "timer", "flops", "bytes", "intensity", "gflops_per_s", "peak_fraction", "roofline_ms", "overhead_ms",
        "gemm_gflops_per_s", "bandwidth_gb_per_s"]


def command(impl, workload, device, min_seconds, peak_file=None):
    if impl in ("npdl", "npdl-graph"):
        return [sys.executable, "-m", "npdl", "bench", "--workload", workload, "--device", device, "--json",
                "--min-seconds", str(min_seconds)] + (["--graph"] if impl == "npdl-graph" else []) \
            + (["--peak-file", peak_file] if peak_file else ["--no-peak"])
    return [sys.executable, os.path.join(HERE, "peers.py"), "--impl", impl, "--workload", workload,
            "--device", device, "--min-seconds", str(min_seconds)]


def installed(impl) -> bool:
    if impl == "npdl":
        return True
    probe = subprocess.run([sys.executable, "-c", f"import {impl}"], capture_output=True)
    return probe.returncode == 0


def machine() -> dict:
    return {"cpu": cpu_name(), "cpu_features": cpu_features(), "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(), "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def _env():
    """The workers' environment: this one, with the checkout on ``PYTHONPATH`` and JAX told not to take
    75% of a GPU's memory when it starts (``XLA_PYTHON_CLIENT_PREALLOCATE=false``; a value set by the
    user stays): in a sliced timing every implementation's worker holds the GPU at once."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return env


def run_one(impl, workload, device, min_seconds, peak_file=None) -> dict:
    done = subprocess.run(command(impl, workload, device, min_seconds, peak_file), capture_output=True, text=True,
                          env=_env(), cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{impl} {workload} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_peak(device, path, min_seconds, elements=None) -> dict | None:
    """The device's ceilings (``npdl bench --peak --json``), also written to ``path``; None if it fails."""
    argv = [sys.executable, "-m", "npdl", "bench", "--peak", "--json", "--device", device,
            "--min-seconds", str(min_seconds)] + (["--peak-elements", str(elements)] if elements else [])
    done = subprocess.run(argv, capture_output=True, text=True, env=_env(), cwd=ROOT)
    if done.returncode != 0:
        print(f"note: no ceilings for {device}: {done.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    peak = json.loads(done.stdout.strip().splitlines()[-1])
    with open(path, "w") as f:
        f.write(json.dumps(peak) + "\n")
    return peak


def add_roofline(row, peak) -> dict:
    """``row`` with the step's work (the same count whatever the implementation) against ``peak``."""
    work = workload_work(parse(row["workload"]))
    row.update(roofline_fields(work.flops, work.bytes, float(row["median_ms"]), peak))
    if peak:
        row.update(gemm_gflops_per_s=peak["gemm_gflops_per_s"], bandwidth_gb_per_s=peak["bandwidth_gb_per_s"])
    return row


class Load:
    """``n`` busy-looping Python processes while the ``with`` block runs (a competing CPU-bound load)."""

    def __init__(self, n: int):
        self.n, self.procs = int(n), []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
        return False


def results_path(asked, default, overwrite, error) -> str:
    """Where the CSV goes. No earlier result is lost: without ``--csv``, a second run of the day takes
    ``<date>-<device>-2.csv`` (then ``-3`` ...); an explicit ``--csv`` that exists is refused (``error``)
    unless ``overwrite``."""
    if asked:
        if os.path.exists(asked) and not overwrite:
            error(f"--csv {asked} exists; choose another path, or add --overwrite to replace it and its "
                  "-peak-*.json and plots")
        return asked
    base, ext = os.path.splitext(default)
    return free_prefix(base, (ext,)) + ext


def free_prefix(base, exts) -> str:
    """``base``, or ``base-2``, ``base-3`` ...: the first for which no ``prefix + ext`` of ``exts`` exists."""
    prefix, n = base, 2
    while any(os.path.exists(prefix + ext) for ext in exts):
        prefix, n = f"{base}-{n}", n + 1
    return prefix


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
    p.add_argument("--csv", help="write every measurement here (default benchmarks/results/<date>-<device>.csv, "
                                 "or -2, -3 ... after it when a run of the day is there already)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an existing --csv")
    p.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
    p.add_argument("--no-peak", action="store_true", help="do not measure the ceilings (no %% peak, no roofline)")
    p.add_argument("--peak-elements", type=int, metavar="N", help="float32 elements per bandwidth array (npdl bench)")
    p.add_argument("--slices", type=float, default=0.25, metavar="S",
                   help="time a workload's implementations in alternating slices of S seconds, all processes "
                        "warm (benchmarks/slices.py; 0.25); 0: one implementation after another, each in a fresh process")
    p.add_argument("--load", type=int, default=0, metavar="N",
                   help="run N busy-looping Python processes during the timings (a competing CPU load; 0)")
    args = p.parse_args(argv)

    devices = [d.strip() for d in args.device.split(",") if d.strip()]
    if not devices or any(d not in DEVICES for d in devices):
        p.error(f"--device: use cpu, gpu or cpu,gpu, got {args.device!r}")
    if args.rounds < 1 or args.load < 0 or not 0 <= args.min_seconds < float("inf") or not 0 <= args.slices < 60:
        p.error("--rounds must be at least 1, --load at least 0, --min-seconds a finite number >= 0 "
                "and --slices between 0 and 60")
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
    print(f"# {info['cpu']} ({info['cpu_features']}), {info['cores']} cores, Python {info['python']}, {info['date']}"
          + (f", OPENBLAS_CORETYPE={info['OPENBLAS_CORETYPE']}" if info["OPENBLAS_CORETYPE"] else "")
          + (f", load: {args.load} busy processes" if args.load else ""))
    path = results_path(args.csv, os.path.join(HERE, "results", f"{info['date'][:10]}-{'-'.join(devices)}.csv"),
                        args.overwrite, p.error)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    prefix = os.path.splitext(path)[0]
    peaks, peak_files = {}, {}
    for device in devices if not args.no_peak else ():
        peak_files[device] = f"{prefix}-peak-{device}.json"
        peaks[device] = measure_peak(device, peak_files[device], min(args.min_seconds, 1.0), args.peak_elements)
        if peaks[device] is None:
            peak_files.pop(device)
        else:
            print(f"# {device} ceilings: GEMM {peaks[device]['gemm_gflops_per_s']:,.1f} GFLOP/s, bandwidth "
                  f"{peaks[device]['bandwidth_gb_per_s']:,.1f} GB/s ({peaks[device]['device_name']})")
    rows = []
    # every row is written as soon as it is measured, so a run cut short keeps what it measured
    with open(path, "w", newline="") as f, Load(args.load):
        writer = csv.DictWriter(f, fieldnames=KEYS + ["cpu", "cores", "load", "cpu_features"], extrasaction="ignore")
        writer.writeheader()
        f.flush()
        for round_ in range(args.rounds):
            for workload in workloads:
                for device in devices:
                    sliced = {}
                    if args.slices:
                        try:
                            sliced = time_sliced([i for i in impls if i != "npdl-graph"], workload, device,
                                                 args.min_seconds, args.slices, _env())
                        except RuntimeError as exc:
                            print(f"note: {exc}", file=sys.stderr, flush=True)
                            continue
                    for impl in impls:
                        if impl == "npdl-graph" and device != "gpu":
                            continue
                        if impl in sliced:
                            r = dict(sliced[impl], workload=workload, timer=f"perf_counter, slices of {args.slices:g} s")
                        elif args.slices and impl != "npdl-graph":
                            continue  # its worker failed to start (noted)
                        else:
                            try:
                                r = run_one(impl, workload, device, args.min_seconds, peak_files.get(device))
                            except RuntimeError as exc:  # e.g. out of memory at a large batch: note it, go on
                                print(f"note: {exc}", file=sys.stderr, flush=True)
                                continue
                        r.update(round=round_ + 1, impl=impl, device=device)
                        r.setdefault("device_name", info["cpu"] if device == "cpu" else "")
                        rows.append(add_roofline(r, peaks.get(device)))
                        writer.writerow({**r, "cpu": info["cpu"], "cores": info["cores"], "load": args.load,
                                         "cpu_features": info["cpu_features"]})
                        f.flush()
                        print(f"round {round_ + 1}: {workload:10s} {device:4s} {impl:10s} median "
                              f"{r['median_ms']:9.3f} ms  min {r['min_ms']:9.3f} ms  ({r['reps']} reps)",
                              file=sys.stderr, flush=True)

    print_table(rows, workloads, devices, impls)
    print_roofline(rows, workloads, devices, impls, peaks)
    print(f"\nwrote {path}")
    if not args.no_plots:
        pngs = plots.write_plots(rows, prefix) if sizes else []
        pngs += plots.write_rooflines(rows, {d: p for d, p in peaks.items() if p}, prefix)
        for png in pngs:
            print(f"wrote {png}")
    return 0


def print_roofline(rows, workloads, devices, impls, peaks) -> None:
    """Per cell (median over rounds): achieved GFLOP/s, % of the GEMM peak, FLOP per byte, overhead."""
    if not any(r.get("flops") for r in rows):
        return
    print("\n| workload | device | impl | median ms | GFLOP/s | % of GEMM peak | FLOP/byte | roofline ms | overhead ms |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for workload in workloads:
        for device in devices:
            for impl in impls:
                medians = [float(r["median_ms"]) for r in rows
                           if r["workload"] == workload and r["impl"] == impl and r["device"] == device]
                if not medians:
                    continue
                row = add_roofline({"workload": workload, "median_ms": statistics.median(medians)}, peaks.get(device))
                cell = lambda key, fmt: "-" if row.get(key) is None else format(row[key], fmt)  # noqa: E731
                fraction = "-" if row["peak_fraction"] is None else f"{100 * row['peak_fraction']:.1f}"
                print(f"| {workload} | {device} | {impl} | {row['median_ms']:.3f} | {cell('gflops_per_s', '.2f')} | "
                      f"{fraction} | {cell('intensity', '.1f')} | {cell('roofline_ms', '.3f')} | "
                      f"{cell('overhead_ms', '.3f')} |")


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
