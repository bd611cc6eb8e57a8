"""Metrics shared by tests and benchmarks."""

from __future__ import annotations

import numpy as np


def auroc(scores, truth) -> float:
    """Area under the ROC curve: how well `scores` rank the true positives above the rest
    (ties take the order of the input; nan when one side is empty)."""
    scores = np.asarray(scores, dtype=float)
    truth = np.asarray(truth, dtype=bool)
    positives = int(truth.sum())
    negatives = len(truth) - positives
    if not positives or not negatives:
        return float("nan")
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def detections(results: list[dict]) -> dict:
    """A benchmark's verdicts against the truth: each result has `trojaned` (the truth),
    `verdict` and `score`."""
    truth = np.array([r["trojaned"] for r in results], dtype=bool)
    flagged = np.array([r["verdict"] == "trojaned" for r in results], dtype=bool)
    trojaned = int(truth.sum())
    return {"trojaned": trojaned, "clean": len(results) - trojaned,
            "auroc": auroc([r["score"] for r in results], truth)
            if 0 < trojaned < len(results) else None,
            "detected": int((flagged & truth).sum()),
            "false_alarms": int((flagged & ~truth).sum())}
