"""The `trojanscope` command. Thin: parses arguments, calls the library, renders the report.
One module per command group, each with its NAMES, `add(commands)` (its parsers) and
`run(args) -> exit code`.

argparse rather than typer: a scanner runs in pre-commit hooks and CI loops, and typer's import
(it pulls in pydantic) measured 125 ms of start-up here against 3 ms for argparse.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from .. import __version__
from ..render import printable
from . import attack, demo, model, provenance, redteam, scan, serve, vet
from .common import EXIT_CODES, UserError, check_outputs, emit_failure

# In the order `trojanscope --help` lists them.
GROUPS = (scan, vet, model, provenance, attack, redteam, demo, serve)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or (`command`) only its group's parsers: building every
    subcommand's parser costs more than scanning a small file (start-up, issue 17)."""
    parser = argparse.ArgumentParser(
        prog="trojanscope", epilog=EXIT_CODES,
        description="Find backdoors in the AI supply chain: is this model file safe to load, "
                    "is this data poisoned, is this model trojaned, can it be repaired?")
    parser.add_argument("--version", action="version", version=f"trojanscope {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        if command is None or command in group.NAMES:
            group.add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    groups = {name: group for group in GROUPS for name in group.NAMES}
    # Only the named command's parser; all of them for --help, --version or a wrong name.
    args = build_parser(argv[0] if argv and argv[0] in groups else None).parse_args(argv)
    try:
        check_outputs(args)
    except UserError as exc:  # no failure report either: it would overwrite what it names
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 2
    try:
        return groups[args.command].run(args)
    except UserError as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        emit_failure(args, str(exc))
        return 2


def run() -> None:
    """Console-script entry point."""
    code = None
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `trojanscope ... | head`: the reader left, which is no error,
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        # but the exit code still says what was found (`set -o pipefail` reads it): the
        # command's own, or where the report broke off before its end, a shell's code for a
        # reader that left (128 + SIGPIPE), never 0 ("nothing found")
        code = 141 if code is None else code
    except KeyboardInterrupt:  # Ctrl-C where no partial report can be made: no traceback
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
