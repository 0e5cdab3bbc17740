"""How many threads Numba (and, if asked, BLAS) use for one training step, chosen from how fast steps run now.

Why: a parallel loop or a multi-threaded BLAS call splits its work statically over its threads.
When another process holds one of the cores, the thread on that core is descheduled and the
others wait for it at the end of every call. On a 2-core AMD EPYC with one other CPU-bound
process running, per step (``npdl bench``, one process per reading, five readings each):

=======================================  ====================  ==================
                                         idle                  one busy process
=======================================  ====================  ==================
``sda_b128``, Numba's 2 threads          31-33 ms              67-124 ms
``sda_b128``, Numba held to 1 thread     31-33 ms              61-71 ms
``sda_b1``, BLAS's 2 threads             2.8 ms                6.9 ms
``sda_b1``, BLAS held to 1 thread        4.0 ms                3.6 ms
=======================================  ====================  ==================

Neither count is right in both cases, and the load changes while a run goes on, so
:class:`AdaptiveThreads` chooses per step, cheaply. What it may change is
``NPDL_ADAPTIVE_THREADS``'s to say (:func:`mode`):

* **unset (the default): Numba's thread count only.** Every parallel loop of the CPU kernels
  gives each output element to one iteration (a row, an image's channel plane, an element), so
  its results are the same bits at any thread count, and so are a run's. (The chunked
  convolution's workers are Python threads sharing its chunks dynamically: their number does not
  change, and :mod:`.conv2d` sums the weight gradient in a fixed order.) The step times are
  watched too: a run whose steps become several times slower while BLAS keeps its threads is
  told so, once (:mod:`.slow_steps`). Where the kernels call oneMKL in its strict CNR mode
  (:mod:`.blas`), whose products are the same bits at any thread count, unset means ``all``.
* ``1`` (or ``all``): BLAS's count too -- the kernels' BLAS's (:func:`_find_blas`): oneMKL's where
  they call it, else NumPy's. OpenBLAS's results depend on its thread count: three steps
  of ``mlp_b20``, ``sda_b1`` and ``sda_b128`` on 1 and on 2 threads (the machine above) gave
  parameters differing by up to 1.5e-8; a matrix product alone by a few float32 ulps. Chosen by
  timing, the counts -- and so the exact parameters -- differ from run to run, and a resumed run
  is no longer bit-identical to an uninterrupted one. Hence opt-in with OpenBLAS.
* ``0`` (or ``off``): nothing; the counts stay as they are.

The policy, per step site (a model and a batch shape), over the candidates ``[L, L // 2, 1]``
(``L // 2`` only for ``L >= 4``), where ``L`` is the count in place when the step starts (the
user's own limit: ``NUMBA_NUM_THREADS``, :func:`numba.set_num_threads`; for BLAS
``OPENBLAS_NUM_THREADS``, ``threadpoolctl``, ``npdl train --blas-threads``; with ``L = 1``
nothing is done):

1. explore: each candidate in turn runs ``1 + TRIALS`` steps in a row;
2. then every step runs with the candidate whose last :attr:`~AdaptiveThreads.RECENT` step
   times have the lowest median -- the one in use until another's is
   :attr:`~AdaptiveThreads.MARGIN` lower, so that noise does not move it;
3. once at least :attr:`~AdaptiveThreads.TRIAL_STEPS` steps *and*
   :attr:`~AdaptiveThreads.TRIAL_SECONDS` seconds of steps (the time spent in the site's steps;
   pauses between them do not count) have passed since the last trial,
   :attr:`~AdaptiveThreads.TRIAL_RUN` steps in a row run with another candidate (in turn), so
   that a change of load is noticed within about a second. (When load arrives, the best
   candidate's own times rise at once; when it leaves, a trial renews the other's median.) A
   trial that cost more than the candidate in use would have (its steps and the step back,
   against as many of that one's median) puts the next one off until that excess is at most
   :attr:`~AdaptiveThreads.TRIAL_SHARE` of the time spent in steps in between (at most
   :attr:`~AdaptiveThreads.MAX_TRIAL_GAP` seconds): a one-thread trial of a 2-core ``sda_b128``
   step (16 against 9 ms) every quarter of a second cost 5% of its mean step time (9.55-9.70
   against 9.08-9.12 ms with the counts left alone; 2-core Intel Xeon), and the steps' median
   1-2.5%. Counted in wall-clock seconds, the gaps shrank with every pause: in slices of 0.25 s of
   steps half a second apart (``benchmarks/run.py``'s) ``kcnn_b64`` ran 14-20% of its steps on one
   thread (44 against 37-39 ms a step) where it now runs 6-10%.

A step that follows a step with another count is never counted: it pays for the change (the
threads a larger count adds have gone to sleep, their caches are cold) and for compilation or a
pool starting up on a candidate's first step. Counted, it made a larger count look slower than
it is, all the more as the steps are shorter: with oneMKL's threads, a 784-500-10 network's
step at batch 20 settled on one thread (0.525 ms a step) where two take 0.453 ms. The change
costs more than one step, though: on a 2-core Intel Xeon virtual machine, ``sda_b1``'s first
steps on two threads after a while on one took 2.8-2.9, then 1.4-1.7 ms, against 0.9 ms once
settled, and its first steps on one thread after two 4.1 then 2.4 ms against 1.5 ms; with
trials of two steps, the one counted made two threads look no faster than one, and in two runs
of five the step stayed on one thread (1.6 against 0.9 ms). Hence trials of four steps, three
of them counted, their median the candidate's.

Nor are the :attr:`~AdaptiveThreads.AFTER_PAUSE` steps counted from one that starts after a
pause longer than itself (and than :attr:`~AdaptiveThreads.IDLE_GAP`): an evaluation, a
checkpoint, another program's turn on the machine; the threads have gone to sleep and the
caches are cold whatever the count (so are the first steps of a site; no trial starts while
steps go uncounted). Counted, such steps (the first two or three of each quarter-second slice,
half a second apart, as ``benchmarks/run.py`` times each library in turn: 47-69 ms where the
others took 37-41) made the two-thread count of ``kcnn_b64`` look slower than it is, and 28% of
its steps ran on one thread (50 against 41 ms a step; 2-core Intel Xeon).

The count is set just before the step and the user's count put back just after it (a
direct call, ~1 us; only when the step's count differs from it), so nothing outside the step
-- evaluation, your own code, ``npdl bench``'s ceilings -- ever runs with a count it did not
ask for. Numba's count is left alone until Numba's thread pool has started (the controller
never starts it): a network whose kernels never run a parallel loop is never touched.
"""

from __future__ import annotations

import collections
import functools
import os
import statistics
import time

from ...errors import NpdlError
from ...threads_env import ENV, parse
from . import blas
from .slow_steps import SlowSteps, report
from .thread_counts import _find_blas, _NumbaOnly, _NumbaThreads


#: the step sites remembered at most (the oldest is forgotten first)
MAX_SITES = 64


class AdaptiveThreadsError(NpdlError, ValueError):
    """``NPDL_ADAPTIVE_THREADS`` holds something other than an integer, ``numba``, ``all`` or ``off``."""


_parsed: dict = {}  # the variable's value -> its mode (every training step asks)


def mode() -> str:
    """What ``NPDL_ADAPTIVE_THREADS`` asks for: ``"numba"`` (unset: Numba's thread count only, which
    never changes a result), ``"all"`` (an integer > 0: BLAS's count too) or ``"off"`` (``0``).
    Unset, it is ``"all"`` where the kernels' BLAS gives the same bits at any thread count (oneMKL in
    its strict CNR mode, :func:`.blas.same_bits_any_thread_count`): there choosing BLAS's count by
    timing changes no result either."""
    raw = os.environ.get(ENV, "")
    if not raw.strip() and blas.same_bits_any_thread_count():
        return "all"
    found = _parsed.get(raw)
    if found is None:
        found = parse(raw)
        if found is None:
            raise AdaptiveThreadsError(
                f"{ENV}={raw!r} in the environment is not an integer: leave it unset to choose Numba's "
                f"thread count per training step from the step times (the default), set {ENV}=1 to "
                f"choose BLAS's count too, or {ENV}=0 to leave both as they are")
        _parsed[raw] = found
    return found


def enabled() -> bool:
    """Whether the controller adapts anything (``NPDL_ADAPTIVE_THREADS`` is not ``0``)."""
    return mode() != "off"


class AdaptiveThreads:
    """Chooses the thread count of one step site; ``with controller:`` around one step.

    ``blas`` has ``get()`` and ``set(n)`` (BLAS's thread count), ``numba`` the same or None,
    ``clock`` returns seconds (:func:`time.perf_counter`; tests pass a fake one), ``watch`` (a
    :class:`~npdl.kernels.numba.slow_steps.SlowSteps`, or None) is given every step's time.
    ``steps`` counts the steps run with each candidate.
    """

    TRIALS = 3  # counted steps per candidate while exploring (after one that is not counted)
    RECENT = 3  # step times kept per candidate: their median decides
    TRIAL_STEPS, TRIAL_SECONDS = 16, 0.25  # a trial of another candidate at most this often
    TRIAL_RUN = 4  # steps in a row per trial; the first is not counted (a change of count)
    TRIAL_SHARE, MAX_TRIAL_GAP = 0.01, 4.0  # a costly trial waits until its excess is 1% of the time since
    IDLE_GAP = 1e-3  # a step that starts longer than this (and than itself) after the last one ended: a pause
    AFTER_PAUSE = 3  # steps not counted from a pause on
    MARGIN = 0.05  # another count replaces the one in use when its median is this much lower

    def __init__(self, blas, numba=None, clock=time.perf_counter, watch=None):
        self.blas, self.numba, self.clock, self.watch = blas, numba, clock, watch
        self.steps = collections.Counter()
        self._limit = None
        self._previous = None  # the candidate of the last step run (None: none yet, or just reset)
        self._last_end = None  # when the last step ended (clock seconds)
        self._running = None  # (candidate, the count to put back, Numba's count to put back, start time)

    def _reset(self, limit: int) -> None:
        """New candidates for BLAS's count ``limit``, explored afresh."""
        self._limit = limit
        self.candidates = [] if limit <= 1 else sorted({limit, limit // 2 if limit >= 4 else 1, 1}, reverse=True)
        self.seen = dict.fromkeys(self.candidates, 0)
        self.times = {c: collections.deque(maxlen=self.RECENT) for c in self.candidates}
        self.since_trial, self.turn = 0, 0
        self.busy_since_trial = 0.0  # seconds spent in this site's steps since the last trial
        self.trial_gap = self.TRIAL_SECONDS  # seconds of steps from one trial to the next (see TRIAL_SHARE)
        self._previous, self._trial = None, None
        self._best = None  # the count chosen last (it stays until another's median is MARGIN lower)
        self._warming = self.AFTER_PAUSE  # steps still to go uncounted: the first ones, or after a pause
        self._trial_cost = None  # [steps still to add, their seconds so far, the count in use]: a trial's and the step back

    def choose(self) -> int:
        """The candidate for the next step (the policy in the module docstring)."""
        untried = [c for c in self.candidates if self.seen[c] <= self.TRIALS or not self.times[c]]
        if untried:  # a run of steps each; the least seen next
            return self._previous if self._previous in untried else min(untried, key=self.seen.__getitem__)
        if self._trial is not None:  # the rest of a trial's run
            trial, left = self._trial
            self._trial = (trial, left - 1) if left > 1 else None
            return trial
        medians = {c: statistics.median(self.times[c]) for c in self.candidates}
        best = min(self.candidates, key=medians.__getitem__)
        if self._best in medians and medians[best] > (1 - self.MARGIN) * medians[self._best]:
            best = self._best  # not clearly faster than the count in use: keep it
        self._best = best
        if self.since_trial >= self.TRIAL_STEPS and self.busy_since_trial >= self.trial_gap and not self._warming:
            others = [c for c in self.candidates if c != best]
            self.turn, self.since_trial, self.busy_since_trial = self.turn + 1, 0, 0.0
            trial = others[self.turn % len(others)]
            self._trial = (trial, self.TRIAL_RUN - 1)
            self._trial_cost = [self.TRIAL_RUN + 1, 0.0, best]
            return trial
        self.since_trial += 1
        return best

    def begin(self) -> None:
        """Set the thread count for the step that follows, and start its clock."""
        limit = self.blas.get()
        if limit != self._limit:
            self._reset(limit)
        if not self.candidates:
            self._running = None if self.watch is None else (None, limit, None, self.clock())
            return
        n = self.choose()
        numba_count = None
        if n != limit:
            self.blas.set(n)
            if self.numba is not None:
                numba_count = self.numba.get()
                if numba_count is not None and n < numba_count:
                    self.numba.set(n)
                else:
                    numba_count = None
        self._running = (n, limit, numba_count, self.clock())

    def end(self, record: bool = True) -> None:
        """Put the user's thread counts back and, with ``record``, count the step's time."""
        if self._running is None:
            return
        n, limit, numba_count, start = self._running
        elapsed = self.clock() - start
        self._running = None
        if record and self.watch is not None:
            self.watch.add(elapsed)
        if n is None:  # nothing to choose: the step was only timed
            return
        if n != limit:
            self.blas.set(limit)
            if numba_count is not None:
                self.numba.set(numba_count)
        if not record:  # the step raised: its time says nothing
            return
        self.busy_since_trial += elapsed
        self.steps[n] += 1
        self.seen[n] += 1
        if self._last_end is not None and start - self._last_end > max(elapsed, self.IDLE_GAP):
            self._warming = self.AFTER_PAUSE  # a pause: this step and the next ones are not counted
        if n == self._previous and not self._warming:  # not right after a change of count or a pause
            self.times[n].append(elapsed)
        self._warming = max(0, self._warming - 1)
        self._previous, self._last_end = n, start + elapsed
        if self._trial_cost is not None:
            self._count_trial(elapsed)

    def _count_trial(self, elapsed: float) -> None:
        """Add a step of the running trial (or the step back) to its cost; after the last, set
        :attr:`trial_gap` from what the trial cost beyond the best candidate's median."""
        cost = self._trial_cost
        cost[0] -= 1
        cost[1] += elapsed
        if cost[0] > 0:
            return
        self._trial_cost = None
        excess = cost[1] - (self.TRIAL_RUN + 1) * statistics.median(self.times[cost[2]])
        self.trial_gap = min(self.MAX_TRIAL_GAP, max(self.TRIAL_SECONDS, excess / self.TRIAL_SHARE))

    def __enter__(self):
        self.begin()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.end(record=exc_type is None)
        return False


_UNKNOWN = object()
_blas = _UNKNOWN
_sites: dict = {}  # step key -> AdaptiveThreads


def blas_threads():
    """NumPy's BLAS thread count (``get()``, ``set(n)``), looked up once; None where it cannot be set."""
    global _blas
    if _blas is _UNKNOWN:
        _blas = _find_blas()
    return _blas


def _blas_count():
    blas = blas_threads()
    return None if blas is None else blas.get()


def controller(key):
    """The :class:`AdaptiveThreads` of step site ``key`` under the current :func:`mode` (made on first
    use), or None where the counts cannot be set."""
    m = mode()
    site = _sites.get((m, key))
    if site is None:
        if m == "all":
            blas = blas_threads()
            if blas is None:
                return None
            site = AdaptiveThreads(blas, _NumbaThreads())
        elif m == "numba":
            site = AdaptiveThreads(_NumbaOnly(), None, watch=SlowSteps(functools.partial(report, key, _blas_count)))
        else:
            return None
        if len(_sites) >= MAX_SITES:
            del _sites[next(iter(_sites))]
        _sites[(m, key)] = site
    return site


def stats() -> dict:
    """``{thread count: steps}`` run by the controllers so far, every site together."""
    total = collections.Counter()
    for site in _sites.values():
        total.update(site.steps)
    return dict(total)


def stats_since(before: dict) -> dict:
    """``{"2": steps, "1": steps}`` (JSON keys) run since :func:`stats` returned ``before``."""
    now = stats()
    return {str(n): now[n] - before.get(n, 0) for n in sorted(now, reverse=True) if now[n] > before.get(n, 0)}


def reset() -> None:
    """Forget every step site (their times and counts)."""
    _sites.clear()
