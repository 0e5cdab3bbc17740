"""Time two checkouts of npdl against each other in one sitting: is the new code faster or slower?

``--against REV`` checks the git revision REV out into a temporary worktree (``git worktree
add``); the new side is this working tree as it is (uncommitted changes included), or
``--new REV``, checked out the same way. Every round times every workload under both
checkouts, one ``npdl bench --json`` subprocess per cell with ``PYTHONPATH`` (and the working
directory) pointing at that checkout and the environment otherwise identical; the two sides
take turns going first (new, old / old, new / ...), so a drift in the machine's load hits both.
Each side times its own workload definitions (``npdl.bench``) with its own code.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/ab.py --against HEAD~1
    python benchmarks/ab.py --against v0.1 --new HEAD --workload mlp_b20,sda_b1 --rounds 7 --threads 1

The result is new / old per workload and round (below 1: the new code is faster), the median
and the max over rounds (the max is the worst the new code did in any round), written as a
markdown report and a CSV of every measurement (``benchmarks/results/<date>-ab-<old>.md/.csv``
unless ``--out PREFIX``) with the CPU model, the thread settings, both revisions and the command.
Only ratios from one sitting compare: another day, another load.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

#: the environment this script was started with: importing npdl (below) sets variables of its own
#: (OPENBLAS_THREAD_TIMEOUT), which each side's process must set, or not, for itself
START_ENV = dict(os.environ)

from run import ROOT, free_prefix, machine  # noqa: E402  (benchmarks/run.py: the checkout's root, a results
# name that keeps the earlier ones, the machine description)

from npdl.bench.workloads import expand  # noqa: E402

#: the workloads of the README's benchmark table
README_WORKLOADS = "mlp_b20,sda_b1,sda_b128,da_b1,da_b20,lenet_b500,kcnn_b64,rnn_b50,lstm_b50"
#: environment variables that set thread counts; ``--threads N`` sets all of them for both sides
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
#: other variables that change what is timed, recorded in the report when set
RECORDED_VARS = THREAD_VARS + ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_THREAD_TIMEOUT", "NPDL_KERNELS",
                               "NPDL_MALLOC", "NPDL_NO_CBLAS", "NUMBA_DISABLE_JIT", "CUPY_TF32")

#: run in the child: import npdl from the checkout given as argv[1] (refusing any other copy,
#: e.g. an editable install of another checkout), then ``python -m npdl`` with the rest of argv
BOOTSTRAP = """import os, runpy, sys
root = os.path.realpath(sys.argv[1])
import npdl
if not os.path.realpath(npdl.__file__).startswith(root + os.sep):
    sys.exit(f"npdl was imported from {npdl.__file__}, not from the checkout {root}")
sys.argv = ["npdl"] + sys.argv[2:]
runpy.run_module("npdl", run_name="__main__", alter_sys=True)
"""


def git(*args, cwd=ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


class Checkout:
    """One side of the A/B: a folder holding an npdl checkout, its revision and how it was made."""

    def __init__(self, label, root, rev, describe, worktree=False):
        self.label, self.root, self.rev, self.describe, self.worktree = label, root, rev, describe, worktree

    @classmethod
    def working_tree(cls, label):
        rev = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "npdl"))
        return cls(label, ROOT, rev, f"working tree at {rev[:10]}" + (" with uncommitted changes in npdl/" if dirty
                                                                      else ""))

    @classmethod
    def of_revision(cls, label, spec, parent):
        rev = git("rev-parse", "--verify", f"{spec}^{{commit}}")
        root = os.path.join(parent, label)
        git("worktree", "add", "--detach", "--quiet", root, rev)
        subject = git("log", "-1", "--format=%s", rev)
        return cls(label, root, rev, f"{spec} = {rev[:10]} ({subject[:70]})", worktree=True)

    def remove(self):
        if self.worktree:
            try:
                git("worktree", "remove", "--force", self.root)
            except RuntimeError as exc:
                print(f"note: {exc}", file=sys.stderr)


def child_env(checkout, threads):
    """The same environment for both sides but for where npdl comes from."""
    env = dict(START_ENV)
    env["PYTHONPATH"] = checkout.root + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") \
        else checkout.root
    if threads is not None:
        env.update({var: str(threads) for var in THREAD_VARS})
    return env


def time_cell(checkout, workload, device, min_seconds, threads) -> dict:
    """One ``npdl bench --json`` of ``workload`` under ``checkout``, in a fresh process."""
    argv = [sys.executable, "-c", BOOTSTRAP, checkout.root, "bench", "--workload", workload, "--device", device,
            "--json", "--min-seconds", str(min_seconds)]
    done = subprocess.run(argv, capture_output=True, text=True, env=child_env(checkout, threads), cwd=checkout.root)
    if done.returncode != 0:
        raise RuntimeError(f"{checkout.label} {workload} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(rows, workloads) -> list:
    """Per workload: both sides' median of round medians, the new/old ratio of every round in which
    both sides ran, their median and their max."""
    out = []
    for workload in workloads:
        by_side = {side: {r["round"]: r["median_ms"] for r in rows if r["workload"] == workload and r["side"] == side}
                   for side in ("new", "old")}
        rounds = sorted(set(by_side["new"]) & set(by_side["old"]))
        ratios = [by_side["new"][k] / by_side["old"][k] for k in rounds]
        out.append({"workload": workload,
                    "new_ms": statistics.median(by_side["new"].values()) if by_side["new"] else None,
                    "old_ms": statistics.median(by_side["old"].values()) if by_side["old"] else None,
                    "ratios": ratios,
                    "median_ratio": statistics.median(ratios) if ratios else None,
                    "max_ratio": max(ratios) if ratios else None})
    return out


def _f(value, fmt):
    return "-" if value is None else format(value, fmt)


def report(summary, info, sides, settings) -> str:
    """The markdown report: the sitting's facts, then one line per workload."""
    new, old = sides
    lines = ["# npdl A/B: new / old step time", "",
             f"- command: `{settings['command']}`",
             f"- new: {new.describe}",
             f"- old: {old.describe}",
             f"- machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, {info['platform']}",
             f"- date: {info['date']}",
             f"- device: {settings['device']}; rounds: {settings['rounds']}; timed seconds per cell: "
             f"{settings['min_seconds']}; one subprocess per cell, the sides alternate going first",
             "- threads and environment (the same for both sides): "
             + (", ".join(f"{k}={v}" for k, v in settings["env"].items()) or "none of "
                + ", ".join(RECORDED_VARS) + " set (each library's default threads)"),
             "",
             "| workload | new median ms | old median ms | new / old per round | median | max |",
             "|---|---:|---:|---|---:|---:|"]
    for s in summary:
        per_round = ", ".join(f"{r:.3f}" for r in s["ratios"]) or "-"
        lines.append(f"| {s['workload']} | {_f(s['new_ms'], '.3f')} | {_f(s['old_ms'], '.3f')} | {per_round} | "
                     f"{_f(s['median_ratio'], '.3f')} | {_f(s['max_ratio'], '.3f')} |")
    lines += ["", "new / old below 1: the new code is faster. Medians are over rounds of each cell's median step "
                  "time; max is the new code's worst round."]
    return "\n".join(lines) + "\n"


def write_csv(path, rows, sides, info):
    keys = ["workload", "side", "rev", "round", "order", "median_ms", "min_ms", "reps", "batch_size", "device",
            "device_name", "timer"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys + ["cpu", "cores"], extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "rev": sides[0 if r["side"] == "new" else 1].rev, "cpu": info["cpu"],
                             "cores": info["cores"]})


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against", required=True, metavar="REV", help="the old side: a git revision (HEAD~1, a tag...)")
    p.add_argument("--new", metavar="REV", help="the new side as a git revision (default: this working tree as is)")
    p.add_argument("--workload", default=README_WORKLOADS, help="NAME[,NAME...] (default: the README's nine)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--rounds", type=int, default=5, help="rounds; each times every workload on both sides (5)")
    p.add_argument("--min-seconds", type=float, default=1.5, help="timed seconds per cell and round (1.5)")
    p.add_argument("--threads", type=int, metavar="N",
                   help=f"set {', '.join(THREAD_VARS)} to N for both sides (default: as inherited)")
    p.add_argument("--out", metavar="PREFIX",
                   help="write PREFIX.md and PREFIX.csv (default benchmarks/results/<date>-ab-<old rev>, or -2, "
                        "-3 ... after it when that run is there already)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out's files")
    args = p.parse_args(argv)
    if args.out and not args.overwrite and any(os.path.exists(args.out + ext) for ext in (".md", ".csv")):
        p.error(f"--out {args.out}: {args.out}.md or .csv exists; choose another prefix, or add --overwrite")
    if args.rounds < 1 or args.min_seconds <= 0 or (args.threads is not None and args.threads < 1):
        p.error("--rounds and --threads must be positive integers, --min-seconds a positive number")
    try:
        args.workloads = [w.name for w in expand(args.workload.split(","))]
    except ValueError as exc:
        p.error(str(exc))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    info = machine()
    env = {var: START_ENV[var] for var in RECORDED_VARS if var in START_ENV}
    if args.threads is not None:
        env.update({var: str(args.threads) for var in THREAD_VARS})
    command = " ".join(shlex.quote(a) for a in ["python", os.path.relpath(__file__, ROOT),
                                                *(sys.argv[1:] if argv is None else argv)])
    with tempfile.TemporaryDirectory(prefix="npdl-ab-") as parent:
        sides = []
        try:
            sides.append(Checkout.of_revision("new", args.new, parent) if args.new else Checkout.working_tree("new"))
            sides.append(Checkout.of_revision("old", args.against, parent))
            rows = run_rounds(args, sides)
        finally:
            for side in sides:
                side.remove()
    summary = summarise(rows, args.workloads)
    settings = {"command": command, "device": args.device, "rounds": args.rounds, "min_seconds": args.min_seconds,
                "env": env}
    text = report(summary, info, sides, settings)
    prefix = args.out or os.path.join(ROOT, "benchmarks", "results", f"{info['date'][:10]}-ab-{sides[1].rev[:10]}")
    if not args.out:  # a second run on the same day against the same revision keeps the first one's files
        prefix = free_prefix(prefix, (".md", ".csv"))
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    with open(prefix + ".md", "w") as f:
        f.write(text)
    write_csv(prefix + ".csv", rows, sides, info)
    print(text + f"\nwrote {prefix}.md and {prefix}.csv")
    missing = [s["workload"] for s in summary if not s["ratios"]]
    if missing:
        print(f"note: no ratio for {', '.join(missing)} (a side failed; see the notes above)", file=sys.stderr)
    return 1 if len(missing) == len(summary) else 0


def run_rounds(args, sides) -> list:
    rows = []
    for round_ in range(1, args.rounds + 1):
        for workload in args.workloads:
            order = sides if round_ % 2 else sides[::-1]  # new first in odd rounds, old first in even ones
            for position, side in enumerate(order, 1):
                try:
                    r = time_cell(side, workload, args.device, args.min_seconds, args.threads)
                except RuntimeError as exc:  # e.g. a workload the old revision does not know: note it, go on
                    print(f"note: {exc}", file=sys.stderr, flush=True)
                    continue
                r.update(workload=workload, side=side.label, round=round_, order=position)
                rows.append(r)
                print(f"round {round_}: {workload:10s} {side.label:3s} median {r['median_ms']:9.3f} ms  "
                      f"min {r['min_ms']:9.3f} ms  ({r['reps']} reps)", file=sys.stderr, flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
