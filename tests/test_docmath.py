"""npdl.docmath: the docstrings' LaTeX subset as plain Unicode, and the docstrings themselves.

The expected strings are written out by hand from the convention in npdl/docmath.py's
module docstring. The last tests read every layer, loss and optimizer module: each
docstring with a backslash must be a raw string (else ``\\frac`` starts with a form feed
and ``\\tanh`` with a tab), and its math must stay inside the subset.
"""

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import npdl
from npdl.docmath import math_spans, to_terminal, unsupported

# --------------------------------------------------------------------- the conversion


@pytest.mark.parametrize("tex, plain", [
    (r"$\frac{a}{b}$", "(a)/(b)"),
    (r"$\frac{\partial L}{\partial x}$", "(∂L)/(∂x)"),
    (r"$dx = dy \odot y$", "dx = dy ⊙ y"),
    (r"$\sum_{i} x_i$", "Σ_i x_i"),
    (r"$\sum_{n, j} a$", "Σ_{n, j} a"),
    (r"$dW = x^\top da$", "dW = xᵀ da"),
    (r"$W^{\top}$", "Wᵀ"),
    (r"$\sigma(z) \cdot \alpha \beta \lambda$", "σ(z) · α β λ"),
    (r"$\tanh(x) + \exp(x) + \log p + \max_{k} z_k$", "tanh(x) + exp(x) + log p + max_k z_k"),
    (r"$\mathbb{1}[y > 0] \in \mathbb{R}$", "𝟙[y > 0] ∈ ℝ"),
    (r"$a \quad \text{where it is on}$", "a    where it is on"),  # its own spaces kept
    (r"$y^2 + x^{-1} + e^{-x}$", "y² + x⁻¹ + e^{-x}"),
    (r"$h_{t-1} + h_t + W_{enc}$", "h_{t-1} + h_t + W_enc"),
    (r"$\left( a + b \right) \times c \approx d$", "( a + b ) × c ≈ d"),
    (r"$W \leftarrow W - \eta g$", "W ← W - η g"),
    (r"$\sqrt{v} + \epsilon$", "√(v) + ϵ"),
])
def test_each_command_reads_as_the_convention_says(tex, plain):
    assert to_terminal(tex) == plain


def test_nested_fraction_and_scripts():
    assert to_terminal(r"$\frac{1}{N} \sum_{n} \frac{e^{z}}{1 + e^{z}}$") == "(1)/(N) Σ_n (e^z)/(1 + e^z)"


def test_prose_and_code_are_left_alone():
    text = "Shapes: ``x`` (N, D); ``$HOME`` and `a $b$ c` stay; it costs $5 and $6."
    assert to_terminal(text) == text
    assert math_spans(text) == []


def test_inline_math_among_prose():
    assert to_terminal(r"so $dx = da W^\top$: (N, n_in).") == "so dx = da Wᵀ: (N, n_in)."


def test_display_math_loses_its_dollar_lines_and_is_indented():
    text = "Differentiate:\n\n    $$\n    \\frac{\\partial L}{\\partial b_j} = \\sum_{n} da_{n j}\n    $$\n\n    done"
    assert to_terminal(text) == "Differentiate:\n\n        (∂L)/(∂b_j) = Σ_n da_{n j}\n\n    done"


def test_an_escaped_dollar_is_a_dollar():
    assert to_terminal(r"pay \$3, then $x$") == "pay $3, then x"


def test_unsupported_lists_commands_outside_the_subset():
    assert unsupported(r"$\frac{a}{b} \odot \nabla f \mathcal{L}$") == [r"\nabla", r"\mathcal"]
    assert unsupported(r"``\nabla`` in code, $\partial$") == []
    assert to_terminal(r"$\nabla f$") == r"\nabla f"  # left visible, never dropped


def test_empty_and_none():
    assert to_terminal("") == ""
    assert to_terminal(None) == ""


# ------------------------------------------------------------------- npdl's docstrings

PACKAGES = ("npdl.layers", "npdl.losses", "npdl.optim")


def _module_names():
    names = []
    for package in PACKAGES:
        pkg = importlib.import_module(package)
        names.append(package)
        names += [f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)]
    return names


def _docstrings(module):
    """(where, docstring) of the module, its functions and classes, and their methods."""
    out = [(module.__name__, module.__doc__)]
    for name, obj in vars(module).items():
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            out.append((f"{module.__name__}.{name}", obj.__doc__))
        if inspect.isclass(obj):
            out += [(f"{module.__name__}.{name}.{k}", v.__doc__) for k, v in vars(obj).items()
                    if inspect.isfunction(v)]
    return [(where, doc) for where, doc in out if doc]


@pytest.mark.parametrize("module_name", _module_names())
def test_docstrings_with_a_backslash_are_raw_strings(module_name):
    path = Path(importlib.import_module(module_name).__file__)
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                segment = ast.get_source_segment(source, body[0].value)
                if "\\" in segment and not segment.lower().startswith(("r'", 'r"')):
                    bad.append(f"{path.name}:{body[0].lineno}")
    assert not bad, f"docstrings with a backslash that are not raw strings: {bad}"


@pytest.mark.parametrize("module_name", _module_names())
def test_docstring_math_stays_inside_the_subset(module_name):
    module = importlib.import_module(module_name)
    for where, doc in _docstrings(module):
        assert unsupported(doc) == [], f"{where}: commands outside npdl.docmath's subset"
        plain = to_terminal(doc)
        for piece in math_spans(doc):
            assert piece.count("{") == piece.count("}"), f"{where}: unbalanced braces in ${piece}$"
        assert "\\" not in "".join(to_terminal("$" + " ".join(p.split()) + "$") for p in math_spans(doc)), where
        assert plain.count("$") <= doc.count("\\$") + sum(p.count("$") for p in math_spans(doc)), where


def test_the_layer_derivations_use_the_convention():
    """The derivations are written as math: the main layers' backward passes hold formulas."""
    for fn in (npdl.layers.dense.dense_backward, npdl.layers.activations.softmax_backward,
               npdl.layers.conv.conv2d_backward, npdl.losses.cross_entropy.softmax_cross_entropy_backward):
        assert math_spans(fn.__doc__), f"{fn.__qualname__} has no formula in $...$"
