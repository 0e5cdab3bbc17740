"""What a run of ``npdl train --out DIR`` does with diagnostics: open them in its folder, close
them at the end (the run's pictures going to TensorBoard), and write the folder's report.

The run carries the open :class:`~npdl.diagnostics.Diagnostics` (or None) in its options as
``options["diagnostics"]``; every ``fit`` a recipe calls passes it on, and recipes with loops
of their own step through :meth:`~npdl.diagnostics.Diagnostics.stepper`.
"""

from __future__ import annotations

import os
import warnings

from ..training.rundir import register_outputs
from .errors import DiagnosticsError
from .record import DEFAULT_EVERY, FILENAME, Diagnostics
from .report import COMPARISON, REPORT, write_report

#: the default TensorBoard folder inside a run folder
TENSORBOARD = "tensorboard"

register_outputs(FILENAME, REPORT, COMPARISON, TENSORBOARD + "/")  # a run's files: what marks a folder as a run, what overwrite deletes


def open_for_run(out, every=None, tensorboard=None) -> Diagnostics | None:
    """The run's diagnostics: every ``every`` steps into ``out/diagnostics.jsonl`` (``every`` None:
    no file) and, with ``tensorboard`` (a folder, or True for ``out/tensorboard``), to TensorBoard
    (then every :data:`DEFAULT_EVERY` steps unless ``every`` says otherwise). None when neither is asked."""
    if every is None and not tensorboard:
        return None
    if not out:
        raise DiagnosticsError("--diagnostics and --tensorboard need --out DIR: the run folder they write into")
    logdir = os.path.join(out, TENSORBOARD) if tensorboard is True else tensorboard or None
    path = os.path.join(out, FILENAME) if every is not None else None
    return Diagnostics(path, DEFAULT_EVERY if every is None else every, logdir)


def pictures_of(result) -> list:
    """The PNG files a run's result lists (its pictures, or its curves)."""
    extra = getattr(result, "extra", None) or {}
    return [p for p in (extra.get("pictures") or [extra.get("curves")]) if p]


def close_for_run(diagnostics, result=None) -> None:
    """Close the run's diagnostics; after a finished run its pictures go to TensorBoard first."""
    if diagnostics is None:
        return
    try:
        if result is not None:
            diagnostics.add_pictures(pictures_of(result))
    finally:
        diagnostics.close()


def report_for_run(out, published: dict | None = None) -> str | None:
    """Write ``out/report.html`` and return its path; None without matplotlib. Any other failure is
    a warning (the run's files are all written by then): ``npdl report DIR`` can try again."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    try:
        return write_report(out, published=published, probe=False)
    except Exception as exc:  # the run itself succeeded: say so, and how to get the page later
        warnings.warn(f"could not write {os.path.join(out, REPORT)} ({type(exc).__name__}: {exc}); "
                      f"'npdl report {out}' writes it from the run's files", RuntimeWarning, stacklevel=2)
        return None
