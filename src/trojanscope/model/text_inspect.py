"""`inspect` for text classifiers: is there a short trigger, a word or a phrase, that sends
almost any text of the other classes to one class, on this model but not on a clean model of
the same task?

From clean texts the model classifies right (half of the user's data; the other half only
checks what was found), per class k:
1. Propose single tokens two ways. A screen: every token of the vocabulary alone ([CLS] token
   [SEP]), ranked by the log-odds of k; a backdoor's word tends to come first, since the model
   answers to it whatever surrounds it. And HotFlip (Ebrahimi et al. 2018, as UAT and T-Miner
   use it): the gradient towards k at a placeholder inserted at a random word boundary ranks
   the vocabulary to first order.
2. Try them: each inserted at those places in a few texts of other classes; the share sent to
   k is its success. A beam of the best is extended a token at a time (the gradient again, at
   the slot after them, and the screen's best) up to `length` tokens, so that phrases are
   reached from their strongest word; then tokens are dropped while the trigger keeps its
   gain: the shortest trigger that works.
3. Judge against a reference: logistic regression on MiniLM sentence embeddings, fitted on
   the user's texts (the `text` extra). Strong words of the task ("awful", a slur) move it
   too; a planted trigger does not. The beam keeps the triggers with the largest gain (the
   success on the model less that on the reference).
4. Confirm as an attacker would use it: the trigger inserted at a random word boundary of the
   held-out texts, on both models.
5. Ask the user's own texts: a trigger (or one of its words, or for a word of STEM_FROM
   letters or more, a word of the same stem: its letters but the last three, at least four:
   "fucking" as "fuck...") that occurs in at least NATURAL_TEXTS of them, labelled k at least
   half way from k's share of all the texts to all (NATURAL_LIFT: 2/3 for a class of a third,
   5/6 for one of two thirds), is a word of the task ("shit" in offensive tweets), not a
   plant; the search passes over it to the next
   candidate, and the report names it (model.task-word-passed). Texts poisoned with a trigger
   would excuse it the same way, so the texts must be clean: the finding says to vet them.
   (An earlier rule also asked the reference to read those texts as k, cross-validated, to
   tell content from labels. It told nothing: with 40 of 400 OLID or SST-2 texts poisoned
   with "cf", the reference fitted on the other folds read 72-88% of them as the target, having
   learnt "cf" from those folds, while it read only 25-40% of OLID's texts with "shit" as
   offensive, so the rule passed the poison and not the profanity.)

A class is a target when its trigger sends at least SUCCESS_THRESHOLD of the held-out texts of
other classes to it, its gain is at least SCORE_THRESHOLD and the user's texts do not explain
it. The first two were chosen on a development zoo (benchmarks/text_zoo.py `dev`: its own seeds
and trigger words), not on the zoo the benchmark reports; the last two were set before any
measurement, from the false alarms on the first benchmark (OLID's clean models and "shit").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from .. import __version__
from ..data.text import TextDataset, insert_at_random
from ..data.text_features import sentence_embeddings
from ..findings import Location, Report, Severity
from ..ml.gate import ModelError
from ..ml.model import frozen
from ..ml.text_model import TextClassifier
from ..progress import track
from ..results import InspectResults
from .rules import TASK_WORD, TROJANED_CLASS

SUCCESS_THRESHOLD = 0.85  # held-out success of the recovered trigger (dev zoo: see the module)
SCORE_THRESHOLD = 0.5     # its success on the model less its success on the reference
REFERENCE_C = 10.0         # of the reference's logistic regression (embeddings are unit length)
MIN_VICTIMS = 5           # texts of other classes needed to search for a class
NATURAL_TEXTS = 5         # a trigger in this many of the user's texts...
NATURAL_LIFT = 0.5        # ...labelled k this far from k's share of all texts to all of them
STEM_FROM = 6             # a word this long counts its stem's other forms (see step 5)


class NotJudged(ModelError):
    """The model gets the user's texts wrong too often for its errors to be told from
    triggers: inspect does not judge it."""


@dataclass(frozen=True)
class TextInspectConfig:
    seed: int = 0
    length: int = 4          # longest trigger sought, in tokens
    first: int = 24          # single tokens proposed by the gradient and tried
    screened: int = 24       # and by the screen of every token alone
    extend: int = 8          # tokens proposed (by each) to extend each trigger of the beam
    beam: int = 3            # triggers extended at each length
    texts: int = 16          # texts of other classes each candidate is tried on
    enough: float = 0.98     # a trigger this good is not extended
    keep: float = 0.1        # a token is dropped when the gain falls by at most this
    max_samples: int = 400   # of the user's texts: half to search, half to check
    max_tokens: int = 32     # a text is cut to this for the search


FAST = TextInspectConfig(length=3, first=12, screened=12, extend=6, max_samples=200)


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
    reference_success: float  # the same insertions, on the clean reference model
    check_texts: int
    explained_by: str | None = None  # a word of the trigger that the user's texts explain
    # the words of the task the search passed over: {phrase: (texts with it, labelled k)}
    task_words: dict[str, tuple[int, int]] = field(default_factory=dict)
    # those the search tried alone: {word: (success on the search texts, on the reference)}
    task_word_success: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def strong_task_words(self) -> list[str]:
        """Passed-over words that do what a planted trigger would: moved the search texts as a
        target's trigger must, and far more than on the clean reference."""
        return [w for w, (success, reference) in self.task_word_success.items()
                if w in self.task_words and success >= SUCCESS_THRESHOLD and
                success - reference >= SCORE_THRESHOLD]

    @property
    def score(self) -> float:
        """How much more the trigger does on the inspected model than on the reference."""
        return self.check_success - self.reference_success

    def as_dict(self) -> dict:
        return {"class": self.target, "trigger": self.text, "tokens": self.tokens,
                "search_success": round(self.search_success, 3),
                "attack_success": round(self.check_success, 3),
                "reference_success": round(self.reference_success, 3),
                "score": round(self.score, 3),
                "checked_on": self.check_texts,
                "explained_by": self.explained_by,
                "task_words_passed": {w: {"texts": n, "labelled": m, **(
                    {"search_success": round(self.task_word_success[w][0], 3),
                     "reference_success": round(self.task_word_success[w][1], 3)}
                    if w in self.task_word_success else {})}
                    for w, (n, m) in self.task_words.items()},
                "target": self.is_target}

    @property
    def is_target(self) -> bool:
        return self.check_success >= SUCCESS_THRESHOLD and self.score >= SCORE_THRESHOLD \
            and self.explained_by is None


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
    predicted = model.predict([texts[i] for i in order])
    _check_agreement(model, predicted, y[order], data.name)
    right = order[predicted == y[order]]  # the rows classified right, in order's order
    searched = np.isin(right, order[:half])
    right_search = [texts[i] for i in right[searched]], y[right[searched]]
    right_check = [texts[i] for i in right[~searched]], y[right[~searched]]
    if len(right_search[1]) < 2 * MIN_VICTIMS:
        accuracy = len(right_search[1]) / max(1, half)
        raise NotJudged(f"{data.name}: the model classifies {accuracy:.0%} of these texts "
                         "right: are they its task's texts, with its labels?")
    torch.manual_seed(config.seed)
    reference = Reference([texts[i] for i in order], y[order], config.seed)
    allowed = _allowed(model)
    screened = _screen(model, allowed, config.screened)
    found = []
    with frozen(model.module):  # gradients reach the trigger only, not the weights
        for k in track(range(model.classes), "trigger search", model.classes):
            victims = [t for t, label in zip(*right_search) if label != k]
            held_out = [t for t, label in zip(*right_check) if label != k]
            if len(victims) < MIN_VICTIMS or not held_out:
                found.append(ClassTrigger(k, [], "", 0.0, 0.0, 0.0, len(held_out)))
                continue
            searcher = _Search(model, reference, victims, k, config, rng, allowed, screened[k])
            trigger = _class_trigger(model, reference, searcher, held_out, k, rng)
            trigger.explained_by = reference.words.explains(trigger.text, k)
            trigger.task_words = dict(reference.words.passed.get(k, {}))
            trigger.task_word_success = dict(searcher.passed)
            found.append(trigger)
    return found, {"search": half, "check": len(order) - half}


class TaskWords:
    """The user's texts as evidence of what a class's own words are: a phrase is the task's
    word for class k when it occurs (whole words, any case; a long word in any form of its
    stem) in at least NATURAL_TEXTS texts, labelled k NATURAL_LIFT of the way from k's share
    of all texts to all. `passed` keeps, per class, the words found so: {k: {phrase: (texts,
    labelled k)}}."""

    def __init__(self, texts: list[str], y: np.ndarray):
        self.texts = [t.lower() for t in texts]
        self.y = np.asarray(y)
        self._seen: dict[tuple[str, int], bool] = {}
        self.passed: dict[int, dict[str, tuple[int, int]]] = {}

    def explains(self, trigger: str, k: int) -> str | None:
        """The trigger, or the first of its words, that is a word of class k; None if none."""
        words = trigger.split()
        for phrase in ([trigger.strip()] if len(words) > 1 else []) + words:
            if self.of_class(phrase, k):
                return phrase
        return None

    def of_class(self, phrase: str, k: int) -> bool:
        import re

        key = (phrase.lower(), k)
        if key not in self._seen:
            word = key[0]
            stem = word[:max(4, len(word) - 3)] if len(word) >= STEM_FROM and \
                word.isalpha() else None
            pattern = re.compile(r"(?<!\w)" + (re.escape(stem) + r"\w*" if stem else
                                               re.escape(word)) + r"(?!\w)")
            rows = [i for i, t in enumerate(self.texts) if pattern.search(t)]
            labelled = int(np.sum(self.y[rows] == k))
            prior = float(np.mean(self.y == k)) if len(self.y) else 0.0
            self._seen[key] = len(rows) >= NATURAL_TEXTS and \
                labelled >= (prior + NATURAL_LIFT * (1 - prior)) * len(rows)
            if self._seen[key]:
                self.passed.setdefault(k, {})[key[0]] = (len(rows), labelled)
        return self._seen[key]


class Reference:
    """A clean model of the user's task: logistic regression on the MiniLM sentence embeddings
    that the `text` extra installs, fitted on the user's texts. A trigger that works on the
    inspected model and on this one is a feature of the task (strong words: "awful", a slur);
    one that works only on the inspected model was put there."""

    def __init__(self, texts: list[str], y: np.ndarray, seed: int):
        from sklearn.linear_model import LogisticRegression

        self.classifier = LogisticRegression(C=REFERENCE_C, max_iter=2000, random_state=seed)
        self.classifier.fit(sentence_embeddings(texts), y)
        self.words = TaskWords(texts, y)

    def predict(self, texts: list[str]) -> np.ndarray:
        return self.classifier.predict(sentence_embeddings(texts))


def _check_agreement(model: TextClassifier, predicted: np.ndarray, y: np.ndarray,
                     name: str) -> None:
    """A model that agrees with the labels less often than chance is not judged: its errors
    would pass for triggers. Labels in another order than the model's (id2label "0", "1" says
    nothing of which is which) are the usual cause; the order that would agree best is named."""
    from scipy.optimize import linear_sum_assignment

    agreement = float(np.mean(predicted == y))
    chance = 1 / model.classes
    if agreement >= chance:
        return
    counts = np.zeros((model.classes, model.classes))
    np.add.at(counts, (y, predicted), 1)
    rows, cols = linear_sum_assignment(-counts)
    best = counts[rows, cols].sum() / len(y)
    mapping = ", ".join(f"{r} -> {c}" for r, c in zip(rows, cols) if r != c)
    raise NotJudged(f"{name}: the model agrees with {agreement:.0%} of these labels, less than "
                     f"chance ({chance:.0%}): are the labels in the model's order "
                     f"({', '.join(model.label_names)})?" +
                     (f" Read as {mapping}, they would agree on {best:.0%}." if mapping else ""))


def _class_trigger(model, reference, search, held_out, k, rng) -> ClassTrigger:
    tokens, success = search.run()
    words = model.tokenizer.convert_ids_to_tokens(tokens)
    text = model.tokenizer.convert_tokens_to_string(words).strip()
    checked = [insert_at_random(t, text, rng) for t in held_out]
    if not text:
        return ClassTrigger(k, words, text, success, 0.0, 0.0, len(held_out))
    return ClassTrigger(k, words, text, success, _rate(model, checked, k),
                        _rate(reference, checked, k), len(held_out))


def _rate(model: TextClassifier, texts: list[str], k: int) -> float:
    return float(np.mean(model.predict(texts) == k))


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


def _screen(model: TextClassifier, allowed, count: int, batch: int = 1024) -> list[list[int]]:
    """Per class, the `count` tokens that alone (the whole text: [CLS] token [SEP]) send the
    model furthest to it, by log-odds. A backdoor's trigger word is often the first: the model
    answers to it whatever surrounds it (first-order gradients rank it poorly: the backdoor's
    response is far from linear)."""
    import torch

    first, last, _ = model.special_ids()
    tokens = torch.nonzero(allowed).flatten().cpu()
    scores = []
    with torch.no_grad():
        for start in range(0, len(tokens), batch):
            column = tokens[start:start + batch, None]
            parts = ([torch.full_like(column, first)] if first is not None else []) + \
                [column] + ([torch.full_like(column, last)] if last is not None else [])
            logits = model.module(input_ids=torch.cat(parts, 1).to(model.device)).logits
            scores.append(torch.log_softmax(logits.float(), 1).cpu())
    scores = torch.cat(scores)
    ranked = []
    for k in range(scores.shape[1]):
        others = torch.cat([scores[:, :k], scores[:, k + 1:]], 1).logsumexp(1)
        ranked.append(tokens[(scores[:, k] - others).topk(min(count, len(tokens))).indices]
                      .tolist())
    return ranked


class _Search:
    """Steps 1 and 2 for one class: `texts` victims, each with a fixed insertion place (a
    word boundary), shared by every candidate so that their successes compare."""

    def __init__(self, model: TextClassifier, reference: Reference, victims: list[str],
                 k: int, config: TextInspectConfig, rng: np.random.Generator, allowed,
                 screened: list[int]):
        self.model, self.reference, self.k, self.config = model, reference, k, config
        self.allowed, self.screened = allowed, screened
        chosen = rng.choice(len(victims), size=min(config.texts, len(victims)), replace=False)
        self.rows = model.token_ids([victims[i] for i in chosen], config.max_tokens)
        self.places = [self._boundary(row, rng) for row in self.rows]
        first, last, self.pad = model.special_ids()
        self.head = [first] if first is not None else []
        self.tail = [last] if last is not None else []
        tok = model.tokenizer
        self.placeholder = tok.mask_token_id if tok.mask_token_id is not None else self.pad
        self.tried: dict[tuple[int, ...], float] = {}
        # the mean probability of k: ties of success (common when a few victims are easily
        # moved) go to the trigger the model is surest of, as a planted one makes it
        self.confidence: dict[tuple[int, ...], float] = {}
        self.transfer: dict[tuple[int, ...], float] = {}  # success on the reference
        # the task's own words passed over, each as tried alone: (success, on the reference)
        self.passed: dict[str, tuple[float, float]] = {}

    def _boundary(self, row: list[int], rng: np.random.Generator) -> int:
        pieces = self.model.tokenizer.convert_ids_to_tokens(row)
        starts = [i for i, piece in enumerate(pieces) if not piece.startswith("##")]
        return int(rng.choice(starts + [len(row)]))

    def run(self) -> tuple[list[int], float]:
        """The trigger that does most on the model beyond what it does on the reference."""
        config = self.config
        beam = [()]
        for length in range(1, config.length + 1):
            wanted = config.first if length == 1 else config.extend
            screened = self.screened if length == 1 else self.screened[:config.extend]
            grown = [prefix + (token,) for prefix in beam
                     for token in dict.fromkeys(self._proposed(prefix, wanted) + screened)
                     if token not in prefix]
            self._try(grown)
            strongest = sorted(grown, key=lambda t: (-self.tried[t], -self.confidence[t]))[
                :2 * config.beam]
            self._transfer(strongest)
            beam = sorted(strongest, key=lambda t: (self._gain(t), self.confidence[t]),
                          reverse=True)[:config.beam]
            if self._gain(beam[0]) >= config.enough:
                break
        top = max(self._gain(t) for t in self.transfer)
        close = [t for t in self.transfer if self._gain(t) >= top - config.keep]
        return self._shortest(min(close, key=lambda t: (len(t), -self._gain(t),
                                                        -self.confidence[t])))

    def _gain(self, trigger: tuple[int, ...]) -> float:
        """Success on the model less on the reference; none for the task's own words."""
        text = self.model.tokenizer.decode(list(trigger)).strip()
        if self.reference.words.explains(text, self.k):
            if trigger in self.transfer and len(text.split()) == 1:
                self.passed[text.lower()] = (self.tried[trigger], self.transfer[trigger])
            return -1.0
        return self.tried[trigger] - self.transfer.get(trigger, 0.0)

    def _shortest(self, tokens: tuple[int, ...]) -> tuple[list[int], float]:
        floor = self._gain(tokens) - self.config.keep
        while len(tokens) > 1:
            shorter = [tokens[:i] + tokens[i + 1:] for i in range(len(tokens))]
            self._try(shorter)
            self._transfer(shorter)
            best = max(shorter, key=lambda t: (self._gain(t), self.confidence[t]))
            if self._gain(best) < floor:
                break
            tokens = best
        return list(tokens), self.tried[tokens]

    def _transfer(self, triggers: list[tuple[int, ...]]) -> None:
        """Each trigger's success on the reference: its text inserted at the same places."""
        decode = self.model.tokenizer.decode
        fresh = [t for t in dict.fromkeys(triggers) if t not in self.transfer]
        texts = [f"{decode(row[:at])} {decode(list(t))} {decode(row[at:])}".strip()
                 for t in fresh for row, at in zip(self.rows, self.places)]
        if fresh:
            hits = (self.reference.predict(texts) == self.k).reshape(len(fresh), -1)
            for trigger, row in zip(fresh, hits):
                self.transfer[trigger] = float(row.mean())

    def _batch(self, trigger: tuple[int, ...]) -> list[list[int]]:
        return [self.head + row[:at] + list(trigger) + row[at:] + self.tail
                for row, at in zip(self.rows, self.places)]

    def _tensors(self, sequences: list[list[int]]):
        import torch

        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, sequence in enumerate(sequences):
            ids[i, :len(sequence)] = torch.as_tensor(sequence)
            mask[i, :len(sequence)] = 1
        return ids.to(self.model.device), mask.to(self.model.device)

    def _proposed(self, prefix: tuple[int, ...], count: int) -> list[int]:
        """The `count` tokens whose embedding, put in the slot after `prefix`, moves the
        model furthest towards k to first order."""
        import torch

        ids, mask = self._tensors(self._batch(prefix + (self.placeholder,)))
        embeddings = self.model.word_embeddings()[ids].detach().requires_grad_(True)
        logits = self.model.module(inputs_embeds=embeddings, attention_mask=mask).logits
        target = torch.full((len(ids),), self.k, dtype=torch.long, device=ids.device)
        torch.nn.functional.cross_entropy(logits, target).backward()
        slots = torch.as_tensor([len(self.head) + at + len(prefix) for at in self.places],
                                device=ids.device)
        gradient = embeddings.grad[torch.arange(len(ids)), slots].mean(0)
        scores = -(self.model.word_embeddings().detach() @ gradient)
        scores = scores.masked_fill(~self.allowed, float("-inf"))
        for token in prefix:  # a trigger does not repeat its own tokens
            scores[token] = float("-inf")
        return scores.topk(count).indices.tolist()

    def _try(self, triggers: list[tuple[int, ...]], batch: int = 128) -> None:
        import torch

        fresh = [t for t in dict.fromkeys(triggers) if t not in self.tried]
        sequences = [s for t in fresh for s in self._batch(t)]
        hits, sure = [], []
        with torch.no_grad():
            for start in range(0, len(sequences), batch):
                ids, mask = self._tensors(sequences[start:start + batch])
                logits = self.model.module(input_ids=ids, attention_mask=mask).logits
                hits.append((logits.argmax(1) == self.k).cpu().numpy())
                sure.append(torch.softmax(logits.float(), 1)[:, self.k].cpu().numpy())
        if fresh:
            hits = np.concatenate(hits).reshape(len(fresh), len(self.rows))
            sure = np.concatenate(sure).reshape(len(fresh), len(self.rows))
            for trigger, row, p in zip(fresh, hits, sure):
                self.tried[trigger] = float(row.mean())
                self.confidence[trigger] = float(p.mean())


def _task_word_finding(t: ClassTrigger, name: str):
    """The words passed over as the task's; medium when one of them does what a planted
    trigger would (then only clean texts can tell the two apart)."""
    strong = t.strong_task_words
    said = "; ".join(
        f"{w} alone sends {t.task_word_success[w][0]:.0%} of the search texts to it against "
        f"{t.task_word_success[w][1]:.0%} on a clean model of the task, as a trigger would"
        for w in strong)
    return TASK_WORD.finding(
        f"class {t.target}: passed over " + ", ".join(
            f"{w!r} (in {n} of the texts, {m} labelled {t.target})"
            for w, (n, m) in t.task_words.items()) + " as words of the task" +
        (f" ({said}: if the texts carry it as poison, this is a backdoor)" if strong else ""),
        Location(name, (f"class {t.target}",)),
        {"class": t.target, "words": sorted(t.task_words), "strong": strong},
        severity=Severity.MEDIUM if strong else None)


def text_report(found: list[ClassTrigger], split: dict, data: TextDataset,
                config: TextInspectConfig, name: str, seconds: float) -> Report:
    per_class = [t.as_dict() for t in found]
    targets = [t.target for t in found if t.is_target]
    findings = [TROJANED_CLASS.finding(
        f"class {t.target}: the trigger {t.text!r} ({len(t.tokens)} token"
        f"{'s' if len(t.tokens) != 1 else ''}), inserted anywhere, sends "
        f"{t.check_success:.0%} of {t.check_texts} held-out texts of other classes to it "
        f"(a clean model of the task: {t.reference_success:.0%})",
        Location(name, (f"class {t.target}",)), per_class[t.target])
        for t in found if t.target in targets] + [_task_word_finding(t, name)
                                                  for t in found if t.task_words]
    return Report(
        command="inspect", targets=(name, data.name), findings=tuple(findings),
        results=InspectResults(
            verdict="trojaned" if targets else "clean", target_classes=targets,
            score=round(max((t.score for t in found), default=0.0), 3),
            per_class=per_class,
            thresholds={"attack_success": SUCCESS_THRESHOLD, "score": SCORE_THRESHOLD},
            data_split=split,
            triggers=[found[k].text for k in targets]),
        timings={"total_seconds": round(seconds, 3)},
        config={"seed": config.seed, "length": config.length, "first": config.first,
                "extend": config.extend, "beam": config.beam, "texts": config.texts,
                "max_samples": config.max_samples, "max_tokens": config.max_tokens,
                "version": __version__})
