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


def _save(plt, fig, path, suptitle=None) -> str:
    """Lay out, write ``path`` as PNG and free the figure (pyplot keeps every open one alive)."""
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def html_img(source, alt: str = "", width: int | None = None) -> str:
    """An ``<img>`` tag carrying a PNG inline (base64), for a page that must hold its own pictures
    (the tutorials, whose code blocks markdown-exec runs at build time).

    ``source`` is a matplotlib figure (written as PNG at 100 dpi, then closed), a file-like object
    holding PNG bytes (the ``io.BytesIO`` passed as ``path`` to :func:`tile_images` and the other
    functions here, which write to it as they would to a file) or the PNG bytes themselves.
    """
    import base64
    import html

    if hasattr(source, "savefig"):
        import io

        plt = _pyplot()
        buffer = io.BytesIO()
        source.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(source)
        source = buffer
    data = source.getvalue() if hasattr(source, "getvalue") else bytes(source)
    if not data.startswith(b"\x89PNG"):
        raise ValueError("html_img: expected a PNG (a figure, a buffer a plot was written to, or PNG bytes)")
    size = "" if width is None else f' width="{int(width)}"'
    return (f'<img alt="{html.escape(alt)}"{size} '
            f'src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">')


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
    return _save(plt, fig, path, title)


# ------------------------------------------------------------------ autoencoder pictures

def _unit_scale(a):
    """Each image scaled to [0, 1] on its own (the Theano tutorials' ``tile_raster_images``)."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    lo = a.reshape(len(a), -1).min(axis=1).reshape((-1,) + (1,) * (a.ndim - 1))
    hi = a.reshape(len(a), -1).max(axis=1).reshape((-1,) + (1,) * (a.ndim - 1))
    return (a - lo) / np.maximum(hi - lo, 1e-8)


def tile_images(images, path, image_shape=(28, 28), n_cols=10, title=None, scale=True) -> str:
    """A grid of images (n, H*W) or (n, H, W), e.g. the first layer's filters (the columns of ``W``,
    transposed to rows), each scaled to [0, 1] (``scale``), one pixel of black between tiles."""
    import numpy as np

    plt = _pyplot()
    imgs = np.asarray(images, dtype=np.float64).reshape((-1,) + tuple(image_shape))
    if scale:
        imgs = _unit_scale(imgs)
    n = len(imgs)
    n_cols = min(n_cols, n)
    n_rows = -(-n // n_cols)
    H, W = image_shape
    canvas = np.zeros((n_rows * (H + 1) - 1, n_cols * (W + 1) - 1))
    for i, img in enumerate(imgs):
        r, c = divmod(i, n_cols)
        canvas[r * (H + 1):r * (H + 1) + H, c * (W + 1):c * (W + 1) + W] = img
    fig, ax = plt.subplots(figsize=(max(2.0, n_cols * 0.5), max(2.0, n_rows * 0.5 + (0.4 if title else 0))))
    ax.imshow(canvas, cmap="gray", interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return _save(plt, fig, path)


def image_rows(rows, path, image_shape=(28, 28), title=None) -> str:
    """Rows of images with a label each, e.g. ``[("original", x), ("corrupted", x~), ("reconstructed", z)]``."""
    import numpy as np

    plt = _pyplot()
    rows = [(label, np.asarray(imgs, dtype=np.float64).reshape((-1,) + tuple(image_shape))) for label, imgs in rows]
    n_cols = max(len(imgs) for _, imgs in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(n_cols * 0.9, len(rows) * 1.0 + 0.3), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(imgs):
                ax.imshow(imgs[c], cmap="gray", interpolation="nearest")
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center")
    return _save(plt, fig, path, title)


def code_scatter(codes, labels, path, title=None) -> str:
    """2-D codes (n, 2) as points coloured by their label, with a colour bar."""
    import numpy as np

    plt = _pyplot()
    codes, labels = np.asarray(codes), np.asarray(labels)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    points = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=2, alpha=0.7)
    fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel("code 1")
    ax.set_ylabel("code 2")
    if title:
        ax.set_title(title)
    return _save(plt, fig, path)


def line_curves(series, path, xlabel="epoch", ylabel="cost", title=None) -> str:
    """One line per ``series`` entry (name -> list of values per epoch), e.g. per-layer pretraining costs."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, values in series.items():
        ax.plot(range(1, len(values) + 1), values, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(plt, fig, path)


def sequence_frames(frames, path, title=None, n_cols=3) -> str:
    """Target and predicted curves at several points of training, one panel per frame (the Keras LSTM
    regressor tutorial's animation frames): ``frames`` is a list of ``(step, x, target, predicted)``
    with 1-D ``x``, ``target`` and ``predicted``; target in red, prediction dashed blue."""
    import numpy as np

    plt = _pyplot()
    n = len(frames)
    n_cols = min(n_cols, n)
    n_rows = -(-n // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols, 2.6 * n_rows), squeeze=False)
    for k, (step, x, target, predicted) in enumerate(frames):
        ax = axes[k // n_cols][k % n_cols]
        ax.plot(np.asarray(x).ravel(), np.asarray(target).ravel(), "r", label="target")
        ax.plot(np.asarray(x).ravel(), np.asarray(predicted).ravel(), "b--", label="predicted")
        ax.set_ylim(-1.6, 1.6)
        ax.set_title(f"step {step}")
    for k in range(n, n_rows * n_cols):
        axes[k // n_cols][k % n_cols].axis("off")
    axes[0][0].legend(loc="lower left", fontsize="small")
    return _save(plt, fig, path, title)
