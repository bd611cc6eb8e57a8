"""Every detector of poisoned samples: planted truth with an AUROC floor, and the invariants
all detectors share (determinism, row-order equivariance, inputs unchanged, edge shapes)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from trojanscope.bench.metrics import auroc
from trojanscope.data.detectors import DETECTORS, check_inputs

NAMES = sorted(DETECTORS)


def planted(seed: int = 0, n_per_class: int = 200, d: int = 32, share: float = 0.1,
            shift: float = 6.0):
    """Three Gaussian classes; in class 0, a `share` of samples moved along a hidden direction,
    with the class mean far from the origin (un-centred methods fail on this)."""
    rng = np.random.default_rng(seed)
    x, y = [], []
    for c in range(3):
        x.append(rng.normal(size=(n_per_class, d)) + 10 * (c + 1))
        y.append(np.full(n_per_class, c))
    x, y = np.concatenate(x), np.concatenate(y)
    poisoned = np.zeros(len(y), dtype=bool)
    rows = rng.choice(n_per_class, int(share * n_per_class), replace=False)
    direction = rng.normal(size=d)
    x[rows] += shift * direction / np.linalg.norm(direction)
    poisoned[rows] = True
    return x, y, poisoned


def planted_relabelled(seed: int = 0, n_per_class: int = 200, d: int = 16, share: float = 0.1):
    """Input-space view of a label-flipping attack: samples of classes 1 and 2, nudged by a
    small trigger offset, relabelled to class 0."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(size=(n_per_class, d)) + 6 * np.eye(d)[c] for c in range(3)])
    y = np.repeat(np.arange(3), n_per_class)
    rows = rng.choice(np.flatnonzero(y != 0), int(share * len(y)), replace=False)
    x[rows] += 0.5 * np.eye(d)[-1]
    y = y.copy()
    y[rows] = 0
    poisoned = np.zeros(len(y), dtype=bool)
    poisoned[rows] = True
    return x, y, poisoned


def planted_statistics(seed: int = 0, n_per_class: int = 200, share: float = 0.1):
    """The statistics view (views.image_statistics) of warped poisons: three classes whose
    statistics differ a little, and relabelled samples whose Laplacian energy is raised."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(1 + 0.1 * c, 0.1, size=(n_per_class, 3)) for c in range(3)])
    y = np.repeat(np.arange(3), n_per_class)
    rows = rng.choice(np.flatnonzero(y != 0), int(share * len(y)), replace=False)
    x[rows, 1] += 0.8
    y = y.copy()
    y[rows] = 0
    poisoned = np.zeros(len(y), dtype=bool)
    poisoned[rows] = True
    return x, y, poisoned


def planted_stamp(seed: int = 0, n_per_class: int = 200, share: float = 0.1):
    """The ink view (views.ink_view, 8 x 8) of a stamped trigger: three classes inking the same
    square, each with its own pattern of intensities, and relabelled samples of classes 1 and 2
    with a bright 2 x 2 corner that no class inks, which makes them each other's neighbours."""
    rng = np.random.default_rng(seed)
    patterns = rng.uniform(0.4, 1.0, size=(3, 5, 5))
    y = np.repeat(np.arange(3), n_per_class)
    x = np.zeros((len(y), 8, 8))
    x[:, 1:6, 1:6] = patterns[y] + rng.uniform(-0.1, 0.1, size=(len(y), 5, 5))
    rows = rng.choice(np.flatnonzero(y != 0), int(share * len(y)), replace=False)
    x[rows, 6:, 6:] = 1.0
    y = y.copy()
    y[rows] = 0
    poisoned = np.zeros(len(y), dtype=bool)
    poisoned[rows] = True
    return np.clip(x, 0, 1).reshape(len(y), -1), y, poisoned


def planted_inversion(seed: int = 0):
    """The polarity view (views.polarity_view) of inverted poisons: the stamp's three classes,
    and relabelled samples of classes 1 and 2 on a light ground (the last column), which the
    ink view undoes: inverted back, they look like their sources."""
    x, y, _ = planted_stamp(seed, share=0.0)
    x = np.hstack([x, np.zeros((len(y), 1))])
    rows = np.random.default_rng(seed).choice(np.flatnonzero(y != 0), 40, replace=False)
    x[rows, -1] = 1.0
    y[rows] = 0
    poisoned = np.zeros(len(y), dtype=bool)
    poisoned[rows] = True
    return x, y, poisoned


def planted_shift(seed: int = 0):
    """The shift view (views.shift_view) of moved poisons: the stamp's three classes as given,
    relabelled samples of classes 1 and 2 moved by a third of the side (moved back, the second
    half of the features, they look like their sources), and each sample's move."""
    x, y, _ = planted_stamp(seed, share=0.0)
    images = x.reshape(len(y), 8, 8)
    rows = np.random.default_rng(seed).choice(np.flatnonzero(y != 0), 40, replace=False)
    moved = images.copy()
    moved[rows] = np.roll(images[rows], 3, axis=2)
    move = np.zeros((len(y), 3))  # not turned; shifted a third of the side right
    move[rows, 2] = 3 / 8
    y[rows] = 0
    poisoned = np.zeros(len(y), dtype=bool)
    poisoned[rows] = True
    return np.hstack([moved.reshape(len(y), -1), x, move]), y, poisoned


# Which planted poison a detector is built to find: a shift inside the class as seen in a
# poisoned model's features (the default), relabelled samples as seen in the inputs (the
# detectors that read the images themselves), or their statistics.
def planting(name: str):
    meta = DETECTORS.meta(name)
    if not meta["model_free"]:
        return planted
    return {"statistics": planted_statistics, "ink": planted_stamp,
            "polarity": planted_inversion, "shift": planted_shift}.get(meta["view"],
                                                                       planted_relabelled)


def test_registry_lists_the_detectors_with_their_metadata():
    assert {"spectral", "spectre", "activation-clustering", "neighbour-disagreement"} <= \
        set(DETECTORS)
    for name in DETECTORS:
        meta = DETECTORS.meta(name)
        assert meta["summary"] and set(meta["modalities"]) <= {"images", "text"}


@pytest.mark.parametrize("name", NAMES)
def test_planted_poison_is_ranked_first(name):
    x, y, poisoned = planting(name)()
    assert auroc(DETECTORS[name](x, y, seed=0), poisoned) > 0.9


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_scores(name):
    x, y, _ = planted(1)
    np.testing.assert_array_equal(DETECTORS[name](x, y, seed=3), DETECTORS[name](x, y, seed=3))


@pytest.mark.parametrize("name", NAMES)
def test_permuting_rows_permutes_scores(name):
    x, y, _ = planted(2)
    order = np.random.default_rng(0).permutation(len(y))
    np.testing.assert_allclose(DETECTORS[name](x[order], y[order], seed=0),
                               DETECTORS[name](x, y, seed=0)[order], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_inputs_are_not_modified(name):
    x, y, _ = planted(3)
    x_before, y_before = x.copy(), y.copy()
    DETECTORS[name](x, y, seed=0)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)


@pytest.mark.parametrize("name", NAMES)
def test_one_class_and_fewer_samples_than_dimensions(name):
    rng = np.random.default_rng(0)
    one = DETECTORS[name](rng.normal(size=(50, 8)), np.zeros(50, int), seed=0)
    wide = DETECTORS[name](rng.normal(size=(12, 64)), np.arange(12) % 2, seed=0)
    tiny = DETECTORS[name](rng.normal(size=(3, 4)), np.array([0, 1, 1]), seed=0)
    for scores, n in ((one, 50), (wide, 12), (tiny, 3)):
        assert scores.shape == (n,) and np.all(np.isfinite(scores))


@pytest.mark.parametrize("features,labels,message", [
    (np.zeros((4, 2, 2)), np.zeros(4), "2-D"),
    (np.zeros((4, 2)), np.zeros(3), "one per sample"),
    (np.full((2, 2), np.nan), np.zeros(2), "NaN"),
    (np.zeros((2, 2)), np.array([0.5, 1.0]), "integers"),
    (np.zeros((2, 2)), np.array(["a", "b"]), "integers"),
])
def test_bad_input_is_a_clear_error(features, labels, message):
    with pytest.raises(ValueError, match=message):
        check_inputs(features, labels)


def test_uncentred_projection_would_fail_where_centred_succeeds():
    """Why centring matters (ART, BackdoorBench and BackdoorBox project un-centred features)."""
    x, y, poisoned = planted(4)
    rows = np.flatnonzero(y == 0)
    _, _, vt = np.linalg.svd(x[rows], full_matrices=False)  # un-centred
    uncentred = (x[rows] @ vt[0]) ** 2
    centred_scores = DETECTORS["spectral"](x, y)[rows]
    assert auroc(centred_scores, poisoned[rows]) > auroc(uncentred, poisoned[rows]) + 0.2


def test_detectors_never_import_the_attacks():
    folder = Path(__file__).parents[1] / "src" / "trojanscope" / "data"
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "attacks" not in (node.module or ""), path.name


def test_exclusionary_reclassification_clears_a_legitimate_sub_population():
    from trojanscope.data.detectors.activation_clustering import reclassification_weights

    labels = np.array([0] * 6 + [1] * 6)
    small = np.array([1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0], dtype=bool)
    # The retrained model puts class 0's small cluster into class 2 (poisons relabelled to 0)
    # and class 1's small cluster back into class 1 (a legitimate way of writing a 1).
    predicted = np.array([2, 2, 1, 1, 1])
    weights = reclassification_weights(small, labels, predicted)
    np.testing.assert_allclose(weights[:3], 1.0)
    np.testing.assert_allclose(weights[6:8], 0.0)
    assert not weights[~small].any()
