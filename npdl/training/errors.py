"""Errors raised while training and while reading or writing checkpoints.

They live here, next to the code that raises them, and subclass
:class:`npdl.errors.NpdlError` like every error npdl raises on purpose.
"""

from ..errors import NpdlError


class TrainingDivergedError(NpdlError, FloatingPointError):
    """The training loss became NaN or infinite.

    ``epoch`` is 1-based (as printed in the progress bar); ``first_batch`` and
    ``last_batch`` (1-based, inclusive) bound where it first appeared. The loss is
    read back from the device only at the progress refresh interval and at the end
    of each epoch (reading it every batch would wait for the GPU every step), so
    the range is the narrowest one the loop knows.
    """

    def __init__(self, message, epoch=None, first_batch=None, last_batch=None):
        super().__init__(message)
        self.epoch, self.first_batch, self.last_batch = epoch, first_batch, last_batch


class CheckpointError(NpdlError, ValueError):
    """A checkpoint file cannot be used: truncated, not an npdl checkpoint, another
    format version, or parameters that do not fit the model."""
