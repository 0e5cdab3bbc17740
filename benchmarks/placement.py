"""npdl's step with its threads placed on chosen cores beside one busy process: where does it collapse?

A multi-threaded BLAS call waits until all its threads are done, and OpenBLAS's threads wait for
each other in ``sched_yield`` loops. This script starts one busy-looping process held to core 0
and one npdl worker (``slices.py``, step built and warmed up), then, in turn, holds the worker's
threads (``os.sched_setaffinity`` per thread) in each placement below and times its steps:

* ``apart, main beside the load``: the calling (main) thread on core 0, every other thread on core 1;
* ``apart, main alone``: the main thread on core 1, the others on core 0;
* ``together, load apart``: all of them on core 1;
* ``together, with the load``: all of them on core 0;
* ``free``: on both cores, where the scheduler puts them.

    python benchmarks/placement.py --workload da_b20,mlp_b20 --rounds 2
    NPDL_ADAPTIVE_THREADS=1 python benchmarks/placement.py --workload da_b20

Needs Linux and at least two cores. Prints each placement's median and minimum step time per round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from run import Load, _env, machine  # benchmarks/run.py
from slices import Worker  # benchmarks/slices.py

#: name -> (the main thread's core, the other threads' core); None: both cores for all
PLACEMENTS = {
    "apart, main beside the load": (0, 1),
    "apart, main alone": (1, 0),
    "together, load apart": (1, 1),
    "together, with the load": (0, 0),
    "free": None,
}


def place(pid: int, placement) -> None:
    """Hold every thread of process ``pid`` as ``placement`` says."""
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        cores = {0, 1} if placement is None else {placement[0] if tid == pid else placement[1]}
        try:
            os.sched_setaffinity(tid, cores)
        except (ProcessLookupError, FileNotFoundError):
            pass  # a thread that has just ended


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", default="da_b20", help="NAME[,NAME...] (da_b20)")
    p.add_argument("--rounds", type=int, default=2, help="passes over the placements (2)")
    p.add_argument("--seconds", type=float, default=1.0, help="timed seconds per placement and round (1)")
    args = p.parse_args(argv)
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        p.error("needs Linux's sched_setaffinity and at least two cores")
    info = machine()
    print(f"# {info['cpu']} ({info['cpu_features']}), {info['cores']} cores; "
          f"NPDL_ADAPTIVE_THREADS={os.environ.get('NPDL_ADAPTIVE_THREADS', '(unset)')}", flush=True)
    with Load(1) as load:
        os.sched_setaffinity(load.procs[0].pid, {0})
        for workload in args.workload.split(","):
            worker = Worker("npdl", workload, "cpu", _env())
            try:
                for rnd in range(1, args.rounds + 1):
                    for name, placement in PLACEMENTS.items():
                        place(worker.proc.pid, placement)
                        worker.run(0.2)  # settle in the new placement
                        worker.times.clear()
                        worker.run(args.seconds)
                        t = worker.times
                        print(f"{workload:10s} round {rnd}  {name:28s} median {1e3 * statistics.median(t):8.2f} ms"
                              f"  min {1e3 * min(t):8.2f} ms  ({len(t)} steps)", flush=True)
            finally:
                worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
