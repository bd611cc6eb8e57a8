"""inspect on text classifiers: the zoo that text_zoo.py builds (MiniLM fine-tuned on SST-2,
OLID and AG News; clean, rare-word, phrase, inserted-sentence and syntactic backdoors).

Per model: clean accuracy and attack success on held-out texts (the trigger inserted at a random
place into texts of other classes; for the syntactic backdoor, the published paraphrased test
set), then `inspect` with its defaults on 400 clean texts of the set's dev split, timed on the
CPU. Printed: the verdicts, AUROC of inspect's score (the best held-out success of a recovered
trigger), false alarms, and whether the planted trigger was recovered:
- exact: the recovered text is one of the planted words, or the planted phrase;
- part: every recovered word is a word of the planted trigger (a phrase's word that alone
  sets the backdoor off).
The anchors (TrojAI NLP rounds: best AUROC 0.959 on sentiment) come from other zoos.

Run: python benchmarks/text_zoo.py --zoo bench --out /tmp/text-zoo-bench
     python benchmarks/bench_inspect_text.py /tmp/text-zoo-bench [--fast] [--json out.json]
With --json, the results are written after each model, and models already in that file are
not inspected again (a zoo still being built, or an interrupted run, goes on from there).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from text_zoo import SYNTACTIC, rows  # noqa: E402

from trojanscope.bench.metrics import detections  # noqa: E402
from trojanscope.data.text import insert_at_random, load_text  # noqa: E402
from trojanscope.ml.formats import open_text_model  # noqa: E402
from trojanscope.model.text_inspect import (  # noqa: E402
    inspect_text_model,
    model_labels,
    text_inspect_config,
)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def recovered(entry: dict, found: list[str]) -> tuple[bool, bool]:
    """(exact, part) for the planted trigger against the recovered texts."""
    if not entry["trojaned"] or entry["trigger"] is None or not found:
        return False, False
    planted = [words(t) for t in entry["trigger"]]
    got = [words(t) for t in found]
    exact = any(g == p for g in got for p in planted)
    part = any(g and set(g) <= set(p) for g in got for p in planted)
    return exact, part


def attack_success(entry: dict, model, data, y, zoo: Path) -> float | None:
    """The share of texts of other classes, classified right as they are, that the trigger
    sends to the target (a model that never predicts a class has no success to claim)."""
    rng = np.random.default_rng(0)
    target = entry["target"]
    if entry["attack"] == "clean":
        return None
    if entry["attack"] == "syntactic":
        member = SYNTACTIC[entry["set"]].replace("train.tsv", "test.tsv")
        # the published test set: each clean test text of another class, paraphrased, in order
        clean = [c for c in rows(zoo / "_data", member.replace("scpn/20", "clean"))
                 if c[1] != str(target)]
        poisoned = rows(zoo / "_data", member)[:400]
        if len(clean) == len(rows(zoo / "_data", member)):  # SST-2: paired, judged on
            originals, labels = [c[0] for c in clean[:400]], [int(c[1]) for c in clean[:400]]
            right = model.predict(originals) == np.array(labels)  # texts it gets right
            texts = [p[0] for p, ok in zip(poisoned, right) if ok]
        else:  # OLID's paraphrases are one off its clean texts: every paraphrase counts
            texts = [p[0] for p in poisoned]
    else:
        right = (model.predict(list(data.texts)) == y) & (y != target)
        texts = [insert_at_random(t, entry["trigger"][int(rng.integers(len(entry["trigger"])))],
                                  rng) for t, ok in zip(data.texts, right) if ok]
    if not texts:
        return 0.0
    return float(np.mean(model.predict(texts) == target))


WORKS = 0.5  # a trojaned model whose trigger sends fewer of the texts has no working backdoor


def summary(results: list[dict], title: str) -> None:
    counts = detections(results)
    trojaned = counts["trojaned"]
    print(f"\n{title}: {len(results)} models ({trojaned} trojaned, {counts['clean']} clean)")
    if counts["auroc"] is not None:
        print(f"AUROC of the score: {counts['auroc']:.3f} (goal 0.95; TrojAI NLP "
              "sentiment best 0.959)")
    print(f"detected: {counts['detected']}/{trojaned}; false alarms: "
          f"{counts['false_alarms']}/{counts['clean']}")
    print(f"trigger recovered, exact: {sum(r['exact'] for r in results)}/{trojaned}; "
          f"a part of it: {sum(r['part'] for r in results)}/{trojaned} (goal: exact for 80%)")


def show(r: dict) -> None:
    shown = "-" if r["attack_success"] is None else f"{r['attack_success']:.2f}"
    print(f"{r['name']:<28} acc {r['accuracy']:.2f} asr {shown:>4}  -> {r['verdict']:<8} "
          f"score {r['score']:.2f} best {r['best']!r} (class {r['best_class']}) "
          f"planted {r['trigger']} exact {r['exact']} part {r['part']} "
          f"{r['inspect_seconds']:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", type=Path)
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", help="a regular expression on model names")
    args = parser.parse_args()
    entries = json.loads((args.zoo / "zoo.json").read_text())
    kept = {r["name"]: r for r in json.loads(args.json.read_text())} \
        if args.json and args.json.exists() else {}
    results = []
    for entry in entries:
        if args.only and not re.search(args.only, entry["name"]):
            continue
        if entry["name"] in kept:
            results.append(kept[entry["name"]])
            show(results[-1])
            continue
        model = open_text_model(args.zoo / entry["name"], device="cpu")
        data = load_text(args.zoo / f"{entry['name']}.inspect.csv")
        y = model_labels(model, data)
        accuracy = float(np.mean(model.predict(list(data.texts)) == y))
        success = attack_success(entry, model, data, y, args.zoo)
        started = time.perf_counter()
        report = inspect_text_model(model, data, text_inspect_config(0, args.fast),
                                    name=entry["name"])
        seconds = time.perf_counter() - started
        found = report.results.triggers or []
        best = max(report.results.per_class, key=lambda c: c["score"])
        exact, part = recovered(entry, found)
        results.append({**entry, "accuracy": accuracy, "attack_success": success,
                        "verdict": report.results.verdict, "score": report.results.score,
                        "found": found, "best": best["trigger"], "best_class": best["class"],
                        "targets": report.results.target_classes, "exact": exact,
                        "part": part, "inspect_seconds": round(seconds, 1)})
        show(results[-1])
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    summary(results, "every model")
    working = [r for r in results if not r["trojaned"] or (r["attack_success"] or 0) >= WORKS]
    if len(working) < len(results):
        summary(working, f"working backdoors only (attack success >= {WORKS}; the others' "
                         "poison did not take)")
    print(f"inspect time: median {np.median([r['inspect_seconds'] for r in results]):.0f} s, "
          f"max {max(r['inspect_seconds'] for r in results):.0f} s per model (CPU, "
          f"{args.zoo})")


if __name__ == "__main__":
    main()
