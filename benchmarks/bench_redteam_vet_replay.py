"""Defence in depth: does vet, on the poisoned data, name what the attacker found against
inspect?

Each evasion of the redteam reports given (against inspect, on MNIST-5k) is replayed on the
report's training split, the same samples poisoned, and vet runs on it as a user runs it.
Printed: per evasion, its kind, label, strength and rate, and whether vet named the target
class; then the count named per kind and label.

Run: python benchmarks/bench_redteam_vet_replay.py REPORT.json [...]
Reports come from: python benchmarks/bench_redteam.py --against inspect --seed S --json R.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from trojanscope.attacks.learning.episode import split
from trojanscope.attacks.learning.space import AttackConfig
from trojanscope.data.datasets import Dataset, mnist_5k
from trojanscope.data.vet import vet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    args = parser.parse_args()
    data = mnist_5k()
    named, seen = Counter(), Counter()
    for path in args.reports:
        report = json.loads(path.read_text())
        seed = report["config"]["seed"]
        train, _ = split(data, seed)
        for evasion in report["results"]["evasions"]:
            config = AttackConfig.from_dict(evasion["config"])
            bad = config.poison(train.x, train.y)
            found = vet(Dataset(bad.x, bad.y, "poisoned"), seed=seed).results
            caught = config.target in found.suspected_classes
            kind = f"{config.kind}, {config.label} label"
            seen[kind] += 1
            named[kind] += caught
            print(f"seed {seed} {evasion['search']} #{evasion['episode']}: {kind}, strength "
                  f"{config.strength:.2f}, rate {config.rate:.1%}, target {config.target}: vet "
                  f"{'names it' if caught else 'misses it'} (classes "
                  f"{sorted(int(c) for c in found.suspected_classes)})", flush=True)
    print("named by vet: " + ", ".join(f"{kind} {named[kind]} of {seen[kind]}"
                                       for kind in sorted(seen)))


if __name__ == "__main__":
    main()
