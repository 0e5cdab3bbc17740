"""The ``npdl`` command: ``npdl info``, ``npdl gradcheck``, ...

Each subcommand lives in its own module with ``register(subparsers)``, which adds
its parser and sets ``func``; ``main`` only dispatches. Argument errors are
argparse's usual messages (exit 2), never tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: modules of npdl.cli that define a subcommand, in the order ``npdl --help`` lists them
SUBCOMMANDS = ("info", "gradcheck", "explain", "train", "report", "bench")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="npdl", description="npdl: deep learning by hand in NumPy, every gradient derived and checked.")
    parser.add_argument("--version", action="version", version=f"npdl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from ..errors import NpdlError

        if isinstance(exc, NpdlError):  # a user-facing error: the message says what to do
            parser.exit(2, f"npdl {args.command}: error: {exc}\n")
        raise


if __name__ == "__main__":
    sys.exit(main())
