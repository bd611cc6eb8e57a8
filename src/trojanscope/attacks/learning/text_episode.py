"""One text episode of the learning attacker: poison -> train -> detect -> reward, as
`episode.run_episode` does for images.

The model is a bag-of-words proxy (word and word-pair presence, a logistic regression): the
cheapest model that learns a word trigger, a few tenths of a second on 2 cores. A fine-tuned
transformer learns triggers from fewer poisons, so the proxy's attack success is a floor.
The detector is `vet` on the poisoned training texts as a user runs it (its default, the
model-free n-gram label-skew search); caught when it names the target's label.
"""

from __future__ import annotations

import numpy as np

from ...data.text import TextDataset
from .text_space import TextAttackConfig

SEED_OFFSET = 7919  # the held-out texts' insertions draw apart from the poisons'


def train_text_proxy(data: TextDataset):
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(CountVectorizer(ngram_range=(1, 2), binary=True),
                          LogisticRegression(C=10.0, max_iter=3000))
    return model.fit(list(data.texts), data.y)


def measure_text(model, config: TextAttackConfig | None, test: TextDataset,
                 seed: int) -> tuple[float, float]:
    """(attack success, clean accuracy) on the held-out texts (no attack: success 0)."""
    accuracy = float(np.mean(model.predict(list(test.texts)) == test.y))
    if config is None:
        return 0.0, accuracy
    insert, rng = config.trigger(), np.random.default_rng(seed + SEED_OFFSET)
    others = [text for text, label in zip(test.texts, test.y) if label != config.target]
    triggered = [insert(text, rng) for text in others]
    return float(np.mean(model.predict(triggered) == config.target)), accuracy


def vet_texts(data: TextDataset, poisoned: np.ndarray, target: int, seed: int):
    """(caught, detection, flagged class indices) of the default text vet on `data`."""
    from ...data.vet_text import vet_text

    results = vet_text(data, seed=seed).results
    flagged = sorted(data.names.index(name) for name in results.suspected_classes)
    caught = target in flagged
    found = np.intersect1d(results.suspicious_indices, poisoned).size / max(1, poisoned.size)
    return caught, 1.0 if caught else float(found), flagged
