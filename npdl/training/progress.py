"""Per-epoch progress: a tqdm bar on a terminal, one summary line elsewhere.

The training loop keeps the running loss on the device and reads it back only
when :meth:`EpochProgress.due` says so (every :data:`REFRESH_SECONDS`), so the
bar's live postfix costs one host synchronisation per refresh, never one per step.
The same reads are when the loop checks the loss for NaN/inf.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

#: seconds between two reads of the running loss (bar postfix + divergence check)
REFRESH_SECONDS = 0.5


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def format_logs(logs: dict) -> str:
    """``loss=0.1234 accuracy=0.9650 ...`` (seconds shown as ``12.3s``)."""
    parts = []
    for key, value in logs.items():
        if value is None:
            continue
        if key == "seconds":
            parts.append(f"{value:.1f}s")
        elif key == "lr":
            parts.append(f"lr={value:.3g}")
        else:
            parts.append(f"{key}={value:.4f}")
    return " ".join(parts)


class EpochProgress:
    """The bar (or the summary line) of one epoch.

    ``verbose=0``: silent. ``verbose>=1``: a tqdm bar when ``stream`` is a terminal,
    otherwise (a log file, a notebook pipe, pytest's capture) one line per epoch.
    """

    def __init__(self, epoch: int, epochs: int, steps: int, verbose: int = 1, stream=None):
        self.stream = stream if stream is not None else sys.stdout
        self.verbose = int(verbose)
        self.label = f"Epoch {epoch + 1}/{epochs}"
        self.bar = None
        if self.verbose >= 1 and is_terminal(self.stream):
            self.bar = tqdm(total=steps, desc=self.label, unit="batch", file=self.stream, leave=True,
                            dynamic_ncols=True, mininterval=REFRESH_SECONDS)
        self._next_read = time.perf_counter() + REFRESH_SECONDS

    def due(self) -> bool:
        """Is it time to read the running loss back from the device?"""
        now = time.perf_counter()
        if now >= self._next_read:
            self._next_read = now + REFRESH_SECONDS
            return True
        return False

    def step(self, running: dict | None = None) -> None:
        """One batch done; ``running`` (host floats) refreshes the postfix when given."""
        if self.bar is None:
            return
        if running is not None:
            self.bar.set_postfix_str(format_logs(running), refresh=False)
        self.bar.update(1)

    def close(self, logs: dict | None = None) -> None:
        """End of epoch: final numbers in the postfix, or the summary line."""
        if self.bar is not None:
            if logs:
                self.bar.set_postfix_str(format_logs(logs), refresh=False)
            self.bar.close()
        elif self.verbose >= 1 and logs is not None:
            print(f"{self.label} - {format_logs(logs)}", file=self.stream, flush=True)
