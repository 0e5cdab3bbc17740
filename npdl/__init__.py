"""npdl: deep learning written by hand in NumPy, every gradient derived and checked.

The same layer code runs on NumPy (+ Numba kernels), CuPy and array-api-strict;
:mod:`npdl.backend` is the only module that knows which.
"""

__version__ = "0.1.0"

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
