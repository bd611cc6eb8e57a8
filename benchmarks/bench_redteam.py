"""The learning attacker against the default detectors (`trojanscope redteam`): PPO against
random search and CMA-ES, each with the same budget of episodes (an episode poisons the training
split, trains the small CNN on it, runs the detector), on MNIST-5k by default; on labelled texts
(--data movie-reviews, sms-spam or a file) the attacks are the text space's and the model a
bag-of-words proxy against vet, or MiniLM fine-tuned on the poisoned texts against inspect
(minutes an episode on 2 cores: --sample N draws N texts by the seed).

Printed: per search, the evasions found (attack success >= 0.9, clean accuracy within 0.05 of a
clean model's, the detector misses it), the episode of the first, the best and mean reward and
the CPU time; the ratio of each search's evasions to random search's (the anchor: a learning
attacker should beat drawing at random); then the strongest evasions, their configurations
replayable with `trojanscope attack poison --config`.

Run: python benchmarks/bench_redteam.py [--against vet|inspect] [--data mnist-5k] [--budget 30]
     [--seed 0] [--target 0] [--sample N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from trojanscope import api
from trojanscope.data.text import TextDataset
from trojanscope.render.json import report_to_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", choices=["vet", "inspect"], default="vet")
    parser.add_argument("--data", default="mnist-5k")
    parser.add_argument("--budget", type=int, default=30, help="episodes per search")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=int, default=0, help="the attacks' target class")
    parser.add_argument("--search", action="append", help="default: ppo, random, cma")
    parser.add_argument("--sample", type=int, help="texts: this many, drawn by the seed")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    searches = tuple(args.search or ("ppo", "random", "cma"))
    data = args.data
    try:
        if args.sample is not None:
            data = api.load_data(args.data)
            if not isinstance(data, TextDataset) or not 0 < args.sample <= len(data.y):
                parser.error(f"--sample is for texts: 1 to their number, not {args.sample}")
            rows = np.random.default_rng(args.seed).permutation(len(data.y))[:args.sample]
            data = data.subset(rows, f"{data.name} ({args.sample} drawn, seed {args.seed})")
        report = api.redteam(data, against=args.against, budget=args.budget, seed=args.seed,
                             searches=searches, epochs=args.epochs, target=args.target)
    except api.InputError as exc:
        parser.error(str(exc))
    results = report.results
    print(f"redteam against {args.against} on {args.data}: {args.budget} episodes per search, "
          f"seed {args.seed}, target {args.target}, clean accuracy of the unattacked model "
          f"{results.clean_accuracy:.3f}")
    if results.clean_flagged:
        print(f"{args.against} names class(es) {results.clean_flagged} with no attack at all: "
              "its catches of them are not evidence")
    anchor = results.searches.get("random", {}).get("evasions")
    for name, entry in results.searches.items():
        ratio = "" if not anchor or name == "random" else \
            f" ({entry['evasions'] / anchor:.2f}x random search's)"
        print(f"  {name:<7} evasions {entry['evasions']:>3}{ratio}, first at episode "
              f"{entry['first_evasion']}, best reward {entry['best_reward']:.3f}, mean "
              f"{entry['mean_reward']:.3f}, {entry['seconds']:.0f} s")
    print(f"better: {results.better}")
    kinds: dict[str, int] = {}
    for evasion in results.evasions:
        key = f"{evasion['config']['kind']} ({evasion['config']['label']} label)"
        kinds[key] = kinds.get(key, 0) + 1
    print("evasions by kind: " + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
                                  or "none"))
    for evasion in results.evasions[:5]:
        c = evasion["config"]
        shape = (f"rarity {c['rarity']}, {len(c['variants'])} forms of "
                 f"{len(c['variants'][0])} words ({' '.join(c['variants'][0])}, ...), "
                 f"position {c['position']}") if "variants" in c else \
            f"strength {c['strength']}, size {c['size']}, frequency {c['frequency']}"
        print(f"  {evasion['search']} #{evasion['episode']}: success "
              f"{evasion['attack_success']:.2f} (a clean model: "
              f"{evasion.get('natural_success', 0):.2f}), accuracy "
              f"{evasion['clean_accuracy']:.3f}, "
              f"{c['kind']} {c['label']} label, rate {c['rate']:.3f}, {shape}")
    print(f"total {report.timings['total_seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report_to_dict(report), indent=1))


if __name__ == "__main__":
    main()
