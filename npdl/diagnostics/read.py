"""Reading a run folder back: ``diagnostics.jsonl``, ``history.csv``, ``run.json``, the checkpoints'
notes and the pictures, as plain Python data for the report (:mod:`npdl.diagnostics.report`)."""

from __future__ import annotations

import csv
import glob
import json
import os
from dataclasses import dataclass, field

from ..training.rundir import CHECKPOINT, HISTORY, MANIFEST, MODEL
from .errors import DiagnosticsError
from .record import FILENAME


def read_records(path) -> list[dict]:
    """The records of a ``diagnostics.jsonl`` file; a line cut short (a run killed while writing) is skipped."""
    records = []
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and {"step", "layer", "quantity", "value"} <= record.keys():
                records.append(record)
    return records


def flow(records) -> dict:
    """``{model: {quantity: {layer: ([steps], [values])}}}`` from diagnostics records, nulls left out,
    models and layers in the order they first appear."""
    out: dict = {}
    for r in records:
        if r["value"] is None:
            continue
        steps, values = out.setdefault(r.get("model", "model"), {}).setdefault(r["quantity"], {}).setdefault(
            r["layer"], ([], []))
        steps.append(int(r["step"]))
        values.append(float(r["value"]))
    return out


def read_table(path) -> dict:
    """A CSV file with a header row as ``{column: [float or None]}`` (``history.csv``: ``epoch``, ``loss``, ...)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    header, body = rows[0], rows[1:]

    def number(text):
        try:
            return float(text)
        except ValueError:
            return None
    return {name: [number(row[i]) if i < len(row) else None for row in body] for i, name in enumerate(header)}


def checkpoint_extra(path) -> dict | None:
    """The JSON ``extra`` a checkpoint carries (recipe, options, result), without loading its arrays."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as members:
            return json.loads(str(members["extra"])) if "extra" in members.files else None
    except (OSError, ValueError, KeyError):
        return None


@dataclass
class Run:
    """What one run folder holds (every part optional but the folder)."""

    folder: str
    history: dict = field(default_factory=dict)
    flow: dict = field(default_factory=dict)
    manifest: dict | None = None
    result: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    recipe: str | None = None
    pictures: list = field(default_factory=list)
    #: the patience rule's validation scores ``[(iteration, value)]`` (from ``checkpoint.npz``)
    validations: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.folder))

    @property
    def main_model(self) -> str | None:
        """The model whose numbers are the run's result: the recipe's (the last diagnosed one otherwise)."""
        if self.recipe in self.flow:
            return self.recipe
        return list(self.flow)[-1] if self.flow else None


def load_run(folder) -> Run:
    """Read a run folder written by ``npdl train --out DIR``; a :class:`DiagnosticsError` if it is none."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DiagnosticsError(f"no run folder at {folder}: give the --out DIR of an 'npdl train' run")
    path = lambda name: os.path.join(folder, name)  # noqa: E731
    known = [n for n in (HISTORY, FILENAME, MANIFEST, MODEL, CHECKPOINT) if os.path.exists(path(n))]
    if not known:
        raise DiagnosticsError(f"{folder} holds no run ({HISTORY}, {FILENAME}, {MANIFEST} or {MODEL}): "
                               "give the --out DIR of an 'npdl train' run")
    run = Run(folder)
    if os.path.exists(path(HISTORY)):
        run.history = read_table(path(HISTORY))
    if os.path.exists(path(FILENAME)):
        run.flow = flow(read_records(path(FILENAME)))
    if os.path.exists(path(MANIFEST)):
        try:
            with open(path(MANIFEST)) as f:
                run.manifest = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            run.manifest = {"unreadable": f"{MANIFEST}: {exc}"}
    for name in (CHECKPOINT, MODEL):  # the final model's notes win over the last epoch's
        extra = checkpoint_extra(path(name)) if os.path.exists(path(name)) else None
        if extra:
            run.options.update(extra.get("options") or {})
            run.result.update(extra.get("result") or {})
            run.recipe = extra.get("recipe", run.recipe)
            patience = extra.get("patience") or {}
            run.validations = [tuple(v) for v in patience.get("validations") or []] or run.validations
    if run.recipe is None and isinstance(run.manifest, dict):
        named = run.manifest.get("recipe") or run.manifest.get("model")
        run.recipe = named if isinstance(named, str) else None
    run.pictures = sorted(glob.glob(os.path.join(glob.escape(folder), "*.png")))
    return run
