"""Training: the fit loop, its history, callbacks and checkpoints.

Model code lives in :mod:`npdl.models`; this package holds what happens around
it while it trains. Nothing here imports NumPy except :mod:`.checkpoint` (file I/O).
"""

from .callbacks import (Callback, CallbackList, CSVLogger, EarlyStopping, LearningRateScheduler,
                        ModelCheckpoint)
from .checkpoint import FORMAT_TAG, FORMAT_VERSION, load_checkpoint, read_checkpoint, restore, save_checkpoint
from .errors import CheckpointError, TrainingDivergedError
from .history import History
from .patience import PatienceEarlyStopping, PatienceRule
