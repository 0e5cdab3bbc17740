"""The error of a distributed job that cannot start or go on."""

from ..errors import NpdlError


class DistributedError(NpdlError, RuntimeError):
    """A distributed job cannot start or go on (no MPI, a rank failed, a collective timed out)."""
