"""Errors raised while training, while reading or writing checkpoints, and by run folders.

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


class FileWriteError(NpdlError, OSError):
    """A file could not be written: the disk is full, the folder is read-only or not ours.

    Files are written to a temporary name and renamed over the target, so the file that
    was there before (the last good checkpoint) is unchanged. ``filename`` is the file that
    could not be written, ``errno`` the system's error number (``errno.ENOSPC``, ...), as
    on any :class:`OSError`, which this is too, and ``reason`` the system's words for it.
    """

    def __init__(self, message, errno=None, filename=None, reason=None):
        OSError.__init__(self, errno, message, filename)
        self.message, self.reason = message, reason or message

    def __str__(self):
        return self.message


class RunFolderError(NpdlError):
    """A run folder (``npdl train --out``) cannot be used: it is a file, it cannot be
    written, it holds another run that would be overwritten, or nothing to resume."""


class RunFolderBusyError(RunFolderError):
    """Another run holds the folder. ``holder``: what its lock file says (``host``, ``pid``,
    ``command``, ``started``), or an empty dict when it could not be read."""

    def __init__(self, message, holder=None):
        super().__init__(message)
        self.holder = dict(holder or {})
