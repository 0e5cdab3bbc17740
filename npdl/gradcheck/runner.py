"""Run the gradient checks: numeric (central differences) and autodiff (JAX or PyTorch)."""

from __future__ import annotations

import traceback
from dataclasses import asdict, dataclass

from .. import backend
from . import jax_ref, torch_ref
from .cases import select
from .numeric import numerical_vjp, relative_error

#: float64 central differences with eps = 1e-6 agree to ~1e-9; a wrong gradient is off by O(1)
NUMERIC_TOL = 1e-6
#: two exact derivations in float64 agree to round-off (~1e-15); leave room for accumulation order
AUTODIFF_TOL = 1e-8

BACKENDS = {"numpy": "cpu", "strict": "strict", "cupy": "cuda:0"}
#: the independent autodiff references (each imports its library only when used)
REFERENCES = {"jax": jax_ref, "torch": torch_ref}


@dataclass
class Record:
    """One row: one (layer or loss, input or parameter) pair on one backend."""

    layer: str
    wrt: str
    backend: str
    dtype: str
    numeric_rel_err: float | None
    autodiff: str | None
    autodiff_rel_err: float | None
    passed: bool
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _reference(autodiff):
    if autodiff in (None, "none"):
        return None, "no autodiff reference asked for"
    ref = REFERENCES.get(autodiff)
    if ref is None:
        raise ValueError(f"autodiff must be 'jax', 'torch' or 'none', got {autodiff!r}")
    ok, why = ref.available()
    return (ref if ok else None), why


def check_case(case, backend_name="numpy", autodiff="jax", seed=0, numeric=True) -> list[Record]:
    """Check one case on one backend in float64; one :class:`Record` per differentiated input."""
    dtype = "float64"
    device = backend.get_device(BACKENDS.get(backend_name, backend_name))
    ref, _ = _reference(autodiff)
    try:
        g = backend.Generator(device, seed)
        inputs = case.make(g, dtype)
        y, cache = case.forward(**inputs)
        dy = g.normal(tuple(y.shape), dtype=dtype)
        analytic = case.backward(dy, cache)
        ref_grads = ref.vjp(case, inputs, dy) if ref is not None else {}
    except Exception as exc:  # a crash is a failed check, reported in its row
        msg = f"{type(exc).__name__}: {exc}"
        return [Record(case.name, w, backend_name, dtype, None, autodiff if ref else None, None, False,
                       msg + "\n" + traceback.format_exc(limit=3)) for w in case.wrt]
    records = []
    for wrt in case.wrt:
        num_err = (relative_error(analytic[wrt], numerical_vjp(case.forward, inputs, wrt, dy))
                   if numeric else None)
        ad_err = relative_error(analytic[wrt], device.asarray(backend.to_numpy(ref_grads[wrt]))) \
            if ref is not None else None
        passed = (num_err is None or num_err <= NUMERIC_TOL) and (ad_err is None or ad_err <= AUTODIFF_TOL)
        records.append(Record(case.name, wrt, backend_name, dtype, num_err,
                              autodiff if ref is not None else None, ad_err, passed))
    return records


def run(names=None, backend_name="numpy", autodiff="jax", seed=0) -> list[Record]:
    """Check every case (or those named) on one backend."""
    records = []
    for case in select(names):
        records += check_case(case, backend_name, autodiff, seed)
    return records


def format_table(records) -> str:
    """The table ``npdl gradcheck`` prints."""
    def fmt(v):
        return "-" if v is None else f"{v:.2e}"

    header = ("layer", "wrt", "backend", "dtype", "numeric", "autodiff", "autodiff err", "result")
    rows = [(r.layer, r.wrt, r.backend, r.dtype, fmt(r.numeric_rel_err), r.autodiff or "-",
             fmt(r.autodiff_rel_err), "pass" if r.passed else "FAIL") for r in records]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(header), line("-" * w for w in widths)] + [line(r) for r in rows]
    return "\n".join(out)
