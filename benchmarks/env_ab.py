"""Time npdl under two settings of one environment variable, in alternating slices: which is faster?

Some choices are made when a library loads and cannot change afterwards (how long OpenBLAS's
idle threads spin, Numba's threading layer). Comparing them takes two processes that differ in
one variable. For each workload and round both are started and warmed up, then take turns in
slices of ``--slice`` seconds (the first of each cycle alternating) until each has run
``--seconds``, as ``run.py`` times the peers (:mod:`slices`): a slow stretch of the machine
falls on both. ``--load N`` runs N busy-looping processes meanwhile.

    python benchmarks/env_ab.py OPENBLAS_THREAD_TIMEOUT 20 4 --workload mlp_b20,sda_b1 --rounds 4 --load 1

Prints, per workload and round, each side's median step time and B / A (below 1: B is faster),
and with ``--json FILE`` writes every round's medians with the machine and the command.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from run import Load, _env, machine  # benchmarks/run.py
from slices import Worker, take_turns  # benchmarks/slices.py


def time_pair(workload: str, envs: dict, seconds: float, slice_s: float) -> dict:
    """``{label: median ms}`` of npdl's step on ``workload``, one worker per ``envs`` item, in turns."""
    workers = {}
    try:
        for label, env in envs.items():  # started one at a time: no start-up overlaps a timing
            workers[label] = Worker("npdl", workload, "cpu", env)
        take_turns(list(workers.values()), seconds, slice_s)
    finally:
        for worker in workers.values():
            worker.close()
    return {label: statistics.median(worker.times) * 1e3 for label, worker in workers.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("variable", help="the environment variable, e.g. OPENBLAS_THREAD_TIMEOUT")
    p.add_argument("a", help="its value on side A ('-' leaves it unset)")
    p.add_argument("b", help="its value on side B ('-' leaves it unset)")
    p.add_argument("--workload", default="mlp_b20,sda_b1", help="NAME[,NAME...] (mlp_b20,sda_b1)")
    p.add_argument("--rounds", type=int, default=4, help="fresh pairs of processes per workload (4)")
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per side and round (3)")
    p.add_argument("--slice", type=float, default=0.25, help="seconds per turn (0.25)")
    p.add_argument("--load", type=int, default=0, help="busy-looping processes during the timings (0)")
    p.add_argument("--json", help="write the medians here")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.slice <= 0 or args.load < 0:
        p.error("--rounds must be at least 1, --seconds and --slice positive, --load at least 0")
    if args.a == args.b:
        p.error(f"the two values of {args.variable} are the same ({args.a!r}): nothing to compare")
    envs = {}
    for side, value in (("A", args.a), ("B", args.b)):
        env = {k: v for k, v in _env().items() if k != args.variable}
        if value != "-":
            env[args.variable] = value
        envs[f"{side}: {args.variable}={value}" if value != "-" else f"{side}: {args.variable} unset"] = env
    labels = list(envs)
    results = {}
    with Load(args.load):
        for workload in args.workload.split(","):
            for rnd in range(1, args.rounds + 1):
                med = time_pair(workload, envs, args.seconds, args.slice)
                results.setdefault(workload, []).append(med)
                print(f"{workload:10s} round {rnd}: A {med[labels[0]]:9.3f} ms  B {med[labels[1]]:9.3f} ms  "
                      f"B / A {med[labels[1]] / med[labels[0]]:.3f}", flush=True)
    print(f"\nA = {labels[0]}, B = {labels[1]}, load {args.load}; below 1: B is faster")
    for workload, meds in results.items():
        ratios = [m[labels[1]] / m[labels[0]] for m in meds]
        print(f"{workload:10s} B / A median {statistics.median(ratios):.3f}  rounds "
              + ", ".join(f"{r:.2f}" for r in ratios))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "command": "python benchmarks/env_ab.py " + " ".join(sys.argv[1:]
                       if argv is None else argv), "load": args.load, "sides": labels, "medians_ms": results}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
