"""Hardening inspect on what the learning attacker found, and the before/after tables.

The scorer (model/inspect_scorer.py) is fitted on the episodes of the redteam reports given
(against inspect, on MNIST-5k: each episode keeps every class's scores) and on clean models
(attacks/learning/harden_inspect.clean_models: the episodes' proxy trained on each report's
split with four other seeds), then checked, before (inspect as it ran) and after (with the
scorer's classes added), on:
- the evasions and the working attacks (attack success >= 0.5) of the fitting reports (seen)
  and of --held-out reports (not seen), and those models' other classes (none may be named);
- held-out clean models: the proxy on MNIST-5k splits 5 and 6 (never fitted on), trained for
  3 or 10 epochs at width 16 or 32, two seeds each, inspected as the episodes are: no class
  may be flagged;
- the fixed benchmark (--zoo DIR): bench_inspect.py's zoo of 12 clean and 12 trojaned CNNs
  (BadNets, Blended, WaNet at 10%) and its 8 clean models of other architectures, inspected with
  inspect's full settings (run `python benchmarks/bench_inspect.py --zoo DIR --only inspect
  variety` first; it keeps every class's scores beside the zoo): every trojaned model the
  default names must still be named with its target, and no class may be named on a model
  that the default did not name there.
Printed: each group's targets caught and false classes, before and after, and the ratio of
held-out evasions caught after to before. --write saves the scorer as the shipped one
(src/trojanscope/model/hardened_inspect.json), `accepted` only when both conditions hold and
it catches a held-out working attack that the default missed (a default that adds nothing is
only a cost).

Run: python benchmarks/bench_harden_inspect.py FIT_REPORT.json [...] --held-out REPORT.json
     [...] --zoo DIR [--write]
Reports come from: python benchmarks/bench_redteam.py --against inspect --seed S --json R.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from trojanscope.attacks.learning import harden_inspect
from trojanscope.attacks.learning.episode import Budget
from trojanscope.data.datasets import mnist_5k
from trojanscope.model.inspect_scorer import SHIPPED

HELD_OUT_SPLITS = (5, 6)
HELD_OUT_BUDGETS = (Budget(epochs=3), Budget(epochs=10), Budget(epochs=3, width=32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--held-out", nargs="*", type=Path, default=[])
    parser.add_argument("--zoo", type=Path, required=True,
                        help="bench_inspect.py's zoo folder, inspected with --only inspect variety")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    data = mnist_5k()
    fitting = [json.loads(p.read_text()) for p in args.reports]
    held_out = [json.loads(p.read_text()) for p in args.held_out]
    scorer, provenance, _ = harden_inspect.harden(fitting, data)
    print(f"fitted on {provenance['fitted_on']}: {provenance['positive']} working attacks, "
          f"{provenance['left_out']} left out, {provenance['negative_classes']} negative classes "
          f"({time.perf_counter() - started:.0f} s)")
    print("weights: " + ", ".join(f"{f} {w:+.2f}" for f, w in zip(scorer.features,
                                                                   scorer.weights))
          + f"; intercept {scorer.intercept:+.2f}; threshold {scorer.threshold:.2f}")

    clean = []
    for split_seed in HELD_OUT_SPLITS:
        for budget in HELD_OUT_BUDGETS:
            for case in harden_inspect.clean_models(data, split_seed, 2, budget):
                case["case"] += f", {budget.epochs} epochs, width {budget.width}"
                clean.append(case)
    zoo, zoo_clean = _zoo(args.zoo)
    held_out_clean = f"held-out clean models ({len(clean)})"
    groups = {
        "evasions, fitting reports (seen)": harden_inspect.episode_cases(fitting),
        "working attacks, fitting reports (seen)":
            harden_inspect.episode_cases(fitting, "working"),
        "evasions, held-out reports": harden_inspect.episode_cases(held_out),
        "working attacks, held-out reports": harden_inspect.episode_cases(held_out, "working"),
        held_out_clean: clean,
        f"fixed benchmark: zoo's trojaned models ({len(zoo)})": zoo,
        f"fixed benchmark: clean models, zoo and other architectures ({len(zoo_clean)})":
            zoo_clean}
    rows = {name: harden_inspect.check(scorer, cases) for name, cases in groups.items()}
    print(f"\n{'group':76s} {'caught before':>13s} {'after':>6s} {'false before':>12s} "
          f"{'after':>6s}")
    for name, found in rows.items():
        poisoned = [r for r in found if r["target"] is not None]
        caught = [sum(r[w]["caught"] for r in poisoned) for w in ("before", "after")]
        false = [sum(len(r[w]["false_classes"]) for r in found) for w in ("before", "after")]
        shown = [f"{c}/{len(poisoned)}" if poisoned else "-" for c in caught]
        print(f"{name:76s} {shown[0]:>13s} {shown[1]:>6s} {false[0]:>12d} {false[1]:>6d}")
        for r in found:
            if r["after"]["classes"] != r["before"]["classes"]:
                print(f"    {r['case']}: target {r['target']}, before {r['before']['classes']}, "
                      f"after {r['after']['classes']}")
    held = rows["evasions, held-out reports"]
    before = sum(r["before"]["caught"] for r in held)
    after = sum(r["after"]["caught"] for r in held)
    ratio = f"{after / before:.2f}x" if before else ("inf" if after else "-")
    print(f"held-out evasions caught: {after}/{len(held)} after, {before}/{len(held)} before "
          f"({ratio})")
    no_clean_class = all(not r["after"]["classes"] for r in rows[held_out_clean])
    # the hardened inspect only adds classes, so what the default caught stays caught: a loss
    # is a class named that the default did not name
    fixed = [r for name, found in rows.items() if name.startswith("fixed") for r in found]
    no_loss = all(set(r["after"]["false_classes"]) <= set(r["before"]["false_classes"])
                  for r in fixed)
    # and it must gain: a default that names nothing the default missed is only a cost
    working = rows["working attacks, held-out reports"]
    gains = sum(r["after"]["caught"] for r in working) > sum(r["before"]["caught"]
                                                             for r in working)
    accepted = no_clean_class and no_loss and gains
    print(f"no class flagged on held-out clean models: {no_clean_class}; no loss on the fixed "
          f"benchmark: {no_loss}; held-out working attacks caught that the default missed: "
          f"{gains}; accepted: {accepted} ({time.perf_counter() - started:.0f} s)")
    if args.write:
        replace(scorer, accepted=accepted).save(SHIPPED)
        print(f"written: {SHIPPED}")


def _zoo(folder: Path) -> tuple[list[dict], list[dict]]:
    """(trojaned, clean) cases of bench_inspect's zoo and its other architectures, from the
    scores it kept; `flagged_classes` as the default named them (the shipped scorer's
    additions, if any, left out)."""
    entries = json.loads((folder / "zoo.json").read_text())["models"]
    kept = json.loads((folder / "inspect-results.json").read_text())["models"]
    variety = json.loads((folder / "variety-results.json").read_text())["models"]
    trojaned, clean = [], []
    for entry in entries:
        classes = kept.get(entry["file"], {}).get("classes")
        if classes is None:
            raise SystemExit(f"{folder}: {entry['file']} has no kept class scores; run "
                             f"bench_inspect.py --zoo {folder} --only inspect variety first")
        case = _case(entry["file"], entry["target"] if entry["trojaned"] else None, classes)
        (trojaned if entry["trojaned"] else clean).append(case)
    clean += [_case(name, None, outcome["per_class"]) for name, outcome in variety.items()]
    return trojaned, clean


def _case(name: str, target: int | None, classes: list[dict]) -> dict:
    named = [c["class"] for c in classes if set(c["named_by"]) - {"hardened"}]
    return {"case": name, "target": target, "flagged_classes": named, "class_scores": classes}


if __name__ == "__main__":
    main()
