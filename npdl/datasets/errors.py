"""The error the dataset loaders raise.

It lives next to the code that raises it and subclasses
:class:`npdl.errors.NpdlError` like every error npdl raises on purpose. It is
also an :class:`OSError`, because a missing, truncated or corrupt data file is a
file-system problem: code that already catches ``OSError`` around file reads
keeps working.
"""

from ..errors import NpdlError


class DatasetError(NpdlError, OSError):
    """A data file is missing, unreadable, truncated, corrupt, or could not be downloaded.

    The message always names the file (or every folder searched) and says what
    was expected and what was found.
    """
