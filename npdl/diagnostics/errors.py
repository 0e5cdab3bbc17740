"""The error the diagnostics, TensorBoard logs and run reports raise for what a user can fix."""

from __future__ import annotations

from ..errors import NpdlError


class DiagnosticsError(NpdlError, ValueError):
    """A diagnostics setting, a run folder or an optional package is not usable; the message says what to do."""
