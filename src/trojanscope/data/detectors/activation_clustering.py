"""Activation Clustering (Chen et al., SafeAI 2019): within each class, split the features into
two clusters; poisons form the smaller, well-separated one.

The split is made deterministic and independent of row order: the features are reduced to
their top principal directions, 2-means starts from the two points farthest apart along the
first direction and runs Lloyd steps. A sample's score is high when it sits in the smaller
cluster of a class that splits cleanly (silhouette-like margin).

Exclusionary reclassification (the paper's check of a split) needs a model trained without the
small clusters, so it is a separate step, `reclassification_weights`, that vet runs with its
proxy: a small cluster that the retrained model puts back into its own class is legitimate.
"""

from __future__ import annotations

import numpy as np

from . import check_inputs, detector, per_class

COMPONENTS = 10
ITERATIONS = 50


@detector("activation-clustering", cut=0.5,
          summary="a small cluster of a class's activations that a model trained without it "
                  "puts in another class (Chen et al. 2018; trains proxies: torch)")
def activation_clustering_scores(features, labels, *, seed: int = 0) -> np.ndarray:
    return activation_clusters(features, labels)[0]


def activation_clusters(features, labels) -> tuple[np.ndarray, np.ndarray]:
    """(scores, membership of each class's smaller cluster)."""
    x, y = check_inputs(features, labels)
    scores = np.zeros(len(x))
    small_cluster = np.zeros(len(x), dtype=bool)
    for _, rows in per_class(y):
        if len(rows) < 4:
            continue
        assign, margin = two_means(x[rows])
        sizes = np.bincount(assign, minlength=2)
        small = int(np.argmin(sizes))
        share = sizes[small] / len(rows)
        in_small = assign == small
        small_cluster[rows[in_small]] = True
        # Smaller cluster, larger gap between clusters, smaller share: more suspicious.
        scores[rows[in_small]] = (1 - 2 * share) * np.clip(margin[in_small], 0, None)
    return scores, small_cluster


def reclassification_weights(small_cluster: np.ndarray, labels: np.ndarray,
                             predicted: np.ndarray) -> np.ndarray:
    """Per sample, the share of its class's small cluster that a model trained without any small
    cluster assigns to some other class (1 for poisons relabelled from other classes, near 0 for
    a legitimate sub-population). `predicted` holds that model's labels for the small clusters,
    in row order."""
    weights = np.zeros(len(labels))
    excluded = np.flatnonzero(small_cluster)
    for label in np.unique(labels[excluded]):
        members = labels[excluded] == label
        weights[excluded[members]] = float((predicted[members] != label).mean())
    return weights


def two_means(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-means on the top principal directions: assignment and per-sample margin in [-1, 1]."""
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    reduced = centred @ vt[:COMPONENTS].T
    first = reduced[:, 0]
    centres = np.stack([reduced[np.argmin(first)], reduced[np.argmax(first)]])
    assign = np.zeros(len(x), dtype=int)
    for _ in range(ITERATIONS):
        distances = ((reduced[:, None, :] - centres[None]) ** 2).sum(-1)
        new = distances.argmin(axis=1)
        if np.array_equal(new, assign) and _ > 0:
            break
        assign = new
        for k in range(2):
            if np.any(assign == k):
                centres[k] = reduced[assign == k].mean(axis=0)
    distances = np.sqrt(((reduced[:, None, :] - centres[None]) ** 2).sum(-1))
    own = distances[np.arange(len(x)), assign]
    other = distances[np.arange(len(x)), 1 - assign]
    margin = (other - own) / np.maximum(np.maximum(other, own), 1e-12)
    return assign, margin
