"""STRIP (Gao et al., ACSAC 2019) as an inference-time guard.

A triggered input keeps its (target) prediction however it is blended with clean images, so the
prediction entropy over its blended copies stays low; a clean input's blends are confused. The
entropy is taken over classes for each blended copy, then averaged over the copies (one
toolkit averages over the wrong axis). The threshold comes from a chosen false-rejection rate
on clean data. Blend partners are drawn from a generator seeded by the seed and the input's own
bytes, so a sample's score does not depend on its position in the batch.
"""

from __future__ import annotations

import zlib
from typing import Callable

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]  # inputs -> class probabilities (n, classes)


class StripGuard:
    def __init__(self, predict: Predict, clean: np.ndarray, *, blends: int = 16,
                 alpha: float = 0.5, false_rejection: float = 0.01, seed: int = 0):
        if not 0 < false_rejection < 0.5:
            raise ValueError("false_rejection must be between 0 and 0.5")
        if len(clean) < 2:
            raise ValueError("STRIP needs at least two clean images to blend with")
        self.predict = predict
        self.pool = np.asarray(clean, dtype=np.float32)
        self.blends, self.alpha, self.seed = blends, alpha, seed
        self.threshold = float(np.quantile(self.entropy(self.pool), false_rejection))

    def entropy(self, x: np.ndarray) -> np.ndarray:
        """Mean prediction entropy of each input's blended copies (low = likely triggered)."""
        x = np.asarray(x, dtype=np.float32)
        out = np.empty(len(x))
        for i, sample in enumerate(x):
            rng = np.random.default_rng([self.seed, zlib.crc32(sample.tobytes())])
            partners = self.pool[rng.choice(len(self.pool), self.blends)]
            blended = self.alpha * sample[None] + (1 - self.alpha) * partners
            p = np.clip(self.predict(blended), 1e-12, 1.0)
            out[i] = float((-(p * np.log(p)).sum(axis=1)).mean())
        return out

    def flags(self, x: np.ndarray) -> np.ndarray:
        """True for inputs to reject as probably triggered."""
        return self.entropy(x) < self.threshold

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and rejection flags: use the guard in place of the model."""
        return self.predict(np.asarray(x, dtype=np.float32)).argmax(axis=1), self.flags(x)
