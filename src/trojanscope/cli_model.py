"""The command line of the model questions: inspect, repair, diff, and `attack zoo`. Thin, as
cli.py: parse, call the library, render."""

from __future__ import annotations

from pathlib import Path

from .findings import Location, Report, Rule, Severity
from .render import FORMATS

WEIGHTS_LIKE_TROJANED = Rule(
    "model.weights-like-trojaned", Severity.HIGH,
    "Against the reference zoo, the model's weights look like those of trojaned models",
    "Inspect the model with clean data and compare it with a version you trust.")
DATA_HELP = ("clean data: .npz (x/y), an image folder, or a built-in set: mnist-5k (default), "
             "digits")


def add_parsers(commands, severities, exit_codes: str) -> None:
    inspect = commands.add_parser(
        "inspect", epilog=exit_codes, help="is this model trojaned? (a model and clean data)",
        description="Reverse-engineer a trigger for every class and look for a class that is "
                    "far too easy to reach. Exit code 1 when the model looks trojaned.")
    inspect.add_argument("model", type=Path, metavar="MODEL", help="a TorchScript file")
    inspect.add_argument("--data", help=DATA_HELP)
    inspect.add_argument("--reference", type=Path, metavar="ZOO",
                         help="a zoo folder (zoo.json; `trojanscope attack zoo`) to score the "
                              "weights against: adds P(trojaned)")
    inspect.add_argument("--images", type=Path, metavar="DIR",
                         help="save each class's recovered mask, pattern and trigger as PNG")
    _common(inspect, severities)

    repair = commands.add_parser(
        "repair", epilog=exit_codes, help="take a backdoor out of a model (with clean data)",
        description="Try unlearning, fine-pruning, trigger-neuron pruning and plain "
                    "fine-tuning; keep the one that a held-out part of your data prefers.")
    repair.add_argument("model", type=Path, metavar="MODEL", help="a TorchScript file")
    repair.add_argument("--data", help=DATA_HELP)
    repair.add_argument("--out", type=Path, required=True, help="the repaired model (TorchScript)")
    repair.add_argument("--epochs", type=int, default=10)
    repair.add_argument("--method", default="auto",
                        choices=["auto", "fine-tune", "unlearn", "fine-prune",
                                 "prune-trigger-neurons"],
                        help="auto (default): try all, keep what the held-out data prefers")
    _common(repair, severities)

    diff = commands.add_parser("diff", epilog=exit_codes,
                               help="where do two versions of a model differ, layer by layer?")
    diff.add_argument("old", type=Path, metavar="A")
    diff.add_argument("new", type=Path, metavar="B")
    _common(diff, severities, seed=False)


def add_zoo_parser(kinds) -> None:
    zoo = kinds.add_parser("zoo", help="train clean and trojaned small CNNs (a reference zoo)")
    zoo.add_argument("--out", type=Path, required=True, metavar="DIR")
    zoo.add_argument("--data", help="training data (default: mnist-5k)")
    zoo.add_argument("--clean", type=int, default=10)
    zoo.add_argument("--trojaned", type=int, default=10)
    zoo.add_argument("--epochs", type=int, default=10)
    zoo.add_argument("--architecture", choices=["cnn", "lenet", "mlp"], default="cnn")
    zoo.add_argument("--seed", type=int, default=0)


def _common(parser, severities, seed: bool = True) -> None:
    if seed:
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--fast", action="store_true",
                            help="shorter searches on fewer samples: less sure, and only "
                                 "about a sixth quicker (training the reference proxies "
                                 "dominates a single run)")
    parser.add_argument("-f", "--format", choices=FORMATS, default="text")
    parser.add_argument("-o", "--output", type=Path)
    parser.add_argument("--fail-on", choices=severities, default="high")


def run_inspect(args, user_error) -> Report:
    from .model.inspect import inspect_config, inspect_model

    module, data = _model_and_data(args, user_error)
    try:
        report = inspect_model(module, data, inspect_config(args.seed, args.fast),
                               images=args.images, name=str(args.model))
        if args.reference is not None:
            report = _with_reference(report, module, args)
    except ValueError as exc:
        raise user_error(str(exc)) from None
    return report


def _with_reference(report: Report, module, args) -> Report:
    from .model.torch_model import load_module
    from .model.weights import read_zoo, reference_probability, state_arrays

    zoo = [(state_arrays(load_module(path)), trojaned) for path, trojaned in
           read_zoo(args.reference)]
    probability = reference_probability(state_arrays(module), zoo, seed=args.seed)
    findings = list(report.findings)
    if probability >= 0.5:
        findings.append(WEIGHTS_LIKE_TROJANED.finding(
            f"P(trojaned) = {probability:.2f} from a classifier of weights fitted on "
            f"{len(zoo)} reference models", Location(str(args.model)),
            {"probability": probability, "reference": str(args.reference)}))
    trojaned = bool(report.results["target_classes"]) or probability >= 0.5
    results = {**report.results, "verdict": "trojaned" if trojaned else "clean",
               "weights": {"probability_trojaned": round(probability, 4),
                           "reference_models": len(zoo)}}
    return Report(report.command, report.version, report.targets, tuple(findings),
                  report.errors, results, report.timings, report.config)


def run_repair(args, user_error) -> Report:
    from .model.inspect import inspect_config
    from .model.repair import RepairConfig, repair_model
    from .model.torch_model import save_module

    module, data = _model_and_data(args, user_error)
    config = RepairConfig(seed=args.seed, epochs=args.epochs,
                          inspect=inspect_config(args.seed, args.fast))
    try:
        repaired, report = repair_model(module, data, config,
                                        name=str(args.model),
                                        only=None if args.method == "auto" else args.method)
        save_module(repaired, args.out)
    except ValueError as exc:
        raise user_error(str(exc)) from None
    except OSError as exc:
        raise user_error(f"{args.out}: cannot write: {exc.strerror or exc}") from None
    return report


def run_diff(args, user_error) -> Report:
    from .model.torch_model import load_module
    from .model.weights import diff_models, state_arrays

    try:
        old, new = state_arrays(load_module(args.old)), state_arrays(load_module(args.new))
    except ValueError as exc:
        raise user_error(str(exc)) from None
    return diff_models(old, new, (str(args.old), str(args.new)))


def run_zoo(args, user_error) -> int:
    from .attacks.trojan_models import build_zoo
    from .data.datasets import DataError, load

    try:
        data = load(args.data)
        entries = build_zoo(data, args.out, clean=args.clean, trojaned=args.trojaned,
                            seed=args.seed, epochs=args.epochs,
                            architecture=args.architecture)
    except (DataError, ValueError) as exc:
        raise user_error(str(exc)) from None
    except OSError as exc:
        raise user_error(f"{args.out}: cannot write: {exc.strerror or exc}") from None
    trojaned = sum(e["trojaned"] for e in entries)
    print(f"wrote {len(entries)} models to {args.out} ({len(entries) - trojaned} clean, "
          f"{trojaned} trojaned; truth in zoo.json)")
    return 0


def _model_and_data(args, user_error):
    try:
        from .data.datasets import DataError, load
        from .model.torch_model import load_module
    except ImportError as exc:
        raise user_error(f"{args.command} needs {exc.name}: pip install "
                         "'trojanscope[torch,vet]'") from None
    try:
        data = load(args.data)
        module = load_module(args.model)
    except (DataError, ValueError) as exc:
        raise user_error(str(exc)) from None
    except ImportError as exc:
        raise user_error(f"{args.command} needs {exc.name}: pip install "
                         "'trojanscope[torch]'") from None
    return module, data
