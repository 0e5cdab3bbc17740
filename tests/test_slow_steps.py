"""The warning when a run's training steps become several times slower (npdl.kernels.numba.slow_steps).

Step times come from a fake clock; nothing here depends on the machine's speed.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from npdl.kernels.numba import slow_steps, threads
from npdl.kernels.numba.slow_steps import FACTOR, WINDOW, SlowSteps, SlowStepsWarning


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(slow_steps, "instrumented", lambda: False)  # as if no coverage tool ran the tests
    slow_steps.forget()
    threads.reset()
    yield
    slow_steps.forget()
    threads.reset()


def _feed(watch, seconds, n=WINDOW):
    for _ in range(n):
        watch.add(seconds)


def test_a_slowdown_past_the_factor_is_reported_with_the_best_and_the_new_median():
    calls = []
    watch = SlowSteps(lambda best, now: calls.append((best, now)))
    rng = np.random.default_rng(0)
    for t in 1e-3 * (1 + 0.1 * rng.random(WINDOW)):  # jittered fast steps: median about 1.05 ms
        watch.add(float(t))
    best = watch.best
    assert 1e-3 < best < 1.1e-3
    _feed(watch, 0.95 * FACTOR * best)  # slower, but under the factor
    _feed(watch, 1.2e-3)
    assert calls == []
    _feed(watch, 1.05 * FACTOR * best)
    assert calls == [(best, 1.05 * FACTOR * best)]
    _feed(watch, 1.0e-3)  # faster than ever: the new best
    assert watch.best == 1.0e-3 and len(calls) == 1


def test_a_median_needs_a_whole_window_and_one_slow_step_is_not_a_slowdown():
    calls = []
    watch = SlowSteps(lambda best, now: calls.append((best, now)))
    _feed(watch, 1e-3)
    _feed(watch, 1e-3, WINDOW - 1)
    watch.add(50e-3)  # one stall (a page fault, a garbage collection) in the window
    _feed(watch, 50e-3, WINDOW - 1)  # a window one step short of complete
    assert calls == []
    watch.add(50e-3)
    assert calls == [(1e-3, 50e-3)]


def test_the_warning_names_the_slowdown_and_the_remedies_once_per_process():
    with pytest.warns(SlowStepsWarning) as record:
        assert slow_steps.report(("train", 1, (20, 784)), lambda: 2, 1.4e-3, 4.2e-3)
    message = str(record[0].message)
    assert "(20, 784)" in message and "3.0x" in message and "4.2 ms" in message and "1.4 ms" in message
    assert "NPDL_ADAPTIVE_THREADS=1" in message and "OPENBLAS_NUM_THREADS=1" in message and "2 threads" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not slow_steps.report(("train", 2, (64, 10)), lambda: 2, 1e-3, 9e-3)  # not twice


@pytest.mark.parametrize("count", [1, None], ids=["one BLAS thread", "BLAS count unknown"])
def test_no_warning_where_blas_threads_cannot_be_the_cause(count):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not slow_steps.report(("train", 1, (20, 784)), lambda: count, 1e-3, 9e-3)
    with pytest.warns(SlowStepsWarning):  # and a later site with several threads still may
        slow_steps.report(("train", 1, (20, 784)), lambda: 4, 1e-3, 9e-3)


def test_no_warning_while_a_profiler_or_tracer_slows_the_program(monkeypatch):
    monkeypatch.undo()  # the real check
    previous = sys.getprofile()
    sys.setprofile(lambda frame, event, arg: None)
    try:
        assert slow_steps.instrumented()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert not slow_steps.report(("train", 1, (20, 8)), lambda: 2, 0.07e-3, 0.2e-3)
    finally:
        sys.setprofile(previous)
    monkeypatch.setattr(slow_steps, "instrumented", lambda: False)
    with pytest.warns(SlowStepsWarning):  # not counted as the one warning: a later slowdown is still told
        slow_steps.report(("train", 1, (20, 8)), lambda: 2, 0.07e-3, 0.2e-3)


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class _Count:
    def __init__(self, n):
        self.n = n

    def get(self):
        return self.n

    def set(self, n):
        self.n = n


@pytest.mark.parametrize("limit", [1, 2], ids=["nothing to choose", "choosing Numba's count"])
def test_the_step_controller_gives_every_step_time_to_the_watch(limit):
    clock, seen = _Clock(), []

    class Watch:
        def add(self, seconds):
            seen.append(seconds)

    site = threads.AdaptiveThreads(_Count(limit), None, clock=clock, watch=Watch())
    durations = [1e-3 * (k + 1) for k in range(12)]
    for d in durations:
        with site:
            clock.t += d
    assert seen == pytest.approx(durations)
    with pytest.raises(ZeroDivisionError):  # a step that raises is not timed
        with site:
            clock.t += 1.0
            1 / 0
    assert seen == pytest.approx(durations)


def test_the_default_mode_watches_each_step_site_and_the_adaptive_mode_does_not(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    site = threads.controller(("train", 7, (20, 784)))
    assert isinstance(site.watch, SlowSteps)
    monkeypatch.setenv(threads.ENV, "1")
    adaptive = threads.controller(("train", 7, (20, 784)))
    if adaptive is not None:  # None where BLAS's count cannot be set
        assert adaptive.watch is None  # it changes BLAS's count itself: nothing to advise


def test_a_slowdown_in_the_default_mode_warns_with_the_site_and_blas_count(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setattr(threads, "_blas_count", lambda: 2)
    site = threads.controller(("train", 7, (20, 784)))
    clock = _Clock()
    site.clock = clock
    for d in [1e-3] * WINDOW + [5e-3] * (WINDOW - 1):
        with site:
            clock.t += d
    with pytest.warns(SlowStepsWarning, match=r"\(20, 784\).*5\.0x.*2 threads"):
        with site:
            clock.t += 5e-3


def test_a_new_model_never_inherits_a_freed_models_step_site(monkeypatch):
    """CPython gives a new object the address of one just freed: keyed by ``id(model)``, a larger network
    trained after a smaller one at the same batch shape would be measured against the smaller one's steps.
    Here every ``id()`` the model module asks for is the same, as a reused address would be."""
    from npdl import backend, kernels
    from npdl.layers import Dense
    from npdl.models import Sequential, sequential
    from npdl.optim import SGD

    keys = []
    real = kernels.step_threads
    monkeypatch.setattr(kernels, "step_threads", lambda key, array: keys.append(key) or real(key, array))
    monkeypatch.setattr(sequential, "id", lambda obj: 140000000000000, raising=False)
    data = backend.Generator("cpu", 1)
    x, y = data.normal((4, 6), dtype="float32"), data.integers(0, 3, (4,))
    for hidden in (4, 64):
        g = backend.Generator("cpu", 0)
        model = Sequential([Dense(6, hidden, rng=g), Dense(hidden, 3, rng=g)])
        model.compile("softmax_cross_entropy", SGD(lr=0.1))
        model.train_step(x, y)
        model.train_step(x, y)
    assert keys[0] == keys[1] and keys[2] == keys[3]  # one site per model ...
    assert keys[0] != keys[2]  # ... and its own
