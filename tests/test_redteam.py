"""redteam: the attack space, the episode (poison -> train -> detect -> reward), the searches'
determinism, the command's JSON contract and the replay of what it finds, on tiny budgets."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from helpers import mutate, valid_json_report
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("stable_baselines3")
pytest.importorskip("cma")

from trojanscope.attacks.learning.episode import (  # noqa: E402
    SCORE_KEYS,
    Budget,
    Clean,
    clean_model,
    input_kept,
    run_episode,
    split,
)
from trojanscope.attacks.learning.search import run_search  # noqa: E402
from trojanscope.attacks.learning.space import (  # noqa: E402
    DIMENSIONS,
    KINDS,
    SHAPES,
    AttackConfig,
    decode,
    read_config,
)
from trojanscope.attacks.learning.text_space import TextAttackConfig  # noqa: E402
from trojanscope.cli import main  # noqa: E402
from trojanscope.data.datasets import Dataset, digits, mnist_5k, subset  # noqa: E402

TINY = Budget(epochs=1, width=4)


@pytest.fixture(scope="module")
def small():
    return split(digits(), 0)


@pytest.fixture(scope="module")
def mnist():
    return split(subset(mnist_5k(), 1500, 0), 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-3, 3, allow_nan=False), min_size=DIMENSIONS, max_size=DIMENSIONS),
       st.sampled_from([(8, 8), (28, 28), (32, 32)]))
def test_every_point_decodes_to_an_attack_that_poisons_only_what_it_says(point, shape):
    config = decode(point, shape, target=1, seed=3)
    assert config.kind in KINDS and 0.005 <= config.rate <= 0.15 + 1e-9
    rng = np.random.default_rng(0)
    x = rng.random((60, 1, *shape)).astype(np.float32)
    y = np.arange(60) % 3
    kept = x.copy()
    bad = config.poison(x, y)
    np.testing.assert_array_equal(x, kept)  # the input is untouched
    assert bad.x.shape == x.shape and 0 <= bad.x.min() and bad.x.max() <= 1
    untouched = np.setdiff1d(np.arange(60), bad.indices)
    np.testing.assert_array_equal(bad.x[untouched], x[untouched])
    if config.label == "dirty":
        assert set(y[bad.indices].tolist()) <= {0, 2} and (bad.y[bad.indices] == 1).all()
    else:  # clean label: target-class images, labels kept
        assert (y[bad.indices] == 1).all() and (bad.y == y).all()
    assert config == AttackConfig.from_dict(json.loads(json.dumps(config.as_dict())))


def test_an_inversion_blends_the_image_with_its_negative():
    x = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32)
    whole = AttackConfig("invert", 1, 0, 0, 0, 1.0, 1, 0.1, "dirty").trigger((8, 8))
    np.testing.assert_allclose(whole(x), 1 - x, atol=1e-6)
    half = AttackConfig("invert", 1, 0, 0, 0, 0.5, 1, 0.1, "dirty").trigger((8, 8))
    np.testing.assert_allclose(half(x), 0.5, atol=1e-6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.data())
def test_a_mutated_or_truncated_configuration_is_read_or_named(tmp_path, data):
    """An image or a text attack's configuration (text_space), mutated: read whole, or an
    error naming the file."""
    image = decode(np.zeros(DIMENSIONS), (28, 28))
    text = TextAttackConfig("phrase", (("xq", "zv"), ("bb",)), 0.5, 0.05, "clean")
    good = data.draw(st.sampled_from([image, text]))
    path = tmp_path / "config.json"
    path.write_bytes(mutate(data.draw, json.dumps(good.as_dict()).encode(), rounds=(1, 4)))
    try:
        config = read_config(path)
    except ValueError as exc:
        assert str(path) in str(exc)
    else:
        assert isinstance(config, (AttackConfig, TextAttackConfig))


@pytest.mark.parametrize("name", ["random", "cma", "ppo"])
def test_a_search_replays_the_same_episodes_for_a_seed(small, name):
    count = 6  # PPO updates its policy after 4 episodes, CMA-ES after its first 4

    def episodes(seed):
        return [{k: v for k, v in e.as_dict().items() if k != "seconds"}
                for e in run_search(name, *small, "vet", count, seed=seed, budget=TINY)]

    first = episodes(1)
    assert len(first) == count and first == episodes(1)
    assert [e["config"] for e in first] != [e["config"] for e in episodes(2)]


def test_ppo_points_past_a_bound_still_draw_different_attacks(small):
    """PPO's samples are squashed into the attack space, not clipped: two points past the upper
    bound of every axis are two attacks (clipped, both were the same corner, and a policy there
    learnt nothing)."""
    from trojanscope.attacks.learning.env import PoisonEnv
    from trojanscope.attacks.learning.search import SQUASH_BOUND, Squashed

    squashed = Squashed(PoisonEnv(*small, "vet", clean=Clean(0.9, None)))
    wide, wider = (squashed.action(np.full(DIMENSIONS, v)) for v in (1.5, 2.5))
    assert np.all(np.abs(wider) < 1) and np.all(wide < wider)
    assert decode(wide, (8, 8)) != decode(wider, (8, 8))
    assert squashed.action_space.high.min() == SQUASH_BOUND >= 4  # where tanh is flat


def test_a_blatant_relabelled_patch_is_caught_and_earns_nothing(mnist):
    """A 10% dirty-label white patch: the model learns it, vet names the target class, and the
    attacker is paid nothing for it; a weak clean-label sinusoid is missed but does not work."""
    budget = Budget(epochs=4)
    clean = clean_model(*mnist, 0, budget, against="vet")  # one clean model for both episodes
    patch = run_episode(AttackConfig("patch", 3, 1, 1, 1.0, 0.1, 3, 0.1, "dirty"), *mnist,
                        "vet", budget=budget, clean=clean)
    assert patch.attack_success >= 0.9 and patch.caught and patch.reward == 0
    assert not patch.evades and patch.poisoned == 120
    faint = run_episode(AttackConfig("sinusoid", 3, 1, 1, 1.0, 0.02, 6, 0.05, "clean"), *mnist,
                        "vet", budget=budget, clean=clean)
    assert faint.attack_success < 0.5 and not faint.evades


def test_a_model_that_answers_the_target_for_everything_is_no_evasion(small):
    """Attack success 1 from a model that lost its task is not a backdoor that evades."""
    config = AttackConfig("patch", 2, 1, 1, 1.0, 0.1, 3, 0.15, "dirty")
    clean = Clean(0.95, clean_model(*small, 0, TINY, against="vet").model)
    episode = run_episode(config, *small, "vet", budget=TINY, clean=clean)
    assert episode.accuracy_drop > 0.05 and not episode.evades
    assert episode.reward <= episode.attack_success * episode.clean_accuracy / 0.95 + 1e-4


def test_a_trigger_a_clean_model_already_follows_is_no_evasion(small):
    """A mark every image of the target class carries is the class's own feature, not a
    backdoor: a clean model sends marked images to the target too, so the attack's success
    counts only above that (natural_success), and the episode is no evasion."""
    config = AttackConfig("patch", 5, 0, 0, 1.0, 0.1, 3, 0.1, "dirty")  # a white corner
    stamp = config.trigger(small[0].x.shape[-2:])
    marked = [Dataset(np.where((d.y == 0)[:, None, None, None], stamp(d.x), d.x), d.y, d.name)
              for d in small]  # every image of class 0 carries it
    budget = Budget(epochs=3, width=8)
    episode = run_episode(config, *marked, "vet", budget=budget)
    assert episode.natural_success >= 0.5 and not episode.evades
    assert episode.reward <= max(0.0, episode.attack_success - episode.natural_success) + 1e-4
    plain = run_episode(config, *small, "vet", budget=budget)  # no such feature: a backdoor
    assert plain.natural_success < 0.2 and plain.attack_success > plain.natural_success + 0.5


def test_a_trigger_that_erases_its_inputs_is_no_evasion(small):
    """The image blended half with its negative is one grey image whatever the input (the
    attacker against inspect found it): a model that sends it to the target has learnt no
    trigger, so the episode earns nothing; the full negative keeps its inputs apart."""
    grey = run_episode(AttackConfig("invert", 3, 1, 1, 1.0, 0.5, 3, 0.15, "dirty"), *small,
                       "vet", budget=TINY,
                       clean=Clean(0.9, clean_model(*small, 0, TINY, against="vet").model))
    assert grey.input_kept == 0.0 and grey.reward == 0.0 and not grey.evades
    assert input_kept(AttackConfig("invert", 3, 1, 1, 1.0, 1.0, 3, 0.1, "dirty").poison(
        small[0].x, small[0].y).trigger, small[1], 0) == pytest.approx(1.0)
    patch = AttackConfig("patch", 2, 1, 1, 1.0, 0.1, 3, 0.1, "dirty")
    assert input_kept(patch.poison(small[0].x, small[0].y).trigger, small[1], 0) > 0.9


def test_an_episode_against_inspect_judges_the_trained_model(small, monkeypatch):
    from trojanscope.model import inspect

    monkeypatch.setattr(inspect, "FAST", inspect.InspectConfig(
        steps=10, uap_steps=5, max_samples=60, reference_proxies=1, proxy_steps=5))
    episode = run_episode(AttackConfig("patch", 2, 1, 1, 1.0, 0.1, 3, 0.1, "dirty"), *small,
                          "inspect", budget=TINY)
    assert episode.detection == float(episode.caught)
    assert all(0 <= c < 10 for c in episode.flagged_classes)
    # every class's scores are kept: what hardening for inspect learns from
    assert [c["class"] for c in episode.class_scores] == list(range(10))
    assert set(episode.as_dict()["class_scores"][0]) == set(SCORE_KEYS)


def test_redteam_command_writes_the_contract_and_its_evasions_replay(tmp_path, capsys):
    out = tmp_path / "redteam.json"
    code = main(["redteam", "--against", "vet", "--data", "digits", "--budget", "3",
                 "--search", "random", "--epochs", "1", "--seed", "4", "-f", "json",
                 "-o", str(out)])
    report = valid_json_report(json.loads(out.read_text()))
    results = report["results"]
    assert report["command"] == "redteam" and results["against"] == "vet"
    assert set(results["searches"]) == {"random"} and len(results["episodes"]) == 3
    assert results["clean_flagged"] == []  # vet names no class of the clean split
    assert not {f["rule"] for f in report["findings"]} & {"redteam.target-flagged-clean",
                                                          "redteam.weak-clean-model"}
    assert code == (1 if results["evasions"] else 0)
    for evasion in results["evasions"]:
        assert evasion["attack_success"] >= 0.9 and not evasion["caught"]
        assert {"config", "detection", "clean_accuracy"} <= set(evasion)
    # any episode's configuration replays as the same poisoned set
    entry = results["episodes"][0]
    (tmp_path / "attack.json").write_text(json.dumps(entry["config"]))
    assert main(["attack", "poison", "--config", str(tmp_path / "attack.json"), "--data",
                 "digits", "-o", str(tmp_path / "poisoned.npz")]) == 0
    with np.load(tmp_path / "poisoned.npz") as archive:
        replayed = archive["poisoned"]
    data = digits()
    again = AttackConfig.from_dict(entry["config"]).poison(data.x, data.y)
    np.testing.assert_array_equal(replayed, again.indices)
    assert "wrote" in capsys.readouterr().out


def test_a_target_the_detector_names_with_no_attack_is_reported(tmp_path, monkeypatch):
    """Where the detector already names the target on clean data, a catch is no evidence: the
    report says so in a finding, as well as in clean_flagged."""
    from trojanscope.attacks.learning import redteam

    monkeypatch.setattr(redteam, "clean_flags", lambda *args, **kwargs: [2, 5])
    out = tmp_path / "redteam.json"
    main(["redteam", "--against", "vet", "--data", "digits", "--budget", "1", "--search",
          "random", "--epochs", "1", "--target", "5", "-f", "json", "-o", str(out)])
    report = valid_json_report(json.loads(out.read_text()))
    assert report["results"]["clean_flagged"] == [2, 5]
    warned = [f for f in report["findings"] if f["rule"] == "redteam.target-flagged-clean"]
    assert len(warned) == 1 and "names class 5" in warned[0]["message"]
    assert warned[0]["evidence"] == {"target": 5, "clean_flagged": [2, 5]}


def test_a_clean_model_that_learnt_nothing_is_reported(tmp_path, capsys):
    """Labels that say nothing of the images: the clean model is at chance, and the report
    says that its episodes measure little."""
    data = digits()
    np.savez(tmp_path / "shuffled.npz", x=data.x,
             y=np.random.default_rng(0).permutation(data.y))
    main(["redteam", "--against", "vet", "--data", str(tmp_path / "shuffled.npz"), "--budget",
          "1", "--search", "random", "--epochs", "1"])
    out = capsys.readouterr().out
    accuracy = float(re.search(r"clean accuracy (\d\.\d\d)", out).group(1))
    assert "redteam.weak-clean-model" in out and accuracy < 0.3


@pytest.mark.parametrize("argv,message", [
    (["redteam", "--against", "vet", "--data", "digits", "--budget", "0"], "at least 1"),
    (["redteam", "--against", "vet", "--data", "digits", "--target", "12"],
     "no sample of the target class 12"),
    (["redteam", "--against", "vet", "--data", "nowhere.npz"], "nowhere.npz"),
    (["attack", "poison", "--config", "missing.json", "-o", "x.npz"], "missing.json"),
    (["attack", "poison", "--config", "c.json", "--data", "d.npz", "-o", "d.npz"],
     "would overwrite the input d.npz"),
    (["redteam", "--against", "vet", "--data", "negative.npz"],
     "negative.npz: labels -1, 0; the loop needs at least two classes, numbered 0 to K-1"),
    (["redteam", "--against", "vet", "--data", "far.npz"], "far.npz: labels 0, 1000;"),
    (["redteam", "--against", "vet", "--data", "one.npz"],
     "one.npz: labels 0; the loop needs at least two classes"),
    (["attack", "poison", "--config", "listless.json", "-o", "x.npz"],
     "listless.json: the report's evasions must be a list"),
])
def test_bad_input_is_named_without_a_traceback(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 8, 8)), y=np.arange(10) % 2)
    for name, y in (("negative", np.arange(10) % 2 - 1), ("far", np.arange(10) % 2 * 1000),
                    ("one", np.zeros(10, int))):
        np.savez(tmp_path / f"{name}.npz", x=np.zeros((10, 8, 8)), y=y)
    (tmp_path / "listless.json").write_text(json.dumps(
        {"command": "redteam", "results": {"evasions": {"0": {}}}}))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_seed_out_of_range_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["redteam", "--against", "vet", "--data", "digits", "--seed", "-1"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "argument --seed: must be from 0 to 2**32 - 1" in err


def test_patch_shapes_stamp_their_pixels_and_old_configurations_read_as_squares(tmp_path):
    x = np.zeros((4, 1, 28, 28), dtype=np.float32)
    counts = {}
    for shape in SHAPES:
        config = AttackConfig("patch", 10, 0.5, 0.5, 1.0, 0.0, 1, 0.1, "dirty", shape=shape)
        stamped = config.trigger((28, 28))(x)[0, 0]
        counts[shape] = int(stamped.sum())
        assert stamped[:9].sum() + stamped[19:].sum() == 0  # only inside the 10x10 box
    assert counts == {"square": 100, "plus": 36, "ring": 64, "bar": 20}
    seen = {decode(np.r_[-0.9, 0.9, np.zeros(DIMENSIONS - 3), u], (28, 28)).shape
            for u in np.linspace(-1, 1, 9)}
    assert seen == set(SHAPES)
    assert decode(np.r_[-0.9, 1.0, np.zeros(DIMENSIONS - 2)], (28, 28)).size == 14  # half
    old = {k: v for k, v in decode(np.zeros(DIMENSIONS), (28, 28)).as_dict().items()
           if k != "shape"}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert read_config(tmp_path / "old.json").shape == "square"


def test_a_configuration_with_unknown_or_wrong_fields_is_named(tmp_path):
    entry = decode(np.zeros(DIMENSIONS), (28, 28)).as_dict()
    for broken, message in (({**entry, "kind": "laser"}, "unknown attack kind"),
                            ({**entry, "rate": "0.1"}, "rate must be float"),
                            ({**entry, "shape": "star"}, "unknown patch shape"),
                            ({**entry, "extra": 1}, "unknown"),
                            ({**entry, "seed": -5}, "seed must be 0 or more"),
                            ({**entry, "target": -1}, "target must be a class index"),
                            ({k: v for k, v in entry.items() if k != "rate"}, "missing")):
        (tmp_path / "c.json").write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=message):
            read_config(tmp_path / "c.json")
