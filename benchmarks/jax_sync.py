"""JAX's step as ``benchmarks/run.py`` times it, against the same step waited for after every call.

A jitted JAX function returns before XLA has finished: the timed slices of ``benchmarks/run.py``
synchronise once, at their end, so JAX's Python (tracing cache lookup, argument handling,
dispatch) for the next step overlaps the arithmetic of the one before. That is how JAX runs in a
training loop, and what the benchmark compares; npdl's step is synchronous, Python and arithmetic
one after the other. This script measures how much the overlap is worth: slices of ``--steps``
steps synchronised at the end, against slices synchronised after every step, taking turns in one
process (the side going first swapped each time); a reading is the median over
``--alternations`` slices of each.

    python benchmarks/jax_sync.py --workload mlp_b20 --readings 4

Prints each reading's two medians (ms per step) and their ratio (above 1: the overlap helps JAX).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # peers.py and fuse_update_ab.py beside this file

import npdl  # noqa: F401,E402  (before NumPy: npdl sets OpenBLAS's thread settings as NumPy loads)

from fuse_update_ab import alternate  # noqa: E402  (benchmarks/fuse_update_ab.py: two sides taking turns)
from npdl.bench.workloads import expand  # noqa: E402


def slice_time(step, sync, steps: int, each: bool) -> float:
    """Seconds per step over ``steps`` calls, synchronised after every call if ``each``, else once at the end."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
        if each:
            sync()
    sync()
    return (time.perf_counter() - start) / steps


def reading(step, sync, steps: int, alternations: int) -> tuple:
    """``(as run ms, synchronised ms)``: medians over ``alternations`` slices of each, taking turns."""
    return alternate((lambda: slice_time(step, sync, steps, False), lambda: slice_time(step, sync, steps, True)),
                     alternations)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="mlp_b20", help="a workload with a JAX step, FAMILY_bBATCH (mlp_b20)")
    parser.add_argument("--readings", type=int, default=4, help="readings to print (4)")
    parser.add_argument("--alternations", type=int, default=20, help="slices of each kind per reading (20)")
    parser.add_argument("--steps", type=int, default=100, help="steps per slice (100)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps first (50)")
    args = parser.parse_args(argv)
    import peers  # benchmarks/peers.py: imports JAX only when a JAX step is built

    w = expand([args.workload])[0]
    build = peers.PEERS.get(w.family, {}).get("jax")
    if build is None:
        parser.error(f"--workload: {w.name} has no JAX step in benchmarks/peers.py")
    step, sync, version = build(w, "cpu")
    for _ in range(args.warmup):
        step()
    sync()
    print(f"{w.name} in {version}: ms per step, as run (synchronised per slice) and synchronised after every step")
    for _ in range(args.readings):
        run, each = reading(step, sync, args.steps, args.alternations)
        print(f"as run {run:.3f}  synchronised {each:.3f}  ratio {each / run:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
