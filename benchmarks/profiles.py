"""Where each workload's step goes, part by part, on one machine or several: ``docs/profiles.md``.

Runs ``npdl bench --workload W --profile STEPS --json`` for every workload, each in its own
process, keeps the results with the machine they were measured on (CPU model and features,
cores, Python, date, command) in a JSON file, and writes the page from one or more such
files: per workload, one table with the forward and backward of every layer, the loss and the
optimizer step, and each machine's milliseconds and share of the step side by side.

    python benchmarks/profiles.py --json benchmarks/results/2026-12-05-profiles-zen1.json \\
        --page-from benchmarks/results/2026-12-04-profiles-zen4.json   # measure here, page with both
    python benchmarks/profiles.py --render A.json,B.json                # the page from saved results only
    python benchmarks/profiles.py --workload mlp_b20 --steps 100 --json /tmp/p.json --out /tmp/profiles.md

The parts are timed one by one (each reading waits for the device), so their sum is a little
above the step time ``npdl bench`` measures: read the split, not the total. No results file is
written over: an existing ``--json`` is refused.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
from npdl.bench.timing import cpu_features, cpu_name  # noqa: E402
from npdl.bench.workloads import parse  # noqa: E402

NINE = "mlp_b20,sda_b1,sda_b128,da_b1,da_b20,lenet_b500,kcnn_b64,rnn_b50,lstm_b50"
PAGE = os.path.join(ROOT, "docs", "profiles.md")


def profile(workload: str, steps: int, device: str) -> dict:
    argv = [sys.executable, "-m", "npdl", "bench", "--workload", workload, "--device", device,
            "--profile", str(steps), "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")))
    if done.returncode != 0:
        raise SystemExit(f"{workload}: npdl bench failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine_of(results: list, command: str, steps: int) -> dict:
    """The saved form of one machine's profiles: what ran where, and the results."""
    features = cpu_features()  # family/model and SIMD flags: the model name alone does not say which kernels ran
    return {"cpu": cpu_name(), "cpu_features": features, "cores": os.cpu_count(),
            "python": platform.python_version(), "date": datetime.date.today().isoformat(),
            "command": command, "steps": steps, "results": results}


def _machine_line(m: dict) -> str:
    cpu = f"{m['cpu']} ({m['cpu_features']})" if m.get("cpu_features") else m["cpu"]
    return (f"{cpu}, {m['cores']} cores, Python {m['python']}, {m['date']}, median of {m['steps']} steps per "
            f"part. Command: `{m['command']}`.")


def page(machines: list) -> str:
    """The Markdown page: each workload's parts, with one ms and one share column per machine
    (``machines``: :func:`machine_of`'s dicts, given a short ``label`` each, e.g. ``"Zen 4"``)."""
    lines = ["# Where a step's time goes", "",
             "Each workload's training step split into its parts by `npdl bench --profile` (float32, default "
             "threads). Written by `benchmarks/profiles.py` from the results it keeps in `benchmarks/results/`; "
             "the parts are timed one by one, so their sum is a little above the step time `npdl bench` "
             "reports. A dense layer's weight gradient is applied by plain SGD from its factors in one GEMM "
             "([Training](training.md)), so that product is in \"optimizer step\", not in the layer's backward; "
             "at batch 1 (`sda_b1`) every dense layer but the first makes that update in its own backward pass, "
             "with its input gradient ([Training](training.md#the-update-in-the-backward-pass)). Profiles "
             "measured before that change (Zen 4's, 2026-12-04) have every update in \"optimizer step\".",
             "", "Machines:", ""]
    lines += [f"* **{m['label']}**: {_machine_line(m)}" for m in machines]
    lines.append("")
    workloads = []
    for m in machines:
        workloads += [r["workload"] for r in m["results"] if r["workload"] not in workloads]
    for w in workloads:
        runs = [next((r for r in m["results"] if r["workload"] == w), None) for m in machines]
        parts = []
        for r in runs:
            parts += [p for p in (r["parts_ms"] if r else ()) if p not in parts]
        head = "| part |" + "".join(f" {m['label']} ms | share |" for m in machines)
        lines += [f"## {w}", "", head, "|---|" + "---:|---:|" * len(machines)]
        for part in parts:
            cells = ""
            for r in runs:
                ms = r["parts_ms"].get(part) if r else None
                cells += " – | – |" if ms is None else f" {ms:.3f} | {100 * ms / r['sum_ms']:.1f}% |"
            lines.append(f"| {part} |{cells}")
        lines.append("| **sum** |" + "".join(" – | |" if r is None else f" **{r['sum_ms']:.3f}** | |" for r in runs))
        lines.append("")
    return "\n".join(lines)


def label_of(path: str) -> str:
    """A results file's default label: its name after ``profiles-`` (``2026-12-04-profiles-zen4.json``:
    ``zen4``), else its whole name without the extension."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem.split("profiles-", 1)[-1]


def load(paths: list) -> list:
    """The saved machines of ``paths``, each labelled by :func:`label_of` unless it names its own ``label``."""
    machines = []
    for path in paths:
        with open(path) as f:
            m = json.load(f)
        m.setdefault("label", label_of(path))
        machines.append(m)
    return machines


def _paths(text) -> list:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", default=NINE, help=f"NAME[,NAME...] (default: the nine, {NINE})")
    p.add_argument("--steps", type=int, default=200, help="steps timed per part (200)")
    p.add_argument("--device", default="cpu", help="cpu or gpu (cpu)")
    p.add_argument("--json", metavar="PATH", help="keep this machine's results here (refused if it exists); "
                                                  "the page is labelled by the name after 'profiles-'")
    p.add_argument("--label", help="this machine's column label on the page (default: from --json's name)")
    p.add_argument("--page-from", metavar="JSON[,JSON...]", help="saved results of other machines, their "
                                                                 "columns first on the page")
    p.add_argument("--render", metavar="JSON[,JSON...]", help="measure nothing: write the page from these")
    p.add_argument("--out", default=PAGE, help="the page to write (docs/profiles.md)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be at least 1")
    missing = [path for path in _paths(args.render) + _paths(args.page_from) if not os.path.exists(path)]
    if missing:
        p.error(f"no such results file: {', '.join(missing)}")
    if args.json and os.path.exists(args.json):
        p.error(f"--json {args.json} exists; results are kept, not written over: choose another name")
    if args.render:
        machines = load(_paths(args.render))
    else:
        try:
            workloads = [parse(w).name for w in args.workload.split(",") if w.strip()]
        except ValueError as exc:
            p.error(str(exc))
        results = []
        for w in workloads:
            results.append(profile(w, args.steps, args.device))
            print(f"{w}: {results[-1]['sum_ms']:.3f} ms", file=sys.stderr, flush=True)
        given = sys.argv[1:] if argv is None else list(argv)
        command = shlex.join(["python", "benchmarks/profiles.py", *given])
        this = machine_of(results, command, args.steps)
        this["label"] = args.label or (label_of(args.json) if args.json else "this machine")
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            with open(args.json, "w") as f:
                json.dump(this, f, indent=1)
                f.write("\n")
            print(f"wrote {args.json}")
        machines = load(_paths(args.page_from)) + [this]
    with open(args.out, "w") as f:
        f.write(page(machines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
