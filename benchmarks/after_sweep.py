"""How much slower small Python operations run right after a large array has streamed through the caches.

A batch-1 training step alternates products that stream a weight matrix (4 MB for a 1000x1000
float32 one) with Python: dispatch, checks, small array operations. A stream larger than the
CPU's last-level cache evicts the interpreter's own code and data, so the Python after it runs
from memory. This script times small operations right after summing an array of each size
(NumPy's ``sum``, one thread: nothing but the sweep differs) and right after nothing, the two
alternating call by call, so a slow stretch of the machine falls on both:

* ``empty``: ``np.empty_like`` of a (1, 10) array;
* ``add``: a (1, 10) float32 add;
* ``mean``: ``ndarray.mean`` of one float64 (NumPy's Python-level ``_mean``);
* ``step``: one npdl training step of a 8-8-8-8-2 network at batch 1 (four Dense layers, SGD):
  the framework's Python with next to no arithmetic.

    python benchmarks/after_sweep.py --mib 0,1,2,4,8,16 --repeats 400

Prints, per size, each operation's median microseconds and its ratio to the same operation
after no sweep; ``--json FILE`` writes them with the machine and the command (an existing file
is refused).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import statistics
import sys
import time

import npdl  # noqa: F401  (before NumPy: npdl sets OpenBLAS's thread settings as NumPy loads)
import numpy as np

from run import machine  # benchmarks/run.py

MIB = 1 << 20


def small_step():
    """A zero-argument training step of a 8-8-8-8-2 network at batch 1 (the framework, almost no arithmetic)."""
    from npdl.bench.npdl_step import dense_step
    from npdl.bench.workloads import expand

    w = dataclasses.replace(expand(["sda_b1"])[0], sizes=(8, 8, 8, 8, 2))
    return dense_step(w, npdl.backend.get_device("cpu"))


def operations() -> dict:
    """``{name: zero-argument callable}``: the small operations timed after each sweep."""
    small = np.ones((1, 10), np.float32)
    one = np.ones(1)
    return {"empty": lambda: np.empty_like(small), "add": lambda: small + small, "mean": lambda: one.mean(),
            "step": small_step()}


def _nothing():
    return None


def time_after(sweep, op) -> float:
    """Seconds of one ``op()`` right after ``sweep()``."""
    sweep()
    t = time.perf_counter()
    op()
    return time.perf_counter() - t


def sweep_of(mib: float):
    """A zero-argument call that streams ``mib`` MiB of float32 through the caches (nothing for 0)."""
    if not mib:
        return _nothing
    array = np.ones(max(1, int(mib * MIB) // 4), np.float32)
    return array.sum


def measure(sizes_mib, repeats: int, ops: dict | None = None, sweeps=sweep_of) -> list:
    """One row per size: ``{"mib", "us": {op: median}, "ratio": {op: median / median after no sweep}}``.

    Every size is paired with no sweep, call by call, so the ratio compares the same stretch of time.
    ``sweeps(mib)`` makes the sweep (:func:`sweep_of`)."""
    ops = operations() if ops is None else ops
    for op in ops.values():  # compiled, allocated and warm before anything is timed
        for _ in range(20):
            op()
    rows = []
    for mib in sizes_mib:
        sweep = sweeps(mib)
        us, ratio = {}, {}
        for name, op in ops.items():
            swept, bare = [], []
            for _ in range(repeats):
                swept.append(time_after(sweep, op))
                bare.append(time_after(_nothing, op))
            us[name] = statistics.median(swept) * 1e6
            ratio[name] = statistics.median(swept) / statistics.median(bare)
        rows.append({"mib": mib, "us": us, "ratio": ratio})
    return rows


def table(rows) -> str:
    names = list(rows[0]["us"])
    head = "| swept MiB | " + " | ".join(f"{n} us (x no sweep)" for n in names) + " |"
    lines = [head, "|" + "---:|" * (len(names) + 1)]
    for r in rows:
        cells = " | ".join(f"{r['us'][n]:.1f} ({r['ratio'][n]:.2f}x)" for n in names)
        lines.append(f"| {r['mib']:g} | {cells} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", default="0,1,2,4,8,16", help="sizes of the swept array, MiB, comma-separated")
    p.add_argument("--repeats", type=int, default=400, help="timed calls per operation and size (each side)")
    p.add_argument("--json", help="also write the rows, the machine and the command here")
    args = p.parse_args(argv)
    try:
        sizes = [float(s) for s in args.mib.split(",") if s.strip()]
    except ValueError:
        p.error(f"--mib: expected numbers separated by commas, got {args.mib!r}")
    if not sizes or min(sizes) < 0 or args.repeats < 1:
        p.error("--mib needs sizes >= 0 and --repeats at least 1")
    if args.json and os.path.exists(args.json):
        p.error(f"--json: {args.json} exists; choose another name")
    rows = measure(sizes, args.repeats)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "command": shlex.join(
                ["python", "benchmarks/after_sweep.py", *(sys.argv[1:] if argv is None else argv)]), "rows": rows}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
