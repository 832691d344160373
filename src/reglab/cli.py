"""The `reglab` command line: resolves argv and environment, calls the library.

Each subcommand lives beside the code it drives, in a module that defines
``register(subparsers)``; the parser it adds sets ``func(args) -> int``.
Every :class:`ReglabError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from reglab import __version__
from reglab.errors import ReglabError

# subcommand -> module with register(subparsers); the order is the --help order
COMMANDS = {
    "run": "reglab.study.cli",
    "report": "reglab.report.cli",
    "data": "reglab.data.cli",
    "adam": "reglab.adam.cli",
    "tune": "reglab.tune.cli",
    "verify": "reglab.verify",
}


class _Parser(argparse.ArgumentParser):
    """A usage error is bad input too: one line and exit status 2, like every ReglabError."""

    def error(self, message: str):
        self.exit(2, f"reglab: {message}. Fix: see `{self.prog} --help`.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="reglab",
        description="Reproducible regularization studies on MLPs, trained as one batched model.",
    )
    parser.add_argument("--version", action="version", version=f"reglab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        importlib.import_module(module).register(sub)
    return parser


def entry() -> int:
    """The ``reglab`` command (and ``python -m reglab``): denormals flushed in every torch thread before
    any of them starts (``denormals``), then :func:`main` on ``sys.argv``."""
    from reglab.denormals import flush_denormals
    flush_denormals()
    return main()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        if not argv:
            argv = ["run"]  # the default study, as the README's main command promises
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except ReglabError as e:
        for line in e.lines:
            print(f"reglab: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reglab: interrupted", file=sys.stderr)
        return 130
