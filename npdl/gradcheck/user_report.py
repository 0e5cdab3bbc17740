"""What :func:`npdl.gradcheck.check_layer` returns: its records, a table, where a gradient is wrong.

A :class:`CheckRecord` is a :class:`~npdl.gradcheck.runner.Record` (the row ``npdl gradcheck``
prints) with one more field, ``worst``: for a failing row, the entries of the gradient that
disagree most with the reference, each with its index. A :class:`Report` holds the records
and which references ran (and, for one that did not, why).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import backend
from ..deferred import formed
from ..errors import NpdlError
from .runner import Record, format_table

#: how many of the largest mismatches a failing row lists
WORST_COUNT = 5


class GradientCheckError(NpdlError, AssertionError):
    """A gradient check failed: the message is the report's table and where each gradient is wrong."""


@dataclass
class CheckRecord(Record):
    """A :class:`~npdl.gradcheck.runner.Record` with ``worst``: for a failing row, the largest
    mismatches as ``{"index", "analytic", "expected", "reference"}`` dicts, largest first."""

    worst: list = field(default_factory=list)


def worst_entries(analytic, expected, reference: str, count: int = WORST_COUNT) -> list:
    """The ``count`` entries where ``analytic`` and ``expected`` differ most, largest first.

    ``index`` is the entry's position in the gradient's own shape (a tuple), ``reference``
    names where ``expected`` came from (``"numeric"``, ``"torch"``, ``"jax"``).
    """
    a = np.asarray(backend.to_numpy(formed(analytic)), dtype=np.float64)
    e = np.asarray(backend.to_numpy(expected), dtype=np.float64)
    diff = np.abs(a - e).reshape(-1)
    order = np.argsort(-diff, kind="stable")[:count]
    out = []
    for flat in order:
        index = tuple(int(i) for i in np.unravel_index(int(flat), a.shape))
        out.append({"index": index, "analytic": float(a.reshape(-1)[flat]),
                    "expected": float(e.reshape(-1)[flat]), "reference": reference})
    return out


@dataclass
class Report:
    """The result of :func:`~npdl.gradcheck.check_layer`, :func:`~npdl.gradcheck.check_loss` or
    :func:`~npdl.gradcheck.check_model`.

    * ``ok``: every row passed;
    * ``records``: one :class:`CheckRecord` per (input or parameter, autodiff reference that ran);
    * ``references``: ``{"numeric" | "torch" | "jax": "ran (...)" or why it did not run}``;
    * ``str(report)``: the table, the references, and for each failing gradient its largest
      mismatches with their indices;
    * :meth:`raise_for_failure`: raises :class:`GradientCheckError` (an ``AssertionError``) with
      that text unless ``ok``.
    """

    subject: str
    records: list
    references: dict
    tolerances: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.records) and all(r.passed for r in self.records)

    @property
    def failed(self) -> list:
        return [r for r in self.records if not r.passed]

    def ran(self, reference: str) -> bool:
        """Whether ``reference`` (``"numeric"``, ``"torch"``, ``"jax"``) ran."""
        return self.references.get(reference, "").startswith("ran")

    def as_dicts(self) -> list:
        return [r.as_dict() for r in self.records]

    def raise_for_failure(self) -> "Report":
        """Raise :class:`GradientCheckError` with the report's text if any row failed; else return ``self``."""
        if not self.ok:
            raise GradientCheckError(str(self))
        return self

    def __str__(self) -> str:
        lines = [format_table(self.records), ""]
        passed = sum(r.passed for r in self.records)
        tol = ", ".join(f"{k} {v:g}" for k, v in self.tolerances.items())
        lines.append(f"{self.subject}: {passed} passed, {len(self.records) - passed} failed"
                     + (f" (tolerances: {tol})" if tol else ""))
        for name, status in self.references.items():
            lines.append(f"  {name}: {status}")
        for r in self.failed:
            lines.append("")
            if r.error:
                lines.append(f"{r.layer} / {r.wrt}: {r.error.strip()}")
                continue
            errs = [f"{ref} rel err {err:.2e}" for ref, err in (("numeric", r.numeric_rel_err),
                                                                 (r.autodiff, r.autodiff_rel_err)) if err is not None]
            lines.append(f"{r.layer}: the gradient of {r.wrt} is wrong ({', '.join(errs)}); "
                         f"largest mismatches:")
            lines.append(_worst_table(r.worst))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Report(subject={self.subject!r}, ok={self.ok}, rows={len(self.records)})"


def _worst_table(worst) -> str:
    if not worst:
        return "  (no entries)"
    ref = worst[0]["reference"]
    rows = [("index", "analytic", f"expected ({ref})", "difference")]
    rows += [(str(w["index"]), f"{w['analytic']:.6g}", f"{w['expected']:.6g}",
              f"{w['analytic'] - w['expected']:.3g}") for w in worst]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows)
