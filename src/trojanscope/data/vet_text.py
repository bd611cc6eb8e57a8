"""`vet` for text: names the trigger words and phrases in a labelled text set and the samples
that carry them (model-free, the default; see text_triggers), or scores every text with an
image detector over sentence features (see text_features)."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ..findings import Location, Report, clipped
from ..results import VetResults
from .rules import CLEAN_LABEL_PHRASE, TRIGGER_PHRASE
from .text import TextDataset
from .text_triggers import TriggerConfig, find_triggers, flagged_rows

SHOWN_CANDIDATES = 20
DEFAULT_TEXT_DETECTOR = "ngram-label-skew"


def vet_text(data: TextDataset, seed: int = 0, config: TriggerConfig | None = None) -> Report:
    started = time.perf_counter()
    config = replace(config or TriggerConfig(), seed=seed)
    phrases, figures = find_triggers(data.texts, data.y, config)
    findings = []
    for phrase in phrases:
        label = data.names[phrase.label]
        rule, kind = (CLEAN_LABEL_PHRASE, "clean-label") if phrase.clean_label else \
            (TRIGGER_PHRASE, "dirty-label")
        findings.append(rule.finding(
            f"{phrase.phrase!r}: {len(phrase.carriers)} texts labelled {label!r} "
            f"({phrase.purity:.0%} of those that carry it), where their other words predict "
            f"{phrase.expected:.0%} (adjusted p {phrase.p_value:.1e})"
            + (f"; what they say is {label!r} too: a clean-label trigger, or a label the data "
               "leaks" if phrase.clean_label else ""),
            Location(data.name, (f"phrase {phrase.phrase!r}",)),
            {"phrase": phrase.phrase, "kind": kind, "label": label,
             "carriers": len(phrase.carriers),
             "purity": round(phrase.purity, 3), "expected": round(phrase.expected, 3),
             "p_value": phrase.p_value, "examples": phrase.carriers[:5].tolist(),
             "example_texts": [clipped(data.texts[i], 200) for i in phrase.carriers[:3]]}))
    flagged = flagged_rows(phrases)
    candidates = [{**c, "label": data.names[c["label"]]}
                  for c in figures["candidates"][:SHOWN_CANDIDATES]]
    return Report(
        command="vet", targets=(data.name,), findings=tuple(findings),
        results=VetResults(
            poisoned=bool(phrases),
            trigger_phrases=[f.evidence["phrase"] for f in findings],
            suspected_classes=sorted({data.names[p.label] for p in phrases}),
            suspicious_indices=flagged.tolist(),
            samples=len(data.texts), detector="ngram-label-skew",
            ngrams_tested=figures["ngrams"], top_candidates=candidates),
        timings={"total_seconds": round(time.perf_counter() - started, 3)},
        config={"seed": seed, "detector": "ngram-label-skew", "max_n": config.max_n,
                "min_count": config.min_count, "alpha": config.alpha,
                "min_excess": config.min_excess, "max_position": config.max_position,
                "min_kept": config.min_kept, "shortcut_purity": config.shortcut_purity,
                "shortcut_alpha": config.shortcut_alpha,
                "shortcut_excess": config.shortcut_excess, "min_pair": config.min_pair})


def vet_text_features(data: TextDataset, detector: str, seed: int = 0,
                      features: np.ndarray | None = None,
                      embeddings: np.ndarray | None = None) -> Report:
    """`detector` (spectral, spectre, neighbour-disagreement) over
    `features` (the user's classifier's, one row per text) or else over a proxy trained on
    MiniLM sentence embeddings (neighbour-disagreement: the embeddings themselves);
    `embeddings`, when given, are those MiniLM embeddings already computed."""
    from .detectors import offered
    from .text_features import proxy_features, sentence_embeddings
    from .vet import judge

    if detector not in offered("text"):
        raise ValueError(f"unknown detector {detector!r} for text: {DEFAULT_TEXT_DETECTOR}, "
                         f"{', '.join(offered('text'))} (activation-clustering named a class "
                         "on clean SST-2 and the wrong class on poisoned sets: not offered for "
                         "text)")
    started = time.perf_counter()
    if features is not None:
        inputs, source = features, "given"
    else:
        inputs = sentence_embeddings(data.texts) if embeddings is None else embeddings
        if detector == "neighbour-disagreement":
            features, source = inputs, "minilm"
        else:
            features, source = proxy_features(inputs, data.y, seed), "proxy on minilm"
    return judge(features, data.y, data.name, detector, seed, relabel=None,
                 config={"features": source}, started=started, names=data.names)
