"""attack: the red team's files (payloads per format, shadow logic, model zoos)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import model as model_commands
from .common import UserError, write

NAMES = ("attack",)


def add(commands) -> None:
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
    model_commands.add_zoo_parser(kinds)


def _payload_formats() -> list[str]:
    from ..attacks.payload_files import GENERATORS

    return list(GENERATORS)


def run(args: argparse.Namespace) -> int:
    if args.attack == "zoo":
        return model_commands.run_zoo(args)
    if args.attack == "payload":
        from ..attacks.payload_files import GENERATORS

        if args.format not in GENERATORS:
            raise UserError(f"unknown format {args.format!r}; one of: {GENERATORS.choices()}")
        make, what = GENERATORS[args.format], GENERATORS.meta(args.format)["summary"]
        try:
            data = make(args.payload_command)
        except ImportError as exc:
            raise UserError(f"format {args.format} needs the package {exc.name}") from None
        write(args.output, data)
        print(f"wrote {args.output}: {what} ({len(data):,} bytes)")
        return 0
    from ..attacks.shadow_logic import Trigger, inject

    try:
        import onnx  # noqa: F401  (checked here; read_onnx uses it)
    except ImportError:
        raise UserError("shadow-logic needs the onnx package: pip install 'trojanscope[onnx]'") \
            from None
    from ..ml.gate import scanned_bytes
    from ..ml.onnx_model import read_onnx

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
    write(args.output, bad.SerializeToString())
    print(f"wrote {args.output}: {args.model.name} + shadow logic ({args.trigger} -> class "
          f"{args.target}, {args.switch})")
    return 0
