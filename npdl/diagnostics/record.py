"""Gradient-flow diagnostics recorded while a model trains: ``diagnostics.jsonl`` and TensorBoard.

::

    diag = Diagnostics("run/diagnostics.jsonl", every=100)
    model.fit(x, y, epochs=5, diagnostics=diag)

Every ``every`` optimizer steps (the steps whose ``optimizer.iterations`` is a multiple of
``every``: the first step of training, and the same grid after a resume) one training step
runs with the hooks of :func:`npdl.diagnostics.probe.probing`; its numbers are read back
from the device in one transfer after that step and appended to the file, one JSON object
per line::

    {"model": "keras-mlp", "step": 0, "layer": "0.dense", "quantity": "grad_norm/W", "value": 0.0731}

``step`` is the 0-based optimizer step, ``layer`` ``"<index>.<name>"``, and ``quantity`` one of
``activation_mean``, ``activation_std``, ``saturation`` (for sigmoid, tanh and ReLU outputs),
``grad_norm/input`` (``||dL/dx||``), and per parameter ``k``: ``grad_norm/k`` (``||dL/dk||``),
``weight_norm/k`` (``||k||`` before the update) and ``update_ratio/k`` (``|dk| / |k|``, the
update's norm over the weight's; null while ``k`` is all zeros). A non-finite value is null.

The other steps are the model's own ``train_batch``: :meth:`Diagnostics.stepper` returns it
unchanged between diagnosed steps, so training with diagnostics costs one integer test per
step, and training without them (``diagnostics=None``) costs nothing at all.

With a :class:`~npdl.diagnostics.tensorboard.TensorBoardLog` the same numbers go to TensorBoard
as scalars, with histograms of each parameter and its gradient at each diagnosed step, and (as
a fit callback) the epoch logs: loss, metrics, validation scores and learning rate.
"""

from __future__ import annotations

import json
import math
import os

from .. import backend
from ..training import Callback
from ..training.loop import read_scalars
from .errors import DiagnosticsError
from .probe import probing

#: optimizer steps between two diagnosed steps unless told otherwise
DEFAULT_EVERY = 100

#: the file a run folder holds the diagnostics in
FILENAME = "diagnostics.jsonl"

#: the order quantities of one layer are written in (per-parameter ones by their prefix)
_ORDER = ("activation_mean", "activation_std", "saturation", "grad_norm/input", "grad_norm/", "weight_norm/",
          "update_ratio/")


def _rank(quantity: str) -> int:
    return next(i for i, q in enumerate(_ORDER) if quantity == q or (q.endswith("/") and quantity.startswith(q)))


def _finite(value):
    return value if value is not None and math.isfinite(value) else None


def check_every(every) -> int:
    """``every`` as a positive int, else a :class:`DiagnosticsError` saying what is expected."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise DiagnosticsError(f"diagnostics: every must be a positive number of steps, got {every!r}")
    return every


def host_records(model_name: str, step: int, found: dict) -> list[dict]:
    """The JSON records of one diagnosed step from the probe's ``{(layer, quantity): device value}``,
    read back in one transfer; ``update_norm/k`` becomes ``update_ratio/k = update_norm / weight_norm``."""
    keys = list(found)
    values = read_scalars({str(i): found[key] for i, key in enumerate(keys)})
    host = {key: values[str(i)] for i, key in enumerate(keys)}
    rows = []
    for (layer, quantity), value in host.items():
        if quantity.startswith("update_norm/"):
            weight = host.get((layer, "weight_norm/" + quantity.split("/", 1)[1]))
            value = value / weight if weight else None
            quantity = "update_ratio/" + quantity.split("/", 1)[1]
        rows.append({"model": model_name, "step": int(step), "layer": layer, "quantity": quantity,
                     "value": _finite(value)})
    rows.sort(key=lambda r: (int(r["layer"].split(".", 1)[0]), _rank(r["quantity"]), r["quantity"]))
    return rows


class Diagnostics(Callback):
    """Record gradient flow every ``every`` steps into ``path`` (JSON lines, appended) and/or
    ``tensorboard`` (a :class:`~npdl.diagnostics.tensorboard.TensorBoardLog`, or a folder to open one
    in). One object may serve several models and fits in turn (each line names its model).

    Pass it to ``fit(..., diagnostics=diag)``; a loop of its own calls ``step = diag.stepper(model)``
    once and then ``loss, out = step(xb, yb)`` instead of ``model.train_batch``. ``last`` holds the
    records of the latest diagnosed step.
    """

    def __init__(self, path=None, every: int = DEFAULT_EVERY, tensorboard=None):
        super().__init__()
        self.every = check_every(every)
        self.path = None if path is None else os.fspath(path)
        if isinstance(tensorboard, (str, os.PathLike)):
            from .tensorboard import TensorBoardLog

            tensorboard = TensorBoardLog(tensorboard)
        self.tensorboard = tensorboard
        self.last: list[dict] = []
        self._file = None

    # -- the training step
    def stepper(self, model):
        """A function ``(xb, yb) -> (loss, out)`` to call instead of ``model.train_batch``: the model's
        own step, diagnosed when ``model.optimizer.iterations`` is a multiple of ``every``."""
        model.require_compiled("train_step")
        train_batch, optimizer, every = model.train_batch, model.optimizer, self.every

        def step(xb, yb):
            if optimizer.iterations % every:
                return train_batch(xb, yb)
            return self.probe(model, xb, yb)
        return step

    def probe(self, model, xb, yb):
        """One diagnosed training step of ``model`` on ``(xb, yb)``; returns what ``train_batch`` returns."""
        step = int(model.optimizer.iterations)
        gradients = {} if self.tensorboard is not None else None
        with probing(model, gradients) as found:
            result = model.train_batch(xb, yb)
        self.last = host_records(model.name, step, found)
        self._write(self.last)
        if self.tensorboard is not None:
            self._to_tensorboard(model, step, gradients)
        return result

    # -- where the numbers go
    def _write(self, records) -> None:
        if self.path is None:
            return
        if self._file is None:
            folder = os.path.dirname(self.path)
            if folder:
                os.makedirs(folder, exist_ok=True)
            self._file = open(self.path, "a")
        for record in records:
            self._file.write(json.dumps(record) + "\n")
        self._file.flush()  # a crash loses no diagnosed step already taken

    def _to_tensorboard(self, model, step, gradients) -> None:
        tb = self.tensorboard
        for r in self.last:
            tb.scalar(f"{model.name}/{r['layer']}/{r['quantity']}", r["value"], step)
        for i, layer in enumerate(model.layers):
            for k, p in layer.params.items():
                tag = f"{model.name}/{i}.{layer.name}/{k}"
                tb.histogram(tag, backend.to_numpy(p), step)
                if f"{i}.{k}" in gradients:
                    tb.histogram(f"{tag}/gradient", backend.to_numpy(gradients[f"{i}.{k}"]), step)

    def log_scalars(self, model_name: str, step: int, values: dict) -> None:
        """Scalars of a loop of its own (e.g. ``{"train_loss": 0.3}``) to TensorBoard, as ``<model>/<name>``."""
        if self.tensorboard is not None:
            for name, value in values.items():
                self.tensorboard.scalar(f"{model_name}/{name}", value, step)

    def add_pictures(self, paths, step: int = 0) -> None:
        """PNG files (a run's filters, reconstructions, codes) to TensorBoard's images, named by file."""
        if self.tensorboard is not None:
            for path in paths:
                if path and os.path.exists(path):
                    self.tensorboard.image_file(os.path.splitext(os.path.basename(path))[0], path, step)

    # -- as a fit callback
    def on_epoch_end(self, epoch, logs=None):
        values = {k: v for k, v in (logs or {}).items() if k != "seconds" and isinstance(v, (int, float))}
        self.log_scalars(self.model.name, epoch + 1, {f"epoch/{k}": v for k, v in values.items()})

    def on_train_end(self, logs=None):
        self.flush()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def close(self) -> None:
        """Close the file and the TensorBoard log (a later diagnosed step opens the file again)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.tensorboard is not None:
            self.tensorboard.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
