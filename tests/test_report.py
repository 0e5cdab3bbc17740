"""npdl report: one self-contained page per run (or two runs side by side), read from the run folder."""

import base64
import json
import re
import sys

import pytest

from npdl import cli
from npdl.diagnostics import DiagnosticsError
from npdl.diagnostics.read import flow, load_run, read_records
from npdl.diagnostics.report import write_report
from npdl.recipes import get_recipe, train

from helpers import tiny_images

pytest.importorskip("matplotlib")


def embedded_pngs(page):
    """``{alt: PNG bytes}`` of the page's images; every image must be inline."""
    assert not re.search(r'src="(?!data:image/png;base64,)', page)  # nothing fetched from anywhere
    assert "<script" not in page and "<link" not in page
    return {alt: base64.b64decode(data) for alt, data in
            re.findall(r'alt="([^"]*)" src="data:image/png;base64,([^"]+)"', page)}


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mlp-run")
    result = train(get_recipe("mlp"), epochs=3, batch_size=20, lr=0.05, out=str(out), verbose=0, data=tiny_images(),
                   diagnostics=1)
    return out, result


def test_train_writes_a_report_with_curves_and_gradient_flow(mlp_run):
    out, result = mlp_run
    assert result.extra["report"] == str(out / "report.html")
    images = embedded_pngs((out / "report.html").read_text())
    name = out.name
    assert {f"learning curves ({name})", f"gradient flow of mlp ({name})", f"curves.png ({name})"} <= set(images)
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000 for png in images.values())
    page = (out / "report.html").read_text()
    assert "DeepLearningTutorials mlp.py" in page  # the published figures next to the run's
    assert f"{100 * result.test_error:.2f}%" in page
    assert "npdl info" in page and "run.json" in page


def test_the_plotted_series_are_the_recorded_numbers(mlp_run):
    """What the gradient-flow figure draws (read back from the file) is one point per diagnosed step."""
    out, _ = mlp_run
    records = read_records(out / "diagnostics.jsonl")
    series = flow(records)["mlp"]["grad_norm/W"]
    steps_per_epoch = 60 // 20
    assert set(series) == {"0.dense", "1.dense"}
    steps, values = series["1.dense"]
    assert steps == list(range(3 * steps_per_epoch))
    expected = [r["value"] for r in records if r["layer"] == "1.dense" and r["quantity"] == "grad_norm/W"]
    assert values == expected and all(v > 0 for v in values)
    run = load_run(out)
    assert run.recipe == "mlp" and run.main_model == "mlp" and run.options["batch_size"] == 20
    assert run.history["epoch"] == [0.0, 1.0, 2.0] and len(run.history["loss"]) == 3


def test_a_line_cut_short_is_skipped(tmp_path):
    good = {"model": "m", "step": 0, "layer": "0.dense", "quantity": "grad_norm/W", "value": 0.5}
    (tmp_path / "diagnostics.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(good)[:20])
    assert read_records(tmp_path / "diagnostics.jsonl") == [good]
    assert flow([good, {**good, "step": 1, "value": None}]) == {"m": {"grad_norm/W": {"0.dense": ([0], [0.5])}}}


def test_two_runs_of_sda_with_and_without_pretraining(tmp_path, capsys):
    """The comparison the documentation shows, on tiny data: one pretraining epoch against none."""
    runs = {}
    for label, pre in (("pretrained", 1), ("random-start", 0)):
        runs[label] = train(get_recipe("sda"), epochs=1, batch_size=20, out=str(tmp_path / label), verbose=0,
                            data=tiny_images(), diagnostics=1, recipe_options={"pretrain_epochs": pre}, report=False)
    assert runs["random-start"].extra["pretrain_epochs"] == 0
    assert not list((tmp_path / "random-start").glob("pretrain_*.npz"))
    models = {r["model"] for r in read_records(tmp_path / "random-start" / "diagnostics.jsonl")}
    assert models == {"sda"}
    code = cli.main(["report", str(tmp_path / "pretrained"), str(tmp_path / "random-start"), "--figures",
                     str(tmp_path / "figures")])
    assert code == 0
    assert "comparison.html" in capsys.readouterr().out
    page = (tmp_path / "pretrained" / "comparison.html").read_text()
    images = embedded_pngs(page)
    assert {"gradient norms compared", "errors compared"} <= set(images)
    assert "pretrained" in page and "random-start" in page and "pretrain_epochs" in page
    written = {p.name for p in (tmp_path / "figures").iterdir()}
    assert {"gradient-norms-compared.png", "errors-compared.png", "gradient-flow-of-sda-random-start.png"} <= written
    assert (tmp_path / "figures" / "errors-compared.png").read_bytes() == images["errors compared"]


def test_errors_say_what_to_do(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as exc:
        cli.main(["report", str(tmp_path / "missing")])
    code = exc.value.code
    err = capsys.readouterr().err
    assert code == 2 and "no run folder" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    with pytest.raises(DiagnosticsError, match="holds no run"):
        write_report(tmp_path / "empty")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(DiagnosticsError, match=r"npdl-backprop\[plot\]"):
        write_report(tmp_path / "empty")


def test_train_options_are_checked(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "mlp", "--pretrain-epochs", "2", "--epochs", "1"])
    assert exc.value.code == 2 and "applies to sda" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "mlp", "--diagnostics", "0"])
    assert "positive integer" in capsys.readouterr().err
