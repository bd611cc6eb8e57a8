"""Model files, told apart by content, each loaded the one safe way its format allows, after
scan has read the very bytes that are loaded (gate.py):

- TorchScript archives (torch.jit.save): torch.jit.load;
- torch.export archives (.pt2): torch.export.load;
- state dicts: torch.save zips or legacy streams, loaded with weights_only=True, or safetensors;
  the architecture comes from a spec (`architectures.build`);
- Hugging Face image-classifier folders (config.json + model.safetensors): transformers, never
  its remote code, weights from safetensors only;
- ONNX: onnxruntime, forward passes only.

`open_model` is the one entry point. A format registers itself with `@model_format`.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..findings import Finding, Severity
from .gate import (
    REFUSE_AT,
    ModelError,
    first_line,
    json_object,
    read_model_bytes,
    refuse,
    scan_findings,
    scan_folder,
)
from .model import Model, best_device, device_of, quiet_deprecation


@dataclass(frozen=True)
class ModelFormat:
    name: str
    description: str
    sniff: Callable[[bytes, list[str]], bool]   # (head bytes, zip member names) -> is it
    load: Callable[..., Model]                  # (path, data bytes, architecture) -> Model
    needs_architecture: bool = False
    refuses: Callable[[Finding], bool] = lambda f: f.severity >= REFUSE_AT  # noqa: E731


FORMATS: dict[str, ModelFormat] = {}


def model_format(name: str, description: str, sniff, needs_architecture: bool = False,
                 refuses: Callable[[Finding], bool] | None = None):
    def register(load):
        FORMATS[name] = ModelFormat(name, description, sniff, load, needs_architecture,
                                    *([refuses] if refuses else []))
        return load
    return register


def _any_import(finding: Finding) -> bool:
    """For loaders that may unpickle without weights_only: a lying FRAME (medium, as scan
    rates it) refuses the file too, besides every high finding. (A raw tensor block that
    merely looks like a broken pickle, `pickle.malformed`, does not.)"""
    return finding.severity >= REFUSE_AT or finding.rule in WEIGHTS_ONLY_BREAKERS


WEIGHTS_ONLY_BREAKERS = {"pickle.frame-mismatch"}


def open_model(path: str | Path, architecture: str | None = None, device=None) -> Model:
    """Scan, then load, a model file or Hugging Face folder. `architecture`: the spec a state
    dict needs. Raises UnsafeModelError when scan finds what would run on load, ModelError when
    the file is no model trojanscope can load (both name the file)."""
    path = Path(path)
    if path.is_dir():
        model = _huggingface(path)
    elif not path.exists():
        raise ModelError(f"{path}: no such file or folder")
    else:
        data = read_model_bytes(path)
        findings = scan_findings(path, data)
        refuse(path, findings)
        fmt = identify(path, data)
        refuse(path, [f for f in findings if fmt.refuses(f)], Severity.INFO)
        if fmt.needs_architecture and not architecture:
            raise ModelError(f"{path}: a {fmt.description} holds weights only: say which "
                             "architecture they belong to (--architecture, e.g. "
                             "'resnet18(classes=10)' or 'mypackage.nets:Net')")
        model = fmt.load(path, data, architecture)
    return model.to(device if device is not None else best_device())


def identify(path: Path, data: bytes) -> ModelFormat:
    names: list[str] = []
    if data[:2] == b"PK":
        try:
            names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        except zipfile.BadZipFile as exc:
            raise ModelError(f"{path}: a damaged zip archive: {exc}") from None
    for fmt in FORMATS.values():
        if fmt.sniff(data[:64], names):
            return fmt
    known = "; ".join(f.description for f in FORMATS.values())
    raise ModelError(f"{path}: not a model file trojanscope can load (it reads {known}, and "
                     "Hugging Face folders)")


def _torch():
    try:
        import torch
    except ImportError:
        raise ModelError("loading a model needs PyTorch: pip install 'trojanscope[torch]'") \
            from None
    return torch


@model_format("torchscript", "TorchScript archive (torch.jit.save)",
              lambda head, names: any(n.endswith("/constants.pkl") for n in names))
def _load_torchscript(path: Path, data: bytes, architecture) -> Model:
    from .model import _save_torchscript

    torch = _torch()
    try:
        with quiet_deprecation():
            module = torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
    except RuntimeError as exc:
        raise ModelError(f"{path}: not a loadable TorchScript archive: {first_line(exc)}") from None
    return Model(module, "torchscript", str(path), saver=_save_torchscript, hookable=False)


@model_format("export", "torch.export archive (.pt2)",
              lambda head, names: any(n.endswith("/archive_format") for n in names) and
              any("/models/" in n and n.endswith(".json") for n in names),
              refuses=_any_import)  # its loader unpickles without weights_only
def _load_export(path: Path, data: bytes, architecture) -> Model:
    """The program unflattened into its original module tree, so that forward hooks reach its
    layers; a clone or a save goes back to the program (the same graph, the new weights)."""
    module = _unflattened(path, data)

    def clone(current):
        fresh = _unflattened(path, data).to(device_of(current))
        fresh.load_state_dict(current.state_dict())
        return fresh

    def save(current, out: Path) -> None:
        torch = _torch()
        program = _program(path, data)
        weights = current.state_dict()
        with torch.no_grad():
            for name, value in program.state_dict.items():
                value.copy_(weights[name].to(value.device))
        torch.export.save(program, str(out))
    return Model(module, "export", str(path), saver=save, cloner=clone)


def _program(path: Path, data: bytes):
    torch = _torch()
    try:
        return torch.export.load(io.BytesIO(data))
    except Exception as exc:  # torch raises many types for a bad archive
        raise ModelError(f"{path}: not a loadable torch.export archive: {first_line(exc)}") \
            from None


def _unflattened(path: Path, data: bytes):
    torch = _torch()
    try:
        return torch.export.unflatten(_program(path, data))
    except Exception as exc:
        raise ModelError(f"{path}: cannot rebuild the exported program's modules: "
                         f"{first_line(exc)}") from None


@model_format("state-dict", "PyTorch state dict (torch.save)", lambda head, names:
              any(n.endswith("/data.pkl") for n in names) or head[:2] == b"\x80\x02",
              needs_architecture=True)
def _load_state_dict(path: Path, data: bytes, architecture) -> Model:
    torch = _torch()
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError...: weights_only refused it
        raise ModelError(f"{path}: not a state dict that loads with weights only "
                         f"({first_line(exc)}); save model.state_dict(), or export the model with "
                         "torch.export") from None
    return _with_weights(path, _state_of(path, state), architecture, "state-dict",
                         lambda module, out: _save_state(module, out))


def _sniff_safetensors(head: bytes, names: list[str]) -> bool:
    return len(head) > 9 and int.from_bytes(head[:8], "little") < 1 << 30 and head[8:9] == b"{"


@model_format("safetensors", "safetensors state dict", _sniff_safetensors,
              needs_architecture=True)
def _load_safetensors(path: Path, data: bytes, architecture) -> Model:
    _torch()
    from safetensors.torch import load as load_safetensors

    try:
        state = load_safetensors(data)
    except Exception as exc:  # safetensors raises its own error types
        raise ModelError(f"{path}: not a readable safetensors file: {first_line(exc)}") from None
    return _with_weights(path, state, architecture, "safetensors",
                         lambda module, out: _save_state(module, out))


def _state_of(path: Path, state) -> dict:
    """The tensors of a state dict, or of the usual checkpoint wrappings of one."""
    torch = _torch()
    for key in ("state_dict", "model_state_dict", "model", "net"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state or \
            not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: holds no state dict (a mapping of names to tensors)")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


def _with_weights(path: Path, state: dict, architecture: str, kind: str, saver) -> Model:
    from .architectures import build

    module = build(architecture)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{path}: the weights do not fit {architecture}: "
                         f"{first_line(exc)}") from None
    return Model(module.eval(), kind, str(path), saver=saver)


def _save_state(module, out: Path) -> None:
    torch = _torch()
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(out))
    else:
        torch.save(state, str(out))


@model_format("onnx", "ONNX model (forward passes only)",
              lambda head, names: head[:1] == b"\x08" and not names)
def _load_onnx(path: Path, data: bytes, architecture) -> Model:
    from .onnx_model import onnx_module

    return Model(onnx_module(path, data), "onnx", str(path), differentiable=False,
                 hookable=True)


def _huggingface(path: Path) -> Model:
    _checked_folder(path)
    if is_text_classifier(path):
        raise ModelError(f"{path}: a text classifier: give it texts (--data texts.csv)")
    from .huggingface import load_image_classifier

    return load_image_classifier(path)


def is_text_classifier(path: str | Path) -> bool:
    """A Hugging Face folder whose config names a sequence classifier, or that carries a
    tokenizer and no image preprocessing."""
    path = Path(path)
    config_path = path / "config.json"
    if not (path.is_dir() and config_path.is_file()):
        return False
    try:
        config = json_object(config_path)
    except ModelError:
        return False
    names = config.get("architectures")
    if isinstance(names, list) and any(isinstance(n, str) for n in names):
        return any(isinstance(n, str) and n.endswith("ForSequenceClassification")
                   for n in names)
    from .text_model import TOKENIZER_FILES

    return not (path / "preprocessor_config.json").is_file() and \
        any((path / name).is_file() for name in (*TOKENIZER_FILES, "tokenizer_config.json"))


def open_text_model(path: str | Path, device=None):
    """Scan, then load, a Hugging Face text-classifier folder (a `TextClassifier`)."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such folder")
    if not path.is_dir():
        raise ModelError(f"{path}: a text classifier is a Hugging Face folder (config.json, "
                         "model.safetensors, the tokenizer's files), not a single file")
    _checked_folder(path)
    from .text_model import check_tokenizer_files, load_text_classifier

    check_tokenizer_files(path)
    model = load_text_classifier(path)
    model.module.to(device if device is not None else best_device())
    return model


def _checked_folder(path: Path) -> None:
    """A Hugging Face folder's config, its weights as safetensors, and scan's verdict on every
    file, before transformers reads any of it."""
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ModelError(f"{path}: a folder, but not a Hugging Face model (no config.json)")
    config = json_object(config_path)
    if "auto_map" in config:
        raise ModelError(f"{path}: config.json names its own code (auto_map), which "
                         "transformers would run (trust_remote_code); trojanscope never runs it")
    fetched = _hub_code(config)
    if fetched:
        raise ModelError(f"{path}: config.json asks for code from the Hugging Face Hub "
                         f"({fetched[0]} {fetched[1]!r}), which transformers would download "
                         "and run; trojanscope never runs it")
    if not (path / "model.safetensors").is_file():
        raise ModelError(f"{path}: no model.safetensors; trojanscope reads Hugging Face "
                         "weights from safetensors only (a .bin would need unpickling)")
    scan_folder(path)


def _hub_code(config) -> tuple[str, str] | None:
    """The first setting, at any depth of a config, that names a Hub repository of code (an
    attention kernel such as "kernels-community/flash-attn", which transformers fetches and
    imports): its key and value."""
    if isinstance(config, dict):
        for key, value in config.items():
            if isinstance(key, str) and key.endswith("implementation") and \
                    isinstance(value, str) and "/" in value:
                return key, value
            found = _hub_code(value)
            if found:
                return found
    elif isinstance(config, list):
        for value in config:
            found = _hub_code(value)
            if found:
                return found
    return None
