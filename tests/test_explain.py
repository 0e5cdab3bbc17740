"""npdl explain: derivation, file:line of the code, and the shape of every array."""

import inspect
import os
import re

import pytest

import npdl
from npdl import cli, docmath, layers as L, losses as F
from npdl.cli import explain


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def where(fn):
    fn = inspect.unwrap(fn)
    root = os.path.dirname(os.path.dirname(os.path.abspath(npdl.__file__)))
    return f"{os.path.relpath(inspect.getsourcefile(fn), root)}:{inspect.getsourcelines(fn)[1]}"


def shape_rows(out):
    """``{name: shape text}`` of the Shapes section."""
    rows = {}
    for line in out.split("Shapes:", 1)[1].splitlines()[1:]:
        parts = re.split(r"\s{2,}", line.strip())
        if parts and parts[0] in ("forward", "backward"):
            parts = parts[1:]
        if len(parts) >= 2:
            rows[parts[0]] = parts[1]
    return rows


def test_dense_with_no_arguments_uses_a_small_default(capsys):
    code, out, err = run_cli(capsys, "explain", "dense")
    assert code == 0, err
    for fn in (L.Dense.forward, L.Dense.backward, L.dense_forward, L.dense_backward):
        assert where(fn) in out
    first = docmath.to_terminal(inspect.getdoc(L.dense_backward)).splitlines()[0]
    assert first in out
    rows = shape_rows(out)
    assert rows["x"] == "(4, 5)" and rows["y"] == "(4, 3)" and rows["dy"] == "(4, 3)" and rows["dx"] == "(4, 5)"
    assert rows["params['W']"] == "(5, 3)" and rows["grads['W']"] == "(5, 3)" and rows["grads['b']"] == "(3,)"
    assert rows["cache.x"] == "(4, 5)" and rows["cache.W"] == "(5, 3)"
    assert "float64" in out


def test_conv2d_with_its_own_arguments_and_input(capsys):
    code, out, err = run_cli(capsys, "explain", "Conv2D", "--input", "2,1,28,28",
                             "--args", "in_channels=1,out_channels=20,kernel_size=5")
    assert code == 0, err
    rows = shape_rows(out)
    # 'valid' 5x5 on 28x28: 28 - 5 + 1 = 24
    assert rows["x"] == "(2, 1, 28, 28)" and rows["y"] == "(2, 20, 24, 24)"
    assert rows["dx"] == "(2, 1, 28, 28)" and rows["grads['W']"] == "(20, 1, 5, 5)" and rows["grads['b']"] == "(20,)"
    assert where(L.conv2d_forward) in out and where(L.conv2d_backward) in out
    assert "Conv2D(in_channels=1, out_channels=20, kernel_size=(5, 5)" in out


@pytest.mark.parametrize("name", sorted(n for n, c in L.LAYERS.items() if c.__module__.startswith("npdl.")))
def test_every_layer_family(capsys, name):
    code, out, err = run_cli(capsys, "explain", name)
    assert code == 0, err
    rows = shape_rows(out)
    assert {"x", "y", "dy", "dx"} <= set(rows), out
    assert rows["dx"] == rows["x"] and rows["dy"] == rows["y"]
    cls = L.LAYERS[name]
    assert where(cls.forward) in out and where(cls.backward) in out


@pytest.mark.parametrize("name", sorted(F.LOSSES))
def test_every_loss(capsys, name):
    code, out, err = run_cli(capsys, "explain", name, "--input", "3,4")
    assert code == 0, err
    rows = shape_rows(out)
    assert rows["prediction"] == "(3, 4)" and rows["dprediction"] == "(3, 4)" and rows["loss"] == "()"


def test_recurrent_cache_entries_and_product_gradients(capsys):
    code, out, _ = run_cli(capsys, "explain", "lstm", "--input", "2,6,3", "--args", "n_in=3,units=4")
    rows = shape_rows(out)
    assert code == 0 and rows["y"] == "(2, 4)" and rows["grads['Wx']"] == "(3, 16)"
    assert "cache['hs']" in rows and "kept as its factors" in out


def test_user_errors_exit_2_without_a_traceback(capsys):
    code, _, err = run_cli(capsys, "explain", "Conv3D")
    assert code == 2 and "no layer or loss named 'Conv3D'" in err and "Conv2D" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "explain", "dense", "--input", "4,five")
    assert code == 2 and "--input" in err
    code, _, err = run_cli(capsys, "explain", "dense", "--args", "n_in=5,n_out=3,units=2")
    assert code == 2 and "units" in err
    code, _, err = run_cli(capsys, "explain", "dense", "--input", "4,6")
    assert code == 2 and "6" in err and "Traceback" not in err


def test_parse_kwargs_keeps_tuples_and_strings():
    assert explain.parse_kwargs("kernel_size=(5, 3),padding=same,stride=2") == {
        "kernel_size": (5, 3), "padding": "same", "stride": 2}
    assert explain.parse_shape("2x1x28x28") == (2, 1, 28, 28)
