"""Where each workload's step goes, part by part, written as a Markdown page (``docs/profiles.md``).

Runs ``npdl bench --workload W --profile STEPS --json`` for every workload, each in its own
process, and writes one table per workload: the forward and backward of every layer, the
loss and the optimizer step, with their share of the step. The machine (CPU model and core
count) and the command head the page, so a reader knows what the figures are of.

    python benchmarks/profiles.py                         # the nine workloads, 200 steps each
    python benchmarks/profiles.py --workload mlp_b20,lstm_b50 --steps 100 --out /tmp/profiles.md

The parts are timed one by one (each reading waits for the device), so their sum is a little
above the step time ``npdl bench`` measures: read the split, not the total.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
from npdl.bench.timing import cpu_features, cpu_name  # noqa: E402
from npdl.bench.workloads import parse  # noqa: E402

NINE = "mlp_b20,sda_b1,sda_b128,da_b1,da_b20,lenet_b500,kcnn_b64,rnn_b50,lstm_b50"


def profile(workload: str, steps: int, device: str) -> dict:
    argv = [sys.executable, "-m", "npdl", "bench", "--workload", workload, "--device", device,
            "--profile", str(steps), "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")))
    if done.returncode != 0:
        raise SystemExit(f"{workload}: npdl bench failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def page(results: list, command: str, steps: int) -> str:
    features = cpu_features()  # family/model and SIMD flags: the model name alone does not say which kernels ran
    cpu = f"{cpu_name()} ({features})" if features else cpu_name()
    lines = ["# Where a step's time goes", "",
             f"Each workload's training step split into its parts by `npdl bench --profile` (median of {steps} "
             "steps per part, float32, default threads). Written by `benchmarks/profiles.py`; the parts are "
             "timed one by one, so their sum is a little above the step time `npdl bench` reports. A dense "
             "layer's weight gradient is applied by plain SGD from its factors in one GEMM "
             "([Training](training.md)), so that product is in \"optimizer step\", not in the layer's backward.", "",
             f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
             f"{datetime.date.today().isoformat()}. Command: `{command}`.", ""]
    for r in results:
        total = r["sum_ms"]
        lines += [f"## {r['workload']}", "", "| part | ms | share |", "|---|---:|---:|"]
        lines += [f"| {name} | {ms:.3f} | {100 * ms / total:.1f}% |" for name, ms in r["parts_ms"].items()]
        lines += [f"| **sum** | **{total:.3f}** | |", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", default=NINE, help=f"NAME[,NAME...] (default: the nine, {NINE})")
    p.add_argument("--steps", type=int, default=200, help="steps timed per part (200)")
    p.add_argument("--device", default="cpu", help="cpu or gpu (cpu)")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "profiles.md"), help="the page to write")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be at least 1")
    try:
        workloads = [parse(w).name for w in args.workload.split(",") if w.strip()]
    except ValueError as exc:
        p.error(str(exc))
    results = []
    for w in workloads:
        results.append(profile(w, args.steps, args.device))
        print(f"{w}: {results[-1]['sum_ms']:.3f} ms", file=sys.stderr, flush=True)
    command = "python benchmarks/profiles.py" + ("" if argv is None and len(sys.argv) == 1 else
                                                  " " + " ".join(sys.argv[1:] if argv is None else argv))
    with open(args.out, "w") as f:
        f.write(page(results, command, args.steps) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
