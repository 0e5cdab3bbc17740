"""Exceptions npdl raises for bad input.

Each one subclasses the built-in exception a Python user would expect
(``ValueError`` for bad shapes, ``TypeError`` for bad dtypes, ...), so code that
catches the built-in keeps working, while ``except npdl.NpdlError`` catches all.
"""


class NpdlError(Exception):
    """Base class of every error npdl raises on purpose."""


class ShapeError(NpdlError, ValueError):
    """An array has the wrong rank or size for the layer it was given to."""


class DTypeError(NpdlError, TypeError):
    """An array has the wrong dtype: integers where floats are needed, float64 into float32."""


class LabelError(NpdlError, ValueError):
    """Class labels are out of range, not integers, or do not match the predictions."""


class DeviceError(NpdlError, RuntimeError):
    """A device cannot be used, or arrays from different devices or libraries were mixed."""


class GPUOutOfMemoryError(DeviceError):
    """The GPU ran out of memory; the message says what was being allocated and what to try."""
