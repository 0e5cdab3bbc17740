"""npdl: deep learning written by hand in NumPy, every gradient derived and checked.

The same layer code runs on NumPy (+ Numba kernels), CuPy and array-api-strict;
:mod:`npdl.backend` is the only module that knows which.
"""

__version__ = "0.1.0"

import os as _os
import sys as _sys

from . import threads_env as _threads_env  # imports nothing else: NumPy is not loaded yet

# OpenBLAS's idle worker threads busy-wait for 2^28 cycles (~0.1 s) after every BLAS call before
# they sleep. A step that alternates BLAS calls with Numba kernels, Python code or the
# convolution's own worker threads then runs those on cores shared with a spinning BLAS thread:
# on 2 cores that made a Keras-CNN step 58 ms instead of 38 (LeNet: 93 instead of 56). When
# another process competes for the cores, a shorter spin still costs: 2^20 cycles (~0.3 ms)
# outlast the gaps between a small step's BLAS calls, and with one busy process on 2 cores the
# SdA step at batch 1 took 7.4-8.0 ms and the autoencoder's 2.1-5.3 ms, against 3.8-4.9 and
# 1.5-1.9 ms with 2^4 cycles, the least OpenBLAS accepts (its threads sleep as soon as they are
# idle); idle, 2^4 was at most 5% slower, but for the autoencoder at batch 1, 2-14% slower
# (benchmarks/env_ab.py; benchmarks/results/2026-12-03-cpu-idle-spin.md). The spin changes no
# result: how OpenBLAS splits its work does not depend on it. OpenBLAS reads the variable once,
# when it loads, i.e. when NumPy is first imported: set it (or import npdl) before importing
# NumPy; a value set by the user is kept.
#
# With NPDL_ADAPTIVE_THREADS=1 the training step also chooses BLAS's thread count from the step
# times (npdl.kernels.numba.threads), and under load it runs BLAS on one thread, so that no BLAS
# thread is left to spin against the other process. The spin then costs nothing under load and
# saves waking the threads between a step's BLAS calls when idle, so import npdl then sets 2^20
# cycles: on a 2-core AMD EPYC Zen 4, 2^20 against 2^4 in alternating slices (benchmarks/env_ab.py, three
# rounds) was 0.84-0.98x per step idle (mlp_b20, sda_b1, da_b20, sda_b128) and 0.97-1.02x with
# one busy process (the same and da_b1). Without the adaptive BLAS count, 2^20 was 0.71-0.98x
# idle, but 2^18 was up to 3.8x under load (sda_b1): hence 2^4 by default.
_SPIN_CYCLES_LOG2 = {"numba": "4", "all": "20"}


def _adaptive_threads_mode(raw: str) -> str:
    """What ``NPDL_ADAPTIVE_THREADS=raw`` asks for (:func:`npdl.threads_env.parse`); a value the training
    step would reject counts as ``"numba"`` here, where NumPy must not be imported yet: the step
    reports it."""
    return _threads_env.parse(raw) or "numba"


if "numpy" not in _sys.modules:
    _mode = _adaptive_threads_mode(_os.environ.get(_threads_env.ENV, ""))
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", _SPIN_CYCLES_LOG2.get(_mode, "4"))
    del _mode

from . import backend, init, kernels, layers, losses  # noqa: E402
from .backend import Generator, get_device, manual_seed, to_device, to_numpy  # noqa: E402
from .errors import DeviceError, DTypeError, LabelError, NpdlError, ShapeError  # noqa: E402
from .layers import *  # noqa: E402,F401,F403
from .losses import *  # noqa: E402,F401,F403
from . import datasets, models, optim, training  # noqa: E402
from .models import Sequential  # noqa: E402
from .training import (Callback, CheckpointError, CSVLogger, EarlyStopping, History,  # noqa: E402
                       LearningRateScheduler, ModelCheckpoint, PatienceEarlyStopping, PatienceRule,
                       TrainingDivergedError, load_checkpoint, save_checkpoint)
