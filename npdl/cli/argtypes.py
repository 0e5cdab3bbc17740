"""Numbers on the command line: argparse ``type=`` functions that refuse what a command cannot use.

Each is built by :func:`number`, so that every option reads its text the same way and a refusal
is argparse's own one-line error (``npdl train: error: argument --epochs: ...``), never a traceback.
"""

from __future__ import annotations

import argparse
import math


def number(parse, ok, not_a_number: str, refused: str):
    """An argparse type: ``parse(text)``, then ``ok(value)``, else :class:`argparse.ArgumentTypeError`.

    The messages are format strings with ``{text}`` (the text as given, quoted) and, for
    ``refused``, ``{value}`` (what it parsed to).
    """

    def check(text):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(not_a_number.format(text=repr(text))) from None
        if not ok(value):
            raise argparse.ArgumentTypeError(refused.format(text=repr(text), value=value))
        return value

    return check


positive_int = number(int, lambda v: v >= 1, "expected a positive integer, got {text}",
                      "expected a positive integer, got {text}")
non_negative_int = number(int, lambda v: v >= 0, "expected a number >= 0, got {text}",
                          "expected a number >= 0, got {text}")
positive_float = number(float, lambda v: v > 0 and math.isfinite(v), "expected a positive number, got {text}",
                        "expected a positive number, got {text}")
#: a duration: finite and not negative (``nan``, ``inf`` and ``-1`` refused)
seconds = number(float, lambda v: math.isfinite(v) and v >= 0, "expected a number of seconds, got {text}",
                 "must be a finite number of seconds >= 0, got {text}")
at_least_one = number(int, lambda v: v >= 1, "expected a whole number, got {text}", "must be at least 1, got {value}")
