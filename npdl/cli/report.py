"""``npdl report RUN_DIR [RUN_DIR]``: one self-contained HTML page about a run, or two side by side."""

from __future__ import annotations


def run(args) -> int:
    from ..diagnostics.report import write_report
    from ..recipes import RECIPES

    published = {name: recipe.published for name, recipe in RECIPES.items()}
    path = write_report(args.runs, output=args.output, published=published, figures_dir=args.figures)
    print(f"wrote {path}" + (f" (figures in {args.figures})" if args.figures else ""))
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "report", help="write a run's report.html (curves, gradient flow, pictures, settings), or compare two runs",
        description="Write one self-contained HTML page (images embedded, opens offline) about the run folder of "
                    "'npdl train MODEL --out DIR': final figures against the published ones, learning curves, "
                    "gradient flow (from --diagnostics), the run's pictures, its settings and the environment. "
                    "Two folders give one page with both runs side by side (e.g. 'sda' with and without "
                    "pretraining). Needs matplotlib: pip install \"npdl-backprop[plot]\".")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="a run folder (--out DIR of npdl train); two to compare")
    p.add_argument("--output", "-o", metavar="FILE",
                   help="where to write the page (default: RUN_DIR/report.html, or RUN_DIR/comparison.html for two "
                        "runs, in the first folder)")
    p.add_argument("--figures", metavar="DIR",
                   help="also write each figure of the page as a PNG file into DIR (named after its caption)")
    p.set_defaults(func=run)
