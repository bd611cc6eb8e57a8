"""Detectors of poisoned samples. Each is a function of arrays, registered by name:

    score(features (n, d), labels (n,), *, seed) -> (n,) scores, higher = more suspicious

Choosing thresholds, extracting features and reporting are separate, shared steps.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Detector = Callable[..., np.ndarray]
DETECTORS: dict[str, Detector] = {}


def detector(name: str) -> Callable[[Detector], Detector]:
    def register(function: Detector) -> Detector:
        DETECTORS[name] = function
        return function
    return register


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


from . import activation_clustering, neighbours, spectral, spectre  # noqa: E402,F401  (registers)
