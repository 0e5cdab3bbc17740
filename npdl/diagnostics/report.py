"""One self-contained HTML page about one run, or two runs side by side (``npdl report``).

The page embeds every image as base64 PNG and loads nothing from anywhere, so it opens
offline and can be mailed as one file. It shows, per run: the final figures next to the
published ones, the learning curves (``history.csv``), the gradient flow of each model
(``diagnostics.jsonl``), the pictures the run drew (filters, reconstructions, 2-D codes),
its settings (the checkpoints' options and ``run.json``), and the environment of the
machine writing the page (``npdl info``). Two runs of one network (say ``sda`` with and
without pretraining) also get their lowest layers' gradient norms and their errors on
common axes. Drawing needs matplotlib (``pip install "npdl-backprop[plot]"``).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re

from . import figures
from .errors import DiagnosticsError
from .read import load_run

REPORT, COMPARISON = "report.html", "comparison.html"

_STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:110em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}h3{font-size:1em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;
vertical-align:top}th{background:#f3f3f3}.runs{display:flex;gap:2em;flex-wrap:wrap}.run{flex:1;min-width:30em}
img{max-width:100%}pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.85em}figure{margin:.6em 0}
figcaption{font-size:.85em;color:#555}"""

_RESULT_ROWS = (("epochs", "epochs (steps for step-based recipes)", None), ("seconds", "seconds", "{:.1f}"),
                ("train_loss", "final train loss", "{:.6g}"), ("valid_error", "validation error", "pct"),
                ("test_error", "test error", "pct"), ("test_loss", "test loss", "{:.6g}"),
                ("best_epoch", "best epoch", None), ("stopped_early", "stopped early", None))


def _fmt(value, how) -> str:
    if value is None:
        return "-"
    if how == "pct":
        return f"{100 * value:.2f}%"
    return how.format(value) if how else str(value)


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _file_img(path, run_name) -> str:
    with open(path, "rb") as f:
        png = f.read()
    name = os.path.basename(path)
    caption = f"<figcaption>{html.escape(name)}</figcaption></figure>"
    return _img(png, f"{name} ({run_name})").replace("</figure>", caption)


def _table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pre(value) -> str:
    return f"<pre>{html.escape(json.dumps(value, indent=2, default=str))}</pre>"


def _columns(runs, render) -> str:
    """One column per run (side by side), each filled by ``render(run)``."""
    cells = "".join(f'<div class="run"><h3>{html.escape(run.name)}</h3>{render(run)}</div>' for run in runs)
    return f'<div class="runs">{cells}</div>'


def _results(runs, published) -> str:
    rows = [[label] + [_fmt(run.result.get(key), how) for run in runs] for key, label, how in _RESULT_ROWS
            if any(run.result.get(key) is not None for run in runs)]
    texts = {run.recipe: published.get(run.recipe) for run in runs if run.recipe and published.get(run.recipe)}
    rows.append(["model"] + [run.recipe or "?" for run in runs])
    out = _table(["", *[run.name for run in runs]], rows)
    for recipe, text in texts.items():
        out += f"<p><b>published ({html.escape(recipe)}):</b> {html.escape(text)}</p>"
    return out


def _gradient_flow(run) -> str:
    if not run.flow:
        return "<p>no diagnostics recorded (train with <code>--diagnostics</code>)</p>"
    return "".join(_img(figures.gradient_flow(model_flow, title=model), f"gradient flow of {model} ({run.name})")
                   for model, model_flow in run.flow.items())


def _pictures(run) -> str:
    return "".join(_file_img(p, run.name) for p in run.pictures) or "<p>no pictures</p>"


def _settings(run) -> str:
    out = _table(["option", "value"], sorted(run.options.items())) if run.options else "<p>no saved options</p>"
    if run.manifest is not None:
        out += "<p>run.json:</p>" + _pre(run.manifest)
    return out


def _environment(probe: bool = True) -> str:
    from ..environment import collect

    try:
        info = collect(probe=probe)
    except Exception as exc:  # a half-broken installation still gets its report
        return f"<p>npdl info failed: {html.escape(str(exc))}</p>"
    return "<p>npdl info of the machine that wrote this page:</p>" + _pre(info)


def _comparison(runs) -> str:
    models = [run.main_model for run in runs]
    parts = []
    if all(models):
        label = " vs ".join(f"{run.name} ({m})" for run, m in zip(runs, models))
        parts.append(_img(figures.compare_gradients([(run.name, run.flow[m]) for run, m in zip(runs, models)],
                                                    title=f"lowest layers' gradient norms: {label}"),
                          "gradient norms compared"))
    parts.append(_img(figures.compare_curves([(run.name, run.history, run.validations) for run in runs],
                                             title="errors"), "errors compared"))
    return "".join(parts)


def render(runs, published=None, environment=True, probe=True) -> str:
    """The page for ``runs`` (:class:`~npdl.diagnostics.read.Run`, one or more) as an HTML string."""
    published = published or {}
    title = "npdl run report: " + " vs ".join(f"{run.recipe or '?'} ({run.name})" for run in runs)
    sections = [("Result", _results(runs, published))]
    if len(runs) > 1:
        sections.append(("Side by side", _comparison(runs)))
    sections += [
        ("Learning curves", _columns(runs, lambda r: _img(figures.learning_curves(r.history, r.validations),
                                                          f"learning curves ({r.name})") or "<p>no history.csv</p>")),
        ("Gradient flow", _columns(runs, _gradient_flow)),
        ("Pictures", _columns(runs, _pictures)),
        ("Settings", _columns(runs, _settings))]
    if environment:
        sections.append(("Environment", _environment(probe)))
    body = "".join(f"<h2>{html.escape(name)}</h2>{content}" for name, content in sections)
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n")


def write_figures(page: str, folder) -> list[str]:
    """Write every image of ``page`` into ``folder`` as a PNG file named after its caption
    (``"gradient norms compared"`` -> ``gradient-norms-compared.png``); returns the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for alt, data in re.findall(r'alt="([^"]*)" src="data:image/png;base64,([^"]+)"', page):
        name = re.sub(r"[^a-z0-9]+", "-", html.unescape(alt).lower()).strip("-") or "figure"
        name = name.replace("-png-", "-")
        path = os.path.join(folder, name + ".png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        paths.append(path)
    return paths


def write_report(folders, output=None, published=None, environment=True, probe=True, figures_dir=None) -> str:
    """Write the page for the run folders ``folders`` (one or two) and return its path.

    ``output`` defaults to ``<first folder>/report.html`` (one run) or ``comparison.html`` (more);
    ``published`` maps recipe names to their published results; ``environment=False`` leaves out
    ``npdl info`` (``probe=False``: without running a kernel to learn Numba's threading layer);
    ``figures_dir`` also gets every image as a PNG file (:func:`write_figures`).
    Raises :class:`DiagnosticsError` without matplotlib or for a folder that is no run.
    """
    folders = [os.fspath(f) for f in ([folders] if isinstance(folders, (str, os.PathLike)) else folders)]
    if not folders:
        raise DiagnosticsError("npdl report: give one run folder, or two to compare")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise DiagnosticsError('npdl report draws with matplotlib: pip install "npdl-backprop[plot]"') from None
    runs = [load_run(f) for f in folders]
    page = render(runs, published, environment, probe)
    output = os.fspath(output) if output else os.path.join(folders[0], REPORT if len(runs) == 1 else COMPARISON)
    with open(output + ".tmp", "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(output + ".tmp", output)
    if figures_dir is not None:
        write_figures(page, figures_dir)
    return output
