"""The adaptive Numba (and BLAS) thread count of a training step (npdl.kernels.numba.threads).

The policy is driven by a simulated machine: a fake clock that a step advances by the
time its thread count takes there (idle: 2 threads faster; loaded: 1 thread faster), and
fake thread counts that record every call. No assertion depends on real speed.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

from npdl import backend, kernels
from npdl.errors import NpdlError
from npdl.kernels.numba import thread_counts, threads
from npdl.layers import Dense
from npdl.models import Sequential
from npdl.optim import Momentum

#: seconds per step by thread count: ``npdl bench --workload sda_b1`` on 2 cores, idle and with one busy core
IDLE = {2: 2.8e-3, 1: 4.0e-3}
LOADED = {2: 6.9e-3, 1: 3.6e-3}


class Count:
    """A thread count (BLAS's or Numba's) that records every ``set``."""

    def __init__(self, n):
        self.n, self.calls = n, []

    def get(self):
        return self.n

    def set(self, n):
        assert n != self.n, f"set({n}) while the count already is {n}"
        self.calls.append(n)
        self.n = n


class Machine:
    """A fake clock; a step advances it by ``costs[BLAS's count]``."""

    def __init__(self, costs):
        self.t, self.costs = 0.0, costs

    def clock(self):
        return self.t


def run(ctl, blas, machine, steps=None, seconds=None):
    """Steps under ``ctl`` (``steps`` of them, or for ``seconds`` of simulated time): the count each ran with."""
    used, end = [], None if seconds is None else machine.t + seconds
    while (len(used) < steps) if steps is not None else (machine.t < end):
        with ctl:
            used.append(blas.n)
            machine.t += machine.costs[blas.n]
    return used


def simulated(costs, limit=2, numba=None):
    blas, machine = Count(limit), Machine(costs)
    return threads.AdaptiveThreads(blas, numba, clock=machine.clock), blas, machine


@pytest.fixture(autouse=True)
def _forget_sites():
    threads.reset()
    yield
    threads.reset()


# ------------------------------------------------------------------------------------ the policy


@pytest.mark.parametrize("costs, faster", [(IDLE, 2), (LOADED, 1)], ids=["idle", "loaded"])
def test_explores_each_candidate_in_a_run_of_steps_then_settles_on_the_faster(costs, faster):
    ctl, blas, machine = simulated(costs)
    explore = 2 * (1 + ctl.TRIALS)
    used = run(ctl, blas, machine, steps=explore + 320)
    assert used[:explore] == [2] * (1 + ctl.TRIALS) + [1] * (1 + ctl.TRIALS)
    settled = used[explore:]
    slower = 3 - faster
    assert settled.count(slower) <= 2 * (len(settled) // ctl.TRIAL_STEPS)  # only the occasional trial
    assert settled.count(slower) >= 2  # ... and there are trials, two steps each
    assert settled[-ctl.TRIAL_STEPS:].count(faster) >= ctl.TRIAL_STEPS - 2


def test_a_step_after_a_change_of_count_is_not_counted():
    """Two threads are faster, but the first two-thread step after one-thread steps pays for waking
    the second thread (as oneMKL's, asleep after a one-thread step): counting it would settle on one."""
    blas = Count(2)
    state = {"t": 0.0, "last": 2}

    def clock():
        return state["t"]

    ctl = threads.AdaptiveThreads(blas, None, clock=clock)
    used = []
    for _ in range(400):
        with ctl:
            n = blas.n
            state["t"] += {2: 1.0, 1: 1.3}[n] + (0.6 if n > state["last"] else 0.0)
            state["last"] = n
            used.append(n)
    settled = used[-160:]
    assert settled.count(2) >= 160 - ctl.TRIAL_RUN * (160 // ctl.TRIAL_STEPS + 1)


def test_trials_wait_for_both_enough_steps_and_enough_time():
    for costs in ({2: 1.0, 1: 1.1}, {2: 1e-3, 1: 1.05e-3}):  # slow steps: the step count decides; fast: the seconds
        ctl, blas, machine = simulated(costs)
        run(ctl, blas, machine, steps=2 * (1 + ctl.TRIALS))
        start = machine.t
        used = run(ctl, blas, machine, steps=3 * (ctl.TRIAL_STEPS + ctl.TRIAL_RUN) if costs[2] > 0.1 else 2000)
        trials = [i for i, n in enumerate(used) if n == 1]  # TRIAL_RUN steps per trial
        run_ = ctl.TRIAL_RUN
        if costs[2] > 0.1:
            assert trials == [k * (ctl.TRIAL_STEPS + run_) + ctl.TRIAL_STEPS + j for k in range(3) for j in range(run_)]
        else:
            seconds = machine.t - start  # about 2 s: 8 trials, where the step count alone would allow 100
            assert seconds / ctl.TRIAL_SECONDS - 2 <= len(trials) / run_ <= seconds / ctl.TRIAL_SECONDS + 1


def test_a_costly_trial_puts_the_next_one_off():
    """A one-thread trial (four steps, and the step back) of a 9 ms step that takes 16 ms on one thread
    costs 28 ms beyond the count in use: the next waits until that is TRIAL_SHARE of the time since
    (2.8 s), not a quarter second; a trial that costs next to nothing still comes every TRIAL_SECONDS."""
    for costs, gap in (({2: 9e-3, 1: 16e-3}, 28e-3 / 0.01), ({2: 1e-3, 1: 1.01e-3}, 0.25),
                       ({2: 9e-3, 1: 900e-3}, 4.0)):
        ctl, blas, machine = simulated(costs)
        run(ctl, blas, machine, steps=2 * (1 + ctl.TRIALS))
        start = machine.t
        times, t = [], start
        for n in run(ctl, blas, machine, seconds=12.0):
            if n == 1:
                times.append(t)
            t += costs[n]
        starts = times[::ctl.TRIAL_RUN]  # TRIAL_RUN steps per trial
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        assert ctl.TRIAL_SHARE == 0.01 and ctl.MAX_TRIAL_GAP == 4.0 and ctl.TRIAL_RUN == 4 and len(gaps) >= 2
        assert all(gap <= g <= gap + max(costs.values()) * (ctl.TRIAL_STEPS + ctl.TRIAL_RUN + 1)
                   for g in gaps[1:]), (costs, gaps)
        assert ctl.trial_gap == pytest.approx(gap)


def test_the_time_between_trials_is_time_spent_in_steps_not_in_pauses():
    """Slices of 0.25 s of steps between pauses of 0.5 s (benchmarks/run.py's, an evaluation every few
    steps): a costly trial waits for its gap in steps, as without the pauses, not a third of it."""
    costs = {2: 9e-3, 1: 16e-3}
    gap = 28e-3 / 0.01  # four one-thread steps and the step back, 28 ms beyond the count in use: 2.8 s of steps
    for pause in (0.0, 0.5):
        ctl, blas, machine = simulated(costs)
        used = []
        while machine.t < 60.0 * (1 + 2 * pause):
            machine.t += pause
            end = machine.t + 0.25
            while machine.t < end:
                with ctl:
                    used.append(blas.n)
                    machine.t += costs[blas.n]
        trials = [i for i in range(1, len(used)) if used[i] == 1 and used[i - 1] == 2][1:]  # not the exploration
        stepping = sum(costs[n] for n in used)
        assert stepping / gap - 3 <= len(trials) <= stepping / gap + 1, (pause, len(trials), stepping)


def test_the_steps_after_a_pause_are_not_counted():
    """Each 0.25 s of steps follows a 0.5 s pause (another program's turn, as in benchmarks/run.py's
    slices), and its first three steps take 1.6x as long whatever the count: counted, they made two
    threads look slower than one."""
    ctl, blas, machine = simulated({2: 10e-3, 1: 12e-3})
    used, slow = [], 0
    for _ in range(40):
        machine.t += 0.5
        slow = 3
        for _ in range(25):
            with ctl:
                used.append(blas.n)
                machine.t += machine.costs[blas.n] * (1.6 if slow else 1.0)
                slow = max(0, slow - 1)
    settled = used[2 * (1 + ctl.TRIALS):]
    assert settled.count(2) >= 0.75 * len(settled) and ctl._best == 2  # one-thread steps: the trials


def test_a_count_within_the_margin_of_the_one_in_use_does_not_replace_it():
    ctl, blas, machine = simulated({2: 1.0e-3, 1: 1.2e-3})
    run(ctl, blas, machine, seconds=1.0)
    machine.costs = {2: 1.0e-3, 1: 0.97e-3}  # one thread 3% faster: noise, as far as the choice goes
    assert run(ctl, blas, machine, seconds=2.0)[-200:].count(2) >= 195
    machine.costs = {2: 1.0e-3, 1: 0.90e-3}  # 10% faster: a real difference
    assert run(ctl, blas, machine, seconds=2.0)[-200:].count(1) >= 195


def test_four_or_more_threads_also_try_half_of_them():
    ctl, blas, machine = simulated({8: 3e-3, 4: 2e-3, 1: 5e-3}, limit=8)
    used = run(ctl, blas, machine, steps=1000)
    assert ctl.candidates == [8, 4, 1]
    assert set(used[:12]) == {8, 4, 1}
    assert used[-ctl.TRIAL_STEPS:].count(4) >= ctl.TRIAL_STEPS - 1
    assert ctl.steps[8] > 1 + ctl.TRIALS and ctl.steps[1] > 1 + ctl.TRIALS  # the trials visit both others


def test_follows_the_load_within_about_a_second():
    ctl, blas, machine = simulated(IDLE)
    run(ctl, blas, machine, seconds=1.0)
    machine.costs = LOADED  # another process takes a core
    run(ctl, blas, machine, seconds=1.0)
    assert run(ctl, blas, machine, steps=ctl.TRIAL_STEPS).count(1) >= ctl.TRIAL_STEPS - 2
    machine.costs = IDLE  # ... and leaves
    run(ctl, blas, machine, seconds=1.0)
    assert run(ctl, blas, machine, steps=ctl.TRIAL_STEPS).count(2) >= ctl.TRIAL_STEPS - 2


def test_a_limit_of_one_thread_is_left_alone():
    numba = Count(2)
    ctl, blas, machine = simulated(LOADED, limit=1, numba=numba)
    assert run(ctl, blas, machine, steps=50) == [1] * 50
    assert blas.calls == [] and numba.calls == [] and not ctl.steps


def test_a_limit_set_from_outside_between_steps_is_respected():
    ctl, blas, machine = simulated(LOADED)
    run(ctl, blas, machine, steps=20)
    blas.n = 1  # the user's own limit (threadpoolctl, npdl train --blas-threads 1)
    calls = len(blas.calls)
    assert run(ctl, blas, machine, steps=30) == [1] * 30 and len(blas.calls) == calls
    blas.n, machine.costs = 4, {4: 3e-3, **LOADED}  # lifted to 4: the candidates follow
    used = run(ctl, blas, machine, steps=12)
    assert ctl.candidates == [4, 2, 1] and set(used) == {4, 2, 1} and blas.n == 4


# --------------------------------------------------------------------- setting the counts


def test_counts_are_set_only_on_change_and_put_back_after_each_step():
    numba = Count(2)
    ctl, blas, machine = simulated(LOADED, numba=numba)
    for _ in range(100):
        before = (len(blas.calls), len(numba.calls))
        with ctl:
            n = blas.n
            assert numba.n == n
            machine.t += machine.costs[n]
        assert blas.n == 2 and numba.n == 2  # nothing outside the step sees the step's count
        added = (blas.calls[before[0]:], numba.calls[before[1]:])
        assert added == (([], []) if n == 2 else ([1, 2], [1, 2]))
    assert len(blas.calls) == 2 * ctl.steps[1] and ctl.steps[1] > 50


def test_numba_is_left_alone_before_its_thread_pool_starts_or_below_the_step_count():
    class NotStarted(Count):
        def get(self):
            return None

    for numba in (NotStarted(2), Count(1)):
        ctl, blas, machine = simulated(LOADED, numba=numba)
        run(ctl, blas, machine, steps=30)
        assert ctl.steps[1] > 0 and numba.calls == []


def test_a_failing_step_puts_the_count_back_and_is_not_timed():
    ctl, blas, machine = simulated(IDLE)
    run(ctl, blas, machine, steps=1 + ctl.TRIALS)  # the run of two-thread steps; one thread next
    with pytest.raises(RuntimeError):
        with ctl:
            assert blas.n == 1
            machine.t += 100.0
            raise RuntimeError("the step failed")
    assert blas.n == 2 and ctl.steps == {2: 1 + ctl.TRIALS} and ctl.seen[1] == 0


# ------------------------------------------------------------------------ switching it on


@pytest.mark.parametrize("value, mode", [(None, "numba"), ("", "numba"), ("numba", "numba"), ("0", "off"),
                                         ("off", "off"), ("1", "all"), (" 2 ", "all"), ("ALL", "all")])
def test_the_environment_variable_chooses_what_is_adapted(monkeypatch, value, mode):
    if value is None:
        monkeypatch.delenv(threads.ENV, raising=False)
    else:
        monkeypatch.setenv(threads.ENV, value)
    assert threads.mode() == mode and threads.enabled() is (mode != "off")
    ctx = kernels.step_threads(("t", 0), np.zeros(3, np.float32))
    if mode == "off" or (mode == "all" and threads.blas_threads() is None):
        assert isinstance(ctx, contextlib.nullcontext)
    else:
        assert isinstance(ctx, threads.AdaptiveThreads)
        # by default only Numba's count is the controller's to change; BLAS's is left to the user
        assert isinstance(ctx.blas, threads._NumbaOnly) is (mode == "numba")
        assert (ctx.numba is None) is (mode == "numba")


def test_numba_only_is_left_alone_until_numbas_pool_starts(monkeypatch):
    from numba.np.ufunc import parallel

    monkeypatch.setattr(parallel, "_is_initialized", False)
    site = threads.AdaptiveThreads(threads._NumbaOnly())
    assert threads._NumbaOnly().get() == 1
    with site:
        pass
    assert site.candidates == [] and site.steps == {}


def test_a_value_that_is_not_an_integer_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(threads.ENV, "yes")
    with pytest.raises(NpdlError, match=f"{threads.ENV}='yes'.*leave it unset.*{threads.ENV}=1.*{threads.ENV}=0"):
        threads.mode()


def test_only_numpy_arrays_with_kernels_on_get_a_controller(monkeypatch):
    monkeypatch.setenv(threads.ENV, "1")
    strict = backend.Generator("strict", 0).normal((3,), dtype="float32")
    assert isinstance(kernels.step_threads(("t", 1), strict), contextlib.nullcontext)
    kernels.use("off")
    try:
        assert isinstance(kernels.step_threads(("t", 1), np.zeros(3, np.float32)), contextlib.nullcontext)
    finally:
        kernels.use(None)


def test_stats_since_counts_the_new_steps_with_json_keys():
    site = threads.AdaptiveThreads(Count(2))
    threads._sites["s"] = site
    site.steps.update({2: 5, 1: 1})
    before = threads.stats()
    site.steps.update({2: 7})
    assert threads.stats_since(before) == {"2": 7}
    assert threads.stats() == {2: 12, 1: 1}


# --------------------------------------------------------------------------- the real thing


def _numpy_blas_info():
    from threadpoolctl import threadpool_info

    infos = thread_counts._numpy_blas_first([i for i in threadpool_info() if i.get("user_api") == "blas"],
                                      lambda i: i["filepath"])
    return infos[0] if infos else None


def test_the_real_blas_count_round_trips():
    blas, info = threads.blas_threads(), _numpy_blas_info()
    if blas is None or info is None or info.get("internal_api") != "openblas":
        pytest.skip("NumPy's BLAS is not OpenBLAS")
    before = blas.get()
    assert before == info["num_threads"]
    target = 1 if before > 1 else 2
    try:
        blas.set(target)
        assert blas.get() == target == _numpy_blas_info()["num_threads"]
    finally:
        blas.set(before)
    assert _numpy_blas_info()["num_threads"] == before


def _trained(steps, seed=0):
    g = backend.Generator("cpu", seed)
    model = Sequential([Dense(12, 16, activation="sigmoid", rng=g), Dense(16, 5, rng=g)])
    model.compile("softmax_cross_entropy", Momentum(lr=0.1, momentum=0.9))
    data = backend.Generator("cpu", seed + 1)
    x, y = data.normal((8, 12), dtype="float32"), data.integers(0, 5, (8,))
    for _ in range(steps):
        model.train_step(x, y)
    return [np.array(p) for layer in model.layers for p in layer.params.values()]


def _trained_conv(steps, seed=0):
    from npdl.layers import Conv2D, Flatten, MaxPool2D, Tanh

    g = backend.Generator("cpu", seed)
    model = Sequential([Conv2D(1, 3, 3, rng=g), Tanh(), MaxPool2D(2), Flatten(),
                        Dense(3 * 3 * 3, 8, activation="sigmoid", rng=g), Dense(8, 4, rng=g)])
    model.compile("softmax_cross_entropy", Momentum(lr=0.1, momentum=0.9))
    data = backend.Generator("cpu", seed + 1)
    x, y = data.normal((6, 1, 8, 8), dtype="float32"), data.integers(0, 4, (6,))
    for _ in range(steps):
        model.train_step(x, y)
    return [np.array(p) for layer in model.layers for p in layer.params.values()]


def test_numbas_thread_count_changes_nothing_that_is_computed(monkeypatch):
    """The default controller runs steps on 2 and on 1 Numba threads (exploration alternates them), with
    every kernel's parallel loop forced on (threshold 0): the same bits as with the controller off, and
    BLAS's count is never touched. A parallel loop whose result depended on its thread count (a
    reduction split over threads) would fail here."""
    import numba

    from npdl.kernels import numba as numba_kernels
    from npdl.kernels.numba import activation_backward, bias_activation, im2col, pool, softmax_xent

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has one thread here")
    for module in (numba_kernels, activation_backward, bias_activation, im2col, pool, softmax_xent):
        monkeypatch.setattr(module, "PARALLEL_THRESHOLD", 0)
    blas = threads.blas_threads()
    if blas is not None:
        monkeypatch.setattr(blas, "set", lambda n: pytest.fail(f"BLAS's count set to {n}"))
    monkeypatch.setenv(threads.ENV, "0")
    plain = _trained_conv(12)
    assert threads.stats() == {}
    monkeypatch.delenv(threads.ENV)
    adaptive = _trained_conv(12)
    limit = numba.get_num_threads()
    assert threads.stats()[1] >= 3 and threads.stats()[limit] >= 3
    for a, b in zip(plain, adaptive):
        assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)


def test_the_controller_changes_nothing_that_is_computed(monkeypatch):
    """Steps under the controller (both thread counts: exploration alternates them) give the same bits.

    The net is small enough for OpenBLAS to run each product on one thread at any count, so this
    proves the controller itself changes nothing; on larger products OpenBLAS's rounding does depend
    on its thread count (see the module docstring), which is why the controller is off by default."""
    blas = threads.blas_threads()
    if blas is None or blas.get() <= 1:
        pytest.skip("BLAS's thread count cannot be set here, or is 1")
    before = blas.get()
    monkeypatch.setenv(threads.ENV, "0")
    plain = _trained(10)
    assert threads.stats() == {}
    monkeypatch.setenv(threads.ENV, "1")
    adaptive = _trained(10)
    assert threads.stats()[1] >= 1 and threads.stats()[before] >= 1
    assert blas.get() == before
    for a, b in zip(plain, adaptive):
        assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)


@pytest.mark.parametrize("env,expected", [
    ({}, ("PASSIVE", "10000")),                                  # brief spin, then sleep
    ({"OMP_WAIT_POLICY": "PASSIVE"}, ("PASSIVE", None)),         # the user's: sleep at once
    ({"OMP_WAIT_POLICY": "ACTIVE"}, ("ACTIVE", None)),           # the user's: spin
    ({"GOMP_SPINCOUNT": "300"}, ("PASSIVE", "300")),             # the user's spin, then sleep
])
def test_idle_numba_threads_spin_briefly_unless_the_user_said_otherwise(env, expected):
    """npdl.kernels.numba sets how long idle OpenMP threads spin before the threading layer loads, and
    never overrides what the user set (a fresh process: OpenMP reads them once)."""
    import subprocess
    import sys
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = ("import os, npdl.kernels.numba as nb; "
            "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), nb.SPIN_COUNT)")
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[2] == "10000"
    assert (out[0], None if out[1] == "None" else out[1]) == expected
