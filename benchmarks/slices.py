"""Time several implementations of one workload in alternating short slices (``run.py --slices``).

A noisy machine (a VM sharing its host, a laptop changing its clock) changes speed from one
second to the next. Timed one after another for 1.5 s each, two implementations can meet
different machines, and their ratio moves by more than the difference being measured. Here
every implementation of a workload runs in its own process (thread pools and JIT caches never
share one), all of them started and warmed up first; then they take turns, a slice of
``slice_s`` seconds each, in an order that rotates every cycle, until each has run
``seconds`` in all. A slow stretch of the machine thus falls on all of them alike, and each
cell is the median of all its step times.

Between two slices the driver waits ``GAP_S``: long enough for the previous process's thread
pools (OpenBLAS, OpenMP, XLA) to stop spin-waiting and fall asleep, so that they do not take
cycles from the next slice.

The worker side (``python benchmarks/slices.py --impl npdl --workload mlp_b20``) builds the
step (npdl's worker first keeps freed memory in the heap, :func:`npdl.cli.memory.retain_freed_memory`,
as ``npdl bench`` and ``npdl train`` do, so that ``run.py``'s two ways of timing see the same step),
warms it up as :func:`npdl.bench.measure` does (:func:`npdl.bench.timing.warm_up`), prints one
JSON line ``{"ready": ...}``, and then answers each line ``run SECONDS`` from its standard
input with a JSON list of step times in seconds (at least one step), until ``quit`` or the end
of its input.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: seconds between two slices, for the previous process's idle threads to fall asleep
GAP_S = 0.03


def _build(impl, w, device):
    """``(step, sync, version)`` of ``impl`` for workload ``w``."""
    if impl == "npdl":
        from npdl.bench.npdl_step import npdl_step
        from npdl.cli.memory import retain_freed_memory

        retain_freed_memory()  # as `npdl bench` (run.py --slices 0) and `npdl train` do as they start
        step, sync = npdl_step(w, device)
        import npdl

        return step, sync, f"npdl {npdl.__version__}"
    sys.path.insert(0, HERE)
    from peers import PEERS  # benchmarks/peers.py

    return PEERS[w.family][impl](w, device)


def worker(argv=None) -> int:
    p = argparse.ArgumentParser(description="one implementation's side of a sliced timing (see the module)")
    p.add_argument("--impl", required=True)
    p.add_argument("--workload", required=True)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    from npdl.bench import parse
    from npdl.bench.timing import WallTimer, warm_up

    w = parse(args.workload)
    step, sync, version = _build(args.impl, w, args.device)
    warm_up(step, sync)  # as npdl.bench.measure warms up
    timer = WallTimer(sync)
    print(json.dumps({"ready": True, "version": version, "batch_size": w.batch_size}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        budget, times, total = float(command[1]), [], 0.0
        while not times or total < budget:
            times.append(timer(step))
            total += times[-1]
        print(json.dumps(times), flush=True)
    return 0


class Worker:
    """One implementation's worker process, started and warmed up."""

    def __init__(self, impl, workload, device, env):
        argv = [sys.executable, os.path.abspath(__file__), "--impl", impl, "--workload", workload, "--device", device]
        self.impl = impl
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, cwd=ROOT)
        self.info = self._read()
        self.times: list = []

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read()
            raise RuntimeError(f"{self.impl} worker failed:\n{err[-2000:]}")
        return json.loads(line)

    def run(self, seconds: float) -> None:
        self.proc.stdin.write(f"run {seconds}\n")
        self.proc.stdin.flush()
        self.times.extend(self._read())

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def take_turns(workers, seconds: float, slice_s: float) -> int:
    """Let the started ``workers`` run in turns of about ``slice_s`` seconds (``seconds`` split into a
    whole number of slices, at least one) until each has run ``seconds``, the first of cycle ``c``
    being ``workers[c % len(workers)]``; returns the number of cycles."""
    cycles = max(1, round(seconds / slice_s))
    for cycle in range(cycles):
        shift = cycle % len(workers)
        for worker_ in workers[shift:] + workers[:shift]:
            time.sleep(GAP_S)
            worker_.run(seconds / cycles)
    return cycles


def time_sliced(impls, workload, device, seconds: float, slice_s: float, env) -> dict:
    """``{impl: {"median_ms", "min_ms", "reps", "version", "slices", "batch_size"}}``: the
    implementations of ``workload`` timed in turns of about ``slice_s`` seconds (``seconds`` split
    into a whole number of slices, at least one; each slice at least one step) until each has
    run ``seconds``; the first implementation of cycle ``c`` is ``impls[c % len(impls)]``.

    An implementation whose worker fails to start is left out (its error is raised only if
    none starts)."""
    workers, errors = [], []
    try:
        for impl in impls:  # started one at a time: no start-up (imports, compilation) overlaps a timing
            try:
                workers.append(Worker(impl, workload, device, env))
            except RuntimeError as exc:
                errors.append(str(exc))
        if not workers:
            raise RuntimeError("\n".join(errors))
        cycles = take_turns(workers, seconds, slice_s)
    finally:
        for worker_ in workers:
            worker_.close()
    for message in errors:
        print(f"note: {message}", file=sys.stderr, flush=True)
    return {wk.impl: {"median_ms": statistics.median(wk.times) * 1e3, "min_ms": min(wk.times) * 1e3,
                      "reps": len(wk.times), "version": wk.info.get("version", ""), "slices": cycles,
                      "batch_size": wk.info.get("batch_size")}
            for wk in workers}


if __name__ == "__main__":
    sys.exit(worker())
