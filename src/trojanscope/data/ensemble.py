"""The hardened vet: a learned scorer over the per-class outputs of an ensemble of detectors.

Each member (a detector that needs no model) scores every sample in its view; decide.py turns
the scores into each class's share of outlying samples and its robust z against the other
classes. A class's features are, per member, log(1 + z) (a z below 0 counts as 0: a class
that stands out less than the others is no evidence either way; counted as evidence against,
it let the learnt warps, which neighbour disagreement finds too coherent, pull their own score
down) and the excess of its share over twice the median share; and the largest log(1 + z)
of any member (a poisoned class stands out to one member strongly; a hard clean class, such
as Fashion-MNIST's shirts, to several a little: a sum alone could not tell them apart, the
threshold that cleared the shirts missed the learnt warps). A logistic regression fitted
on classes of poisoned sets (the learning attacker's, attacks/learning/harden.py: target
classes of working attacks positive, the other classes negative) and of clean sets (negative,
MNIST's and other grey data's) turns them into a logit. A class is
suspected when its logit reaches the threshold, set MARGIN above the highest logit of any
negative class the fit saw: no class of the clean sets it learnt from is flagged, and
held-out clean sets are checked before a scorer is accepted. The hardened vet suspects the
default detector's classes, the scorer's, and those of the DECISIVE members on their own: it
can only add to what the default finds.

The shipped scorer (hardened.json beside this module) is the default for grey images only when
its `accepted` is true: benchmarks/bench_harden.py sets it when the scorer flags no class on
the held-out clean sets and loses nothing on the fixed benchmark (the attacks of bench_vet).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..jsonfile import read_json
from .decide import MAD_FLOOR, Decision, decide
from .detectors import DETECTORS
from .views import VIEWS

MEMBERS = ("neighbour-disagreement", "resampling", "stamp", "polarity", "shift")
SCORED = ("neighbour-disagreement", "resampling")  # the members the scorer reads
# Members whose own class decisions the hardened vet adopts, as it adopts neighbour
# disagreement's, instead of scoring them, with what their finding says: the stamp, polarity and
# shift detectors put no class near their decision on clean grey sets, and the triggers they
# find are ones no fitted episode had. Scored, the stamp member's features raised the
# fitted threshold (2.57 to 2.74) until a held-out warp was missed.
DECISIVE = {"stamp": "a mark its samples share hides them: wiped out, they look like other "
                     "classes; ",
            "polarity": "its samples on the set's rarer ground (inverted) look, inverted back, "
                        "like other classes; ",
            "shift": "its samples that lie elsewhere than the others' look, moved back, like "
                     "other classes; "}
FEATURES = (*(f"{m}:{k}" for m in SCORED for k in ("log1p_z", "excess")), "max:log1p_z")
MARGIN = 1.0  # logit units above the highest negative class seen in the fit
LIMIT = 1e6   # of a scorer's numbers, read from a file
SHIPPED = Path(__file__).with_name("hardened.json")


@dataclass(frozen=True)
class Member:
    """One member's verdict on a data set: scores, the outlier cut, the per-class decision."""
    name: str
    scores: np.ndarray
    cut: float
    decision: Decision


@dataclass(frozen=True)
class Scorer:
    features: tuple[str, ...]
    weights: tuple[float, ...]
    intercept: float
    threshold: float          # logit at or above which a class is suspected
    accepted: bool = False    # the default for grey images (see the module's docstring)
    provenance: dict = field(default_factory=dict)

    def logits(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, dtype=np.float64) @ np.asarray(self.weights) + self.intercept

    def as_dict(self) -> dict:
        entry = asdict(self)
        entry["features"], entry["weights"] = list(self.features), list(self.weights)
        return entry

    @classmethod
    def from_dict(cls, entry, where: str = "scorer",
                  expected: tuple[str, ...] = FEATURES) -> "Scorer":
        """A scorer read from JSON; `expected`: the features its reader computes (vet's
        ensemble by default; inspect's scores for model/inspect_scorer.py)."""
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: a hardened scorer is a JSON object")
        try:
            features = tuple(entry["features"])
            numbers = [*entry["weights"], entry["intercept"], entry["threshold"]]
        except KeyError as exc:
            raise ValueError(f"{where}: not a hardened scorer (missing {exc})") from None
        except TypeError:
            raise ValueError(f"{where}: not a hardened scorer (features and weights must be "
                             "lists)") from None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and
                   -LIMIT <= v <= LIMIT for v in numbers):  # NaN fails; a huge int does not
                                                              # overflow as math.isfinite would
            raise ValueError(f"{where}: weights, intercept and threshold must be numbers "
                             f"within +-{LIMIT:g}")
        weights = tuple(float(w) for w in numbers[:-2])
        intercept, threshold = float(numbers[-2]), float(numbers[-1])
        if features != expected:
            raise ValueError(f"{where}: made for features {list(features)}, this version reads "
                             f"{list(expected)}")
        if len(weights) != len(features):
            raise ValueError(f"{where}: needs one weight per feature")
        provenance = entry.get("provenance", {})
        return cls(features, weights, intercept, threshold, entry.get("accepted") is True,
                   provenance if isinstance(provenance, dict) else {})

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.as_dict(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path, expected: tuple[str, ...] = FEATURES) -> "Scorer":
        return cls.from_dict(read_json(path), str(path), expected)


def shipped(path: Path = SHIPPED, expected: tuple[str, ...] = FEATURES) -> Scorer | None:
    """The scorer this version ships at `path` (vet's by default), when it was accepted; else
    None."""
    if not path.exists():
        return None
    scorer = Scorer.load(path, expected)
    return scorer if scorer.accepted else None


def views(x: np.ndarray) -> dict[str, np.ndarray]:
    """The views of images `x` that the members read, by name."""
    return {name: VIEWS[name](x) for name in dict.fromkeys(
        DETECTORS.meta(member)["view"] for member in MEMBERS)}


def members(x: np.ndarray, y: np.ndarray, seed: int = 0,
            seen: dict[str, np.ndarray] | None = None) -> list[Member]:
    """Every member's scores and per-class decision on images `x` labelled `y`; `seen`: their
    views (`views(x)`), when already made."""
    seen = views(x) if seen is None else seen
    found = []
    for name in MEMBERS:
        meta = DETECTORS.meta(name)
        scores = DETECTORS[name](seen[meta["view"]], y, seed=seed)
        found.append(Member(name, scores, meta["cut"], decide(scores, y, meta["cut"])))
    return found


def class_features(found: list[Member]) -> np.ndarray:
    """(classes, features): per SCORED member, log(1 + z) (z at least 0) and the share's excess
    over twice the median share; then the largest log(1 + z); in FEATURES' order."""
    columns = []
    for member in (m for m in found if m.name in SCORED):
        share = np.array([c["outlier_share"] for c in member.decision.per_class])
        size = np.median([c["samples"] for c in member.decision.per_class])
        median = np.median(share)
        # decide.py's z, its floor raised to one sample of a typical class: in small sets
        # (100 a class) a single outlier is a step of 0.01, and z counted in steps of 0.005
        # made clean classes look like poisoned ones (Fashion-MNIST, 1,000 images)
        spread = max(float(np.median(np.abs(share - median))), MAD_FLOOR, 1 / max(size, 1))
        z = (share - median) / spread
        columns += [np.log1p(np.maximum(z, 0)), share - 2 * median]
    columns.append(np.max(columns[0::2], axis=0))
    return np.stack(columns, axis=1)


def fit(positive: np.ndarray, negative: np.ndarray, provenance: dict | None = None,
        seed: int = 0, features: tuple[str, ...] = FEATURES) -> Scorer:
    """A scorer from class features (columns named by `features`): `positive` rows (poisoned
    classes of working attacks), `negative` rows (other classes, clean sets' classes). The
    threshold sits MARGIN above the highest negative logit."""
    from sklearn.linear_model import LogisticRegression

    positive, negative = np.atleast_2d(positive), np.atleast_2d(negative)
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError("fitting a scorer needs poisoned and clean classes")
    x = np.vstack([positive, negative])
    y = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    model = LogisticRegression(class_weight="balanced", C=1.0, random_state=seed,
                               max_iter=1000).fit(x, y)
    weights = tuple(round(float(w), 6) for w in model.coef_[0])
    intercept = round(float(model.intercept_[0]), 6)
    scorer = Scorer(features, weights, intercept, 0.0)
    threshold = round(float(scorer.logits(negative).max()) + MARGIN, 6)
    return Scorer(features, weights, intercept, threshold, False, dict(provenance or {}))


def suspected(scorer: Scorer, found: list[Member]) -> list[tuple[int, float]]:
    """(class, logit) of each class the scorer suspects."""
    logits = scorer.logits(class_features(found))
    classes = [c["class"] for c in found[0].decision.per_class]
    return [(int(c), float(v)) for c, v in zip(classes, logits) if v >= scorer.threshold]
