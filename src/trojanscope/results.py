"""One frozen results type per command: what the command measured, as named fields.

A Report carries one of these in `results`; renderers dispatch on its type, never on its keys.
`to_dict()` is the JSON form: fields left at None (not measured by this detector or this path)
are left out. `report.schema.json` publishes the schema of each, generated from these classes
(`scripts/results_schema.py`; a test keeps the two equal). For library users a results object
also reads like the mapping it prints as: `report.results["verdict"]` is
`report.results.verdict`.

Only the standard library here: `trojanscope rules` and scan import this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Iterator

from .plugins import Registry

RESULTS: Registry[type[Results]] = Registry("results type")


@dataclass(frozen=True)
class Results(Mapping):
    """The base of every command's results; a command without results of its own (an error
    report) carries this empty one."""

    command: ClassVar[str] = ""
    # pydantic (the schema script) takes each field's docstring as its description
    __pydantic_config__: ClassVar[dict] = {"use_attribute_docstrings": True}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)
                if f.metadata.get("json", True) and getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Results:
        """The inverse of `to_dict` (a report made in a child process comes back as JSON)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    # Mapping: read access by the JSON key, for library users and scripts
    def __getitem__(self, key: str) -> Any:
        if key in self._keys():
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def _keys(self) -> list[str]:
        return [f.name for f in fields(self)
                if f.metadata.get("json", True) and getattr(self, f.name) is not None]


def results_type(command: str):
    """Register the decorated results class as the one of `command`."""
    def register(cls):
        cls.command = command
        return RESULTS.register(command)(cls)
    return register


def for_command(command: str) -> type[Results]:
    return RESULTS.get(command, Results)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@results_type("scan")
@dataclass(frozen=True, kw_only=True)  # kw_only: the JSON's order, files first
class ScanResults(Results):
    files: list[dict[str, Any]] | None = None
    """Per file: path, formats (recognised by content), findings (how many), seconds."""
    files_scanned: int
    """How many files were examined (archive members count with their archive)."""


@results_type("vet")
@dataclass(frozen=True)
class VetResults(Results):
    poisoned: bool
    """True when some class (or text label) looks poisoned."""
    suspected_classes: list[Any]
    """The classes (names when the data names them) that look poisoned."""
    suspicious_indices: list[int]
    """Rows of the data flagged as poisoned, 0-based, in the order given."""
    samples: int
    """How many samples (images or texts) were read."""
    detector: str
    """The detector that decided (`trojanscope vet --help` lists them)."""
    trigger_phrases: list[str] | None = None
    """Texts: the trigger words and phrases named."""
    estimated_poison_share: dict[str, float] | None = None
    """Per suspected class: the share of its samples flagged."""
    per_class: list[dict[str, Any]] | None = None
    """Per class: class, samples, outliers, outlier_share, suspected and the detector's figures."""
    cut: float | None = None
    """The score above which a sample is flagged."""
    epochs_seen: int | None = None
    """The training monitor: how many epochs it watched."""
    ngrams_tested: int | None = None
    """Texts: how many word n-grams were tested."""
    top_candidates: list[dict[str, Any]] | None = None
    """Texts: the strongest phrases examined, named or not, with their figures."""
    scores: list[float] | None = None
    """Per sample, in the order given: higher is more suspicious."""
    labels: list[Any] | None = None
    """Per sample, in the order given: its label as given."""


@results_type("inspect")
@dataclass(frozen=True)
class InspectResults(Results):
    verdict: str
    """trojaned or clean."""
    target_classes: list[int]
    """The classes a trigger sends inputs to."""
    score: float
    """The highest class score (a target scores high)."""
    per_class: list[dict[str, Any]]
    """Per class: the recovered trigger's mask norm against its expected norm, the success of the
    trigger, of a universal perturbation and of a warp, their lifts, score, target, and
    named_by (the rules that named it: mask, perturbation, warp, hardened; with hardened, the
    scorer's hardened_logit)."""
    thresholds: dict[str, float]
    """The cuts each signal is held to."""
    data_split: dict[str, int]
    """How many clean samples the search used, and how many checked what it found."""
    weights: dict[str, Any] | None = None
    """With a reference zoo: probability_trojaned from the weights, reference_models."""
    merged: dict[str, Any] | None = None
    """A merged language model, read as its base plus a LoRA adapter: the adapter's rank, the
    share of the linear layers' change it kept, how many modules changed, and the parameters
    that changed outside them (changed_outside), which inspect does not read."""
    triggers: list[str] | None = None
    """Text classifiers: the recovered trigger word or phrase of each target class, in the
    order of target_classes (per_class has every class's, with its attack success)."""
    images: Mapping[str, bytes] = field(default_factory=dict, compare=False, repr=False,
                                        metadata={"json": False})
    """Not in the JSON: per class, its recovered mask, pattern, trigger and perturbation as PNG
    bytes, by file name (class_3_trigger.png); `--images DIR` writes them."""


TRIGGER_IMAGES = ("mask", "pattern", "trigger", "perturbation")  # per class, in that order


def trigger_image(k: int, kind: str) -> str:
    """The file name of class `k`'s recovered `kind` (TRIGGER_IMAGES) in InspectResults.images."""
    return f"class_{k}_{kind}.png"


@results_type("repair")
@dataclass(frozen=True)
class RepairResults(Results):
    method: str
    """The repair kept: the one the held-out split preferred."""
    before: dict[str, Any]
    """The model as given: attack_success and clean_accuracy on the held-out split."""
    after: dict[str, Any]
    """The repaired model, the same figures."""
    candidates: dict[str, dict[str, Any]]
    """Every repair tried, by method, with its figures."""
    target_classes: list[int]
    """The target classes inspect found before the repair."""
    classes_measured: list[int]
    """The classes whose attack success was measured."""
    inspect_verdict: str
    """inspect's verdict on the model as given."""
    data_split: dict[str, int]
    """How many clean samples repaired the model, and how many were held out to judge it."""


@results_type("redteam")
@dataclass(frozen=True)
class RedteamResults(Results):
    against: str
    """The detector attacked: vet or inspect."""
    evasions: list[dict[str, Any]]
    """The attacks that reached the attack success asked (0.9), kept the clean accuracy (within
    0.05 of a clean model's), whose trigger kept its inputs (input_kept at least 0.25), that a
    clean model does not already follow (natural_success, its attack success with the same
    trigger, below 0.5) and that the detector missed, strongest first: each with its search,
    episode, `config` (replayable by `trojanscope attack poison --config`), attack_success,
    natural_success, clean_accuracy, detection, the classes flagged, input_kept, and against
    inspect on images every class's scores (class_scores)."""
    frontier: list[dict[str, Any]]
    """The episodes no other beats on both counts (higher attack success at no higher
    detection), by detection, among those whose model kept its clean accuracy, whose trigger
    kept its inputs and that a clean model does not already follow."""
    searches: dict[str, dict[str, Any]]
    """Per search, with the same budget: episodes, evasions, best and mean reward, the first
    episode that evaded, seconds."""
    better: str
    """The search that found more evasions (ties: the higher best reward)."""
    episodes: list[dict[str, Any]]
    """Every episode of every search, in order."""
    data_split: dict[str, int]
    """Samples the attacked models trained on, and held out to measure them."""
    clean_accuracy: float
    """The held-out accuracy of a model trained the same way on the clean training split; an
    evasion keeps within 0.05 of it."""
    clean_flagged: list[int]
    """The classes the detector names with no attack (vet on the clean training split, inspect
    on that clean model): a catch of one of them says nothing of the attack."""


@results_type("harden")
@dataclass(frozen=True)
class HardenResults(Results):
    scorer: dict[str, Any]
    """The fitted scorer over the detector's per-class features (vet's ensemble, or inspect's
    scores): features, weights, intercept, threshold (a class whose logit reaches it is
    suspected), provenance."""
    written: str
    """Where the scorer was written (`trojanscope vet --scorer FILE` or `trojanscope inspect
    --scorer FILE` reads it)."""
    fitted_on: dict[str, Any]
    """What it learnt from: episodes, working attacks (positive), attacks left out, clean
    splits or clean models, negative classes."""
    checks: list[dict[str, Any]]
    """Per evasion of the reports and per clean training split (vet) or clean model (inspect):
    case, target, and `before` (the detector as it ran) and `after` (hardened), each with the
    classes suspected, caught and false_classes."""
    recall: dict[str, Any]
    """On the reports' evasions: how many, and the share caught before and after; against
    inspect also on every working attack (working_attacks, working_before, working_after)."""
    clean_classes_flagged: int
    """Classes the hardened detector names on the clean training splits (vet: 0 by
    construction) or clean models (inspect: with those the default inspect named there)."""


@results_type("diff")
@dataclass(frozen=True)
class DiffResults(Results):
    layers: list[dict[str, Any]]
    """Per parameter: shape, relative_change and, where one changed most, top_neurons."""
    changed: list[str]
    """The parameters that changed at all."""


@results_type("sign")
@dataclass(frozen=True)
class SignResults(Results):
    signature: str
    """The signature file written."""
    files: int
    """How many files the signature covers."""
    root_digest: str
    """One SHA-256 over every signed file's name and digest."""
    signer: str
    """The certificate's subject, or the public key's hint."""
    model_name: str
    """The model's name in the signed statement."""


@results_type("verify")
@dataclass(frozen=True)
class VerifyResults(Results):
    signature: str
    """The signature file read."""
    verified: bool
    """True when the signature is good and every file matches it."""
    signer: str | None = None
    """Who signed: the certificate's subject or the public key's hint."""
    files: int | None = None
    """How many files the signature covers."""
    model_name: str | None = None
    """The model's name in the signed statement."""
    root_digest: str | None = None
    """One SHA-256 over every signed file's name and digest."""
    changed: list[str] | None = None
    """Files whose contents differ from what was signed."""
    added: list[str] | None = None
    """Files present but not signed."""
    removed: list[str] | None = None
    """Files signed but missing."""
