"""Pictures through matplotlib (the ``[plot]`` extra), written straight to PNG files.

matplotlib is imported inside each function, with the non-interactive Agg
backend, so importing npdl never needs it and no window is ever opened.
"""

from __future__ import annotations


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError('plots need matplotlib: pip install "npdl-backprop[plot]"') from exc
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def training_curves(history, path, title=None) -> str:
    """Loss (train and validation) and, when recorded, error/accuracy per epoch, side by side."""
    plt = _pyplot()
    epochs = [e + 1 for e in history.epoch]
    metric_keys = [k for k in ("error", "accuracy") if k in history or f"val_{k}" in history]
    fig, axes = plt.subplots(1, 1 + bool(metric_keys), figsize=(10 if metric_keys else 5, 3.6), squeeze=False)
    ax = axes[0][0]
    for key, label in (("loss", "train"), ("val_loss", "validation")):
        if key in history:
            ax.plot(epochs, history[key], label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    if metric_keys:
        ax = axes[0][1]
        for key in metric_keys:
            for prefix, label in (("", "train"), ("val_", "validation")):
                if prefix + key in history:
                    ax.plot(epochs, history[prefix + key], label=f"{label} {key}")
        ax.set_xlabel("epoch")
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
