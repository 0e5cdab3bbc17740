"""``npdl train MODEL``: reproduce a classic model with its published setting."""

from __future__ import annotations

import json
import sys

from .argtypes import non_negative_int as _non_negative_int
from .argtypes import number
from .argtypes import positive_float as _positive_float
from .argtypes import positive_int as _positive_int
from .memory import retain_freed_memory


def _fmt(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def run(args) -> int:
    if args.distributed:  # one rank of `mpiexec -n N npdl train ... --distributed`
        from ..distributed.runs import run_as_rank

        return run_as_rank(args, _run, f"npdl train {args.model}")
    return _run(args)


def _run(args) -> int:
    from ..distributed import is_writer
    from ..recipes import get_recipe, train
    from ..training import TrainingDivergedError

    recipe = get_recipe(args.model)
    retain_freed_memory()  # NumPy temporaries stay in the heap between steps (see its docstring)
    if args.tf32:
        from ..backend import allow_tf32

        allow_tf32(True)
    verbose = 0 if (args.quiet or args.json) else 1
    recipe_options = {}
    if args.pretrain_epochs is not None:
        if recipe.name != "sda":
            from ..recipes.runner import RunError

            raise RunError(f"--pretrain-epochs applies to sda (greedy pretraining), not to {recipe.name}")
        recipe_options["pretrain_epochs"] = args.pretrain_epochs
    try:
        with blas_threads(args.blas_threads):
            result = train(recipe, device=args.device, epochs=args.epochs, batch_size=args.batch_size,
                           lr=args.lr, seed=args.seed, data_dir=args.data_dir, out=args.out, resume=args.resume,
                           overwrite=args.overwrite,
                           verbose=verbose, patience_verbose=int(args.verbose_patience),
                           diagnostics=args.diagnostics, tensorboard=args.tensorboard, subset=args.subset,
                           recipe_options=recipe_options, distributed=args.distributed)
    except TrainingDivergedError as exc:  # distributed: every rank raises it together; rank 0 tells
        from ..training.rundir import checkpoint_note

        note = checkpoint_note(args.out) if args.out else ""
        where = f" {note[0].upper()}{note[1:]}." if note else ""
        if is_writer():
            print(f"npdl train {args.model}: {exc}{where}", file=sys.stderr)
        return 1
    if not is_writer():  # rank 0 alone prints the result
        return 0
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
            print(f"wrote {args.out}/ (run.json, model.npz, checkpoint.npz, history.csv"
                  f"{', curves.png' if result.extra.get('curves') else ''})")
            if args.diagnostics is not None:
                print(f"gradient flow every {args.diagnostics} steps in {args.out}/diagnostics.jsonl")
            if result.extra.get("report"):
                print(f"report: {result.extra['report']}")
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
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of initialisation and shuffling, 0 to 4294967295 (default 0)")
    p.add_argument("--data-dir", help="folder with the MNIST files (else $NPDL_DATA_DIR, then the cache)")
    p.add_argument("--out", metavar="DIR", help="write run.json, history.csv, model.npz, checkpoint.npz, curves.png "
                   "here; a folder that holds a run needs --resume or --overwrite")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out DIR")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run saved in --out DIR: delete the files npdl wrote there (only those) first")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--verbose-patience", action="store_true", help="print every patience-rule validation")
    p.add_argument("--blas-threads", type=_positive_int, metavar="N",
                   help="limit BLAS to N threads (default: its own choice, usually one per core)")
    p.add_argument("--json", action="store_true", help="end with one JSON line: the run's result")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes of `mpiexec -n N npdl train ...` (MPI between CPUs, NCCL "
                        "between GPUs, one GPU per process); --batch-size stays the global batch; rank 0 alone "
                        "prints and writes --out (pip install \"npdl-backprop[mpi]\")")
    _add_looking_inside(p)
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

    from ..kernels.numba import blas

    blas.functions()  # load the kernels' library (oneMKL, where it is chosen) first, so the limit covers it
    return threadpool_limits(limits=n, user_api="blas")


def _seed(text):
    from ..recipes.runner import MAX_SEED

    return number(int, lambda v: 0 <= v <= MAX_SEED, "expected an integer seed, got {text}",
                  f"expected a seed from 0 to {MAX_SEED}, got {{text}}")(text)


def _add_looking_inside(p) -> None:
    """The options that look inside training (:mod:`npdl.diagnostics`) and shorten a run."""
    from ..diagnostics import DEFAULT_EVERY

    g = p.add_argument_group("looking inside (need --out DIR)")
    g.add_argument("--diagnostics", nargs="?", type=_positive_int, const=DEFAULT_EVERY, metavar="EVERY",
                   help=f"every EVERY steps (default {DEFAULT_EVERY}) record per-layer activation mean, spread and "
                        "saturation, gradient norms and |dW|/|W| into DIR/diagnostics.jsonl")
    g.add_argument("--tensorboard", nargs="?", const=True, metavar="LOGDIR",
                   help="write TensorBoard logs (scalars, weight and gradient histograms, pictures) into LOGDIR "
                        '(default DIR/tensorboard); needs pip install "npdl-backprop[tensorboard]"')
    g.add_argument("--subset", type=_positive_int, metavar="N",
                   help="train on the first N training examples only (validation and test sets stay whole)")
    g.add_argument("--pretrain-epochs", type=_non_negative_int, metavar="P",
                   help="sda: greedy pretraining epochs per layer (default min(--epochs, 15)); 0 trains the same "
                        "network from a random start")
