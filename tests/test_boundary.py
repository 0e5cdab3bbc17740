"""The backend boundary: the math (layers, losses, optimizers, models, the training loop) never imports
numpy; only the boundary itself, kernels, and host-side tools (data files, I/O, the CLI, benchmarks,
diagnostics read back to the host, MPI's host buffers, reports) may."""

import ast
import pathlib

import npdl

PACKAGE = pathlib.Path(npdl.__file__).parent

#: where numpy may be imported: the boundary itself, device kernels, data files, checkpoint I/O, CLI, plots,
#: the benchmarks' host-side counting and ceilings, diagnostics read back to the host, MPI's host buffers,
#: the environment report and the gradient-check report (host copies of the compared arrays)
ALLOWED = ("backend/", "kernels/", "datasets/", "training/checkpoint.py", "cli/", "plots", "viz", "bench/",
           "diagnostics/", "distributed/", "environment.py", "gradcheck/user_report.py")


def numpy_imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        if any(n == "numpy" or n.startswith("numpy.") for n in names):
            yield node.lineno


def test_no_numpy_import_outside_the_boundary():
    leaks = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(ALLOWED) or any(a in rel for a in ALLOWED):
            continue
        leaks += [f"{rel}:{line}" for line in numpy_imports(path)]
    assert not leaks, "numpy imported outside backend/kernels/datasets/cli: " + ", ".join(leaks)


def test_the_scan_would_catch_a_leak(tmp_path):
    bad = tmp_path / "layer.py"
    bad.write_text("import os\nfrom numpy import zeros\n")
    assert list(numpy_imports(bad)) == [2]
