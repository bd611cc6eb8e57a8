"""redteam: the learning attacker against the detectors (docs/redteam.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import progress, render
from ..findings import Severity
from .common import EXIT_CODES, SEVERITIES, UserError, emit, seed

NAMES = ("redteam", "harden")
SEARCHES = ("ppo", "random", "cma")  # as attacks.learning.search registers them


def add(commands) -> None:
    redteam = commands.add_parser(
        "redteam", epilog=EXIT_CODES, help="search for poisoning attacks a detector misses",
        description="Each search (by default PPO, the learning attacker, and random search, "
                    "its baseline) runs BUDGET episodes of: poison the training set with a point "
                    "of the attack space, train a small model on it, run the detector, reward "
                    "attack success the detector missed. The report lists the evasions found "
                    "(attack success >= 0.9, missed), replayable with `trojanscope attack poison "
                    "--config`. Exit 1 when an evasion was found.")
    redteam.add_argument("--against", choices=["vet", "inspect"], required=True,
                         help="the detector: vet (the poisoned data) or inspect (the model "
                              "trained on it)")
    redteam.add_argument("--data", default=None, metavar="DATA",
                         help="images: .npz (x/y), an image folder, or a built-in set: mnist-5k "
                              "(default), digits; or labelled texts: .csv, .tsv, .jsonl, "
                              "movie-reviews, sms-spam (against inspect each episode "
                              "fine-tunes MiniLM: minutes on a CPU)")
    redteam.add_argument("--text-column", help="text files: the column with the text")
    redteam.add_argument("--label-column", help="text files: the column with the label")
    redteam.add_argument("--budget", type=int, default=20, metavar="N",
                         help="episodes per search (default 20; an episode trains a model)")
    redteam.add_argument("--search", action="append", choices=SEARCHES, metavar="NAME",
                         help="a search to run (repeat; default: ppo and random): "
                              + ", ".join(SEARCHES))
    redteam.add_argument("--target", type=int, default=0,
                         help="the attacks' target class, an index (texts: the labels in sorted "
                              "order, e.g. movie-reviews 0 negative, 1 positive; default 0)")
    redteam.add_argument("--epochs", type=int, default=3,
                         help="training epochs of each attacked model (default 3)")
    redteam.add_argument("--seed", type=seed, default=0)
    redteam.add_argument("-f", "--format", choices=render.names(), default="text")
    redteam.add_argument("-o", "--output", type=Path)
    redteam.add_argument("--fail-on", choices=SEVERITIES, default="high")

    harden = commands.add_parser(
        "harden", epilog=EXIT_CODES, help="teach vet or inspect what redteam found",
        description="Fit a hardened scorer (a logistic regression over a detector's per-class "
                    "outputs) on the episodes of redteam reports; its threshold sits above "
                    "every clean class it saw. Reports against vet: vet's scorer over "
                    "neighbour disagreement and the resampling detector, the episodes "
                    "replayed on the data they ran on, for `trojanscope vet --scorer`. Reports "
                    "against inspect: inspect's scorer over its mask, perturbation and warp "
                    "scores, with clean models of the data as negatives, for `trojanscope "
                    "inspect --scorer`. The scorer is written to --out; the report checks it "
                    "on the reports' evasions and clean data, before and after. "
                    "Exit 1 when an evasion is still missed.")
    harden.add_argument("reports", nargs="+", type=Path, metavar="REPORT",
                        help="redteam reports (JSON), all against vet or all against inspect")
    harden.add_argument("--data", default=None, metavar="DATA",
                        help="the images the reports ran on (default mnist-5k)")
    harden.add_argument("--out", type=Path, required=True, metavar="SCORER.json",
                        help="where to write the scorer")
    harden.add_argument("--seed", type=seed, default=0)
    harden.add_argument("-f", "--format", choices=render.names(), default="text")
    harden.add_argument("-o", "--output", type=Path)
    harden.add_argument("--fail-on", choices=SEVERITIES, default="high")


def run(args: argparse.Namespace) -> int:
    from .. import api

    progress.enable(args.format == "text")
    if args.command == "harden":
        try:
            report = api.harden(args.reports, args.out, args.data, seed=args.seed)
        except api.InputError as exc:
            raise UserError(str(exc)) from None
        emit(report, args.format, args.output, Severity.LOW)
        return report.exit_code(Severity.parse(args.fail_on))
    try:
        report = api.redteam(args.data, against=args.against, budget=args.budget,
                             seed=args.seed, searches=tuple(args.search) if args.search else None,
                             target=args.target, epochs=args.epochs,
                             text_column=args.text_column, label_column=args.label_column)
    except api.InputError as exc:
        raise UserError(str(exc)) from None
    emit(report, args.format, args.output, Severity.LOW)
    return report.exit_code(Severity.parse(args.fail_on))
