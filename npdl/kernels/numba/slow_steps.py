"""Say so, once, when a run's training steps become several times slower than they were.

A multi-threaded BLAS call splits its work statically and ends when its slowest thread does, and
OpenBLAS's threads wait for each other in ``sched_yield`` loops. A thread that shares its core
makes every product wait for it. On a 2-core AMD EPYC Zen 4 (OpenBLAS 0.3.31, two threads), with
one busy process held to one core (``benchmarks/placement.py``):

* two of BLAS's threads on one core (the process held to fewer cores than BLAS has threads:
  ``taskset``, a cpuset changed while it runs): ``da_b20`` 40 ms per step instead of 1.4 ms,
  ``mlp_b20`` 16 ms instead of 0.39 ms;
* BLAS's worker beside the busy process: ``da_b20`` 3.9-4.0 ms per step in some rounds and 1.4 ms
  in others, ``mlp_b20`` 0.67-0.70 or 0.39-0.43 ms (its wake-ups wait for the other process's turn
  on that core, or not: ``benchmarks/results/2026-12-04-cpu-zen4-placement-5ab4070.txt``).

With ``NPDL_ADAPTIVE_THREADS=1`` the step chooses BLAS's thread count from the step times:
``da_b20`` 2.1-2.3 ms in both cases (one thread).

The default keeps BLAS's thread count (OpenBLAS's results depend on it, and the default promises
the same bits from run to run), so it cannot leave that state by itself. What it can do is notice:
:class:`SlowSteps` takes each step's time at one step site, and when the median of the last
:data:`WINDOW` steps is :data:`FACTOR` times the best such median of the run so far, while BLAS
runs on more than one thread and no profiler or tracer is slowing the program down, :func:`report`
warns once per process (:class:`SlowStepsWarning`), naming the remedies.
"""

from __future__ import annotations

import statistics
import sys
import warnings

#: steps per median
WINDOW = 32

#: a median this many times the best one of the run is reported. Another busy process sharing the
#: cores costs a step about its share of them (one such process on the 2 cores above: ``sda_b128``
#: 24.0 against 11.7 ms, ``kcnn_b64`` 78.8 against 42.3 ms), while the states above cost 2.9x
#: (``da_b20``, 4.0 against 1.4 ms) to 41x
FACTOR = 2.5


class SlowStepsWarning(RuntimeWarning):
    """Training steps run several times slower than earlier in the run while BLAS uses several threads."""


class SlowSteps:
    """Step times of one step site; ``report(best, now)`` (seconds, medians) when they slow down :data:`FACTOR`-fold."""

    def __init__(self, report):
        self.report = report
        self.times: list = []
        self.best = None

    def add(self, seconds: float) -> None:
        self.times.append(seconds)
        if len(self.times) < WINDOW:
            return
        now = statistics.median(self.times)
        self.times.clear()
        if self.best is None or now < self.best:
            self.best = now
        elif now > FACTOR * self.best:
            self.report(self.best, now)


_reported = False


def instrumented() -> bool:
    """Whether a profiler, tracer or debugger is watching this thread (``cProfile``, ``pdb``, coverage):
    it slows every step by itself (``cProfile``: a small network's step 2.7x), so a slowdown then says
    nothing about the cores."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)  # Python 3.12+: coverage and debuggers may use it instead
    return monitoring is not None and any(monitoring.get_tool(i) is not None for i in range(6))


def report(site, blas_count, best: float, now: float) -> bool:
    """Warn (once per process) that the steps of ``site`` went from ``best`` to ``now`` seconds, if
    ``blas_count()`` (BLAS's thread count, or None where unknown) is above 1 and nothing is profiling or
    tracing the program (:func:`instrumented`); whether it warned."""
    global _reported
    if _reported or instrumented():
        return False
    n = blas_count()
    if n is None or n <= 1:
        return False
    _reported = True
    shape = site[2] if isinstance(site, tuple) and len(site) == 3 else site
    warnings.warn(SlowStepsWarning(
        f"training steps on batches of shape {shape} now take {now / best:.1f}x as long as earlier in this "
        f"run (median of the last {WINDOW} steps {now * 1e3:.3g} ms, against {best * 1e3:.3g} ms). If another "
        f"process competes for the cores, or this process may now use fewer cores than BLAS's {n} threads "
        f"(taskset, a cpuset), BLAS's threads wait for each other at every product, which can make steps "
        f"several to tens of times slower: NPDL_ADAPTIVE_THREADS=1 chooses BLAS's thread count from the step "
        f"times (the results may then differ in the last bits from run to run), OPENBLAS_NUM_THREADS=1 keeps "
        f"it at one. See the Kernels page of the documentation, Threads."),
        stacklevel=2)
    return True


def forget() -> None:
    """Let :func:`report` warn again (tests)."""
    global _reported
    _reported = False
