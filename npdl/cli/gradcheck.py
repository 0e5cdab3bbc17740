"""``npdl gradcheck``: every layer and loss against finite differences and autodiff."""

from __future__ import annotations

import json
import sys


def run(args) -> int:
    from .. import backend
    from ..gradcheck import AUTODIFF_TOL, NUMERIC_TOL, BACKENDS, format_table, runner, select, step

    try:
        if args.step is not None:
            models = args.step or list(step.STEP_MODELS)
            for name in models:
                if name not in step.STEP_MODELS:
                    raise KeyError(f"unknown step model {name!r}; choose from {', '.join(step.STEP_MODELS)}")
            cases = []
        else:
            cases = select(args.layer)
    except KeyError as exc:
        print(f"npdl gradcheck: error: {exc.args[0]}", file=sys.stderr)
        return 2
    backend.get_device(BACKENDS[args.backend])  # a clear error now if e.g. CuPy is missing
    autodiff = args.autodiff
    ref, why = runner._reference(autodiff)
    if autodiff != "none" and ref is None:
        print(f"note: {why}; checking against finite differences only (autodiff: null)", file=sys.stderr)
    records = []
    for case in cases:
        records += runner.check_case(case, args.backend, autodiff, seed=args.seed)
    for name in (models if args.step is not None else ()):
        records += step.check_step(name, args.backend, autodiff, seed=args.seed)
    if args.json:
        print(json.dumps([r.as_dict() for r in records], indent=1))
    else:
        print(format_table(records))
        failed = [r for r in records if not r.passed]
        print(f"\n{len(records) - len(failed)} passed, {len(failed)} failed "
              f"(tolerances: numeric {NUMERIC_TOL:g}, autodiff {AUTODIFF_TOL:g}; float64)")
        for r in failed:
            if r.error:
                print(f"\n{r.layer} / {r.wrt}: {r.error}", file=sys.stderr)
    return 0 if all(r.passed for r in records) else 1


def register(sub) -> None:
    p = sub.add_parser("gradcheck", help="check every backward pass against finite differences and autodiff",
                       description="Check each layer and loss in float64: the hand-derived gradient against "
                                   "central finite differences and against JAX (or PyTorch) autodiff. "
                                   "Exit code 1 if any row fails.")
    p.add_argument("--layer", nargs="+", metavar="NAME", help="only these layers/losses (default: all)")
    p.add_argument("--step", nargs="*", metavar="MODEL",
                   help="check instead the gradient a whole training step receives (loss + L1/L2 penalties, "
                        "every parameter) of a small model of each family (default: all of mlp, tied_da, sda, "
                        "stacked_tied_ae, conv, rnn, lstm) against finite differences and a JAX model built "
                        "from the per-layer references")
    p.add_argument("--backend", choices=("numpy", "strict", "cupy"), default="numpy")
    p.add_argument("--autodiff", choices=("jax", "torch", "none"), default="jax")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--json", action="store_true", help="print a JSON list of records")
    p.set_defaults(func=run)
