"""The `trojanscope` command. Thin: parses arguments, calls the library, renders the report.

argparse rather than typer: a scanner runs in pre-commit hooks and CI loops, and typer's import
(it pulls in pydantic) measured 125 ms of start-up here against 3 ms for argparse.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from . import __version__, cli_model, cli_provenance, progress, render
from .findings import RULES, Report, ScanError, Severity

SEVERITIES = [str(s) for s in Severity]
EXIT_CODES = "exit codes: 0 nothing at or above --fail-on, 1 findings, 2 could not do the job"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or (`command`) only that command's parser: building every
    subcommand's parser costs more than scanning a small file (start-up, issue 17)."""
    parser = argparse.ArgumentParser(
        prog="trojanscope", epilog=EXIT_CODES,
        description="Find backdoors in the AI supply chain: is this model file safe to load, "
                    "is this data poisoned, is this model trojaned, can it be repaired?")
    parser.add_argument("--version", action="version", version=f"trojanscope {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for names, add in COMMAND_PARSERS:
        if command is None or command in names:
            add(commands)
    return parser


def _scan_parser(commands) -> None:
    scan = commands.add_parser(
        "scan", epilog=EXIT_CODES,
        help="is this model file safe to load? (reads bytes; never loads or imports them)",
        description="Examine model files and directories (recursively) by content. Nothing in "
                    "them is unpickled, imported or run.")
    scan.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    scan.add_argument("-f", "--format", choices=render.names(), default="text",
                      help="output format (default: text)")
    scan.add_argument("-o", "--output", type=Path, help="write the report here, not to stdout")
    scan.add_argument("--fail-on", choices=SEVERITIES, default="high",
                      help="exit 1 when a finding is at or above this severity (default: high)")
    scan.add_argument("--allow", type=Path, action="append", default=[], metavar="FILE",
                      help="a TOML allowlist ([allow] \"module\" = [\"Name\"]); repeatable")
    scan.add_argument("--show", choices=SEVERITIES, default="low",
                      help="lowest severity listed in text output (default: low)")


def _rules_parser(commands) -> None:
    rules = commands.add_parser("rules", help="list every rule: id, severity, meaning, remedy")
    rules.add_argument("--markdown", action="store_true",
                       help="print docs/rules.md (a markdown table) instead")


def _vet_parser(commands) -> None:
    vet = commands.add_parser(
        "vet", epilog=EXIT_CODES, help="is this training data poisoned?",
        description="Score every training sample, then decide: is anything poisoned, which "
                    "classes, which samples. The input is never modified.")
    vet.add_argument("data", nargs="?", default=None, metavar="DATA",
                     help=".npz (x/y or x_train/y_train), an image folder (one subfolder per "
                          "class), a text file (.csv, .tsv, .jsonl with text and label "
                          "columns), or a built-in set: mnist-5k (default), digits, sms-spam, "
                          "movie-reviews")
    vet.add_argument("--detector", default=None,
                     help="images: semantic-contrast (default for colour images: a pretrained "
                          "encoder and learnt triggers; the images extra), "
                          "neighbour-disagreement (default for grey images, needs no model), "
                          "spectral, activation-clustering, spectre (these train a proxy "
                          "model: torch); "
                          "text: ngram-label-skew (default, needs no model), or spectral, "
                          "spectre, neighbour-disagreement over sentence features (MiniLM "
                          "embeddings: the text extra)")
    vet.add_argument("--text-column", help="text files: the column with the text")
    vet.add_argument("--label-column", help="text files: the column with the label")
    vet.add_argument("--model", type=Path, metavar="M",
                     help="your model, trained on the data, for the feature-based detectors: "
                          "any format inspect reads (scanned first, loaded in a child process)")
    vet.add_argument("--architecture", metavar="SPEC",
                     help="what a state dict's weights belong to (as for inspect)")
    vet.add_argument("--layer", help="the layer (module name, or ONNX tensor) to read")
    cli_model.add_time_limit(vet)
    vet.add_argument("--features", type=Path, metavar="F.npy",
                     help="text: your classifier's features, one row per text, for the "
                          "detectors other than ngram-label-skew")
    vet.add_argument("--seed", type=int, default=0)
    vet.add_argument("--export-clean", type=Path, metavar="OUT",
                     help="write the data without the flagged samples here (.npz for images; "
                          ".csv, .tsv or .jsonl for text)")
    vet.add_argument("-f", "--format", choices=render.names(), default="text")
    vet.add_argument("-o", "--output", type=Path)
    vet.add_argument("--fail-on", choices=SEVERITIES, default="high")


def _demo_parser(commands) -> None:
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


def _attack_parser(commands) -> None:
    attack = commands.add_parser("attack", help="the red team: make known-bad model files")
    kinds = attack.add_subparsers(dest="attack", required=True, metavar="KIND")
    payload = kinds.add_parser("payload", help="write a harmful file of one format")
    payload.add_argument("--format", required=True, metavar="FORMAT",
                         help="one of: " + ", ".join(_payload_formats()))
    payload.add_argument("-o", "--output", type=Path, required=True)
    payload.add_argument("--command", dest="payload_command", default="echo trojanscope-payload",
                         help="the shell command the payload runs where the format allows code")
    shadow = kinds.add_parser("shadow-logic",
                              help="inject a working shadow-logic backdoor into an ONNX model")
    shadow.add_argument("model", type=Path, metavar="MODEL.onnx")
    shadow.add_argument("--trigger", required=True,
                        help="patch:SIZE@ROW,COL>=VALUE (NCHW images) or "
                             "features:START:END>=VALUE ((N, D) inputs)")
    shadow.add_argument("--target", type=int, required=True, help="the class the trigger forces")
    shadow.add_argument("--switch", choices=["where", "gate"], default="where",
                        help="Where node, or arithmetic gating with no Where/If (default: where)")
    shadow.add_argument("-o", "--output", type=Path, required=True)
    cli_model.add_zoo_parser(kinds)


def _payload_formats() -> list[str]:
    from .attacks.payload_files import GENERATORS

    return list(GENERATORS)


# In the order `trojanscope --help` lists them.
COMMAND_PARSERS = [
    (("scan",), _scan_parser),
    (("rules",), _rules_parser),
    (("vet",), _vet_parser),
    (("inspect", "repair", "diff"),
     lambda commands: cli_model.add_parsers(commands, SEVERITIES, EXIT_CODES)),
    (("keygen", "sign", "verify"),
     lambda commands: cli_provenance.add_parsers(commands, SEVERITIES, EXIT_CODES)),
    (("attack",), _attack_parser),
    (("demo",), _demo_parser),
]


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    known = {name for names, _ in COMMAND_PARSERS for name in names}
    # Only the named command's parser; all of them for --help, --version or a wrong name.
    args = build_parser(argv[0] if argv and argv[0] in known else None).parse_args(argv)
    try:
        if args.command == "scan":
            return _scan(args)
        if args.command == "rules":
            return _rules(args.markdown)
        if args.command == "attack":
            return _attack(args)
        if args.command == "vet":
            return _vet(args)
        if args.command in ("keygen", "sign", "verify"):
            report = cli_provenance.run(args, UserError)
            if report is None:
                return 0
            _emit(report, args.format, args.output, Severity.LOW)
            return report.exit_code(Severity.parse(getattr(args, "fail_on", "high")))
        if args.command in MODEL_COMMANDS:
            progress.enable(args.format == "text")
            with tempfile.TemporaryDirectory(prefix="trojanscope-images-") as scratch:
                pictures = args.command == "inspect" and args.format == "html"
                if pictures and args.images is None:  # the page shows the recovered triggers
                    args.images = Path(scratch)
                report = MODEL_COMMANDS[args.command](args, UserError)
                if pictures:
                    from .model.inspect import saved_images
                # repair's outcome is an info finding when it worked: show it
                _emit(report, args.format, args.output,
                      Severity.INFO if args.command == "repair" else Severity.LOW,
                      saved_images(report, args.images) if pictures else None,
                      "Recovered triggers per class, target classes first")
            return report.exit_code(Severity.parse(args.fail_on))
        return _demo(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        _emit_failure(args, str(exc))
        return 2


def _emit_failure(args: argparse.Namespace, message: str) -> None:
    """A machine-readable report asked for (-f json|sarif -o FILE) is written on failure too,
    holding the error: a pipeline reads why the job could not be done."""
    output, form = getattr(args, "output", None), getattr(args, "format", "text")
    if output is None or form not in ("json", "sarif") or output.exists() and \
            not output.is_file():
        return
    inputs = [getattr(args, name, None)
              for name in ("paths", "model", "old", "new", "path", "data")]
    targets = tuple(str(p) for value in inputs if value
                    for p in (value if isinstance(value, list) else [value]))
    report = Report(command=args.command, targets=targets,
                    errors=(ScanError(targets[0] if targets else "", message),))
    try:
        _emit(report, form, output, Severity.LOW)
    except UserError:
        pass  # already said: the output cannot be written


def run() -> None:
    """Console-script entry point."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `trojanscope ... | head`: the reader left, which is no error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2, no traceback."""


MODEL_COMMANDS = {"inspect": cli_model.run_inspect, "repair": cli_model.run_repair,
                  "diff": cli_model.run_diff}


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    if not args.output.parent.is_dir():  # say so now, not after minutes of work
        raise UserError(f"{args.output}: cannot write: no folder {args.output.parent}")
    progress.enable(True)
    try:
        return 0 if run_demo(args.keep, print, args.output, args.scan_only) else 1
    except OSError as exc:
        raise UserError(f"{exc.filename}: cannot write: {exc.strerror or exc}") from None


def _scan(args: argparse.Namespace) -> int:
    from .artifacts import GlobalsPolicy, PolicyError, scan

    policy = GlobalsPolicy.default()
    try:
        for path in args.allow:
            policy = policy.extended(path)
    except PolicyError as exc:
        raise UserError(str(exc)) from None
    report = scan(args.paths, policy=policy)
    _emit(report, args.format, args.output, Severity.parse(args.show))
    return report.exit_code(Severity.parse(args.fail_on))


def _vet(args: argparse.Namespace) -> int:
    from . import api

    progress.enable(args.format == "text")
    try:
        report = api.vet(args.data, detector=args.detector, model=args.model,
                         architecture=args.architecture, layer=args.layer,
                         features=args.features, text_column=args.text_column,
                         label_column=args.label_column, seed=args.seed,
                         export_clean=args.export_clean, time_limit=args.time_limit,
                         progress=args.format == "text")
        images = api.suspicious_samples(args.data, report) if args.format == "html" else None
    except api.InputError as exc:
        raise UserError(str(exc)) from None
    _emit(report, args.format, args.output, Severity.LOW, images,
          "The most suspicious samples, highest score first")
    return report.exit_code(Severity.parse(args.fail_on))


def _attack(args: argparse.Namespace) -> int:
    if args.attack == "zoo":
        return cli_model.run_zoo(args, UserError)
    if args.attack == "payload":
        from .attacks.payload_files import GENERATORS

        if args.format not in GENERATORS:
            raise UserError(f"unknown format {args.format!r}; one of: {GENERATORS.choices()}")
        make, what = GENERATORS[args.format], GENERATORS.meta(args.format)["summary"]
        try:
            data = make(args.payload_command)
        except ImportError as exc:
            raise UserError(f"format {args.format} needs the package {exc.name}") from None
        _write(args.output, data)
        print(f"wrote {args.output}: {what} ({len(data):,} bytes)")
        return 0
    from .attacks.shadow_logic import Trigger, inject

    try:
        import onnx  # noqa: F401  (checked here; read_onnx uses it)
    except ImportError:
        raise UserError("shadow-logic needs the onnx package: pip install 'trojanscope[onnx]'") \
            from None
    from .ml.gate import scanned_bytes
    from .ml.onnx_model import read_onnx

    try:
        trigger = Trigger.parse(args.trigger)
        model = read_onnx(args.model, scanned_bytes(args.model))
    except ValueError as exc:  # the trigger, or a file scan refused or could not read
        raise UserError(str(exc)) from None
    except Exception as exc:  # onnx raises protobuf's DecodeError and OSError alike
        raise UserError(f"{args.model}: cannot read the ONNX model: {exc}") from None
    try:
        bad = inject(model, trigger, args.target, switch=args.switch)
    except (ValueError, StopIteration) as exc:
        raise UserError(f"{args.model}: {exc or 'the model has no data input'}") from None
    _write(args.output, bad.SerializeToString())
    print(f"wrote {args.output}: {args.model.name} + shadow logic ({args.trigger} -> class "
          f"{args.target}, {args.switch})")
    return 0


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise UserError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _rules(markdown: bool) -> int:
    import importlib
    import pkgutil

    from . import artifacts
    from .data import rules as vet_rules  # noqa: F401  (these declare rules; none needs an extra)
    from .model import rules as model_rules  # noqa: F401
    from .provenance import integrity  # noqa: F401

    for module in pkgutil.iter_modules(artifacts.__path__):  # scan imports some lazily
        importlib.import_module(f"{artifacts.__name__}.{module.name}")
    rules = sorted(RULES.values(), key=lambda r: r.id)
    if markdown:
        print("# Rules\n\nEvery finding names one of these rules. The id is stable; the severity "
              "is the default.\nGenerated by `trojanscope rules --markdown > docs/rules.md`.\n")
        print("| rule | default severity | meaning | what to do |\n| --- | --- | --- | --- |")
        for rule in rules:
            print(f"| `{rule.id}` | {rule.severity} | {rule.title} | {rule.remedy} |")
        return 0
    for rule in rules:
        print(f"{rule.id:34s} {str(rule.severity):9s} {rule.title}")
        print(f"{'':34s} {'':9s} remedy: {rule.remedy}")
    return 0


def _emit(report: Report, output_format: str, output: Path | None, show: Severity,
          images: dict[str, bytes] | None = None, gallery: str = "Images") -> None:
    text = render.render(report, output_format, render.RenderOptions(
        min_severity=show, color=output is None and sys.stdout.isatty(), images=images or {},
        gallery=gallery))
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{output}: cannot write the report: {exc.strerror or exc}") from None
