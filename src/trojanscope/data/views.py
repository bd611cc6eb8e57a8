"""Views of images in which detectors look for poisons.

`input_view` needs no model: images are average-pooled to at most 14 x 14 (small patches and
high-frequency blend patterns fade), each image is standardised (a blended pattern's offset
cancels), and the result is projected on its top principal directions. Measured on MNIST-5k,
neighbour disagreement in this view ranks BadNets, Blended, WaNet and SIG poisons at AUROC
0.94-0.996 (1-10% poisoned), against 0.64-0.99 in raw pixels.
"""

from __future__ import annotations

import numpy as np

MAX_SIDE = 14
COMPONENTS = 50


def input_view(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    factor = max(1, int(np.ceil(max(h, w) / MAX_SIDE)))
    h2, w2 = h // factor, w // factor
    pooled = x[:, :, :h2 * factor, :w2 * factor].reshape(n, c, h2, factor, w2, factor)
    flat = pooled.mean(axis=(3, 5)).reshape(n, -1)
    flat = (flat - flat.mean(axis=1, keepdims=True)) / (flat.std(axis=1, keepdims=True) + 1e-6)
    centred = flat - flat.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:COMPONENTS].T
