"""Detectors of poisoned samples. Each is a function of arrays, registered by name with its
metadata:

    @detector("name", summary="...", modalities=("images", "text"), cut=None, model_free=False,
              view="input")
    def score(features (n, d), labels (n,), *, seed) -> (n,) scores, higher = more suspicious

`summary`: one line for `vet --help`; `modalities`: the data it is offered for (text: over
sentence features); `cut`: the score at which a sample is an outlier (None: the median plus
five deviations of the scores); `model_free`: it reads the images themselves, through the `view`
named (views.py: "input", the pooled and projected pixels; "statistics", each image's
low-level statistics) instead of a model's features. Choosing thresholds, extracting features
and reporting are separate, shared steps (data/vet.py).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ...plugins import Registry

Detector = Callable[..., np.ndarray]
# Every module of this package is imported when the registry is first read: a new detector is
# a new module here (plus its test).
DETECTORS: Registry[Detector] = Registry("detector", __name__)


def detector(name: str, *, summary: str, modalities: tuple[str, ...] = ("images",),
             cut: float | None = None, model_free: bool = False, view: str = "input"
             ) -> Callable[[Detector], Detector]:
    return DETECTORS.register(name, summary=summary, modalities=modalities, cut=cut,
                              model_free=model_free, view=view)


def offered(modality: str) -> list[str]:
    """The detectors offered for `modality` (images or text), by name."""
    return [name for name in DETECTORS if modality in DETECTORS.meta(name)["modalities"]]


def check_inputs(features, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate at the edge; returns float64 features and integer labels (copies)."""
    x = np.array(features, dtype=np.float64, copy=True)
    y = np.asarray(labels)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (samples x dimensions), not shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"labels must be 1-D with one per sample: {len(y)} labels for "
                         f"{len(x)} samples")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or infinity")
    if y.dtype.kind not in "iub":
        if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"labels must be integers, not {y.dtype}")
    return x, y.astype(np.int64)


def per_class(labels: np.ndarray):
    """(class, row indices) for each class, in class order."""
    for label in np.unique(labels):
        yield int(label), np.flatnonzero(labels == label)

