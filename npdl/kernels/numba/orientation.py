"""Which of two ways of writing one matrix product runs faster here, measured on its first calls.

A product can be handed to BLAS in more than one orientation: ``da W^T`` as it stands, or as
``(W da^T)^T`` (BLAS then reads ``W`` untransposed) copied back to row-major. Which is faster
depends on the BLAS's kernels, the CPU and the shapes: on a 2-core AMD EPYC Zen 4 (OpenBLAS
0.3.31, AVX-512 kernels) the second took 0.24 against 0.38 ms at (20, 1000) x (1000, 784),
0.39 against 0.57 ms at (32, 1000) x (1000, 1000), and was even at 500 rows, where its copy made
it the slower one. So neither is fixed in the code: for each shape the first calls take turns
(:data:`TRIALS` each; the first of each is not counted, it may pay for a cold cache), and every
later call runs the second only if its median was at least :data:`MARGIN` lower: a product of a
few microseconds times too noisily to tell two ways apart, and the first is the definition's.

The turns go first, second, second, first, and again (:data:`PATTERN`), not one after the other: a
training step can make several calls with one shape (``sda``'s two 1000x1000 layers make two per
step, the second finding a colder cache than the first), and strict turns would time the first
way always at one of them and the second always at the other. On a 2-core Intel Xeon
(AVX-512, OpenBLAS 0.3.31) ``(W da^T)^T`` at (128, 1000) x (1000, 1000) took 1.60 against
1.38-1.44 ms as written, alone; strict turns inside ``sda_b128``'s step still chose it in some
processes (each choice is made once per process), which cost 0.4-1.9% of the step.

The choice never changes a result. At its first call with a shape, :class:`Choice` computes
both and compares them bit for bit; only if they are equal is the second ever used, and the
first (the definition's own expression) serves that shape for good otherwise. OpenBLAS 0.3.31's
AVX-512 kernels (``SkylakeX``, on AMD Zen 4) give the same bits both ways, so there the choice is
a matter of speed alone; its AVX2 kernels (``Haswell``, on AMD Zen 1) did not at any shape of the
benchmark workloads, and there the product runs as written.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

#: timed calls of each way per shape before the choice (the first of each is not counted)
TRIALS = 8

#: the second way serves only if its median time is below this fraction of the first's
MARGIN = 0.97

#: shapes remembered at most; beyond them a new shape runs the first way, untimed
MAX_SHAPES = 256

FIRST, SECOND = 0, 1

#: the order of the timed calls, repeated: every even-length run of it times each way as often,
#: so a cost that alternates from call to call falls on both ways alike
PATTERN = (FIRST, SECOND, SECOND, FIRST)


class Choice:
    """Per shape key, ``first(*args)`` or ``second(*args)``, whichever measured faster and gives the
    same bits. ``clock`` is the timer (``time.perf_counter``; the tests pass their own)."""

    def __init__(self, first, second, clock=time.perf_counter):
        self.ways, self.clock = (first, second), clock  # indexed by FIRST, SECOND
        self.chosen: dict = {}   # key -> FIRST or SECOND, once decided
        self._times: dict = {}   # key -> ([first's times], [second's times]) while on trial

    def __call__(self, key, *args):
        way = self.chosen.get(key)
        if way is not None:
            return self.ways[way](*args)
        times = self._times.get(key)
        if times is None:
            if len(self._times) + len(self.chosen) >= MAX_SHAPES:
                return self.ways[FIRST](*args)
            out = self.ways[FIRST](*args)
            if not np.array_equal(out, self.ways[SECOND](*args)):  # not the same bits: never the second
                self.chosen[key] = FIRST
                return out
            times = self._times[key] = ([], [])
            return out
        way = PATTERN[(len(times[FIRST]) + len(times[SECOND])) % len(PATTERN)]
        start = self.clock()
        out = self.ways[way](*args)
        times[way].append(self.clock() - start)
        if len(times[FIRST]) > TRIALS and len(times[SECOND]) > TRIALS:
            del self._times[key]
            first, second = (statistics.median(t[1:]) for t in times)
            self.chosen[key] = SECOND if second < MARGIN * first else FIRST
        return out
