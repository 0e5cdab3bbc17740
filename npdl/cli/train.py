"""``npdl train MODEL``: reproduce a classic model with its published setting."""

from __future__ import annotations

import json
import math
import sys

from .memory import retain_freed_memory


def _fmt(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def run(args) -> int:
    from ..recipes import get_recipe, train
    from ..training import TrainingDivergedError

    recipe = get_recipe(args.model)
    retain_freed_memory()  # NumPy temporaries stay in the heap between steps (see its docstring)
    if args.tf32:
        from ..backend import allow_tf32

        allow_tf32(True)
    verbose = 0 if (args.quiet or args.json) else 1
    try:
        with blas_threads(args.blas_threads):
            result = train(recipe, device=args.device, epochs=args.epochs, batch_size=args.batch_size,
                           lr=args.lr, seed=args.seed, data_dir=args.data_dir, out=args.out, resume=args.resume,
                           verbose=verbose, patience_verbose=int(args.verbose_patience))
    except TrainingDivergedError as exc:
        where = f"; the last good checkpoint is {args.out}/checkpoint.npz" if args.out else ""
        print(f"npdl train {args.model}: {exc}{where}", file=sys.stderr)
        return 1
    if not args.json:
        print(f"{result.model} on {result.device}: {result.epochs} epochs in {result.seconds:.1f} s; "
              f"final train loss {result.train_loss:.6f}")
        if recipe.classifier:
            best = f" (best at epoch {result.best_epoch})" if result.best_epoch else ""
            print(f"validation error {_fmt(result.valid_error)}, test error {_fmt(result.test_error)}{best}")
        else:
            params = result.extra.get("params")
            print(f"test loss {result.test_loss:.6f}" + (f"; parameters {params}" if params is not None else ""))
        if args.out:
            print(f"wrote {args.out}/ (model.npz, checkpoint.npz, history.csv"
                  f"{', curves.png' if result.extra.get('curves') else ''})")
    if args.json:
        print(json.dumps(result.as_dict()))
    return 0


def register(sub) -> None:
    from ..recipes import RECIPES

    models = "\n".join(f"  {name:17s} {r.summary}\n  {'':17s} published: {r.published}"
                       for name, r in sorted(RECIPES.items()))
    import argparse

    p = sub.add_parser("train", help="train a classic model with its published setting",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train a classic model; the defaults reproduce the published setting.\n\n"
                                   f"models:\n{models}")
    p.add_argument("model", choices=sorted(RECIPES), metavar="MODEL", help="one of: " + ", ".join(sorted(RECIPES)))
    p.add_argument("--device", default="cpu", help="cpu (default), gpu or cuda:N")
    p.add_argument("--tf32", action="store_true",
                   help="on a GPU, let float32 matmuls use TF32 tensor cores (faster on Ampere+, ~1e-3 relative "
                        "error; default: exact float32)")
    p.add_argument("--epochs", type=_positive_int, help="the most epochs to train (default: the recipe's)")
    p.add_argument("--batch-size", type=_positive_int, help="minibatch size (default: the recipe's)")
    p.add_argument("--lr", type=_positive_float, help="learning rate (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and shuffling (default 0)")
    p.add_argument("--data-dir", help="folder with the MNIST files (else $NPDL_DATA_DIR, then the cache)")
    p.add_argument("--out", metavar="DIR", help="write history.csv, model.npz, checkpoint.npz, curves.png here")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--verbose-patience", action="store_true", help="print every patience-rule validation")
    p.add_argument("--blas-threads", type=_positive_int, metavar="N",
                   help="limit BLAS to N threads (default: its own choice, usually one per core)")
    p.add_argument("--json", action="store_true", help="end with one JSON line: the run's result")
    p.set_defaults(func=run)


def blas_threads(n):
    """A context limiting the BLAS thread pool to ``n`` threads (no limit for None).

    Small GEMMs (a batch-20 MLP step) on all cores of a machine that is busy with
    anything else can be many times slower than on one thread: the BLAS threads
    wait for each other while the other work holds the cores.
    """
    import contextlib

    if n is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")


def _positive_int(text):
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text):
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value
