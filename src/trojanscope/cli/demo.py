"""demo: the four questions end to end on embedded data."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import progress
from .common import UserError

NAMES = ("demo",)


def add(commands) -> None:
    demo = commands.add_parser(
        "demo", help="the four questions end to end on embedded data, one HTML report",
        description="Scan harmless and harmful model files, vet a poisoned MNIST training set, "
                    "inspect and repair the model trained on it; print what each step found "
                    "against the truth and write one HTML page. Exit code 1 when a verdict is "
                    "wrong. About 2-3 minutes on 2 CPU cores.")
    demo.add_argument("--keep", type=Path, metavar="DIR",
                      help="write the demo's files (models, data, recovered triggers) here")
    demo.add_argument("-o", "--output", type=Path, default=Path("trojanscope-demo.html"),
                      help="the HTML report (default: trojanscope-demo.html)")
    demo.add_argument("--scan-only", action="store_true",
                      help="only the first step: model files, scanned (a few seconds)")


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    if not args.output.parent.is_dir():  # say so now, not after minutes of work
        raise UserError(f"{args.output}: cannot write: no folder {args.output.parent}")
    progress.enable(True)
    try:
        return 0 if run_demo(args.keep, print, args.output, args.scan_only) else 1
    except OSError as exc:
        raise UserError(f"{exc.filename}: cannot write: {exc.strerror or exc}") from None
