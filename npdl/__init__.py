"""npdl: deep learning written by hand in NumPy, every gradient derived and checked.

The same layer code runs on NumPy (+ Numba kernels), CuPy and array-api-strict;
:mod:`npdl.backend` is the only module that knows which.
"""

__version__ = "0.1.0"

import os as _os
import sys as _sys

# OpenBLAS's idle worker threads busy-wait for 2^28 cycles (~0.1 s) after every GEMM before
# they sleep. A step that alternates GEMMs with Numba kernels or the convolution's own worker
# threads then runs those on cores shared with a spinning BLAS thread: on 2 cores that made
# a Keras-CNN step 58 ms instead of 38 (LeNet: 93 instead of 56). 2^20 cycles (~0.3 ms) still
# keeps the threads awake between the back-to-back GEMMs of a small dense step (MLP step time
# unchanged). OpenBLAS reads the variable once, when it loads, i.e. when NumPy is first
# imported: set it (or import npdl) before importing NumPy; a value set by the user is kept.
if "numpy" not in _sys.modules:
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

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
