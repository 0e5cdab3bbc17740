"""Markdown tables from the committed results files in ``benchmarks/results/``.

The site's pages print these at build time (markdown-exec), so a figure on the site is
always the one in the file it names. Three kinds of file:

* a benchmark run (``benchmarks/run.py``): one row per (workload, implementation, round)
  with ``median_ms``; the table holds each implementation's median over the rounds;
* an A/B report (``benchmarks/ab.py``): rows per (workload, side ``old``/``new``, round),
  with the command in the ``.md`` report written beside the CSV;
* the reproductions (``reproductions.csv``): one row per ``npdl train`` run, as measured.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
PEERS = ("torch", "jax")
NAMES = {"npdl": "npdl", "torch": "PyTorch", "jax": "JAX"}


def rows(name: str) -> list[dict]:
    with open(RESULTS / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def machine(records: list[dict]) -> str:
    """The machine of a results file, from its ``cpu``/``cores`` columns, with the CPU's family, model
    and features where the file has them (``cpu_features``)."""
    def one(r):
        features = r.get("cpu_features")
        return f"{r.get('cpu', '?')}" + (f" ({features})" if features else "") + f", {r.get('cores', '?')} cores"

    return "; ".join(sorted({one(r) for r in records}))


def versions(records: list[dict]) -> str:
    found = sorted({r["version"] for r in records if r.get("version")})
    return "; ".join(found) if found else "npdl only"


def _table(header: list[str], body: list[list[str]], align: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def benchmark(name: str, targets: dict | None = None) -> str:
    """The table of a ``benchmarks/run.py`` CSV: per workload, each implementation's median over the
    rounds of its per-round median step time (ms), and npdl's ratio to the fastest peer with the
    per-round ratios. ``targets`` maps a workload to the target it was measured against."""
    records = rows(name)
    times: dict = defaultdict(lambda: defaultdict(dict))  # workload -> impl -> round -> ms
    for r in records:
        times[r["workload"]][r["impl"]][r["round"]] = float(r["median_ms"])
    impls = [i for i in ("npdl",) + PEERS if any(i in t for t in times.values())]
    header = ["workload"] + [f"{NAMES[i]} ms" for i in impls] + ["npdl / fastest peer", "rounds"]
    if targets:
        header.append("target")
    body = []
    for workload, by_impl in times.items():
        med = {i: statistics.median(by_impl[i].values()) for i in impls if by_impl.get(i)}
        peers = [p for p in PEERS if p in med]
        row = [f"`{workload}`"] + [_ms(med[i]) if i in med else "" for i in impls]
        if "npdl" in med and peers:
            ratio = med["npdl"] / min(med[p] for p in peers)
            per_round = [by_impl["npdl"][k] / min(by_impl[p][k] for p in peers if k in by_impl[p])
                         for k in sorted(by_impl["npdl"]) if all(k in by_impl[p] for p in peers)]
            row += [f"{ratio:.2f}x", ", ".join(f"{x:.2f}" for x in per_round)]
        else:
            row += ["", ""]
        if targets:
            row.append(targets.get(workload, ""))
        body.append(row)
    align = ["l"] + ["r"] * (len(impls) + 1) + ["l"] * (2 if targets else 1)
    return _table(header, body, align)


def ab(name: str) -> str:
    """The table of a ``benchmarks/ab.py`` CSV: per workload, the old and new medians over the rounds,
    the new/old ratio of each round (the two sides of a round run back to back) and its median."""
    records = rows(name)
    times: dict = defaultdict(lambda: defaultdict(dict))  # workload -> side -> round -> ms
    revs = {}
    for r in records:
        times[r["workload"]][r["side"]][r["round"]] = float(r["median_ms"])
        revs[r["side"]] = r["rev"][:10]
    body = []
    for workload, sides in times.items():
        old, new = sides["old"], sides["new"]
        ratios = [new[k] / old[k] for k in sorted(new, key=int) if k in old]
        body.append([f"`{workload}`", _ms(statistics.median(old.values())), _ms(statistics.median(new.values())),
                     ", ".join(f"{x:.3f}" for x in ratios), f"{statistics.median(ratios):.3f}"])
    header = [f"workload", f"old ({revs.get('old', '?')}) ms", f"new ({revs.get('new', '?')}) ms",
              "new / old per round", "median"]
    return _table(header, body, ["l", "r", "r", "l", "r"])


def ab_command(name: str) -> str:
    """The ``- command:`` line of the ``.md`` report written with an A/B CSV."""
    report = RESULTS / name.replace(".csv", ".md")
    for line in report.read_text(encoding="utf-8").splitlines():
        if line.startswith("- command:"):
            return line.split(":", 1)[1].strip()
    return ""


def ab_files() -> list[str]:
    return sorted(p.name for p in RESULTS.glob("*-ab-*.csv"))


def reproductions(name: str = "reproductions.csv", columns=None) -> str:
    """The reproductions table: one row per model run by ``npdl train``."""
    records = rows(name)
    columns = columns or ["model", "published", "measured", "epochs", "wall time", "target"]
    body = []
    for r in records:
        cells = {"model": f"`{r['model']}`", "published": r["published"], "measured": r["measured"],
                 "epochs": r["epochs"], "wall time": _duration(float(r["seconds"])), "target": r["target"],
                 "command": f"`{r['command']}`", "notes": r["notes"]}
        body.append([cells[c] for c in columns])
    return _table(columns, body, ["l"] * len(columns))


def reproduction_commands(name: str = "reproductions.csv") -> str:
    records = rows(name)
    return "\n".join(f"* `{r['model']}`: `{r['command']}`" + (f". {r['notes']}" if r["notes"] else "")
                     for r in records)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:g} s"
    return f"{seconds / 60:.1f} min"
