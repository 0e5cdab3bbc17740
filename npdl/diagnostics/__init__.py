"""Looking inside training: gradient-flow diagnostics, TensorBoard logs and run reports.

* :mod:`.probe` -- what one diagnosed step measures (activations, gradient norms, updates)
  and the hooks, set for that step only, that measure it;
* :mod:`.record` -- :class:`Diagnostics`, which diagnoses every ``every`` steps of ``fit`` (or
  of a loop of its own) into ``diagnostics.jsonl`` and TensorBoard;
* :mod:`.tensorboard` -- :class:`TensorBoardLog`, the tensorboardX writer (``[tensorboard]`` extra);
* :mod:`.read`, :mod:`.figures`, :mod:`.report` -- a run folder read back, drawn and written as one
  self-contained ``report.html`` (``npdl report RUN_DIR [RUN_DIR]``; matplotlib, ``[plot]`` extra).
"""

from .errors import DiagnosticsError
from .probe import SATURATION_MARGIN, probing
from .record import DEFAULT_EVERY, FILENAME, Diagnostics
from .tensorboard import TensorBoardLog

__all__ = ["DEFAULT_EVERY", "FILENAME", "SATURATION_MARGIN", "Diagnostics", "DiagnosticsError", "TensorBoardLog",
           "probing"]
