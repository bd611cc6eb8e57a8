"""Hardening vet on what the learning attacker found, and the before/after tables.

The scorer (data/ensemble.py) is fitted on the episodes of the redteam reports given (replayed
on MNIST-5k), with the classes of clean sets as negatives (MNIST-5k's split, and where it is
installed random 5,000 of Fashion-MNIST's training images, seeds 10-14, none of them checked
on), then checked, before (vet's neighbour disagreement, the default until now) and
after (the hardened vet), on:
- the evasions of the fitting reports (seen) and of --held-out reports (not seen);
- held-out clean sets: scikit-learn's digits, other splits of MNIST-5k (one of them also with
  half of every class, every 8 or half the 8s inverted, or a third of every class or every 8
  shifted 5 pixels), MNIST-5k under gamma curves, and
  where they are installed MNIST-10k train and test (../shared/datasets) and Fashion-MNIST
  (Debian's dataset-fashion-mnist: its 10,000 test images, their first 4,000, random 5,000 of
  its training images, seeds 0-5, and 1,000 of them inverted, seeds 0-1):
  no class may be flagged;
- stamped triggers: the families red teams found vet missing (white squares, bars, scattered
  pixels, large squares in the middle, at 5-15%); the stamp member was built after them, so
  these are not blind;
- inverted images: the whole image inverted at 1-15%, targets 0, 3 and 7 (a red team's
  evasion; the polarity member was built after it, so these are not blind either);
- moved images: the whole image shifted or its halves swapped at 1-15%, turned a quarter or
  transposed at 5-15% (other red teams'; the shift member was built after them);
- the fixed benchmark: bench_vet's attacks (BadNets, Blended, WaNet, SIG) at 1%, 5% and 10% on
  the same MNIST-5k split (and MNIST-10k where present), target class 0: the hardened vet must
  catch every case the default catches and flag no class the default does not.
Printed: each group's targets caught and false classes, before and after; the ratio of
evasions caught after to before. --write saves the scorer as the shipped one
(src/trojanscope/data/hardened.json), `accepted` only when both conditions hold.

Run: python benchmarks/bench_harden.py FIT_REPORT.json [...] [--held-out REPORT.json ...]
     [--write]
Reports come from: python benchmarks/bench_redteam.py --seed S --json REPORT.json
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import time
from pathlib import Path

import numpy as np

from trojanscope.attacks.image_poison import make_trigger, poison
from trojanscope.attacks.learning.harden import Case, check, evasion_cases, harden
from trojanscope.attacks.learning.space import AttackConfig
from trojanscope.data.datasets import Dataset, digits, held_out_split, mnist_5k, validate
from trojanscope.data.ensemble import SHIPPED

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FASHION = Path("/usr/share/datasets/fashion-mnist")
ATTACKS, RATES = ("badnets", "blended", "wanet", "sig"), (0.01, 0.05, 0.1)


def clean_sets(data: Dataset) -> list[Case]:
    cases = [Case("digits (scikit-learn)", digits())]
    cases += [Case(f"mnist-5k split seed {s}", held_out_split(data, 0.2, s)[0])
              for s in (7, 8, 9)]
    train, test = mnist_10k()
    if train is not None:
        cases += [Case("mnist-10k train", train), Case("mnist test 10k", test)]
    cases += [Case(f"mnist-5k gamma {g}", Dataset(data.x ** g, data.y, data.name))
              for g in (1.5, 2.0, 2.2)]
    split = held_out_split(data, 0.2, 7)[0]
    half = np.arange(len(split.y)) % 2 == 0
    for name, rows in (("half of every class", half), ("every 8", split.y == 8),
                       ("half the 8s", half & (split.y == 8))):
        cases.append(Case(f"mnist-5k split seed 7, {name} inverted", Dataset(
            np.where(rows[:, None, None, None], 1 - split.x, split.x), split.y, split.name)))
    moved = np.roll(split.x, 5, axis=-1)
    moved[..., :5] = 0
    for name, rows in (("a third of every class", np.arange(len(split.y)) % 3 == 0),
                       ("every 8", split.y == 8)):
        cases.append(Case(f"mnist-5k split seed 7, {name} shifted", Dataset(
            np.where(rows[:, None, None, None], moved, split.x), split.y, split.name)))
    test = fashion("t10k")
    if test is not None:
        cases += [Case("fashion-mnist test 10k", test),
                  Case("fashion-mnist test first 4k", Dataset(test.x[:4000], test.y[:4000],
                                                              test.name))]
        cases += [Case(f"fashion-mnist train 5k seed {s}", fashion_sample(s)) for s in range(6)]
        cases += [Case(f"fashion-mnist train 1k seed {s}, inverted",
                       Dataset(1 - d.x, d.y, d.name)) for s in (0, 1)
                  for d in [fashion_sample(s, 1000)]]
    return cases


def mnist_10k() -> tuple[Dataset | None, Dataset | None]:
    """MNIST's first 10,000 training images and its 10,000 test images, where at hand."""
    if not (SHARED / "mnist_train10k_test10k.npz").exists():
        return None, None
    with np.load(SHARED / "mnist_train10k_test10k.npz") as d:
        return (validate(d["x_train"] / 255.0, d["y_train"], "mnist-10k"),
                validate(d["x_test"] / 255.0, d["y_test"], "mnist test"))


@functools.cache
def fashion(part: str) -> Dataset | None:
    """Fashion-MNIST's `part` (train or t10k) where Debian's package put it."""
    if not (FASHION / f"{part}-images-idx3-ubyte.gz").exists():
        return None
    with gzip.open(FASHION / f"{part}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28) / 255.0
    with gzip.open(FASHION / f"{part}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return validate(x, y, f"fashion-mnist {part}")


def fashion_sample(seed: int, size: int = 5000) -> Dataset:
    train = fashion("train")
    rows = np.random.default_rng(seed).permutation(len(train.y))[:size]
    return Dataset(train.x[rows], train.y[rows], f"fashion-mnist train {size} seed {seed}")


def fit_clean() -> tuple[Dataset, ...]:
    """Clean sets besides MNIST whose classes the fit sees as negatives (never checked on)."""
    return tuple(fashion_sample(s) for s in range(10, 15)) if fashion("train") else ()


def fixed_benchmark(data: Dataset) -> list[Case]:
    sets = [held_out_split(data, 0.2, 0)[0], mnist_10k()[0]]
    cases = []
    for train in filter(None, sets):
        cases.append(Case(f"{train.name} clean", train))
        for attack in ATTACKS:
            trigger = make_trigger(attack, train.x.shape[-2:])
            for rate in RATES:
                bad = poison(train.x, train.y, trigger, rate, 0, seed=0)
                cases.append(Case(f"{train.name} {attack} {rate:.0%}",
                                  Dataset(bad.x, bad.y, train.name), 0))
    return cases


def stamped(data: Dataset) -> list[Case]:
    """The families red teams found vet missing, which the stamp member
    (data/detectors/stamp.py) was then built against: white squares in a corner or on an edge,
    the bottom four rows set white, 60 scattered white pixels (the first red team), large white
    or black squares in the middle (the third); 5-15%, dirty label."""
    train = held_out_split(data, 0.2, 0)[0]
    h, w = train.x.shape[-2:]

    def bar(x):
        out = np.array(x, dtype=np.float32, copy=True)
        out[..., h - 4:, :] = 1.0
        return out

    def centre(side: int, value: float):
        return AttackConfig("patch", side, 0.5, 0.5, value, 0, 1, 0.1, "dirty").trigger((h, w))
    triggers = {"white 5x5 bottom right": (AttackConfig("patch", 5, 1, 1, 1, 0, 1, 0.1,
                                                        "dirty").trigger((h, w)), 0),
                "white 6x6 top middle": (AttackConfig("patch", 6, 0, 0.5, 1, 0, 1, 0.1,
                                                      "dirty").trigger((h, w)), 3),
                "white bottom 4 rows": (bar, 7),
                "60 scattered white pixels": (AttackConfig("scatter", 60, 0, 0, 1, 0, 1, 0.1,
                                                           "dirty").trigger((h, w)), 5),
                "white 10x10 centre": (centre(10, 1.0), 0),
                "black 10x10 centre": (centre(10, 0.0), 0),
                "white 12x12 centre": (centre(12, 1.0), 3)}
    cases = []
    for name, (trigger, target) in triggers.items():
        for rate in (0.05, 0.1, 0.15):
            bad = poison(train.x, train.y, trigger, rate, target, seed=0)
            cases.append(Case(f"{name} {rate:.0%}", Dataset(bad.x, bad.y, train.name), target))
    return cases


def inverted(data: Dataset) -> list[Case]:
    """The fourth red team's evasion, which the polarity member (data/detectors/polarity.py)
    was then built against: the whole image inverted (x -> 1 - x), dirty label, 1-15%."""
    train = held_out_split(data, 0.2, 0)[0]
    cases = []
    for target in (0, 3, 7):
        for rate in (0.01, 0.05, 0.15):
            bad = AttackConfig("invert", 1, 0, 0, 0, 1.0, 1, rate, "dirty", target).poison(
                train.x, train.y)
            cases.append(Case(f"inverted, target {target}, {rate:.0%}",
                              Dataset(bad.x, bad.y, train.name), target))
    return cases


def moved(data: Dataset) -> list[Case]:
    """Red teams' evasions, which the shift member (data/detectors/shift.py) was then built
    against: the whole image shifted 5 pixels right or 4 down and right (the ground fills in),
    or its halves swapped, at 1-15%; turned a quarter or transposed, at 5-15% (at 1% they do
    not work: attack success 0.68-0.72); dirty label."""
    train = held_out_split(data, 0.2, 0)[0]

    def shift(down: int, right: int):
        def move(x):
            out = np.roll(np.asarray(x, dtype=np.float32), (down, right), axis=(-2, -1))
            out[..., :down, :] = 0
            out[..., :, :right] = 0
            return out
        return move
    triggers = {"shifted 5 right": (shift(0, 5), 0, 0.01), "shifted 4 down, 4 right":
                (shift(4, 4), 3, 0.01),
                "halves swapped": (lambda x: np.roll(x, x.shape[-2] // 2, axis=-2), 7, 0.01),
                "turned a quarter": (lambda x: np.rot90(x, 1, axes=(-2, -1)), 0, 0.05),
                "transposed": (lambda x: np.swapaxes(x, -2, -1), 3, 0.05)}
    cases = []
    for name, (trigger, target, low) in triggers.items():
        for rate in (low, 0.05 if low < 0.05 else 0.1, 0.15):
            bad = poison(train.x, train.y, trigger, rate, target, seed=0)
            cases.append(Case(f"{name} {rate:.0%}", Dataset(bad.x, bad.y, train.name), target))
    return cases


def table(title: str, rows: list[dict]) -> dict:
    print(f"\n{title}")
    print(f"  {'case':44s} {'target':>6s} {'before':>14s} {'after':>14s}")
    for row in rows:
        shown = {w: ",".join(map(str, row[w]["classes"])) or "-" for w in ("before", "after")}
        print(f"  {row['case'][:44]:44s} {str(row['target']):>6s} {shown['before']:>14s} "
              f"{shown['after']:>14s}")
    poisoned = [r for r in rows if r["target"] is not None]
    summary = {w: {"caught": sum(r[w]["caught"] for r in poisoned),
                   "false_classes": sum(len(r[w]["false_classes"]) for r in rows)}
               for w in ("before", "after")}
    summary["cases"], summary["poisoned"] = len(rows), len(poisoned)
    print(f"  caught {summary['before']['caught']}/{len(poisoned)} before, "
          f"{summary['after']['caught']}/{len(poisoned)} after; classes flagged falsely "
          f"{summary['before']['false_classes']} before, {summary['after']['false_classes']} "
          "after")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="redteam reports to learn from")
    parser.add_argument("--held-out", nargs="*", type=Path, default=[],
                        help="redteam reports whose evasions are checked, never learnt from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true",
                        help=f"save the scorer as the shipped one ({SHIPPED.name})")
    parser.add_argument("--json", type=Path, help="the tables as JSON")
    args = parser.parse_args()
    started = time.perf_counter()
    data = mnist_5k()
    fitting = [json.loads(p.read_text()) for p in args.reports]
    held = [json.loads(p.read_text()) for p in args.held_out]
    scorer, provenance = harden(fitting, data, args.seed, fit_clean())
    print(f"fitted on {provenance['episodes']} episodes ({provenance['positive']} working "
          f"attacks, {provenance['left_out']} left out) and {provenance['clean_sets']} clean "
          f"split(s): weights {dict(zip(scorer.features, scorer.weights))}, intercept "
          f"{scorer.intercept}, threshold {scorer.threshold} ({time.perf_counter() - started:.0f}"
          " s)")
    groups = {"evasions (fitted on)": evasion_cases(fitting, data),
              "evasions (held out)": evasion_cases(held, data),
              "clean sets (held out)": clean_sets(data),
              "fixed benchmark (bench_vet's attacks, target 0)": fixed_benchmark(data),
              "stamped triggers (the red teams' families; the stamp member was built after "
              "them)": stamped(data),
              "inverted images (a red team's; the polarity member was built after them)":
                  inverted(data),
              "moved images (a red team's; the shift member was built after them)":
                  moved(data)}
    summaries, rows_of = {}, {}
    for title, cases in groups.items():
        rows_of[title] = check(scorer, cases, args.seed)
        summaries[title] = table(title, rows_of[title])
    clean_ok = summaries["clean sets (held out)"]["after"]["false_classes"] == 0
    fixed = rows_of["fixed benchmark (bench_vet's attacks, target 0)"]
    no_loss = all((not r["before"]["caught"] or r["after"]["caught"]) and
                  set(r["after"]["false_classes"]) <= set(r["before"]["false_classes"])
                  for r in fixed)
    accepted = clean_ok and no_loss
    for title in ("evasions (fitted on)", "evasions (held out)"):
        s = summaries[title]
        if s["poisoned"]:
            print(f"{title}: recall {s['before']['caught'] / s['poisoned']:.2f} before, "
                  f"{s['after']['caught'] / s['poisoned']:.2f} after (goal 0.9)")
    print(f"\nno class flagged on held-out clean sets: {clean_ok}; no loss on the fixed "
          f"benchmark: {no_loss}; accepted as the default: {accepted}")
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.write:
        from dataclasses import replace

        check_summary = {"clean_sets_ok": clean_ok, "fixed_benchmark_no_loss": no_loss,
                         "tables": summaries}
        replace(scorer, accepted=accepted,
                provenance={**scorer.provenance, "check": check_summary}).save(SHIPPED)
        print(f"wrote {SHIPPED}")
    if args.json:
        args.json.write_text(json.dumps({"summaries": summaries, "rows": rows_of,
                                         "scorer": scorer.as_dict()}, indent=1))


if __name__ == "__main__":
    main()
