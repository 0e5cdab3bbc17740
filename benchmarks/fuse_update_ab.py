"""A workload's npdl step with the update made in the backward pass against the same step without it,
in one process, taking turns.

``Sequential.fuse_update`` (on by default) lets a dense layer make plain SGD's batch-1 update of its
weights in its backward pass, in the same pass over ``W`` as its input gradient (docs/training.md,
"The update in the backward pass"). Two models of the workload are built, one with it off, and
their steps alternate in blocks of ``--block`` steps, the side going first swapped each time, so a
slow stretch of the machine falls on both; a reading is the median over ``--alternations`` blocks.
The two models start from the same weights and see the same batch, and their parameters are
compared bit for bit at the end (the update is the same either way).

    python benchmarks/fuse_update_ab.py --workload sda_b1 --readings 6

Prints each reading's two medians (ms per step) and their ratio (below 1: the update in the
backward pass is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import npdl  # noqa: F401  (before NumPy: npdl sets OpenBLAS's thread settings as NumPy loads)
import numpy as np

from npdl.bench.npdl_step import npdl_step
from npdl.bench.workloads import expand


def steps(workload: str):
    """``(fused, separate)``: the workload's step twice, from the same seed, the second with ``fuse_update`` off."""
    w = expand([workload])[0]
    fused, _ = npdl_step(w, "cpu")
    separate, _ = npdl_step(w, "cpu")
    separate.model.fuse_update = False
    return fused, separate


def _block(step, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def alternate(sides, alternations: int) -> tuple:
    """Medians, in ms, of what each of the two ``sides`` returns (seconds) over ``alternations`` turns
    of each, the side going first swapped each time (the second side first in the first turn)."""
    times = ([], [])
    for k in range(alternations):
        for side in ((0, 1) if k % 2 else (1, 0)):
            times[side].append(sides[side]())
    return tuple(statistics.median(t) * 1e3 for t in times)


def reading(fused, separate, alternations: int, block: int) -> tuple:
    """``(fused ms, separate ms)``: medians over ``alternations`` blocks of each, the first side swapped each time."""
    return alternate((lambda: _block(fused, block), lambda: _block(separate, block)), alternations)


def same_parameters(a, b) -> bool:
    return all(np.array_equal(p, q) for la, lb in zip(a.model.layers, b.model.layers)
               for p, q in zip(la.params.values(), lb.params.values()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="sda_b1", help="one workload, FAMILY_bBATCH (sda_b1)")
    parser.add_argument("--readings", type=int, default=6, help="readings to print (6)")
    parser.add_argument("--alternations", type=int, default=40, help="blocks of each side per reading (40)")
    parser.add_argument("--block", type=int, default=5, help="steps per block (5)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps of each side first (30)")
    args = parser.parse_args(argv)
    fused, separate = steps(args.workload)
    for _ in range(args.warmup):
        fused()
        separate()
    print(f"{args.workload}: update in the backward pass against in the optimizer's step, ms per step")
    for _ in range(args.readings):
        a, b = reading(fused, separate, args.alternations, args.block)
        print(f"in backward {a:.3f}  in step {b:.3f}  ratio {a / b:.3f}")
    steps_taken = args.warmup + args.readings * args.alternations * args.block
    same = same_parameters(fused, separate)
    print(f"parameters after {steps_taken} steps of each: {'the same bits' if same else 'DIFFERENT'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
