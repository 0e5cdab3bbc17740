"""The tutorials under docs/tutorials/ run, so a broken one fails the suite without building the site.

markdown-exec runs a page's ```` ```python exec="on" session="tN" ```` blocks at build time, in
order, in one namespace per session, with ``print`` writing into the page. The tests here do the
same: every executed block of a page, in order, in one namespace, ``print`` captured per block.
The pages' own checks (``assert``, ``np.testing``) fail a wrong derivation; the tests add that every
``html="on"`` block produced its picture (an inline PNG) or, where MNIST is missing, the note
that stands in for it.

Tiny settings: each page's training sizes are set in one line, which :data:`TINY` replaces with a
smaller run (the line must exist, so a renamed setting fails here rather than running full size).
MNIST pages run twice: with the real files (marked ``mnist``) and with none to be found.
"""

from __future__ import annotations

import base64
import csv
import io
import re
from pathlib import Path

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (now: its font cache is found before a test moves XDG_CACHE_HOME)

from npdl.layers import base as layer_base  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"
PAGES = ("01-dense.md", "02-softmax.md", "03-autoencoder.md", "04-conv.md", "05-rnn.md", "06-own-layer.md",
         "07-cpu-gpu.md")
MNIST_PAGES = ("03-autoencoder.md", "04-conv.md")

#: page -> (the line in the page, its tiny replacement)
TINY = {
    "01-dense.md": [("EPOCHS, BATCH, LR = 60, 32, 0.5", "EPOCHS, BATCH, LR = 4, 32, 0.5")],
    "02-softmax.md": [("EPOCHS = 300", "EPOCHS = 3")],
    "03-autoencoder.md": [("N_TRAIN, EPOCHS, N_HIDDEN = 10_000, 10, 100", "N_TRAIN, EPOCHS, N_HIDDEN = 300, 1, 20")],
    "04-conv.md": [("N_TRAIN, EPOCHS, BATCH = 2000, 2, 50", "N_TRAIN, EPOCHS, BATCH = 300, 1, 50")],
    "05-rnn.md": [("SEQ, N_SEQ, EPOCHS = 30, 512, 30", "SEQ, N_SEQ, EPOCHS = 30, 64, 2")],
    "06-own-layer.md": [("EPOCHS = 200", "EPOCHS = 3")],
    "07-cpu-gpu.md": [],
}

FENCE = re.compile(r"^```python(?P<opts>[^\n]*)\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
OPTION = re.compile(r'(\w+)="([^"]*)"')
NOTE = 'class="admonition note"'


def executed_blocks(page: str) -> list:
    """``[(options, code)]`` of the page's Python blocks that markdown-exec executes, in order
    (``exec`` is on for any value but 0, no, off and false, as markdown-exec reads it)."""
    text = (TUTORIALS / page).read_text(encoding="utf-8")
    blocks = []
    for m in FENCE.finditer(text):
        opts = dict(OPTION.findall(m["opts"]))
        if opts.get("exec", "off").lower() not in ("0", "no", "off", "false"):
            blocks.append((opts, m["code"]))
    return blocks


def run_page(page: str, replacements=None) -> tuple[list, dict]:
    """Execute the page's blocks in one namespace; returns ``([(options, printed text)], namespace)``."""
    replacements = TINY[page] if replacements is None else replacements
    blocks = executed_blocks(page)
    source = "\n".join(code for _, code in blocks)
    for old, new in replacements:
        assert source.count(old) == 1, f"{page}: expected the line {old!r} once"
    namespace = {"__name__": "__tutorial__"}
    outputs = []
    for i, (opts, code) in enumerate(blocks):
        for old, new in replacements:
            code = code.replace(old, new)
        printed = []

        def capture(*args, sep=" ", end="\n", **_):
            printed.append(sep.join(str(a) for a in args) + end)

        namespace["print"] = capture
        exec(compile(code, f"{page}, block {i + 1}", "exec"), namespace)  # noqa: S102
        outputs.append((opts, "".join(printed)))
    return outputs, namespace


def png_images(html: str) -> list:
    """The PNG bytes of every inline ``<img>`` in ``html``."""
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def figure_outputs(outputs) -> list:
    return [text for opts, text in outputs if opts.get("html", "off").lower() not in ("0", "no", "off", "false")]


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Run from the repository root (the pages read benchmarks/results/ relative to it), with no MNIST
    to be found unless a test points NPDL_DATA_DIR at it, and the layer registry restored afterwards
    (a page defines layers of its own)."""
    monkeypatch.chdir(ROOT)
    empty = tmp_path / "no-mnist"
    empty.mkdir()
    monkeypatch.setenv("NPDL_DATA_DIR", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(empty))
    registered = dict(layer_base.LAYERS)
    yield
    layer_base.LAYERS.clear()
    layer_base.LAYERS.update(registered)


def test_every_page_runs_as_one_session_of_its_own():
    found = sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]-*.md"))
    assert found == sorted(PAGES)
    sessions = {}
    for page in PAGES:
        blocks = executed_blocks(page)
        assert len(blocks) >= 3, page
        names = {opts.get("session") for opts, _ in blocks}
        assert len(names) == 1 and None not in names, f"{page}: one session for every block, got {names}"
        sessions[page] = names.pop()
        assert all(opts.get("source") == "above" for opts, _ in blocks), f"{page}: show the code above its output"
        assert figure_outputs([(opts, "") for opts, _ in blocks]), f"{page}: no picture"
    assert len(set(sessions.values())) == len(PAGES), f"sessions are shared across pages: {sessions}"


@pytest.mark.parametrize("page", [p for p in PAGES if p not in MNIST_PAGES])
def test_tutorial_runs_and_draws_its_pictures(page):
    outputs, _ = run_page(page)
    for text in figure_outputs(outputs):
        images = png_images(text)
        assert images or NOTE in text, f"{page}: a picture block printed neither a picture nor a note"
        assert all(img.startswith(b"\x89PNG") for img in images)
    if page != "07-cpu-gpu.md":  # the benchmark page's GPU section is a note until GPU results exist
        assert all(png_images(text) for text in figure_outputs(outputs)), f"{page}: a picture is missing"


@pytest.mark.mnist
@pytest.mark.parametrize("page", MNIST_PAGES)
def test_mnist_tutorial_draws_every_picture(page, mnist_dir, monkeypatch):
    monkeypatch.setenv("NPDL_DATA_DIR", mnist_dir)
    outputs, namespace = run_page(page)
    assert namespace["mnist"] is not None
    for text in figure_outputs(outputs):
        assert png_images(text) and NOTE not in text, f"{page}: a picture is missing"


@pytest.mark.parametrize("page", MNIST_PAGES)
def test_mnist_tutorial_without_mnist_shows_notes_instead(page):
    outputs, namespace = run_page(page)
    assert namespace["mnist"] is None
    assert any("MNIST not found" in text for _, text in outputs)
    for text in figure_outputs(outputs):
        assert png_images(text) or NOTE in text
    assert sum(NOTE in text for text in figure_outputs(outputs)) >= 1


def _sweep_file(path: Path):
    """A sweep as benchmarks/run.py writes it: npdl's mlp on CPU and GPU at batch 1 .. 128, two rounds.
    CPU 0.1 ms per example, GPU 2 ms + 0.001 ms per example: the GPU is faster from batch 32 on."""
    fields = ["workload", "impl", "device", "batch_size", "round", "median_ms", "min_ms", "reps", "version",
              "device_name", "graph", "timer", "cpu", "cores"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        for rnd in (1, 2):
            for b in (1, 8, 32, 128):
                for device, ms in (("cpu", 0.1 * b), ("gpu", 2.0 + 0.001 * b)):
                    writer.writerow({"workload": f"mlp_b{b}", "impl": "npdl", "device": device, "batch_size": b,
                                     "round": rnd, "median_ms": ms * (1.0 + 0.01 * rnd), "min_ms": ms, "reps": 100,
                                     "version": "", "device_name": "x", "graph": "", "timer": "t", "cpu": "x",
                                     "cores": 2})


def test_cpu_gpu_page_reads_a_gpu_sweep(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    _sweep_file(results / "2030-01-01-sweep.csv")
    outputs, namespace = run_page("07-cpu-gpu.md", [('RESULTS = Path("benchmarks/results")',
                                                     f"RESULTS = Path({str(results)!r})")])
    assert namespace["crossover"] == 32
    assert [round(s, 6) for s in namespace["speedup"]] == [round(0.1 * b / (2.0 + 0.001 * b), 6)
                                                            for b in (1, 8, 32, 128)]
    gpu_section = figure_outputs(outputs)[-1]
    assert png_images(gpu_section) and "No GPU measurements" not in gpu_section
    table = next(text for opts, text in outputs if "| workload |" in text)
    assert "| `mlp_b128` | 12.992 | - |" in table  # the median of the two rounds, 12.928 and 13.056 ms


def test_html_img_embeds_a_png_from_a_figure_or_a_buffer():
    from npdl.plots import html_img, tile_images

    plt.close("all")

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    tag = html_img(fig, alt='a "line"', width=200)
    assert tag.startswith('<img alt="a &quot;line&quot;" width="200" src="data:image/png;base64,')
    assert png_images(tag)[0].startswith(b"\x89PNG")
    assert not plt.get_fignums()  # the figure was closed
    buffer = tile_images([[0.0, 1.0, 0.5, 0.25]], io.BytesIO(), image_shape=(2, 2))
    assert png_images(html_img(buffer))[0] == buffer.getvalue()
    with pytest.raises(ValueError, match="PNG"):
        html_img(b"GIF89a")
