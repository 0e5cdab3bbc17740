"""What :meth:`Sequential.fit` returns: one row of numbers per epoch.

``history.history`` is the Keras-style dict ``{"loss": [...], "accuracy": [...],
"val_loss": [...], "val_accuracy": [...], "lr": [...], "seconds": [...]}`` with one
entry per epoch; ``history.epoch`` holds the 0-based epoch indices. ``loss`` is the
mean over the epoch's examples of the loss plus the L1/L2 penalty (Keras reports
it the same way), measured in training mode while the weights moved; ``val_*``
come from inference mode at the epoch's end; ``lr`` is the rate the epoch started
with (after callbacks such as LearningRateScheduler ran); ``seconds`` is wall time
including validation. Every value is
a Python float (already read back from the device), so a History is plain data:
it round-trips through JSON (``to_dict`` / ``from_dict``, used by checkpoints) and
writes to CSV.
"""

from __future__ import annotations

import csv
import math

#: keys that are bookkeeping, not metrics
_NOT_METRICS = ("loss", "lr", "seconds")


class History:
    """Per-epoch training record; see the module docstring."""

    def __init__(self):
        self.epoch: list[int] = []
        self.history: dict[str, list] = {}

    # -- recording
    def append(self, epoch: int, logs: dict) -> None:
        """Add epoch ``epoch`` (0-based) with its ``logs`` (name -> number).

        A key that first appears now is padded with ``None`` for earlier epochs, and a
        key missing now gets ``None``, so every list stays aligned with ``self.epoch``.
        """
        self.epoch.append(int(epoch))
        rows = len(self.epoch)
        for key, value in logs.items():
            column = self.history.setdefault(key, [None] * (rows - 1))
            column.append(None if value is None else float(value))
        for column in self.history.values():
            if len(column) < rows:
                column.append(None)

    # -- views
    def __len__(self):
        return len(self.epoch)

    def __getitem__(self, key):
        return self.history[key]

    def __contains__(self, key):
        return key in self.history

    @property
    def loss(self) -> list:
        return self.history.get("loss", [])

    @property
    def val_loss(self) -> list:
        return self.history.get("val_loss", [])

    @property
    def lr(self) -> list:
        return self.history.get("lr", [])

    @property
    def seconds(self) -> list:
        return self.history.get("seconds", [])

    @property
    def metrics(self) -> dict:
        """Training metrics (``accuracy``, ``error``, ...), name -> per-epoch list."""
        return {k: v for k, v in self.history.items() if not k.startswith("val_") and k not in _NOT_METRICS}

    @property
    def val_metrics(self) -> dict:
        """Validation metrics without the ``val_`` prefix, name -> per-epoch list."""
        return {k[4:]: v for k, v in self.history.items() if k.startswith("val_") and k != "val_loss"}

    # -- serialisation
    def to_dict(self) -> dict:
        """A JSON-able dict. NaN and infinities become the strings ``"nan"``/``"inf"``/``"-inf"``
        because strict JSON has no such numbers."""
        def clean(v):
            return v if v is None or math.isfinite(v) else str(v)
        return {"epoch": list(self.epoch), "history": {k: [clean(v) for v in col] for k, col in self.history.items()}}

    @classmethod
    def from_dict(cls, data: dict | None) -> "History":
        history = cls()
        if data:
            history.epoch = [int(e) for e in data.get("epoch", [])]
            history.history = {k: [None if v is None else float(v) for v in col]
                               for k, col in data.get("history", {}).items()}
        return history

    def to_csv(self, path) -> None:
        """Write one row per epoch: ``epoch`` (0-based) then every recorded key."""
        keys = list(self.history)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["epoch"] + keys)
            for row, epoch in enumerate(self.epoch):
                writer.writerow([epoch] + ["" if self.history[k][row] is None else repr(self.history[k][row])
                                           for k in keys])

    def __repr__(self):
        return f"History(epochs={len(self)}, keys={list(self.history)})"
