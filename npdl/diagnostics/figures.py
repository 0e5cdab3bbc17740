"""The report's figures, drawn with matplotlib (the ``[plot]`` extra) and returned as PNG bytes.

Each function takes the plain data of :mod:`npdl.diagnostics.read` and returns the PNG
(``None`` when there is nothing to draw), so the report can embed it without a file.
"""

from __future__ import annotations

import io

from ..plots import _pyplot

#: at most this many weights (lowest layers first) in a two-run comparison
COMPARED_WEIGHTS = 4


def _png(plt, fig, title=None) -> bytes:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _grid(plt, n, width=4.2, height=3.0, cols=3):
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def _log_axis(ax):
    """A log y axis labelled in plain numbers (``0.01``): TeX-like ``10^-2`` labels cost most of a figure's time."""
    from matplotlib import ticker

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(ticker.LogLocator(subs=(2.0, 5.0)))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _line(ax, xs, ys, label, log=False, **style):
    """Plot the points with a value (and, on a log axis, a positive one)."""
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None and (y > 0 or not log)]
    if pts:
        if len(pts) <= 30:  # a few points (one epoch) stay visible
            style = {"marker": "o", "markersize": 3, **style}
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, **style)
    return bool(pts)


def _x_axis(table):
    if "epoch" in table:
        return "epoch", [None if e is None else e + 1 for e in table["epoch"]]
    first = next(iter(table))
    return first, table[first]


def learning_curves(table, validations=(), title=None) -> bytes | None:
    """The columns of a ``history.csv`` against its epochs (or steps): losses, then errors and
    accuracies, then the learning rate, one panel each; and the patience rule's validation scores
    ``[(iteration, value)]`` against the step, when given."""
    xlabel, xs = _x_axis(table) if table else ("epoch", [])
    groups = [("loss", [k for k in table if "loss" in k]),
              ("error / accuracy", [k for k in table if "error" in k or "accuracy" in k]),
              ("learning rate", [k for k in table if k == "lr"])]
    groups = [(name, keys) for name, keys in groups if keys]
    if not groups and not validations:
        return None
    plt = _pyplot()
    fig, axes = _grid(plt, len(groups) + bool(validations), width=4.4, height=3.2)
    for ax, (name, keys) in zip(axes, groups):
        for key in keys:
            _line(ax, xs, table[key], key)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.legend(fontsize="small")
    if validations:
        _validation_panel(axes[-1], [("validation", validations)])
    return _png(plt, fig, title)


def _validation_panel(ax, runs):
    for label, validations in runs:
        _line(ax, [v[0] for v in validations], [v[1] for v in validations], label)
    ax.set_xlabel("step")
    ax.set_ylabel("validation score (patience rule)")
    ax.legend(fontsize="small")


def _is_weight(quantity: str) -> bool:
    return quantity.split("/", 1)[1].startswith("W")


def _panels(model_flow):
    """The gradient-flow panels present in one model's data: (title, log scale, {label: (steps, values)})."""
    def series(prefix, keep=lambda q: True):
        out = {}
        for quantity, layers in model_flow.items():
            if quantity.startswith(prefix) and keep(quantity):
                for layer, points in layers.items():
                    suffix = quantity[len(prefix):]
                    out[f"{layer}.{suffix}" if suffix else layer] = points
        return out

    weights = lambda q: q != "grad_norm/input" and _is_weight(q)  # noqa: E731
    panels = [("weight gradient norm |dL/dW|", True, series("grad_norm/", weights)),
              ("input gradient norm |dL/dx|", True, series("grad_norm/input")),
              ("saturated fraction of outputs", False, series("saturation")),
              ("update / weight |dW| / |W|", True, series("update_ratio/", _is_weight)),
              ("output standard deviation", False, series("activation_std"))]
    return [p for p in panels if p[2]]


def gradient_flow(model_flow, title=None) -> bytes | None:
    """One model's diagnostics over training: per-layer weight- and input-gradient norms (log scale),
    saturation, update-to-weight ratio and output spread, one line per layer."""
    panels = _panels(model_flow)
    if not panels:
        return None
    plt = _pyplot()
    fig, axes = _grid(plt, len(panels))
    for ax, (name, log, series) in zip(axes, panels):
        drawn = [_line(ax, steps, values, label, log) for label, (steps, values) in series.items()]
        if log and any(drawn):
            _log_axis(ax)
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel("step")
        ax.legend(fontsize="x-small")
    return _png(plt, fig, title)


def compare_gradients(runs, title=None) -> bytes | None:
    """Two or more runs of one network: the gradient norm of each of its lowest weights
    (up to :data:`COMPARED_WEIGHTS`) over training, one panel per weight, one line per run.
    ``runs`` is ``[(label, model_flow)]``."""
    keys = []
    for _, model_flow in runs:
        for quantity, layers in model_flow.items():
            if quantity.startswith("grad_norm/") and quantity != "grad_norm/input" and _is_weight(quantity):
                keys += [(layer, quantity) for layer in layers if (layer, quantity) not in keys]
    keys.sort(key=lambda k: int(k[0].split(".", 1)[0]))
    keys = keys[:COMPARED_WEIGHTS]
    if not keys:
        return None
    plt = _pyplot()
    fig, axes = _grid(plt, len(keys), cols=4, width=3.8)
    for ax, (layer, quantity) in zip(axes, keys):
        drawn = [_line(ax, *model_flow[quantity][layer], label, True)
                 for label, model_flow in runs if layer in model_flow.get(quantity, {})]
        if any(drawn):
            _log_axis(ax)
        ax.set_title(f"|dL/d{quantity.split('/', 1)[1]}| of layer {layer}", fontsize="medium")
        ax.set_xlabel("step")
        ax.legend(fontsize="small")
    return _png(plt, fig, title)


def compare_curves(runs, title=None) -> bytes | None:
    """Two or more runs' training errors (or losses, without errors) per epoch on common axes, and
    their patience-rule validation scores per step when they have them.
    ``runs`` is ``[(label, history table, validations)]``."""
    curves = [(label, table) for label, table, _ in runs if table]
    validated = [(label, validations) for label, _, validations in runs if validations]
    if not curves and not validated:
        return None
    plt = _pyplot()
    fig, axes = _grid(plt, bool(curves) + bool(validated), width=5.0, height=3.4)
    if curves:
        ax = axes[0]
        for label, table in curves:
            xlabel, xs = _x_axis(table)
            keys = [k for k in table if "error" in k] or [k for k in table if "loss" in k]
            for key in keys:
                _line(ax, xs, table[key], f"{label}: {key}")
            ax.set_xlabel(xlabel)
        ax.legend(fontsize="small")
    if validated:
        _validation_panel(axes[-1], validated)
    return _png(plt, fig, title)
