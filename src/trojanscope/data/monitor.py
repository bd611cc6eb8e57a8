"""The during-training monitor: your own PyTorch training loop hands it each batch's per-sample
losses, and it reports, every epoch, which class is being poisoned and by which samples, while
training runs.

A dirty-label poison shows one class and carries the label of another. Until the model has
learnt the trigger, which takes several epochs on real data, it resists such a sample's label:
its loss stays far above the loss of the rest of its class. The monitor keeps each sample's
loss per epoch; a sample's score is how far its mean loss over the early epochs lies above the
median sample's, in robust units (median absolute deviations). The decisions are vet's: a
class is suspected when its share of such samples stands far above the other classes' (natural
label noise is spread thinly over all classes), and only its outlying samples are flagged.
Anti-Backdoor Learning (Li et al., NeurIPS 2021) reads the same trajectories the other way,
poisons learnt *faster*; with small models and patch triggers measured here the poisons
were learnt more slowly in the first epochs (docs/benchmarks.md), so the monitor reads the
resistance. Clean-label poisons carry their true label, and the monitor does not see them.

    monitor = TrainingMonitor(labels)
    for epoch in range(epochs):
        for indices, x, y in loader:                     # indices: the samples' rows
            losses = F.cross_entropy(model(x), y, reduction="none")
            monitor.record(indices, losses)
            losses.mean().backward(); ...
        report = monitor.end_epoch()                      # a vet Report, every epoch
        if report.results.poisoned: ...                # stop, drop, or carry on
"""

from __future__ import annotations

import time

import numpy as np

from ..findings import Location, Report
from ..results import VetResults
from .decide import decide

CUT = 3.0       # robust units above the class's median loss
EPOCHS = 3      # the early epochs that are compared (the signal fades once all is learnt)


class TrainingMonitor:
    def __init__(self, labels, name: str = "training data", epochs: int = EPOCHS):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.name, self.epochs = name, epochs
        self.history: list[np.ndarray] = []
        self._current = np.full(len(self.labels), np.nan)
        self.started = time.perf_counter()

    def record(self, indices, losses) -> None:
        """Per-sample losses of one batch (`reduction="none"`), by the samples' rows."""
        rows = np.asarray(_numpy(indices), dtype=np.int64)
        values = np.asarray(_numpy(losses), dtype=np.float64).reshape(-1)
        if rows.shape != values.shape:
            raise ValueError(f"{len(rows)} indices for {len(values)} losses")
        if rows.min(initial=0) < 0 or rows.max(initial=-1) >= len(self.labels):
            raise ValueError(f"indices must lie in 0..{len(self.labels) - 1}")
        self._current[rows] = values

    def end_epoch(self) -> Report:
        """Close the epoch (samples not seen keep their last loss) and report."""
        if self.history:
            seen = np.isnan(self._current)
            self._current[seen] = self.history[-1][seen]
        self.history.append(self._current)
        self._current = np.full(len(self.labels), np.nan)
        return self.report()

    def scores(self) -> np.ndarray:
        """Per sample: robust units its early mean loss lies above the median sample's. The
        whole set is the yardstick: a poisoned class can be a third poisons, which would move
        its own median."""
        if not self.history:
            return np.zeros(len(self.labels))
        early = np.nanmean(np.stack(self.history[:self.epochs]), axis=0)
        early = np.where(np.isnan(early), np.nanmedian(early), early)
        median = np.median(early)
        return (early - median) / (1.4826 * np.median(np.abs(early - median)) + 1e-6)

    def report(self) -> Report:
        scores = self.scores()
        decision = decide(scores, self.labels, CUT)
        findings = [_finding(entry, self.name) for entry in decision.per_class
                    if entry["suspected"]]
        return Report(
            command="vet", targets=(self.name,), findings=tuple(findings),
            results=VetResults(
                poisoned=decision.poisoned, suspected_classes=decision.classes,
                suspicious_indices=decision.indices.tolist(),
                estimated_poison_share={str(e["class"]): e["outlier_share"]
                                        for e in decision.per_class if e["suspected"]},
                per_class=decision.per_class, samples=int(len(self.labels)),
                detector="training-loss", cut=CUT, epochs_seen=len(self.history),
                scores=np.round(scores, 4).tolist(), labels=self.labels.tolist()),
            timings={"total_seconds": round(time.perf_counter() - self.started, 3)},
            config={"detector": "training-loss", "epochs": self.epochs})


def _finding(entry: dict, name: str):
    from .rules import POISONED_CLASS

    return POISONED_CLASS.finding(
        f"class {entry['class']}: {entry['outliers']} of {entry['samples']} samples "
        f"({entry['outlier_share']:.1%}) resisted their label far longer than the rest of "
        "their class in the first epochs, as samples relabelled by a poisoning attack do",
        Location(name, (f"class {entry['class']}",)),
        {**entry, "detector": "training-loss"})


def _numpy(value):
    return value.detach().cpu().numpy() if hasattr(value, "detach") else value
