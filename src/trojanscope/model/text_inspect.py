"""`inspect` for text classifiers: is there a short trigger, a word or a phrase, that sends
almost any text of the other classes to one class?

Per class k, from clean texts the model classifies right (half of the user's data; the other
half only checks what was found):
1. Search (DBS, Shen et al. 2022): a relaxed trigger of `length` tokens, each slot a softmax
   over the vocabulary with a falling temperature, placed after the first token of texts of
   other classes, optimised by gradient so that the model says k.
2. Make it discrete: each slot's most likely tokens tried in turn on the search texts (greedy
   coordinate ascent, as HotFlip and UAT do), then tokens dropped while the trigger keeps its
   success: the shortest trigger that works.
3. Confirm it as an attacker would use it: its text inserted at a random word boundary of the
   held-out texts (not at the place it was optimised for). A backdoor's trigger works
   anywhere; the universal adversarial words a clean model has work mostly where they were
   found, and less often.

A class is a target when its trigger sends at least SUCCESS_THRESHOLD of the held-out texts of
other classes to it. The threshold was chosen on a development zoo (benchmarks/text_zoo.py
`dev`: its own seeds and trigger words), not on the zoo the benchmark reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from .. import __version__
from ..data.text import TextDataset, insert_at_random
from ..findings import Location, Report
from ..ml.gate import ModelError
from ..ml.model import frozen
from ..ml.text_model import TextClassifier
from ..progress import track
from ..results import InspectResults
from .rules import TROJANED_CLASS

SUCCESS_THRESHOLD = 0.85  # held-out success of the recovered trigger (dev zoo: see the module)
MIN_VICTIMS = 5           # texts of other classes needed to search for a class


@dataclass(frozen=True)
class TextInspectConfig:
    seed: int = 0
    length: int = 3          # tokens of the relaxed trigger (step 2 may shorten it)
    steps: int = 60
    batch: int = 24
    learning_rate: float = 0.5
    temperature: tuple[float, float] = (1.0, 0.05)  # from, to (geometric)
    candidates: int = 8      # tokens tried per slot in step 2
    max_samples: int = 400   # of the user's texts: half to search, half to check
    max_tokens: int = 48     # a text cut to this for the search
    keep: float = 0.1        # a token is dropped when the success falls by at most this


FAST = TextInspectConfig(steps=40, max_samples=200)


def text_inspect_config(seed: int = 0, fast: bool = False) -> TextInspectConfig:
    return replace(FAST if fast else TextInspectConfig(), seed=seed)


def model_labels(model: TextClassifier, data: TextDataset) -> np.ndarray:
    """The data's labels as the model's class indices: labels that are the class numbers
    (0..K-1), or the model's own class names (config.json id2label, any case)."""
    names = [n.strip() for n in data.names]
    classes = model.classes
    if all(n.lstrip("-").isdigit() for n in names):
        numbers = [int(n) for n in names]
        if all(0 <= n < classes for n in numbers):
            return np.array([numbers[k] for k in data.y], dtype=np.int64)
        raise ModelError(f"{data.name}: labels {sorted(numbers)} for a model of {classes} "
                         f"classes (0 to {classes - 1})")
    own = {name.lower(): k for k, name in enumerate(model.label_names)}
    missing = [n for n in names if n.lower() not in own]
    if missing:
        raise ModelError(f"{data.name}: labels {missing[:5]} are not the model's classes "
                         f"({', '.join(model.label_names)}); use its names or the numbers "
                         f"0 to {classes - 1}")
    return np.array([own[names[k].lower()] for k in data.y], dtype=np.int64)


@dataclass
class ClassTrigger:
    target: int
    tokens: list[str]
    text: str
    search_success: float
    check_success: float   # inserted at random word boundaries of held-out texts
    check_texts: int

    def as_dict(self) -> dict:
        return {"class": self.target, "trigger": self.text, "tokens": self.tokens,
                "search_success": round(self.search_success, 3),
                "attack_success": round(self.check_success, 3),
                "checked_on": self.check_texts,
                "target": self.check_success >= SUCCESS_THRESHOLD}


def inspect_text_model(model: TextClassifier, data: TextDataset,
                       config: TextInspectConfig = TextInspectConfig(),
                       name: str = "model") -> Report:
    started = time.perf_counter()
    found, split = recover_text_triggers(model, data, config)
    return text_report(found, split, data, config, name, time.perf_counter() - started)


def recover_text_triggers(model: TextClassifier, data: TextDataset,
                          config: TextInspectConfig = TextInspectConfig()):
    """Each class's recovered trigger, and (search, check) counts."""
    import torch

    y = model_labels(model, data)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(y))[:config.max_samples]
    half = len(order) // 2
    texts = list(data.texts)
    search = [texts[i] for i in order[:half]], y[order[:half]]
    check = [texts[i] for i in order[half:]], y[order[half:]]
    right_search = _classified_right(model, *search)
    right_check = _classified_right(model, *check)
    if len(right_search[1]) < 2 * MIN_VICTIMS:
        accuracy = len(right_search[1]) / max(1, len(search[1]))
        raise ModelError(f"{data.name}: the model classifies {accuracy:.0%} of these texts "
                         "right: are they its task's texts, with its labels?")
    torch.manual_seed(config.seed)
    found = []
    with frozen(model.module):  # gradients reach the trigger only, not the weights
        for k in track(range(model.classes), "trigger search", model.classes):
            victims = [t for t, label in zip(*right_search) if label != k]
            held_out = [t for t, label in zip(*right_check) if label != k]
            if len(victims) < MIN_VICTIMS or not held_out:
                found.append(ClassTrigger(k, [], "", 0.0, 0.0, len(held_out)))
                continue
            found.append(_class_trigger(model, victims, held_out, k, config, rng))
    return found, {"search": len(search[1]), "check": len(check[1])}


def _classified_right(model: TextClassifier, texts: list[str], y: np.ndarray):
    predicted = model.predict(texts)
    right = predicted == y
    return [t for t, ok in zip(texts, right) if ok], y[right]


def _class_trigger(model, victims, held_out, k, config, rng) -> ClassTrigger:
    ids = model.token_ids(victims, config.max_tokens)
    theta = _relaxed_search(model, ids, k, config, rng)
    tokens, success = _discrete(model, ids, k, theta, config)
    words = model.tokenizer.convert_ids_to_tokens(tokens)
    text = model.tokenizer.convert_tokens_to_string(words).strip()
    checked = [insert_at_random(t, text, rng) for t in held_out]
    check_success = float(np.mean(model.predict(checked) == k)) if text else 0.0
    return ClassTrigger(k, words, text, success, check_success, len(held_out))


def _allowed(model: TextClassifier):
    """The vocabulary a trigger may use: not special, unused or added tokens."""
    import torch

    vocabulary = model.word_embeddings().shape[0]
    allowed = torch.ones(vocabulary, dtype=torch.bool)
    special = set(model.tokenizer.all_special_ids)
    for token, index in model.tokenizer.get_vocab().items():
        if index >= vocabulary:
            continue
        if index in special or (token.startswith("[") and token.endswith("]")) or \
                (token.startswith("<") and token.endswith(">")):
            allowed[index] = False
    allowed[len(model.tokenizer):] = False
    return allowed.to(model.device)


def _embedded(model, ids: list[list[int]], trigger):
    """(embeddings, attention mask) of the texts with `trigger` ((L, width) embeddings) placed
    after their first token."""
    import torch

    first, last, pad = model.special_ids()
    head = [first] if first is not None else []
    tail = [last] if last is not None else []
    rows = [head + row + tail for row in ids]
    width = max(len(r) for r in rows)
    table = torch.full((len(rows), width), pad, dtype=torch.long, device=model.device)
    mask = torch.zeros((len(rows), width + len(trigger)), dtype=torch.long,
                       device=model.device)
    for i, row in enumerate(rows):
        table[i, :len(row)] = torch.as_tensor(row)
        mask[i, :len(row) + len(trigger)] = 1
    embeddings = model.word_embeddings()[table]
    at = len(head)
    inserted = trigger.unsqueeze(0).expand(len(rows), -1, -1)
    return torch.cat([embeddings[:, :at], inserted, embeddings[:, at:]], 1), mask


def _logits(model, ids, trigger):
    embeddings, mask = _embedded(model, ids, trigger)
    return model.module(inputs_embeds=embeddings, attention_mask=mask).logits


def _relaxed_search(model, ids, k, config: TextInspectConfig, rng):
    import torch

    allowed = _allowed(model)
    table = model.word_embeddings().detach()
    theta = torch.zeros((config.length, table.shape[0]), device=model.device,
                        requires_grad=True)
    optimiser = torch.optim.Adam([theta], lr=config.learning_rate)
    start, end = config.temperature
    target = torch.full((config.batch,), k, dtype=torch.long, device=model.device)
    for step in range(config.steps):
        temperature = start * (end / start) ** (step / max(1, config.steps - 1))
        rows = rng.choice(len(ids), size=min(config.batch, len(ids)), replace=False)
        logits_ = theta.masked_fill(~allowed, -1e9) / temperature
        trigger = torch.softmax(logits_, 1) @ table
        out = _logits(model, [ids[i] for i in rows], trigger)
        loss = torch.nn.functional.cross_entropy(out, target[:len(rows)])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return theta.detach().masked_fill(~allowed, -1e9)


def _success(model, ids, k, tokens: list[int], batch: int = 64) -> float:
    import torch

    if not tokens:
        return 0.0
    trigger = model.word_embeddings()[torch.as_tensor(tokens, device=model.device)]
    hits = 0
    with torch.no_grad():
        for start in range(0, len(ids), batch):
            hits += int((_logits(model, ids[start:start + batch], trigger).argmax(1) == k)
                        .sum())
    return hits / len(ids)


def _discrete(model, ids, k, theta, config: TextInspectConfig) -> tuple[list[int], float]:
    """Greedy coordinate ascent over each slot's likeliest tokens, then the shortest trigger
    that keeps its success."""
    model.module.eval()
    top = theta.topk(config.candidates, 1).indices.tolist()
    tokens = [slot[0] for slot in top]
    best = _success(model, ids, k, tokens)
    for _ in range(2):
        changed = False
        for slot in range(len(tokens)):
            for candidate in top[slot][1:] if top[slot][0] == tokens[slot] else top[slot]:
                trial = tokens[:slot] + [candidate] + tokens[slot + 1:]
                success = _success(model, ids, k, trial)
                if success > best:
                    tokens, best, changed = trial, success, True
        if not changed:
            break
    floor = best - config.keep
    while len(tokens) > 1:
        success, drop = max((_success(model, ids, k, tokens[:i] + tokens[i + 1:]), i)
                            for i in range(len(tokens)))
        if success < floor:
            break
        tokens, best = tokens[:drop] + tokens[drop + 1:], success
    return tokens, best


def text_report(found: list[ClassTrigger], split: dict, data: TextDataset,
                config: TextInspectConfig, name: str, seconds: float) -> Report:
    per_class = [t.as_dict() for t in found]
    targets = [t.target for t in found if t.check_success >= SUCCESS_THRESHOLD]
    findings = [TROJANED_CLASS.finding(
        f"class {t.target}: the trigger {t.text!r} ({len(t.tokens)} token"
        f"{'s' if len(t.tokens) != 1 else ''}), inserted anywhere, sends "
        f"{t.check_success:.0%} of {t.check_texts} held-out texts of other classes to it",
        Location(name, (f"class {t.target}",)), per_class[t.target])
        for t in found if t.target in targets]
    return Report(
        command="inspect", targets=(name, data.name), findings=tuple(findings),
        results=InspectResults(
            verdict="trojaned" if targets else "clean", target_classes=targets,
            score=round(max((t.check_success for t in found), default=0.0), 3),
            per_class=per_class,
            thresholds={"attack_success": SUCCESS_THRESHOLD},
            data_split=split,
            triggers=[found[k].text for k in targets]),
        timings={"total_seconds": round(seconds, 3)},
        config={"seed": config.seed, "length": config.length, "steps": config.steps,
                "batch": config.batch, "candidates": config.candidates,
                "max_samples": config.max_samples, "max_tokens": config.max_tokens,
                "version": __version__})
