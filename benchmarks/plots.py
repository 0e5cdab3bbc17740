"""Batch-size sweeps from ``benchmarks/run.py``: summaries, the GPU/CPU crossover, and PNG plots.

``rows`` are the CSV's records (dicts with ``workload``, ``impl``, ``device``,
``batch_size``, ``median_ms``; several rounds of a cell are summarised by their median).

* :func:`crossover`: per workload family, the first batch size at which the GPU step is
  faster than the CPU step (both measured for the same implementation);
* :func:`write_plots`: one PNG per family: step time vs batch size (log-log), one line per
  implementation and device, and beside it the GPU/CPU speed-up with the crossover marked;
* :func:`write_rooflines`: one PNG per device: the measured ceilings (the GEMM rate, and the
  bandwidth times the arithmetic intensity) as lines, and each workload and implementation as a
  point at its intensity (FLOP per byte) and achieved GFLOP/s (median over rounds).
  Both need matplotlib; without it they say so and return no paths.

    python benchmarks/plots.py benchmarks/results/2026-11-25-sweep.csv   # plots from a written CSV
    (rooflines too when the CSV has the ceilings: ``gemm_gflops_per_s``, ``bandwidth_gb_per_s``)
"""

from __future__ import annotations

import csv
import os
import re
import statistics
import sys


def family_of(workload: str) -> str:
    """``"sda_b128"`` -> ``"sda"``."""
    m = re.fullmatch(r"(.+)_b\d+", workload)
    return m.group(1) if m else workload


def summarize(rows) -> dict:
    """``{(family, impl, device): {batch_size: median over rounds of median_ms}}``."""
    cells: dict = {}
    for r in rows:
        key = (family_of(r["workload"]), r["impl"], r["device"])
        cells.setdefault(key, {}).setdefault(int(r["batch_size"]), []).append(float(r["median_ms"]))
    return {k: {b: statistics.median(v) for b, v in sorted(by_b.items())} for k, by_b in cells.items()}


def speedups(rows, impl: str = "npdl") -> dict:
    """``{family: [(batch_size, cpu_ms / gpu_ms)]}`` over the batch sizes measured on both devices."""
    table = summarize(rows)
    out = {}
    for (family, i, device), cpu in table.items():
        if i != impl or device != "cpu" or (family, impl, "gpu") not in table:
            continue
        gpu = table[(family, impl, "gpu")]
        out[family] = [(b, cpu[b] / gpu[b]) for b in sorted(cpu) if b in gpu and gpu[b] > 0]
    return out


def crossover(rows, impl: str = "npdl") -> dict:
    """``{family: batch size or None}``: the first batch size (ascending) whose GPU median beats the
    CPU median, or None when the GPU never wins in the sweep. Only families with both devices measured."""
    return {family: next((b for b, s in curve if s > 1.0), None) for family, curve in speedups(rows, impl).items()}


def _label(impl, device):
    return f"{impl}-{device.upper()}"


def _batch_axis(ax, sizes):
    """A log2 x axis labelled with the measured batch sizes themselves."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(b) for b in sizes])
    ax.minorticks_off()
    ax.set_xlabel("batch size")


def write_plots(rows, prefix: str) -> list:
    """Write ``<prefix>-<family>.png`` for each family in ``rows``; returns the paths written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; no plots (pip install matplotlib)", file=sys.stderr)
        return []
    table = summarize(rows)
    curves = speedups(rows)
    cross = crossover(rows)
    paths = []
    for family in sorted({k[0] for k in table}):
        both = family in curves and curves[family]
        fig, axes = plt.subplots(1, 2 if both else 1, figsize=(11 if both else 6, 4.2), squeeze=False)
        ax = axes[0][0]
        for (fam, impl, device), by_b in sorted(table.items()):
            if fam != family:
                continue
            sizes = sorted(by_b)
            ax.plot(sizes, [by_b[b] for b in sizes], marker="o", linestyle="-" if device == "gpu" else "--",
                    label=_label(impl, device))
        _batch_axis(ax, sorted({b for (fam, _, _), by_b in table.items() if fam == family for b in by_b}))
        ax.set_yscale("log")
        ax.set_ylabel("median step time (ms)")
        ax.set_title(f"{family}: one training step")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        if both:
            ax = axes[0][1]
            sizes = [b for b, _ in curves[family]]
            ax.plot(sizes, [s for _, s in curves[family]], marker="o", label="npdl GPU/CPU speed-up")
            ax.axhline(1.0, color="grey", linewidth=1)
            b = cross.get(family)
            if b is not None:
                ax.axvline(b, color="red", linestyle=":", label=f"crossover: batch {b}")
            _batch_axis(ax, sizes)
            ax.set_yscale("log")
            ax.set_ylabel("CPU time / GPU time")
            ax.set_title(f"{family}: GPU speed-up over CPU" + ("" if b is not None else " (GPU never faster)"))
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        paths.append(_save(fig, f"{prefix}-{family}.png"))
    return paths


def _save(fig, path: str) -> str:
    """Lay out, write ``fig`` to ``path`` (PNG, 110 dpi) and close it; returns ``path``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def roofline_points(rows) -> dict:
    """``{device: {(workload, impl): (FLOP per byte, GFLOP/s)}}``, the rate from the median over rounds."""
    times: dict = {}
    work: dict = {}
    for r in rows:
        if r.get("flops") in (None, "") or r.get("bytes") in (None, ""):
            continue
        key = (r["workload"], r["impl"])
        times.setdefault(r["device"], {}).setdefault(key, []).append(float(r["median_ms"]))
        work[key] = (float(r["flops"]), float(r["bytes"]))
    return {device: {key: (work[key][0] / work[key][1], work[key][0] / (statistics.median(ms) / 1e3) / 1e9)
                     for key, ms in cells.items()} for device, cells in times.items()}


def peaks_from_rows(rows) -> dict:
    """``{device: {"gemm_gflops_per_s", "bandwidth_gb_per_s"}}`` from rows that carry the ceilings."""
    out = {}
    for r in rows:
        if r.get("gemm_gflops_per_s") not in (None, "") and r.get("bandwidth_gb_per_s") not in (None, ""):
            out[r["device"]] = {"gemm_gflops_per_s": float(r["gemm_gflops_per_s"]),
                                "bandwidth_gb_per_s": float(r["bandwidth_gb_per_s"])}
    return out


def write_rooflines(rows, peaks: dict, prefix: str) -> list:
    """Write ``<prefix>-roofline-<device>.png`` for each device with ceilings in ``peaks``; returns the paths."""
    points = roofline_points(rows)
    devices = [d for d in sorted(points) if d in peaks]
    if not devices:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; no roofline plots (pip install matplotlib)", file=sys.stderr)
        return []
    paths = []
    markers = {"npdl": "o", "npdl-graph": "D", "torch": "s", "jax": "^"}
    for device in devices:
        gemm, bandwidth = peaks[device]["gemm_gflops_per_s"], peaks[device]["bandwidth_gb_per_s"]
        cells = points[device]
        xs = [i for i, _ in cells.values()] + [gemm / bandwidth]
        lo, hi = min(xs) / 4, max(xs) * 4
        fig, ax = plt.subplots(figsize=(8, 5.5))
        grid = [lo * (hi / lo) ** (k / 200) for k in range(201)]
        ax.plot(grid, [min(gemm, bandwidth * x) for x in grid], color="black", linewidth=1.5, label="roofline")
        ax.axhline(gemm, color="grey", linestyle=":", linewidth=1, label=f"GEMM peak {gemm:,.0f} GFLOP/s")
        ax.plot(grid, [bandwidth * x for x in grid], color="grey", linestyle="--", linewidth=1,
                label=f"bandwidth {bandwidth:,.0f} GB/s")
        families = sorted({family_of(w) for w, _ in cells})
        colors = {f: plt.cm.tab10(k % 10) for k, f in enumerate(families)}
        for (workload, impl), (x, y) in sorted(cells.items()):
            ax.scatter([x], [y], marker=markers.get(impl, "x"), color=colors[family_of(workload)], s=36, zorder=3)
            ax.annotate(workload, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        for impl in sorted({impl for _, impl in cells}):
            ax.scatter([], [], marker=markers.get(impl, "x"), color="grey", label=impl)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_xlabel("arithmetic intensity (FLOP per byte moved, at least)")
        ax.set_ylabel("achieved GFLOP/s (median step)")
        ax.set_title(f"roofline: {device} ({next((r.get('device_name') for r in rows if r['device'] == device), '')})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        paths.append(_save(fig, f"{prefix}-roofline-{device}.png"))
    return paths


def read_csv(path: str) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python benchmarks/plots.py RESULTS.csv", file=sys.stderr)
        return 2
    rows = read_csv(argv[0])
    prefix = os.path.splitext(argv[0])[0]
    for path in write_plots(rows, prefix) + write_rooflines(rows, peaks_from_rows(rows), prefix):
        print(f"wrote {path}")
    for family, b in crossover(rows).items():
        print(f"{family}: GPU faster than CPU from batch size {b}" if b else f"{family}: GPU never faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
