"""``npdl bench``: median and minimum time of one training step on fixed workloads."""

from __future__ import annotations

import json


def run(args) -> int:
    from .. import backend
    from ..bench import measure, parse
    from ..bench.npdl_step import npdl_step

    try:
        workloads = [parse(name) for name in args.workload.split(",") if name.strip()]
    except ValueError as exc:
        args.parser.error(str(exc))
    if args.tf32:
        backend.allow_tf32(True)
    device = backend.get_device(args.device)
    if not args.json and not args.profile:
        print(f"{'workload':12s} {'device':8s} {'batch':>6s} {'median ms':>10s} {'min ms':>9s} {'reps':>6s}")
    from .train import blas_threads

    for w in workloads:
        step, sync = npdl_step(w, device)
        if args.profile:
            _print_profile(w, step, sync, args)
            continue
        with blas_threads(args.blas_threads):
            timing = measure(step, sync, min_seconds=args.min_seconds)
        record = {"workload": w.name, "impl": "npdl", "device": args.device, "batch_size": w.batch_size, **timing}
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            print(f"{w.name:12s} {args.device:8s} {w.batch_size:6d} {timing['median_ms']:10.3f} "
                  f"{timing['min_ms']:9.3f} {timing['reps']:6d}", flush=True)
    return 0


def _print_profile(w, step, sync, args) -> None:
    from ..bench.profile import profile_step
    from .train import blas_threads

    with blas_threads(args.blas_threads):
        parts = profile_step(step, sync, reps=args.profile)
    total = sum(ms for _, ms in parts)
    if args.json:
        print(json.dumps({"workload": w.name, "impl": "npdl", "device": args.device,
                          "parts_ms": dict(parts), "sum_ms": total}), flush=True)
        return
    print(f"{w.name} on {args.device}: median of {args.profile} steps per part")
    for name, ms in parts:
        print(f"  {name:32s} {ms:9.3f} ms {100 * ms / total:5.1f}%")
    print(f"  {'sum':32s} {total:9.3f} ms", flush=True)


def register(sub) -> None:
    from ..bench import DEFAULT_WORKLOADS, FAMILIES

    p = sub.add_parser("bench", help="time one training step of fixed workloads",
                       description="Time one full float32 training step (forward, backward, SGD update) on random "
                                   "data already on the device, after warm-up, repeated until at least "
                                   "--min-seconds are timed. benchmarks/run.py times the same workloads in "
                                   "PyTorch and JAX side by side.")
    p.add_argument("--workload", default=",".join(DEFAULT_WORKLOADS),
                   help=f"NAME[,NAME...] (default {','.join(DEFAULT_WORKLOADS)}); FAMILY_bBATCH with FAMILY one of "
                        f"{', '.join(FAMILIES)}")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--tf32", action="store_true",
                   help="on a GPU, let float32 matmuls use TF32 tensor cores (default: exact float32)")
    p.add_argument("--min-seconds", type=float, default=1.5, help="seconds of timed steps per workload (1.5)")
    p.add_argument("--blas-threads", type=int, metavar="N", help="limit BLAS to N threads (default: its choice)")
    p.add_argument("--profile", type=int, nargs="?", const=20, default=0, metavar="STEPS",
                   help="instead of timing whole steps, print each layer's forward and backward, the loss "
                        "and the optimizer: the median over STEPS steps (20)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=run, parser=p)
