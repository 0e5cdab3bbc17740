"""TensorBoard event files through ``tensorboardX`` (the ``[tensorboard]`` extra; no TensorFlow).

``pip install "npdl-backprop[tensorboard]"`` installs tensorboardX, which writes the files,
TensorBoard itself, which shows them (``tensorboard --logdir RUN/tensorboard``), and Pillow,
which encodes the images. :class:`TensorBoardLog` is the one place npdl talks to them; what
is logged when is :class:`npdl.diagnostics.Diagnostics`'s business.
"""

from __future__ import annotations

import math
import os

from .errors import DiagnosticsError

INSTALL_HINT = 'pip install "npdl-backprop[tensorboard]"'


class TensorBoardLog:
    """An event-file writer in ``logdir``: scalars, histograms and images, each with its step.

    Non-finite scalars and histograms with non-finite entries are skipped (TensorBoard cannot
    draw them; the diagnostics file records them as null).
    """

    def __init__(self, logdir):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise DiagnosticsError(f"TensorBoard logs need tensorboardX: {INSTALL_HINT}") from None
        self.logdir = os.fspath(logdir)
        try:
            os.makedirs(self.logdir, exist_ok=True)
        except OSError as exc:
            raise DiagnosticsError(f"cannot create the TensorBoard folder {self.logdir}: {exc}") from None
        self.writer = SummaryWriter(logdir=self.logdir)

    def scalar(self, tag: str, value, step: int) -> None:
        if value is not None and math.isfinite(float(value)):
            self.writer.add_scalar(tag, float(value), int(step))

    def histogram(self, tag: str, values, step: int) -> None:
        import numpy as np

        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size and np.isfinite(values).all():
            self.writer.add_histogram(tag, values, int(step))

    def image_file(self, tag: str, path, step: int = 0) -> None:
        """A PNG file as an image (decoded with Pillow to RGB, height x width x 3)."""
        import numpy as np

        try:
            from PIL import Image
        except ImportError:
            raise DiagnosticsError(f"TensorBoard images need Pillow: {INSTALL_HINT}") from None
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        self.writer.add_image(tag, pixels, int(step), dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
