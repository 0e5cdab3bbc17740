r"""The math in npdl's docstrings, and how it reads in a terminal.

Layer, loss and optimizer docstrings are raw strings (an ``r`` before the opening quotes)
whose formulas are a small subset of LaTeX. The documentation site renders them with KaTeX; :func:`to_terminal`
turns the same text into plain Unicode for ``help()``, ``npdl explain`` and any terminal.

Where math goes:

* inline math between single dollars, ``$dx = da W^\top$``: the opening ``$`` is not
  followed by a space, the closing one not preceded by one, and the formula stays on one
  line (as on the site, where ``$5 and $6`` is text);
* display math as a paragraph of its own: a line holding only ``$$``, the formula, a line
  holding only ``$$``;
* text in backquotes (code, shapes such as ``x: (N, D)``) is never math, so shapes and code
  names read the same everywhere; ``\$`` is a literal dollar.

The subset (each command with what :func:`to_terminal` writes for it):

=========================================  =====================================
``\frac{a}{b}``                            ``(a)/(b)``
``\sum_{i}``, ``\sum_{n, j}``              ``Σ_i``, ``Σ_{n, j}``
``\partial``                               ``∂`` (``\partial L`` -> ``∂L``)
``\odot``, ``\cdot``, ``\times``           ``⊙``, ``·``, ``×``
``W^\top``                                 ``Wᵀ``
``\sigma``, ``\alpha`` ... (Greek)         ``σ``, ``α`` ...
``\tanh``, ``\exp``, ``\log``, ``\max``    ``tanh``, ``exp``, ``log``, ``max``
``\mathbb{1}``, ``\mathbb{R}``             ``𝟙``, ``ℝ``
``\text{...}``                             the text itself
``\quad``                                  two spaces
``x^{2}``, ``x^2``, ``e^{-x}``             ``x²``, ``x²``, ``e^{-x}``
``x_{t-1}``, ``x_t``                       ``x_{t-1}``, ``x_t``
``\left( \right)``                         ``( )`` (any delimiter)
``\in``, ``\approx``, ``\leftarrow``       ``∈``, ``≈``, ``←``
=========================================  =====================================

A superscript or subscript that is one character or one word loses its braces; a
superscript made only of digits, signs and ``\top`` becomes Unicode superscripts
(``^{-1}`` -> ``⁻¹``); any other keeps its braces. Grouping braces ``{...}`` vanish.

Also accepted, for the few formulas that need them: ``\sqrt{a}`` (``√(a)``), ``\min``,
``\prod``, ``\le``/``\leq``, ``\ge``/``\geq``, ``\ne``/``\neq``, ``\pm``, ``\infty``, ``\sim``,
``\to``/``\rightarrow``, ``\ldots``/``\dots``, ``\tilde{x}`` (``x~``, the code's name of a corrupted input), ``\hat{m}`` (``m_hat``), ``\lfloor \rfloor``, ``\lceil \rceil``,
``\langle \rangle``, ``\|``, ``\{ \}``, ``\mathrm{...}``/``\operatorname{...}`` (the text),
and the spaces ``\,`` ``\;`` ``\ `` ``\qquad``. :func:`unsupported` lists any other
command a text uses (the tests require none in npdl's own docstrings); :func:`to_terminal`
leaves such a command as it is.
"""

from __future__ import annotations

import re

__all__ = ["to_terminal", "unsupported", "math_spans"]

GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ϵ", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ",
    "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ",
    "tau": "τ", "upsilon": "υ", "phi": "ϕ", "varphi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω",
    "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π",
    "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
}

#: commands written as one symbol (the spaces around them in the source are kept)
SYMBOLS = {
    **GREEK,
    "sum": "Σ", "prod": "∏", "partial": "∂", "odot": "⊙", "cdot": "·", "times": "×",
    "top": "ᵀ", "in": "∈", "approx": "≈", "leftarrow": "←", "rightarrow": "→", "to": "→",
    "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "ne": "≠", "neq": "≠", "pm": "±",
    "infty": "∞", "sim": "~", "ldots": "…", "dots": "…", "cdots": "…", "lfloor": "⌊", "rfloor": "⌋",
    "lceil": "⌈", "rceil": "⌉", "langle": "⟨", "rangle": "⟩",
    "tanh": "tanh", "exp": "exp", "log": "log", "max": "max", "min": "min",
    "quad": "  ", "qquad": "    ", ",": " ", ";": " ", ":": " ", "!": "", " ": " ",
    "{": "{", "}": "}", "|": "‖", "$": "$", "_": "_", "%": "%",
}

#: commands whose one argument is shown as it is written
TEXT_COMMANDS = ("text", "mathrm", "operatorname")
BLACKBOARD = {"1": "𝟙", "R": "ℝ", "N": "ℕ", "Z": "ℤ"}
#: commands that take an argument or a delimiter
STRUCTURE = ("frac", "sqrt", "mathbb", "tilde", "hat", "left", "right") + TEXT_COMMANDS

SUPERSCRIPT = dict(zip("0123456789+-=()ᵀ", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ᵀ"))

_WORD = re.compile(r"[A-Za-z0-9]+|[^\s\\{}]")
_COMMAND = re.compile(r"\\([A-Za-z]+|.)")


# ------------------------------------------------------------------ where the math is

def _segments(text: str):
    """``(is_math, display, piece)`` for the text: prose pieces (code spans included) and
    math pieces without their dollars."""
    lines = text.split("\n")
    prose: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "$$":
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "$$"), None)
            if end is not None:
                if prose:
                    yield from _inline_segments("\n".join(prose) + "\n")
                    prose = []
                indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
                yield True, indent, "\n".join(lines[i + 1:end])
                i = end + 1
                continue
        prose.append(lines[i])
        i += 1
    if prose:
        yield from _inline_segments("\n".join(prose))


def _inline_segments(text: str):
    i, start = 0, 0
    while i < len(text):
        c = text[i]
        if c == "\\" and text[i + 1:i + 2] == "$":
            i += 2
        elif c == "`":
            run = len(text[i:]) - len(text[i:].lstrip("`"))
            close = text.find("`" * run, i + run)
            i = len(text) if close < 0 else close + run
        elif c == "$":
            close = _closing_dollar(text, i)
            if close is None:
                i += 1
                continue
            if start < i:
                yield False, None, text[start:i]
            double = text.startswith("$$", i)
            width = 2 if double else 1
            yield True, None, text[i + width:close]
            i = start = close + width
        else:
            i += 1
    if start < len(text):
        yield False, None, text[start:]


def _closing_dollar(text: str, i: int):
    """Where the math opened by the ``$`` (or ``$$``) at ``i`` closes, on the same line; None when
    it is not math (a lone ``$``, or ``$`` followed by a space)."""
    width = 2 if text.startswith("$$", i) else 1
    body = i + width
    if body >= len(text) or text[body].isspace():
        return None
    end = text.find("\n", body)
    end = len(text) if end < 0 else end
    j = body
    while j < end:
        if text[j] == "\\":
            j += 2
            continue
        if text.startswith("$" * width, j) and not text[j - 1].isspace():
            return j
        j += 1
    return None


def math_spans(text: str) -> list[str]:
    """The formulas of ``text``, inline and display, without their dollars."""
    return [piece for is_math, _, piece in _segments(text) if is_math]


# ------------------------------------------------------------------ the conversion

def _group(s: str, i: int):
    """The argument at ``s[i]`` (spaces skipped): a ``{...}`` group, a command or one character;
    returns ``(argument, index after it)``."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return "", i
    if s[i] == "{":
        depth, j = 0, i
        while j < len(s):
            if s[j] == "\\":
                j += 2
                continue
            depth += {"{": 1, "}": -1}.get(s[j], 0)
            if depth == 0:
                return s[i + 1:j], j + 1
            j += 1
        return s[i + 1:], len(s)
    if s[i] == "\\":
        m = _COMMAND.match(s, i)
        return (m.group(0), m.end()) if m else ("\\", i + 1)
    return s[i], i + 1


def _script(kind: str, body: str) -> str:
    if kind == "^" and body and all(c in SUPERSCRIPT for c in body):
        return "".join(SUPERSCRIPT[c] for c in body)
    if len(body) == 1 or re.fullmatch(r"[A-Za-z0-9]+", body):
        return kind + body
    return kind + "{" + body + "}"


def _math(s: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            m = _COMMAND.match(s, i)
            if m is None:  # a backslash ending the formula
                out.append(c)
                break
            name, i = m.group(1), m.end()
            if name == "frac":
                a, i = _group(s, i)
                b, i = _group(s, i)
                out.append(f"({_math(a)})/({_math(b)})")
            elif name == "sqrt":
                a, i = _group(s, i)
                out.append(f"√({_math(a)})")
            elif name in TEXT_COMMANDS:
                a, i = _group(s, i)
                out.append(a)
            elif name == "tilde":  # the code's own spelling of a corrupted input: x~
                a, i = _group(s, i)
                out.append(_math(a) + "~")
            elif name == "hat":  # the code's own spelling of a corrected estimate: m_hat
                a, i = _group(s, i)
                out.append(_math(a) + "_hat")
            elif name == "mathbb":
                a, i = _group(s, i)
                out.append(BLACKBOARD.get(a.strip(), a.strip()))
            elif name in ("left", "right"):
                d, i = _group(s, i)
                out.append("" if d == "." else _math(d))
            elif name in SYMBOLS:
                out.append(SYMBOLS[name])
                if name == "partial":
                    while i < len(s) and s[i] == " ":
                        i += 1
            else:
                out.append("\\" + name)
        elif c in "^_":
            arg, i = _group(s, i + 1)
            out.append(_script(c, _math(arg).strip()))
        elif c == "{":
            arg, i = _group(s, i)
            out.append(_math(arg))
        elif c == "}":
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def to_terminal(text: str) -> str:
    r"""``text`` with its math written in plain Unicode for a terminal.

    ``$\frac{\partial L}{\partial x} = dy \odot y$`` becomes ``(∂L)/(∂x) = dy ⊙ y``; a display
    formula loses its ``$$`` lines and is indented four spaces more than they were. Prose,
    code in backquotes and shapes are left as they are.
    """
    if text is None:
        return ""
    out: list[str] = []
    for is_math, indent, piece in _segments(text):
        if not is_math:
            out.append(piece.replace("\\$", "$"))
        elif indent is None:
            out.append(_math(piece))
        else:
            body = [line.strip() for line in piece.split("\n") if line.strip()]
            out.append("\n".join(indent + "    " + _math(line) for line in body) + "\n")
    return "".join(out)


def unsupported(text: str) -> list[str]:
    """The commands used in ``text``'s math that are not in the subset above (``[]`` when all are)."""
    known = set(SYMBOLS) | set(STRUCTURE)
    found = []
    for piece in math_spans(text):
        for m in _COMMAND.finditer(piece):
            name = m.group(1)
            if name not in known and "\\" + name not in found:
                found.append("\\" + name)
    return found
