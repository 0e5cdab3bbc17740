"""npdl: deep learning written by hand in NumPy, every gradient derived and checked.

The same layer code runs on NumPy (+ Numba kernels), CuPy and array-api-strict;
:mod:`npdl.backend` is the only module that knows which.
"""

__version__ = "0.1.0"

import os as _os
import sys as _sys

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
if "numpy" not in _sys.modules:
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

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
