"""``npdl bench``: median and minimum time of one training step on fixed workloads."""

from __future__ import annotations

import json

from .memory import retain_freed_memory


def run(args) -> int:
    from .. import backend
    from ..bench import device_name, expand, measure, parse_batch_sizes, timer_for
    from ..bench.npdl_step import npdl_step

    try:
        sizes = parse_batch_sizes(args.batch_sizes) if args.batch_sizes else None
        workloads = expand(args.workload.split(","), sizes)
    except ValueError as exc:
        args.parser.error(str(exc))
    if args.graph and args.device != "gpu":
        args.parser.error("--graph needs a GPU (--device gpu): the step is captured as a CUDA graph with CuPy")
    if args.graph and args.profile:
        args.parser.error("--graph and --profile do not combine: a captured step runs as one graph, not layer by layer")
    retain_freed_memory()  # NumPy temporaries stay in the heap between steps (see its docstring)
    if args.tf32:
        backend.allow_tf32(True)
    device = backend.get_device(args.device)
    name = device_name(device)
    if not args.json and not args.profile:
        print(f"# {name}" + (" (CUDA graph replay)" if args.graph else ""))
        print(f"{'workload':12s} {'device':8s} {'batch':>6s} {'median ms':>10s} {'min ms':>9s} {'reps':>6s}")
    from .train import blas_threads

    timer = timer_for(device)
    for w in workloads:
        step, sync = npdl_step(w, device)
        if args.profile:
            _print_profile(w, step, sync, args)
            continue
        graph = None
        if args.graph:
            step, graph = _graph_step(w, step)
        with blas_threads(args.blas_threads):
            timing = measure(step, sync, min_seconds=args.min_seconds, timer=timer)
        record = {"workload": w.name, "impl": "npdl", "device": args.device, "batch_size": w.batch_size,
                  "device_name": name, **timing, "timer": timer.name}
        if args.graph:
            record["graph"] = graph
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            print(f"{w.name:12s} {args.device:8s} {w.batch_size:6d} {timing['median_ms']:10.3f} "
                  f"{timing['min_ms']:9.3f} {timing['reps']:6d}" + ("" if graph in (None, True) else "  (no graph)"),
                  flush=True)
    return 0


def _graph_step(w, step):
    """``(zero-argument step, captured?)``: the workload's step captured as a CUDA graph, or the plain one."""
    import sys

    from ..bench.graph import capture_step

    gstep = capture_step(step.model, step.x, step.y)
    if not gstep.captured:
        print(f"note: {w.name}: timing the plain step, no CUDA graph: {gstep.reason}", file=sys.stderr, flush=True)
    x, y = step.x, step.y

    def replay():
        gstep(x, y)

    return replay, gstep.captured


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
                                   "--min-seconds are timed (on a GPU each step is timed with CUDA events). "
                                   "benchmarks/run.py times the same workloads in PyTorch and JAX side by side.")
    p.add_argument("--workload", default=",".join(DEFAULT_WORKLOADS),
                   help=f"NAME[,NAME...] (default {','.join(DEFAULT_WORKLOADS)}); FAMILY_bBATCH with FAMILY one of "
                        f"{', '.join(FAMILIES)}, or a bare FAMILY with --batch-sizes")
    p.add_argument("--batch-sizes", metavar="N[,N...]",
                   help="time every workload family at each batch size (e.g. 1,8,32,128,512,2048); the "
                        "workloads may then be bare families (mlp,lenet) or FAMILY_bBATCH")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--graph", action="store_true",
                   help="on a GPU, capture the whole step as a CUDA graph and time its replay (falls back to "
                        "the plain step, with the reason, where capture is not possible)")
    p.add_argument("--tf32", action="store_true",
                   help="on a GPU, let float32 matmuls use TF32 tensor cores (default: exact float32)")
    p.add_argument("--min-seconds", type=float, default=1.5, help="seconds of timed steps per workload (1.5)")
    p.add_argument("--blas-threads", type=int, metavar="N", help="limit BLAS to N threads (default: its choice)")
    p.add_argument("--profile", type=int, nargs="?", const=20, default=0, metavar="STEPS",
                   help="instead of timing whole steps, print each layer's forward and backward, the loss "
                        "and the optimizer: the median over STEPS steps (20)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=run, parser=p)
