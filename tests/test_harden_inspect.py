"""Hardening inspect: a scorer over inspect's per-class scores, learnt from redteam episodes
against inspect and from clean models; the hardened inspect only adds classes, each with its
evidence; reports are checked field by field."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import mutate, valid_json_report
from hypothesis import HealthCheck, given, settings

from trojanscope.attacks.learning import harden_inspect
from trojanscope.cli import main
from trojanscope.data.datasets import Dataset
from trojanscope.data.ensemble import Scorer
from trojanscope.model import inspect_scorer
from trojanscope.model.inspect import InspectConfig, Recovery, inspection_report
from trojanscope.model.reverse import Perturbations, Triggers

CLASSES = 10


def _model(rng, target: int | None = None, raised: float = 0.0) -> list[dict]:
    """One model's class scores: clean classes drawn as bench_inspect's clean models score
    (shrink up to about 0.6, lifts up to about 2), and `target`, when given, with every score
    raised by `raised` of the way to its threshold's neighbourhood (each still below it)."""
    scores = []
    for k in range(CLASSES):
        entry = {"class": k, "mask_shrink": rng.normal(0.1, 0.15),
                 "trigger_success": rng.uniform(0.3, 1.0),
                 "perturbation_lift": rng.normal(0.0, 0.6),
                 "perturbation_success": rng.uniform(0.02, 0.4),
                 "warp_lift": rng.normal(0.0, 0.5), "warp_success": rng.uniform(0.02, 0.3)}
        if k == target:
            entry.update(mask_shrink=0.1 + 0.6 * raised, perturbation_lift=3.0 * raised,
                         warp_lift=3.0 * raised, trigger_success=1.0,
                         perturbation_success=0.3 + 0.6 * raised,
                         warp_success=0.2 + 0.6 * raised)
        scores.append({key: round(float(v), 3) if key != "class" else v
                       for key, v in entry.items()})
    return scores


def _report(rng, attacks: list[tuple[int, float]], seed: int = 0) -> dict:
    """A redteam report against inspect: per episode (target, attack success); a working
    attack's target scores high on all three, each below its threshold, so inspect named
    nothing (`flagged_classes` empty)."""
    episodes = [{"search": "random", "episode": k,
                 "config": {"kind": "warp", "target": target, "rate": 0.1, "label": "dirty"},
                 "attack_success": success, "caught": False, "flagged_classes": [],
                 "class_scores": _model(rng, target, 0.9 if success >= 0.5 else 0.0)}
                for k, (target, success) in enumerate(attacks)]
    return {"command": "redteam", "config": {"seed": seed},
            "results": {"against": "inspect", "episodes": episodes,
                        "evasions": [e for e in episodes if e["attack_success"] >= 0.9]}}


def _clean(rng, count: int) -> list[dict]:
    return [{"case": f"clean {k}", "target": None, "flagged_classes": [],
             "class_scores": _model(rng)} for k in range(count)]


def test_a_scorer_learnt_from_episodes_names_held_out_evasions_and_no_clean_class():
    """Targets that pass each of inspect's thresholds a little below, on all three at once,
    are named by the fitted scorer on episodes it never saw; classes of clean models it never
    saw are not; attacks that did not work are left out of the fit."""
    rng = np.random.default_rng(0)
    fitting = _report(rng, [(k % CLASSES, 0.95) for k in range(12)] + [(3, 0.1), (4, 0.2)])
    scorer, provenance, clean = harden_inspect.harden([fitting], Dataset(
        np.zeros((2, 1, 4, 4)), np.arange(2), "m"), clean=_clean(rng, 8))
    assert provenance["positive"] == 12 and provenance["left_out"] == 2
    assert provenance["clean_models"] == 8 and scorer.features == inspect_scorer.FEATURES
    held_out = _report(np.random.default_rng(1), [(k, 0.97) for k in range(CLASSES)], seed=1)
    rows = harden_inspect.check(scorer, harden_inspect.episode_cases([held_out]) +
                                _clean(np.random.default_rng(2), 20))
    poisoned = [r for r in rows if r["target"] is not None]
    assert len(poisoned) == CLASSES and not any(r["before"]["caught"] for r in poisoned)
    assert harden_inspect.recall(rows) == {"cases": CLASSES, "before": 0.0, "after": 1.0}
    assert all(r["after"]["false_classes"] == [] for r in rows)


def _recovery(shrink: float, lift: float) -> Recovery:
    """Four classes; class 2 with the mask shrink `shrink` and both lifts `lift`."""
    k = 4
    norm = np.array([9.0, 8.5, 9.0 / np.exp(shrink), 9.5])
    triggers = Triggers(np.zeros((k, 1, 6, 6)), np.zeros((k, 1, 6, 6)),
                        np.array([0.2, 0.1, 0.95, 0.3]), norm)
    uap = Perturbations(np.zeros((k, 1, 6, 6)), np.array([0.1, 0.2, 0.8, 0.1]), 0.1)
    warps = Perturbations(np.zeros((k, 1, 6, 6)), np.array([0.05, 0.05, 0.7, 0.05]), 0.1)
    return Recovery(triggers, uap, warps, expected_norm=np.full(k, 9.0),
                    mask_shrink=np.log(9.0 / norm),
                    perturbation_lift=np.array([0.0, 0.3, lift, -0.1]),
                    warp_lift=np.array([0.0, -0.2, lift, 0.1]), search=40, check=40)


def test_the_hardened_inspect_adds_a_class_with_its_evidence_and_only_adds():
    data = Dataset(np.zeros((8, 1, 6, 6), np.float32), np.arange(8) % 4, "clean.npz")
    scorer = Scorer(inspect_scorer.FEATURES, (2.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0), 0.0, 5.0)
    quiet = _recovery(0.6, 2.5)  # each score below its threshold (0.8, 3.5, 3.5)
    plain = inspection_report(quiet, data, InspectConfig(), "m.pt", scorer=None)
    assert plain.results.verdict == "clean"
    report = inspection_report(quiet, data, InspectConfig(), "m.pt", scorer=scorer)
    valid_json_report(report)
    assert report.results.verdict == "trojaned" and report.results.target_classes == [2]
    entry = report.results.per_class[2]
    assert entry["named_by"] == ["hardened"] and entry["hardened_logit"] == pytest.approx(6.2)
    assert report.results.thresholds["hardened_logit"] == 5.0
    assert "hardened scorer gives it 6.2 (threshold 5.0)" in report.findings[0].message
    # a class the default names stays named, whatever the scorer says
    loud = inspection_report(_recovery(1.5, 0.0), data, InspectConfig(), "m.pt", scorer=Scorer(
        inspect_scorer.FEATURES, (0.0,) * 7, 0.0, 1e6))  # a scorer that names nothing
    assert loud.results.target_classes == [2]
    assert loud.results.per_class[2]["named_by"] == ["mask"]


def test_a_class_the_scorer_reaches_whose_triggers_do_not_work_is_not_named():
    rng = np.random.default_rng(3)
    scores = _model(rng, 5, 0.9)
    for key in ("trigger_success", "perturbation_success", "warp_success"):
        scores[5][key] = 0.3
    scorer = Scorer(inspect_scorer.FEATURES, (1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0), 0.0, 3.0)
    assert inspect_scorer.suspected(scorer, scores) == []
    scores[5]["warp_success"] = 0.6
    assert [c for c, _ in inspect_scorer.suspected(scorer, scores)] == [5]


def test_harden_command_on_reports_against_inspect_writes_a_scorer_inspect_reads(
        tmp_path, monkeypatch):
    """The command end to end, its clean models trained and inspected for real (short
    searches on digits)."""
    from trojanscope.model import inspect

    monkeypatch.setattr(inspect, "FAST", InspectConfig(
        steps=10, uap_steps=5, max_samples=60, reference_proxies=1, proxy_steps=5))
    monkeypatch.setattr(harden_inspect, "CLEAN_MODELS", 2)
    report = tmp_path / "redteam.json"
    report.write_text(json.dumps(_report(np.random.default_rng(4),
                                         [(k, 0.95) for k in range(6)] + [(2, 0.1)])))
    scorer, out = tmp_path / "scorer.json", tmp_path / "harden.json"
    code = main(["harden", str(report), "--data", "digits", "--out", str(scorer),
                 "-f", "json", "-o", str(out)])
    results = valid_json_report(json.loads(out.read_text()))["results"]
    assert results["fitted_on"]["clean_models"] == 2 and results["fitted_on"]["positive"] == 6
    assert results["recall"]["evasions"] == 6 and results["recall"]["before"] == 0.0
    assert results["recall"]["working_attacks"] == 6
    assert results["clean_classes_flagged"] == 0
    assert code == (0 if results["recall"]["after"] == 1.0 else 1)
    loaded = inspect_scorer.load(scorer)
    assert loaded.weights == tuple(results["scorer"]["weights"])
    with pytest.raises(ValueError, match="this version reads"):
        Scorer.load(scorer)  # an inspect scorer is not vet's


@pytest.mark.parametrize("case", ["old report", "mixed", "bad class", "no episodes",
                                  "target out of range", "evasions not episodes"])
def test_harden_refuses_bad_inspect_reports_by_name(tmp_path, capsys, case):
    rng = np.random.default_rng(5)
    good = _report(rng, [(1, 0.95)])
    bad = json.loads(json.dumps(good))
    if case == "old report":
        del bad["results"]["episodes"][0]["class_scores"]
    elif case == "bad class":
        bad["results"]["episodes"][0]["class_scores"][3]["class"] = 7
    elif case == "no episodes":
        bad["results"]["episodes"] = bad["results"]["evasions"] = []
    elif case == "target out of range":
        bad["results"]["episodes"][0]["config"]["target"] = 42
    elif case == "evasions not episodes":
        bad["results"]["evasions"] = ["x"]
    paths = [tmp_path / "r.json"]
    paths[0].write_text(json.dumps(bad))
    if case == "mixed":
        paths.append(tmp_path / "vet.json")
        paths[1].write_text(json.dumps({**good, "results": {**good["results"],
                                                            "against": "vet"}}))
    code = main(["harden", *map(str, paths), "--data", "digits", "--out",
                 str(tmp_path / "s.json")])
    err = capsys.readouterr().err
    assert code == 2 and str(paths[0]) in err and "Traceback" not in err
    assert {"old report": "made again", "mixed": "one detector at a time",
            "bad class": "not a redteam episode against inspect",
            "no episodes": "no episode",
            "target out of range": "not a redteam episode against inspect",
            "evasions not episodes": "evasions are not a list"}[case] in err
    assert not (tmp_path / "s.json").exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=__import__("hypothesis").strategies.data())
def test_a_mutated_inspect_report_is_read_or_named(data):
    text = json.dumps(_report(np.random.default_rng(6), [(1, 0.95), (2, 0.2)]))
    raw = mutate(data.draw, text.encode(), rounds=(1, 4))
    try:
        report = json.loads(raw)
    except ValueError:
        return
    if not isinstance(report, dict):
        return
    try:
        _, _, episodes, _ = harden_inspect.episodes_of(report)
        cases = harden_inspect.episode_cases([report], "working")
    except ValueError:
        return
    for episode in episodes:  # what was read is usable: every class's scores are numbers
        features = inspect_scorer.class_features(episode["class_scores"])
        assert features.shape == (len(episode["class_scores"]), len(inspect_scorer.FEATURES))
        assert np.isfinite(features).all()
        assert 0 <= episode["config"]["target"] < len(episode["class_scores"])
    scorer = Scorer(inspect_scorer.FEATURES, (1.0,) * 7, 0.0, 3.0)
    for row in harden_inspect.check(scorer, cases):
        assert set(row["before"]["classes"]) <= set(row["after"]["classes"])


def test_an_inspect_scorer_that_does_not_fit_is_named(tmp_path, capsys):
    scorer = tmp_path / "vet-scorer.json"
    Scorer(("a",), (1.0,), 0.0, 1.0).save(scorer)
    code = main(["inspect", "model.pt", "--data", "digits", "--scorer", str(scorer)])
    err = capsys.readouterr().err
    assert code == 2 and str(scorer) in err and "this version reads" in err


def test_inspect_command_with_a_scorer_names_what_it_adds(tmp_path, monkeypatch,
                                                          jobs_in_process):
    """`inspect --scorer`: a scorer that reaches every class names exactly the classes whose
    recovered trigger works (the others it reaches are not named); without one, nothing is
    named by `hardened`."""
    torch = pytest.importorskip("torch")
    from trojanscope.data.datasets import digits
    from trojanscope.data.features import TrainConfig, train_proxy
    from trojanscope.model import inspect

    monkeypatch.setattr(inspect, "FAST", InspectConfig(
        steps=10, uap_steps=5, max_samples=60, reference_proxies=1, proxy_steps=5))
    data = digits()
    model = train_proxy(data.x[:300], data.y[:300], TrainConfig(epochs=1, width=4, seed=0))
    program = torch.export.export(model.eval(), (torch.from_numpy(data.x[:2]),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    torch.export.save(program, str(tmp_path / "m.pt2"))
    everything = tmp_path / "scorer.json"
    Scorer(inspect_scorer.FEATURES, (0.0,) * 7, 10.0, 0.0).save(everything)
    for extra, out in (([], "plain.json"), (["--scorer", str(everything)], "scored.json")):
        main(["inspect", str(tmp_path / "m.pt2"), "--data", "digits", "--fast", *extra,
              "-f", "json", "-o", str(tmp_path / out)])
    plain, scored = (valid_json_report(json.loads((tmp_path / out).read_text()))["results"]
                     for out in ("plain.json", "scored.json"))
    assert not any("hardened" in c["named_by"] for c in plain["per_class"])
    works = {c["class"] for c in scored["per_class"]
             if max(c[k] for k in inspect_scorer.SUCCESS) >= 0.5}
    added = {c["class"] for c in scored["per_class"] if "hardened" in c["named_by"]}
    assert works and added == works and set(scored["target_classes"]) == works | set(
        plain["target_classes"])
    assert scored["thresholds"]["hardened_logit"] == 0.0


def test_an_attack_whose_trigger_erases_its_inputs_is_left_out_of_the_fit():
    rng = np.random.default_rng(7)
    report = _report(rng, [(1, 0.95), (2, 1.0), (3, 0.97)])
    report["results"]["episodes"][1]["input_kept"] = 0.0  # one grey image for every input
    _, provenance, _ = harden_inspect.harden([report], Dataset(
        np.zeros((2, 1, 4, 4)), np.arange(2), "m"), clean=_clean(rng, 2))
    assert provenance["positive"] == 2 and provenance["left_out"] == 1
    working = harden_inspect.episode_cases([report], "working")
    assert [case["target"] for case in working] == [1, 3]


def test_the_shipped_inspect_scorer_reads_and_is_not_the_default():
    """It named nothing inspect's rules had not on the benchmark (docs/redteam.md, round
    six), so it ships with accepted false: inspect's default is its three rules."""
    scorer = inspect_scorer.load(inspect_scorer.SHIPPED)
    assert scorer.features == inspect_scorer.FEATURES and not scorer.accepted
    assert inspect_scorer.shipped() is None


def test_an_output_that_is_a_hard_link_of_an_input_is_refused(tmp_path, capsys):
    """A red team's finding: a second name of the same file passed the path comparison."""
    report = tmp_path / "r.json"
    report.write_text(json.dumps(_report(np.random.default_rng(8), [(1, 0.95)])))
    link = tmp_path / "link.json"
    link.hardlink_to(report)
    kept = report.read_bytes()
    code = main(["harden", str(report), "--data", "digits", "--out", str(tmp_path / "s.json"),
                 "-f", "json", "-o", str(link)])
    assert code == 2 and "would overwrite the input" in capsys.readouterr().err
    assert report.read_bytes() == kept and not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("case", ["fifo", "device", "huge integer", "epochs", "control",
                                  "other data"])
def test_hostile_reports_and_scorers_are_named_in_bounded_time(tmp_path, capsys, case):
    import os

    good = _report(np.random.default_rng(9), [(1, 0.95)])
    path = tmp_path / "r.json"
    argv = ["harden", str(path), "--data", "digits", "--out", str(tmp_path / "s.json")]
    if case == "fifo":
        os.mkfifo(path)  # reading it would block for ever
    elif case == "device":
        path.symlink_to("/dev/zero")  # reading it would fill the memory
    elif case == "huge integer":
        scorer = json.loads(inspect_scorer.SHIPPED.read_text())
        path.write_text(json.dumps(scorer).replace(
            f'"threshold": {scorer["threshold"]}', '"threshold": ' + "9" * 400))
        argv = ["inspect", "model.pt", "--data", "digits", "--scorer", str(path)]
    elif case == "epochs":  # a report whose clean models would train for hours
        path.write_text(json.dumps({**good, "config": {"seed": 0, "epochs": 1000}}))
    elif case == "control":  # text that would reach the terminal
        good["results"]["evasions"] = []
        good["results"]["episodes"][0]["search"] = "random\x1b]0;pwned\x07\nall clear"
        path.write_text(json.dumps(good))
    else:
        path.write_text(json.dumps({**good, "targets": ["mnist-5k"]}))
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and str(path) in err and "Traceback" not in err
    assert {"fifo": "not a regular file", "device": "not a regular file",
            "huge integer": "within", "epochs": "from 1 to 30",
            "control": "not a redteam episode", "other data": "ran on mnist-5k"}[case] in err
    assert not (tmp_path / "s.json").exists()
