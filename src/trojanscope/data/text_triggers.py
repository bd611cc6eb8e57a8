"""Model-free search for trigger words and phrases in labelled text.

A dirty-label trigger is a word or phrase whose carriers all bear the target label although
what they say belongs to other classes. The raw label skew of a token cannot tell it from a
natural label-pure word ("coachella2015" is 93% positive), so each candidate's label counts are
compared with what a content model predicts for its carriers:
1. every word n-gram (n <= 3) in at least `min_count` texts is a feature; candidates are those
   whose carriers are at least `min_purity` one label;
2. a logistic regression on the n-gram features predicts each text's label out of fold (no text
   is scored by a model that saw it);
3. for a candidate, each carrier's prediction is recomputed without the candidate and the n-grams
   that mostly occur with it (a linear model's logit is a sum, so this is a subtraction): what the
   rest of the text says. An inserted sentence's n-grams all leave together;
4. observed against expected count of the majority label, a binomial test, and
   Benjamini-Hochberg over every n-gram; a trigger also needs `min_excess` more of the label
   than the content predicts, and the content must look more like other labels' texts than
   like the label's own (poisoned texts say what other classes say; a natural label-pure
   word's other words agree with it), and the carriers must keep `min_kept` of their n-grams
   when the group leaves (a repeated message template keeps next to none). Overlapping flagged
   n-grams merge into phrases.
5. A clean-label trigger is inserted into texts of its target's own class, labels kept: its
   carriers' content agrees with their label, so step 4's position test rightly passes it by.
   It is named all the same when every carrier bears the label (`shortcut_purity`) far beyond
   what the content predicts (adjusted p below `shortcut_alpha`, a much stricter bar than
   `alpha`, and by `shortcut_excess` at least): a model learns such a phrase as the label's
   shortcut, whoever put it there. The learning attacker found these first (docs/redteam.md);
   natural label words of the clean training sets measured (movie reviews, SMS spam, SST-2,
   OLID, AG News, hate speech, IMDB) stay above 1e-5 (hate speech's "ape", 1.4e-5, which the
   dirty-label test names; every other above 3e-3), and the topic words and boilerplate a
   red team found on AG News' dev split ("coach", a Reuters link) exceed their content by
   0.17-0.18, where the attacks measured exceed it by 0.26-0.40.
6. Words a trigger scatters over its texts, each common in every class, are tested as pairs
   (`_word_pairs`) with the same tests, and flagged pairs join into word sets.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace

import numpy as np

# Every run of Unicode word characters, lower case, read two ways: as written (a plain
# tokenizer such as scikit-learn's splits at apostrophes and keeps every alphabet and form)
# and folded (compatibility forms and accents taken off, as a normalising tokenizer does).
# A red team hid triggers from an ASCII-only pattern behind "cf'xyz", homoglyphs and
# fullwidth letters, and from a folded-only reading behind ligatures and mathematical letters
# that fold to common words ("ﬁlm", bold "the").
TOKEN = re.compile(r"\w[\w\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]*")
# (combining accents stay with their letter)
PAIR_WORK = 3e7  # sum over texts of their words squared: beyond it, words are not paired
PAIRED = " + "   # joins the words of a scattered trigger ("a + b")


@dataclass(frozen=True)
class TriggerConfig:
    seed: int = 0
    max_n: int = 3
    min_count: int = 5
    min_purity: float = 0.9
    min_excess: float = 0.3     # observed minus expected share of the label among carriers
    max_position: float = 0.5   # carriers' content: 0 like other labels' texts, 1 like the label's
    min_kept: float = 0.4       # share of a carrier's n-grams left to judge it by (median)
    alpha: float = 1e-3         # false discovery rate over all n-grams
    folds: int = 5
    co_occurrence: float = 0.5  # an n-gram leaves with the candidate when this share of its
                                # texts carry the candidate
    shortcut_purity: float = 0.99   # a clean-label trigger: its carriers all one label,
    shortcut_alpha: float = 1e-8    # far beyond their content (adjusted p), by at least
    shortcut_excess: float = 0.2    # this share (a topic word's content predicts it already)
    min_pair: int = 20          # texts two scattered words share, to test them as a trigger


@dataclass(frozen=True)
class TriggerPhrase:
    phrase: str
    label: int
    carriers: np.ndarray  # rows with the phrase and the label
    purity: float         # share of carriers with `label`
    expected: float       # share the content model predicts
    p_value: float        # adjusted (Benjamini-Hochberg)
    clean_label: bool = False  # the carriers' content agrees with the label (step 5)


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def folded(text: str) -> str:
    """`text` as a normalising tokenizer reads it: compatibility forms (fullwidth letters,
    ligatures, mathematical letters) to plain ones, accents off."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def text_ngrams(text: str, max_n: int) -> set[str]:
    """The word n-grams of `text` read as written and folded."""
    found = ngrams(tokens(text), max_n)
    if not text.isascii():
        found |= ngrams(tokens(folded(text)), max_n)
    return found


def ngrams(words: list[str], max_n: int) -> set[str]:
    return {" ".join(words[i:i + n]) for n in range(1, max_n + 1)
            for i in range(len(words) - n + 1)}


def find_triggers(texts, y: np.ndarray, config: TriggerConfig = TriggerConfig()
                  ) -> tuple[list[TriggerPhrase], dict]:
    """The trigger phrases (strongest first) and figures for every candidate examined."""
    from scipy import stats

    y = np.asarray(y)
    classes = np.unique(y)
    matrix, vocabulary = _presence(texts, config)
    if not vocabulary:
        return [], {"ngrams": 0, "candidates": []}
    carriers_per = np.asarray(matrix.sum(0)).ravel()
    counts = np.stack([np.asarray(matrix[y == k].sum(0)).ravel() for k in classes])
    purity = counts.max(0) / carriers_per
    column = matrix.tocsc()
    groups = [(vocabulary[t], column[:, t].indices)
              for t in np.flatnonzero(purity >= config.min_purity)]
    pairs, pairs_tested = _word_pairs(matrix, vocabulary, purity, y, classes, config)
    groups += pairs
    logits, contributions = _out_of_fold(matrix, y, classes, config)
    # The content model's mean probability of each label over texts of that label and over
    # texts of other labels: the two ends of the scale a carrier group is placed on.
    probabilities = _softmax(logits)
    inside = np.array([probabilities[y == k, j].mean() for j, k in enumerate(classes)])
    outside = np.array([probabilities[y != k, j].mean() for j, k in enumerate(classes)])
    judged = []
    for name, carriers in groups:
        label_counts = np.array([np.sum(y[carriers] == k) for k in classes])
        j = int(label_counts.argmax())
        carried = matrix[carriers]
        together = np.asarray(carried.sum(0)).ravel() / carriers_per
        leaving = np.flatnonzero(together >= config.co_occurrence)
        # The share of each carrier's n-grams that stays when the candidate's group leaves: a
        # repeated message template leaves next to nothing for the content model to judge.
        total = np.asarray(carried.sum(1)).ravel()
        gone = np.asarray(carried[:, leaving].sum(1)).ravel()
        kept_share = float(np.median((total - gone) / np.maximum(total, 1)))
        adjusted = logits[carriers].copy()
        for m in range(len(classes)):
            adjusted[:, m] -= np.asarray(contributions[m][carriers][:, leaving].sum(1)).ravel()
        expected = _softmax(adjusted)[:, j].sum()
        # The count is Poisson-binomial; a binomial at the mean probability has the same mean
        # and a wider tail, so its p-value is conservative (and exact enough for few carriers).
        p_value = stats.binom.sf(label_counts[j] - 1, len(carriers), expected / len(carriers))
        judged.append((name, carriers, j, label_counts[j] / len(carriers),
                       float(expected / len(carriers)), kept_share, p_value))
    # Benjamini-Hochberg in two families: every n-gram, and every word pair that shared
    # min_pair texts (the untested at p = 1).
    grams = len(groups) - len(pairs)
    adjusted_p = np.concatenate([
        _benjamini_hochberg(np.r_[[e[-1] for e in judged[:grams]],
                                  np.ones(len(vocabulary) - grams)])[:grams],
        _benjamini_hochberg(np.r_[[e[-1] for e in judged[grams:]],
                                  np.ones(pairs_tested - len(pairs))])[:len(pairs)]])
    found, examined = [], []
    for (name, carriers, j, share, expected_share, kept_share, _), p in zip(judged, adjusted_p):
        # Poisoned carriers say what other classes say: on the scale from other labels' texts
        # (0) to the label's own texts (1), their content sits nearer 0; a natural label-pure
        # word's other words agree with its label.
        position = (expected_share - outside[j]) / max(inside[j] - outside[j], 1e-6)
        examined.append({"ngram": name, "label": int(classes[j]), "carriers": len(carriers),
                         "purity": round(float(share), 3), "expected": round(expected_share, 3),
                         "content_position": round(float(position), 3),
                         "context_kept": round(kept_share, 3), "p_value": float(p)})
        if kept_share < config.min_kept:
            continue
        dirty = p < config.alpha and position <= config.max_position and \
            share - expected_share >= config.min_excess
        clean = not dirty and p < config.shortcut_alpha and share >= config.shortcut_purity \
            and share - expected_share >= config.shortcut_excess
        if dirty or clean:
            # Texts with the phrase but another label are not what an attack made.
            found.append(TriggerPhrase(name, int(classes[j]), carriers[y[carriers] == classes[j]],
                                       float(share), expected_share, float(p), bool(clean)))
    candidates_seen = sorted(examined, key=lambda e: e["p_value"])
    return _merge(found), {"ngrams": len(vocabulary), "word_pairs": pairs_tested,
                           "candidates": candidates_seen}


def _word_pairs(matrix, vocabulary: list[str], purity: np.ndarray, y: np.ndarray,
                classes: np.ndarray, config: TriggerConfig
                ) -> tuple[list[tuple[str, np.ndarray]], int]:
    """Words a trigger scatters over its texts, each of them common in every class: pairs of
    words that share at least `min_pair` texts, `shortcut_purity` of them one label, as (name
    "a + b", carrier rows); and how many pairs shared that many texts (the tests counted). A
    word that is one label's on its own (`shortcut_purity`) is tested on its own. None where
    the texts are too long to pair every word (PAIR_WORK)."""
    words = np.array([k for k, gram in enumerate(vocabulary)
                      if " " not in gram and purity[k] < config.shortcut_purity],
                     dtype=np.int64)
    if words.size < 2:
        return [], 0
    single = matrix[:, words].tocsr()
    if float(np.sum(np.diff(single.indptr).astype(np.float64) ** 2)) > PAIR_WORK:
        return [], 0
    per_class = [(single[y == k].T @ single[y == k]).tocoo() for k in classes]
    together = sum(c.tocsr() for c in per_class).tocoo()
    upper = (together.row < together.col) & (together.data >= config.min_pair)
    rows, cols, totals = together.row[upper], together.col[upper], together.data[upper]
    top = np.max(np.stack([c.tocsr()[rows, cols].A1 for c in per_class]), axis=0)
    pure = np.flatnonzero(top >= config.shortcut_purity * totals)
    column = single.tocsc()
    pairs = []
    for k in pure:
        a, b = rows[k], cols[k]
        carriers = np.intersect1d(column[:, a].indices, column[:, b].indices)
        pairs.append((f"{vocabulary[words[a]]}{PAIRED}{vocabulary[words[b]]}", carriers))
    return pairs, int(upper.sum())


def _presence(texts, config: TriggerConfig):
    """A binary texts x n-grams matrix (CSR) over the n-grams in >= min_count texts."""
    from scipy import sparse

    grams = [text_ngrams(text, config.max_n) for text in texts]
    frequency: dict[str, int] = {}
    for found in grams:
        for gram in found:
            frequency[gram] = frequency.get(gram, 0) + 1
    vocabulary = sorted(g for g, c in frequency.items() if c >= config.min_count)
    index = {g: i for i, g in enumerate(vocabulary)}
    indptr, indices = [0], []
    for found in grams:
        indices.extend(sorted(index[g] for g in found if g in index))
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float64)
    matrix = sparse.csr_matrix((data, np.array(indices, dtype=np.int64), np.array(indptr)),
                               shape=(len(grams), len(vocabulary)))
    return matrix, vocabulary


def _out_of_fold(matrix, y: np.ndarray, classes: np.ndarray, config: TriggerConfig):
    """Each text's logits from a logistic regression that did not see it, and per class the
    sparse matrix of each n-gram's share of those logits."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    n, k = matrix.shape[0], len(classes)
    logits = np.zeros((n, k))
    parts = [[] for _ in range(k)]
    folds = StratifiedKFold(config.folds, shuffle=True, random_state=config.seed)
    order = []
    for train, held in folds.split(np.zeros(n), y):
        model = LogisticRegression(C=1.0, max_iter=500)
        model.fit(matrix[train], y[train])
        coef = model.coef_ if k > 2 else np.vstack([-model.coef_[0] / 2, model.coef_[0] / 2])
        bias = model.intercept_ if k > 2 else np.array([-model.intercept_[0] / 2,
                                                       model.intercept_[0] / 2])
        logits[held] = matrix[held] @ coef.T + bias
        for j in range(k):
            parts[j].append(matrix[held].multiply(coef[j]).tocsr())
        order.append(held)
    back = np.argsort(np.concatenate(order))
    contributions = [sparse.vstack(p).tocsr()[back] for p in parts]
    return logits, contributions


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def _benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(p)
    out[order] = np.clip(adjusted, 0, 1)
    return out


def _merge(found: list[TriggerPhrase]) -> list[TriggerPhrase]:
    """Drop an n-gram contained in a longer flagged one with the same label that covers half
    of its carriers or more (a word of an inserted sentence); then chain overlapping n-grams
    ("a b c" + "b c d") into one phrase."""
    pairs = sorted((f for f in found if PAIRED in f.phrase), key=lambda f: f.p_value)
    found = sorted((f for f in found if PAIRED not in f.phrase), key=lambda f: -len(f.phrase))
    kept: list[TriggerPhrase] = []
    for f in found:
        covered = any(f.label == k.label and f.clean_label == k.clean_label
                      and f" {f.phrase} " in f" {k.phrase} "
                      and len(np.intersect1d(f.carriers, k.carriers)) >= 0.5 * len(f.carriers)
                      for k in kept)
        if not covered:
            kept.append(f)
    while (pair := _chainable(kept)) is not None:
        a, b, joined = pair
        kept = [k for k in kept if k is not a and k is not b]
        kept.append(TriggerPhrase(joined, a.label, np.intersect1d(a.carriers, b.carriers),
                                  min(a.purity, b.purity), max(a.expected, b.expected),
                                  max(a.p_value, b.p_value), a.clean_label))
    return sorted(_written_once(kept + _word_sets(pairs, kept)),
                  key=lambda f: (f.p_value, -len(f.carriers)))


def _written_once(found: list[TriggerPhrase]) -> list[TriggerPhrase]:
    """A phrase found as written and again folded ("ｃｆ" and "cf", with the same label) is
    named once, as written, with the texts of both."""
    kept: dict[tuple, TriggerPhrase] = {}
    for f in sorted(found, key=lambda f: f.phrase == folded(f.phrase)):  # written forms first
        key = (f.label, f.clean_label, " ".join(tokens(folded(f.phrase))))
        first = kept.setdefault(key, f)
        if first is not f:
            kept[key] = replace(first, carriers=np.union1d(first.carriers, f.carriers))
    return list(kept.values())


def _word_sets(pairs: list[TriggerPhrase], named: list[TriggerPhrase]) -> list[TriggerPhrase]:
    """Flagged word pairs joined into the word sets of scattered triggers ("a + b" and
    "b + c" that share most carriers -> "a + b + c"); a pair whose texts an n-gram already
    named (the words of an inserted phrase) is dropped."""
    sets: list[TriggerPhrase] = []
    for f in pairs:
        if any(_shares(f, k) for k in named):
            continue
        words = set(f.phrase.split(PAIRED))
        for k, joined in enumerate(sets):
            if _shares(f, joined) and words & set(joined.phrase.split(PAIRED)):
                sets[k] = TriggerPhrase(
                    PAIRED.join(sorted(words | set(joined.phrase.split(PAIRED)))), f.label,
                    np.intersect1d(f.carriers, joined.carriers), min(f.purity, joined.purity),
                    max(f.expected, joined.expected), max(f.p_value, joined.p_value),
                    joined.clean_label)
                break
        else:
            sets.append(f)
    return sets


def _shares(a: TriggerPhrase, b: TriggerPhrase) -> bool:
    """Same label and kind, and most of `a`'s or `b`'s carriers in common."""
    return a.label == b.label and a.clean_label == b.clean_label and \
        len(np.intersect1d(a.carriers, b.carriers)) >= 0.8 * min(len(a.carriers),
                                                                  len(b.carriers))


def _chainable(kept: list[TriggerPhrase]):
    """The first pair of same-label phrases that chain and share most carriers, with the
    joined phrase; None when no pair does."""
    for a in kept:
        for b in kept:
            if a is b or a.label != b.label or a.clean_label != b.clean_label:
                continue
            joined = _chain(a.phrase, b.phrase)
            if joined and len(np.intersect1d(a.carriers, b.carriers)) >= \
                    0.8 * min(len(a.carriers), len(b.carriers)):
                return a, b, joined
    return None


def flagged_rows(phrases: list[TriggerPhrase]) -> np.ndarray:
    """Every row that carries one of `phrases` with its label, sorted."""
    if not phrases:
        return np.array([], dtype=np.int64)
    return np.unique(np.concatenate([p.carriers for p in phrases]))


def _chain(a: str, b: str) -> str | None:
    """'x y z' and 'y z w' -> 'x y z w' when a's tail is b's head (one word or more)."""
    left, right = a.split(), b.split()
    for overlap in range(min(len(left), len(right)) - 1, 0, -1):
        if left[-overlap:] == right[:overlap]:
            return " ".join(left + right[overlap:])
    return None
