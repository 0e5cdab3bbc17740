"""``npdl bench``: time one training step of fixed workloads, and place it against the machine's ceilings."""

from __future__ import annotations

import json
import sys

from .argtypes import at_least_one as _at_least_one
from .argtypes import seconds as _seconds
from .memory import retain_freed_memory


def run(args) -> int:
    from .. import backend
    from ..bench import device_name, expand, parse_batch_sizes

    try:
        sizes = parse_batch_sizes(args.batch_sizes) if args.batch_sizes else None
        workloads = expand(args.workload.split(","), sizes)
    except ValueError as exc:
        args.parser.error(str(exc))
    if args.graph and args.device != "gpu":
        args.parser.error("--graph needs a GPU (--device gpu): the step is captured as a CUDA graph with CuPy")
    if args.graph and args.profile:
        args.parser.error("--graph and --profile do not combine: a captured step runs as one graph, not layer by layer")
    if args.peak and (args.profile or args.graph):
        args.parser.error("--peak measures the machine's ceilings only; run --profile or --graph separately")
    if args.peak_file and args.no_peak:
        args.parser.error("--peak-file and --no-peak do not combine")
    retain_freed_memory()  # NumPy temporaries stay in the heap between steps (see its docstring)
    if args.tf32:
        backend.allow_tf32(True)
    device = backend.get_device(args.device)
    from .train import blas_threads

    if args.peak:
        with blas_threads(args.blas_threads):
            return _print_peak(_measure_peak(device, args), args)
    from ..bench.fits import check_fits

    check_fits(workloads, device)  # before anything is allocated: a refusal, not an allocation error
    name = device_name(device)
    timed = []
    try:
        for w in workloads:
            timed.append(_time_one(w, device, args))
    except MemoryError as exc:
        return _out_of_memory(exc, w, args)
    except Exception as exc:
        if not backend.is_out_of_memory(exc):
            raise
        return _out_of_memory(exc, w, args)
    if args.profile:
        return 0
    # the ceilings after the steps, so that their large arrays never disturb a step's timing
    peak = _load_peak(args, device)
    if not args.json:
        print(f"# {name}" + (" (CUDA graph replay)" if args.graph else ""))
        if peak:
            print(f"# ceilings: GEMM {peak['gemm_gflops_per_s']:,.1f} GFLOP/s, bandwidth "
                  f"{peak['bandwidth_gb_per_s']:,.1f} GB/s (float32{_threads(peak)})")
        print(f"{'workload':12s} {'device':6s} {'batch':>6s} {'median ms':>10s} {'min ms':>9s} {'reps':>5s} "
              f"{'GFLOP/s':>9s} {'% peak':>7s} {'FLOP/B':>7s} {'overhead ms':>11s}")
    for w, timing, timer_name, graph in timed:
        _report_one(w, timing, timer_name, graph, name, peak, args)
    return 0


def _time_one(w, device, args):
    """Time one workload's step: ``(w, timing, timer name, graph)``; with ``--profile`` print its profile instead."""
    from ..bench import measure, timer_for
    from ..bench.npdl_step import npdl_step
    from ..kernels.numba import threads  # imports no Numba: the tally of the adaptive thread counts
    from .train import blas_threads

    step, sync = npdl_step(w, device)
    if args.profile:
        _print_profile(w, step, sync, args)
        return w, None, None, None
    graph = None
    if args.graph:
        step, graph = _graph_step(w, step)
    timer = timer_for(device)
    before = threads.stats()
    with blas_threads(args.blas_threads):
        timing = measure(step, sync, min_seconds=args.min_seconds, timer=timer)
    # {"2": steps, "1": steps} by the thread count chosen (Numba's; with NPDL_ADAPTIVE_THREADS=1 BLAS's
    # too); {} where nothing was chosen (no parallel Numba loop ran, or NPDL_ADAPTIVE_THREADS=0)
    timing["threads"] = threads.stats_since(before)
    return w, timing, timer.name, graph


def _report_one(w, timing, timer_name, graph, name, peak, args) -> None:
    from ..bench.roofline import roofline_fields
    from ..bench.work import workload_work

    work = workload_work(w)
    fields = roofline_fields(work.flops, work.bytes, timing["median_ms"], peak)
    record = {"workload": w.name, "impl": "npdl", "device": args.device, "batch_size": w.batch_size,
              "device_name": name, **timing, "timer": timer_name, **fields}
    if peak:
        record.update(peak_gemm_gflops_per_s=peak["gemm_gflops_per_s"],
                      peak_bandwidth_gb_per_s=peak["bandwidth_gb_per_s"])
    if args.graph:
        record["graph"] = graph
    if args.json:
        print(json.dumps(record), flush=True)
        return
    fraction = "-" if fields["peak_fraction"] is None else f"{100 * fields['peak_fraction']:.1f}"
    overhead = "-" if fields["overhead_ms"] is None else f"{fields['overhead_ms']:.3f}"
    print(f"{w.name:12s} {args.device:6s} {w.batch_size:6d} {timing['median_ms']:10.3f} {timing['min_ms']:9.3f} "
          f"{timing['reps']:5d} {fields['gflops_per_s']:9.2f} {fraction:>7s} {fields['intensity']:7.1f} "
          f"{overhead:>11s}" + ("" if graph in (None, True) else "  (no graph)"), flush=True)


def _out_of_memory(exc, w, args) -> int:
    where = "GPU" if args.device == "gpu" else "CPU"
    print(f"npdl bench: error: {w.name}: out of {where} memory while building or timing the step "
          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'}); "
          f"try a smaller batch size", file=sys.stderr)
    return 2


def _threads(peak) -> str:
    if peak.get("device") == "gpu":
        return ", TF32 on" if peak.get("tf32") else ", TF32 off"
    return f", {peak.get('blas_threads')} BLAS threads" if peak.get("blas_threads") else ""


def _measure_peak(device, args) -> dict:
    from ..bench.peak import measure_peak

    return measure_peak(device, min_seconds=args.min_seconds if args.peak else min(args.min_seconds, 0.5),
                        elements=args.peak_elements, tf32=args.tf32)


def _load_peak(args, device) -> dict | None:
    """The ceilings to divide by: from ``--peak-file``, none with ``--no-peak``, else measured now."""
    from ..errors import NpdlError

    if args.no_peak:
        return None
    if not args.peak_file:
        from .train import blas_threads

        try:
            with blas_threads(args.blas_threads):
                return _measure_peak(device, args)
        except Exception as exc:  # noqa: BLE001  (the steps are still worth timing; say why the columns are empty)
            print(f"note: the ceilings could not be measured ({type(exc).__name__}: {exc}); no % peak or "
                  f"overhead columns", file=sys.stderr, flush=True)
            return None
    try:
        with open(args.peak_file) as f:
            peak = json.loads(f.read().strip().splitlines()[-1])
        float(peak["gemm_gflops_per_s"]), float(peak["bandwidth_gb_per_s"])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise NpdlError(f"--peak-file {args.peak_file}: not the output of `npdl bench --peak --json` "
                        f"({type(exc).__name__}: {exc})") from None
    if peak.get("device") not in (None, args.device):
        raise NpdlError(f"--peak-file {args.peak_file} holds the ceilings of the {peak.get('device')}, "
                        f"not of --device {args.device}")
    return peak


def _print_peak(peak, args) -> int:
    if args.json:
        print(json.dumps(peak), flush=True)
        return 0
    print(f"# {peak['device_name']} ({peak['device']}, float32{_threads(peak)})")
    print(f"GEMM            {peak['gemm_gflops_per_s']:12,.1f} GFLOP/s   (n = {peak['gemm_n']})")
    print(f"copy            {peak['copy_gb_per_s']:12,.1f} GB/s")
    print(f"triad           {peak['triad_gb_per_s']:12,.1f} GB/s      ({peak['stream_elements']:,} float32 per array)")
    print(f"ridge point     {peak['gemm_gflops_per_s'] / peak['bandwidth_gb_per_s']:12,.1f} FLOP/byte", flush=True)
    return 0


def _graph_step(w, step):
    """``(zero-argument step, captured?)``: the workload's step captured as a CUDA graph, or the plain one."""
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
                                   "--min-seconds are timed (on a GPU each step is timed with CUDA events), and "
                                   "place it against the machine's measured ceilings: achieved GFLOP/s (FLOPs "
                                   "counted from the layers' shapes), the fraction of the GEMM peak, the arithmetic "
                                   "intensity and the time neither ceiling explains (docs/roofline.md). "
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
    p.add_argument("--min-seconds", type=_seconds, default=1.5, metavar="S",
                   help="seconds of timed steps per workload (1.5); 0 times the minimum of 10 steps")
    p.add_argument("--blas-threads", type=_at_least_one, metavar="N", help="limit BLAS to N threads (default: its choice)")
    p.add_argument("--profile", type=_at_least_one, nargs="?", const=20, default=None, metavar="STEPS",
                   help="instead of timing whole steps, print each layer's forward and backward, the loss "
                        "and the optimizer: the median over STEPS steps (20)")
    p.add_argument("--peak", action="store_true",
                   help="measure the device's ceilings instead: the float32 GEMM rate (NumPy's BLAS, or cuBLAS "
                        "with TF32 off) and the streaming bandwidth (copy and triad); with --json one line")
    p.add_argument("--peak-file", metavar="FILE",
                   help="divide by the ceilings saved by `npdl bench --peak --json > FILE` instead of measuring "
                        "them at the start of this run")
    p.add_argument("--no-peak", action="store_true",
                   help="do not measure the ceilings (no %% peak and overhead columns)")
    p.add_argument("--peak-elements", type=_at_least_one, metavar="N",
                   help="float32 elements per array of the bandwidth measurement (default 2^25 on the CPU, 2^28 "
                        "on a GPU: far above the caches)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=run, parser=p)
