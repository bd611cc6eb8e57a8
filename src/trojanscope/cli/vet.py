"""vet: is this training data poisoned?"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import progress, render
from ..findings import Severity
from .common import EXIT_CODES, SEVERITIES, UserError, add_time_limit, emit, seed

NAMES = ("vet",)


def add(commands) -> None:
    vet = commands.add_parser(
        "vet", epilog=EXIT_CODES, help="is this training data poisoned?",
        description="Score every training sample, then decide: is anything poisoned, which "
                    "classes, which samples. The input is never modified.")
    vet.add_argument("data", nargs="?", default=None, metavar="DATA",
                     help=".npz (x/y or x_train/y_train), an image folder (one subfolder per "
                          "class), a text file (.csv, .tsv, .jsonl with text and label "
                          "columns), or a built-in set: mnist-5k (default), digits, sms-spam, "
                          "movie-reviews")
    vet.add_argument("--detector", default=None, help=_detector_help())
    vet.add_argument("--scorer", type=Path, metavar="SCORER.json",
                     help="grey images: the hardened detector with this scorer (made by "
                          "`trojanscope harden`) instead of the shipped one")
    vet.add_argument("--text-column", help="text files: the column with the text")
    vet.add_argument("--label-column", help="text files: the column with the label")
    vet.add_argument("--model", type=Path, metavar="M",
                     help="your model, trained on the data, for the feature-based detectors: "
                          "any format inspect reads (scanned first, loaded in a child process)")
    vet.add_argument("--architecture", metavar="SPEC",
                     help="what a state dict's weights belong to (as for inspect)")
    vet.add_argument("--layer", help="the layer (module name, or ONNX tensor) to read")
    add_time_limit(vet)
    vet.add_argument("--features", type=Path, metavar="F.npy",
                     help="text: your classifier's features, one row per text, for the "
                          "detectors other than ngram-label-skew")
    vet.add_argument("--seed", type=seed, default=0)
    vet.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help="a folder too large to hold (class subfolders of images, or .npz "
                          "shards): make the pretrained encoder's features in Ray tasks, on the "
                          "cluster at ADDRESS or on a Ray started here (docs/scale.md)")
    vet.add_argument("--workers", type=int, metavar="N",
                     help="CPUs of the Ray started here (default: all)")
    vet.add_argument("--export-clean", type=Path, metavar="OUT",
                     help="write the data without the flagged samples here (.npz for images; "
                          ".csv, .tsv or .jsonl for text)")
    vet.add_argument("-f", "--format", choices=render.names(), default="text")
    vet.add_argument("-o", "--output", type=Path)
    vet.add_argument("--fail-on", choices=SEVERITIES, default="high")


def _detector_help() -> str:
    """The whole-data detectors, then every registered one with its summary."""
    fixed = ("hardened (grey images, the default there: neighbour disagreement, a scorer "
             "learnt from the red team over it and the resampling detector, and the classes "
             "the stamp, polarity and shift detectors name; --scorer FILE for your own "
             "scorer); semantic-contrast (colour images, the default "
             "there: a pretrained encoder and learnt triggers; the images extra); "
             "ngram-label-skew (text, the default: needs no model)")
    try:
        from ..data.detectors import DETECTORS
    except ImportError as exc:  # a plain install: vet needs the vet extra anyway
        return f"{fixed}; and more with the vet extra (missing: {exc.name})"
    listed = []
    for name in DETECTORS:
        meta = DETECTORS.meta(name)
        listed.append(f"{name} ({' and '.join(meta['modalities'])}: {meta['summary']})")
    return (f"{fixed}; over a model's features (your --model, a proxy trained on the data, or "
            f"for text MiniLM sentence features): {'; '.join(listed)}")


def run(args: argparse.Namespace) -> int:
    from .. import api

    progress.enable(args.format == "text")
    if args.ray is not None or args.workers is not None:
        if args.scorer is not None:
            raise UserError("--scorer is for vet on one machine, not --ray")
        return _vet_on_ray(args)
    try:
        data = api.load_data(args.data, args.text_column, args.label_column)  # read once
        report = api.vet(data, detector=args.detector, model=args.model,
                         architecture=args.architecture, layer=args.layer,
                         features=args.features, seed=args.seed,
                         export_clean=args.export_clean, time_limit=args.time_limit,
                         progress=args.format == "text", scorer=args.scorer)
        images = api.suspicious_samples(data, report) if args.format == "html" else None
    except api.InputError as exc:
        raise UserError(str(exc)) from None
    emit(report, args.format, args.output, Severity.LOW, images,
          "The most suspicious samples, highest score first")
    return report.exit_code(Severity.parse(args.fail_on))


def _vet_on_ray(args: argparse.Namespace) -> int:
    from .. import api

    if args.workers is not None and args.ray != "local":
        raise UserError("--workers is for a Ray started here (--ray without an address)")
    if args.data is None:
        raise UserError("vet --ray needs DATA: a folder of images or .npz shards")
    try:
        report = api.vet(args.data, detector=args.detector, model=args.model,
                         features=args.features, seed=args.seed,
                         export_clean=args.export_clean, progress=args.format == "text",
                         ray=args.ray, workers=args.workers)
    except api.InputError as exc:
        raise UserError(str(exc)) from None
    emit(report, args.format, args.output, Severity.LOW)
    return report.exit_code(Severity.parse(args.fail_on))
