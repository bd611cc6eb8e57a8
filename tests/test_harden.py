"""Hardening: the resampling detector, the ensemble's learned scorer, the hardened vet, and
learning a scorer from redteam reports, on small sets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import mutate, valid_json_report
from hypothesis import HealthCheck, given, settings

from trojanscope.attacks.image_poison import poison
from trojanscope.attacks.learning.episode import split
from trojanscope.attacks.learning.harden import Case, check, harden
from trojanscope.attacks.learning.space import AttackConfig
from trojanscope.cli import main
from trojanscope.data.datasets import Dataset, digits, mnist_5k, subset
from trojanscope.data.ensemble import (
    FEATURES,
    SHIPPED,
    Scorer,
    class_features,
    fit,
    members,
    shipped,
)
from trojanscope.data.vet import DEFAULT_DETECTOR, HARDENED, default_detector, vet, vet_hardened
from trojanscope.data.views import aligned, image_statistics, inked_grey

# The learning attacker's evasion of neighbour disagreement (docs/redteam.md): a strong warp on
# a fine grid, dirty label.
WARP = AttackConfig("warp", 4, 0.5, 0.5, 0.5, 2.5, 14, 0.1, "dirty", target=3, seed=1)


@pytest.fixture(scope="module")
def mnist():
    return split(subset(mnist_5k(), 2000, 0), 0)[0]


@pytest.fixture(scope="module")
def warped(mnist):
    bad = WARP.poison(mnist.x, mnist.y)
    return Dataset(bad.x, bad.y, "warped"), bad.indices


def test_image_statistics_ignore_brightness_and_polarity_and_see_a_warp(mnist):
    stats = image_statistics(mnist.x[:50])
    assert stats.shape == (50, 3) and np.isfinite(stats).all()
    np.testing.assert_allclose(image_statistics(mnist.x[:50] * 0.5), stats, atol=1e-9)
    # dark digits on a white ground (a data set inverted as a whole) read as the same ink
    np.testing.assert_allclose(image_statistics(1 - mnist.x[:50]), stats, atol=1e-6)
    warped = WARP.trigger(mnist.x.shape[-2:])(mnist.x[:50])
    # grey ripples: more Laplacian energy per unit of ink in most warped images
    assert np.mean(image_statistics(warped)[:, 1] > stats[:, 1]) > 0.9


def test_the_hardened_vet_catches_the_warp_that_neighbour_disagreement_misses(warped):
    data, poisoned = warped
    before = vet(data, detector=DEFAULT_DETECTOR).results
    assert 3 not in before.suspected_classes
    report = vet_hardened(data)
    after = report.results
    assert after.detector == HARDENED and 3 in after.suspected_classes
    assert set(before.suspected_classes) <= set(after.suspected_classes)  # it only adds
    flagged = np.intersect1d(after.suspicious_indices, poisoned)
    assert len(flagged) / len(poisoned) > 0.7
    assert len(flagged) / len(after.suspicious_indices) > 0.8
    assert any(f.evidence.get("detector") == HARDENED for f in report.findings)
    entry = next(e for e in after.per_class if e["class"] == 3)
    assert entry["suspected"] and entry["ensemble_logit"] >= SHIPPED_SCORER().threshold


# The red team's family that neighbour disagreement and the first scorer missed: a white
# square in a corner at 10%, dirty label (the poisons are each other's neighbours).
SQUARE = AttackConfig("patch", 6, 1, 1, 1, 0, 1, 0.1, "dirty", target=5, seed=2)


def test_the_hardened_vet_catches_a_large_white_square_by_its_stamp(mnist):
    bad = SQUARE.poison(mnist.x, mnist.y)
    data = Dataset(bad.x, bad.y, "white square")
    assert 5 not in vet(data, detector=DEFAULT_DETECTOR).results.suspected_classes
    stamp = vet(data, detector="stamp").results
    assert stamp.suspected_classes == [5]
    report = vet_hardened(data)
    after = report.results
    assert 5 in after.suspected_classes
    flagged = np.intersect1d(after.suspicious_indices, bad.indices)
    assert len(flagged) / len(bad.indices) > 0.8
    assert len(flagged) / len(after.suspicious_indices) > 0.9
    assert any(f.evidence.get("member") == "stamp" for f in report.findings)


def centred(side: int, value: float):
    """A square stamped on the middle of the image, where every class has ink."""
    return AttackConfig("patch", side, 0.5, 0.5, value, 0, 1, 0.1, "dirty").trigger((28, 28))


@pytest.mark.parametrize("value, target", [(1.0, 4), (0.0, 6)])
def test_the_hardened_vet_catches_a_square_on_the_middle_of_the_digits(mnist, value, target):
    """A third red team's evasion: a 10x10 square in the middle at 10% (attack success above
    0.9): its poisons are each other's neighbours, and it puts no ink where other classes have
    none; a group of the class shares a region flat at one level."""
    bad = poison(mnist.x, mnist.y, centred(10, value), 0.1, target, seed=1)
    data = Dataset(bad.x, bad.y, "centred square")
    assert vet(data, detector=DEFAULT_DETECTOR).results.suspected_classes == []
    after = vet(data).results
    assert after.suspected_classes == [target]
    flagged = np.intersect1d(after.suspicious_indices, bad.indices)
    assert len(flagged) / len(bad.indices) > 0.7
    assert len(flagged) / len(after.suspicious_indices) > 0.9


def test_a_class_whose_own_ink_reaches_an_empty_place_is_not_stamped(mnist):
    """Every 7 and some 3s given a tail into the bottom-right corner that no other class
    inks (as a bag's handle is only a bag's): wiped out, they still look like their class."""
    x = mnist.x.copy()
    tails = (mnist.y == 7) | ((mnist.y == 3) & (np.arange(len(x)) % 2 == 0))
    for i, row in enumerate(np.flatnonzero(tails)):
        length = 3 + i % 4
        x[row, 0, 28 - length:, 28 - length:] = np.maximum(
            x[row, 0, 28 - length:, 28 - length:], np.eye(length) * 0.9)
    data = Dataset(x, mnist.y, "tailed")
    assert vet(data, detector="stamp").results.suspected_classes == []
    assert vet_hardened(data).results.suspected_classes == []


@pytest.mark.parametrize("label, kept", [(3, 20), (8, 20), (5, 30)])
def test_a_small_clean_class_is_not_outvoted(mnist, label, kept):
    """A class cut to 1-2% of the set: plain neighbour votes named each of these (a small
    class's neighbours are mostly other classes); votes weighted by class size do not."""
    rows = np.flatnonzero(mnist.y == label)
    keep = np.setdiff1d(np.arange(len(mnist.y)), rows[kept:])
    data = Dataset(mnist.x[keep], mnist.y[keep], "imbalanced")
    assert vet(data).results.suspected_classes == []
    assert vet(data, detector=DEFAULT_DETECTOR).results.suspected_classes == []


def test_a_watermark_on_a_whole_class_is_its_look_not_a_stamp(mnist):
    """A second red team's false alarm: a white bar (a caption) on every image of class 3 hid
    the 3s' natural confusion with other digits, and wiped out it showed again."""
    x = mnist.x.copy()
    x[mnist.y == 3, :, 24:27, 2:12] = 1.0
    data = Dataset(x, mnist.y, "captioned threes")
    assert vet(data, detector="stamp").results.suspected_classes == []
    assert vet(data).results.suspected_classes == []


@pytest.mark.parametrize("label", [5, 8])
def test_a_logo_on_a_whole_class_where_others_ink_is_its_look(mnist, label):
    """A fourth red team's false alarm on Fashion-MNIST: a grey logo on every image of one
    class, where other classes ink too (so not distinctive pixel by pixel). It lies at one level
    across the whole class, as no dirty-label stamp does."""
    x = mnist.x.copy()
    x[mnist.y == label, :, 8:12, 8:12] = 0.8
    data = Dataset(x, mnist.y, "logo on a class")
    assert vet(data, detector="stamp").results.suspected_classes == []
    assert vet(data).results.suspected_classes == []


INVERTED = AttackConfig("invert", 1, 0, 0, 0, 1.0, 1, 0.02, "dirty", target=7, seed=1)


def test_the_hardened_vet_catches_inverted_poisons(mnist):
    """A fourth red team's evasion: the whole image inverted (x -> 1 - x), dirty label, attack
    success 1.0 at 1-15%: the poisons are each other's neighbours as given and look like their
    sources once inverted back."""
    bad = INVERTED.poison(mnist.x, mnist.y)
    np.testing.assert_allclose(bad.x[bad.indices], 1 - mnist.x[bad.indices], atol=1e-6)
    data = Dataset(bad.x, bad.y, "inverted poisons")
    assert vet(data, detector=DEFAULT_DETECTOR).results.suspected_classes == []
    report = vet(data)
    after = report.results
    assert after.suspected_classes == [7]
    flagged = np.intersect1d(after.suspicious_indices, bad.indices)
    assert len(flagged) / len(bad.indices) > 0.9
    assert len(flagged) / len(after.suspicious_indices) > 0.9
    assert any(f.evidence.get("member") == "polarity" for f in report.findings)


@pytest.mark.parametrize("which", ["every 8", "half the 8s", "half of every class", "all"])
def test_images_on_their_own_ground_are_not_inverted_poisons(mnist, which):
    """Clean images on a light ground: a class scanned apart (all or half of it), or half of
    every class, or the whole set. Inverted back, they look like their own class."""
    half = np.arange(len(mnist.y)) % 2 == 0
    rows = {"every 8": mnist.y == 8, "half the 8s": (mnist.y == 8) & half,
            "half of every class": half, "all": np.ones(len(half), dtype=bool)}[which]
    x = np.where(rows[:, None, None, None], 1.0 - mnist.x, mnist.x).astype(np.float32)
    data = Dataset(x, mnist.y, which)
    assert vet(data, detector="polarity").results.suspected_classes == []
    assert vet(data).results.suspected_classes == []


def shifted(x: np.ndarray) -> np.ndarray:
    """Every image moved 5 pixels right, the left filled with the ground."""
    out = np.roll(x, 5, axis=-1)
    out[..., :5] = 0.0
    return out


@pytest.mark.parametrize("name, trigger, target, rate", [
    ("shifted", shifted, 2, 0.03), ("halves swapped", lambda x: np.roll(x, 14, axis=-2), 6, 0.03),
    ("turned", lambda x: np.rot90(x, 1, axes=(-2, -1)), 4, 0.1)])
def test_the_hardened_vet_catches_moved_poisons(mnist, name, trigger, target, rate):
    """Red teams' evasions: the whole image shifted 5 pixels, or its halves swapped, dirty label
    at 2-15% (attack success 0.95-1.0), or turned a quarter at 5-15% (0.91-0.98): no pixel is
    resampled, and the poisons are each other's neighbours; moved back they look like their
    sources."""
    bad = poison(mnist.x, mnist.y, trigger, rate, target, seed=1)
    data = Dataset(bad.x, bad.y, name)
    assert vet(data, detector=DEFAULT_DETECTOR).results.suspected_classes == []
    report = vet(data)
    after = report.results
    assert after.suspected_classes == [target]
    flagged = np.intersect1d(after.suspicious_indices, bad.indices)
    assert len(flagged) / len(bad.indices) > (0.2 if name == "turned" else 0.8)
    assert len(flagged) / len(after.suspicious_indices) > 0.9
    assert any(f.evidence.get("member") == "shift" for f in report.findings)


@pytest.mark.parametrize("which, turned", [("every 8", False), ("a third of the 8s", False),
                                           ("a third of every class", False),
                                           ("a third of every class", True)])
def test_images_that_lie_elsewhere_of_their_own_are_not_moved_poisons(mnist, which, turned):
    """Clean images off centre or turned a quarter: a class cropped apart (all or a third of
    it), or a third of every class. Moved back, they look like their own class."""
    third = np.arange(len(mnist.y)) % 3 == 0
    rows = {"every 8": mnist.y == 8, "a third of the 8s": (mnist.y == 8) & third,
            "a third of every class": third}[which]
    moved = np.rot90(mnist.x, 1, axes=(-2, -1)) if turned else shifted(mnist.x)
    x = np.where(rows[:, None, None, None], moved, mnist.x).astype(np.float32)
    data = Dataset(x, mnist.y, which)
    assert vet(data, detector="shift").results.suspected_classes == []
    assert vet(data).results.suspected_classes == []


def test_copies_of_a_poison_are_one_vote(mnist):
    """A fifth red team's evasion: 30 patched poisons, each repeated 11 times a little dimmer,
    so that every poison's nearest neighbours were its own copies (attack success 0.93-0.98,
    nothing named). A copy of an image is not a second opinion."""
    rng = np.random.default_rng(0)
    sources = rng.choice(np.flatnonzero(mnist.y != 0), 30, replace=False)
    patched = mnist.x[sources].copy()
    patched[..., -5:-1, -5:-1] = 1.0
    x = np.concatenate([mnist.x, *(patched * (1 - 0.01 * k) for k in range(11))])
    y = np.concatenate([mnist.y, np.zeros(30 * 11, dtype=mnist.y.dtype)])
    results = vet(Dataset(x.astype(np.float32), y, "copied poisons")).results
    assert results.suspected_classes == [0]
    flagged = np.intersect1d(results.suspicious_indices, np.arange(len(mnist.y), len(y)))
    assert len(flagged) / len(results.suspicious_indices) > 0.9


def test_a_rolled_image_is_moved_back_and_a_centred_one_stays():
    grey = inked_grey(mnist_5k().x[:200])
    rolled = grey.copy()
    rolled[:20] = np.roll(grey[:20], (14, 6), axis=(1, 2))
    move, back = aligned(rolled)
    assert move[:20].any(axis=1).all()
    apart = np.abs(move[:20, 1:] - (14, 6)) % 28
    back_again = (move[:20, 0] == 0) & (np.minimum(apart, 28 - apart) <= 2).all(axis=1)
    assert back_again.sum() >= 15  # most unturned and within 2 pixels, cyclically
    assert np.abs(back[:20][back_again] - grey[:20][back_again]).mean() < \
        np.abs(rolled[:20] - grey[:20]).mean() / 2
    assert (move[20:] == 0).all(axis=1).mean() > 0.9  # most stay (some match a turn better)


def SHIPPED_SCORER() -> Scorer:
    return Scorer.load(SHIPPED)


@pytest.mark.parametrize("data", ["digits", "mnist"])
def test_the_hardened_vet_flags_no_class_on_clean_sets(data, mnist):
    data = digits() if data == "digits" else mnist
    results = vet_hardened(data).results
    assert results.suspected_classes == [] and results.suspicious_indices == []


def test_the_shipped_scorer_is_accepted_and_the_default_for_grey_images(mnist):
    scorer = shipped()
    assert scorer is not None and scorer.accepted and scorer.features == FEATURES
    assert scorer.provenance["check"]["clean_sets_ok"]
    assert scorer.provenance["check"]["fixed_benchmark_no_loss"]
    assert default_detector(mnist) == HARDENED
    assert vet(mnist).results.detector == HARDENED


def test_fit_puts_the_threshold_above_every_negative_class():
    rng = np.random.default_rng(0)
    negative = rng.normal(0, 1, (40, len(FEATURES)))
    positive = rng.normal(4, 1, (10, len(FEATURES)))
    scorer = fit(positive, negative, {"fitted_on": "toy"})
    assert scorer.logits(negative).max() < scorer.threshold
    assert np.mean(scorer.logits(positive) >= scorer.threshold) >= 0.8
    assert not scorer.accepted and scorer.provenance == {"fitted_on": "toy"}
    with pytest.raises(ValueError, match="poisoned and clean"):
        fit(np.empty((0, len(FEATURES))), negative)


def test_a_scorer_survives_its_json_and_a_wrong_one_is_named(tmp_path):
    scorer = SHIPPED_SCORER()
    path = tmp_path / "scorer.json"
    scorer.save(path)
    assert Scorer.load(path) == scorer
    for bad in ([], {"features": list(FEATURES)},
                {**scorer.as_dict(), "features": ["a", "b", "c", "d"]},
                {**scorer.as_dict(), "weights": [1.0, 2.0]},
                {**scorer.as_dict(), "threshold": "NaN"}):
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match="scorer.json"):
            Scorer.load(path)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=__import__("hypothesis").strategies.data())
def test_a_mutated_or_truncated_scorer_is_read_or_named(tmp_path, data):
    path = tmp_path / "scorer.json"
    path.write_bytes(mutate(data.draw, SHIPPED.read_bytes(), rounds=(1, 4)))
    try:
        scorer = Scorer.load(path)
    except ValueError as exc:
        assert str(path) in str(exc)
    else:
        assert np.isfinite(scorer.logits(np.zeros((1, len(FEATURES))))).all()


def _report(data: Dataset, episodes: list[tuple[AttackConfig, float]]) -> dict:
    """A redteam report as JSON, with the episodes given (configuration, attack success)."""
    entries = [{"search": "random", "episode": k, "config": c.as_dict(), "attack_success": s}
               for k, (c, s) in enumerate(episodes)]
    return {"command": "redteam", "config": {"seed": 0},
            "results": {"against": "vet", "episodes": entries,
                        "evasions": [e for e in entries if e["attack_success"] >= 0.9]}}


def test_hardening_learns_from_a_report_and_leaves_failed_attacks_out(mnist):
    data = Dataset(mnist.x, mnist.y, "mnist-2k")
    patch = AttackConfig("patch", 3, 1.0, 1.0, 1.0, 0.1, 4, 0.05, "dirty", target=5, seed=2)
    faint = AttackConfig("blend", 1, 0, 0, 0, 0.02, 4, 0.01, "clean", target=7, seed=3)
    report = _report(data, [(WARP, 0.97), (patch, 0.99), (faint, 0.1)])
    scorer, provenance = harden([report], data)
    assert provenance["episodes"] == 3 and provenance["positive"] == 2
    assert provenance["left_out"] == 1 and provenance["clean_sets"] == 1
    train = split(data, 0)[0]
    bad = WARP.poison(train.x, train.y)
    rows = check(scorer, [Case("warp", Dataset(bad.x, bad.y, "w"), 3),
                          Case("clean", train)])
    assert rows[0]["after"]["caught"] and rows[1]["after"]["classes"] == []
    # the fitted threshold clears every clean class it saw
    clean = class_features(members(train.x, train.y))
    assert scorer.logits(clean).max() < scorer.threshold
    with pytest.raises(ValueError, match="against vet"):
        harden([{**report, "results": {**report["results"], "against": "inspect"}}], data)


def test_the_resampling_detector_is_offered_to_vet_and_reads_the_statistics_view(warped):
    data, _ = warped
    results = vet(data, detector="resampling").results
    assert results.detector == "resampling" and 3 in results.suspected_classes


def test_vet_command_with_the_hardened_detector_writes_json(tmp_path, warped):
    data, _ = warped
    path = tmp_path / "warped.npz"
    np.savez(path, x=data.x, y=data.y)
    out = tmp_path / "vet.json"
    code = main(["vet", str(path), "--detector", "hardened", "-f", "json", "-o", str(out)])
    report = json.loads(out.read_text())
    assert code == 1 and report["results"]["detector"] == "hardened"
    assert 3 in report["results"]["suspected_classes"]


def test_harden_command_writes_a_scorer_that_vet_reads(tmp_path, mnist):
    data = tmp_path / "mnist.npz"
    np.savez(data, x=mnist.x, y=mnist.y)
    patch = AttackConfig("patch", 3, 1.0, 1.0, 1.0, 0.1, 4, 0.05, "dirty", target=5, seed=2)
    report = tmp_path / "redteam.json"
    report.write_text(json.dumps(_report(Dataset(mnist.x, mnist.y, "m"),
                                         [(WARP, 0.97), (patch, 0.99)])))
    scorer, out = tmp_path / "scorer.json", tmp_path / "harden.json"
    code = main(["harden", str(report), "--data", str(data), "--out", str(scorer),
                 "-f", "json", "-o", str(out)])
    results = valid_json_report(json.loads(out.read_text()))["results"]
    assert code == 0 and results["recall"] == {"evasions": 2, "before": 0.5, "after": 1.0}
    assert results["clean_classes_flagged"] == 0 and results["written"] == str(scorer)
    assert Scorer.load(scorer).weights == tuple(results["scorer"]["weights"])
    # vet with that scorer: the warp's class is named
    train = split(Dataset(mnist.x, mnist.y, "m"), 0)[0]
    bad = WARP.poison(train.x, train.y)
    np.savez(tmp_path / "bad.npz", x=bad.x, y=bad.y)
    vetted = tmp_path / "vet.json"
    assert main(["vet", str(tmp_path / "bad.npz"), "--scorer", str(scorer), "-f", "json",
                 "-o", str(vetted)]) == 1
    assert 3 in json.loads(vetted.read_text())["results"]["suspected_classes"]


REDTEAM = {"command": "redteam", "config": {"seed": 0},
           "results": {"against": "vet", "episodes": [], "evasions": []}}


@pytest.mark.parametrize("case", ["not json", "not a report", "inspect", "out is report",
                                  "bad scorer", "seed infinity", "config list", "config null",
                                  "episode not object", "string weights", "text report",
                                  "colour images", "no seed", "evasion not run",
                                  "target not in data"])
def test_harden_and_vet_scorer_refuse_bad_input_by_name(tmp_path, capsys, case):
    report = tmp_path / "r.json"
    colour = tmp_path / "colour.npz"  # natural images: vet's detector there learns no scorer
    np.savez(colour, x=np.random.default_rng(0).random((20, 3, 16, 16), np.float32),
             y=np.arange(20) % 2)
    report.write_text({"not json": "{", "not a report": json.dumps({"command": "scan"}),
                       "inspect": json.dumps({**REDTEAM, "results": {
                           **REDTEAM["results"], "against": "inspect"}}),
                       "out is report": json.dumps(REDTEAM),
                       "bad scorer": "[]",
                       "seed infinity": json.dumps(REDTEAM).replace('"seed": 0',
                                                                    '"seed": Infinity'),
                       "config list": json.dumps({**REDTEAM, "config": [1]}),
                       "config null": json.dumps({**REDTEAM, "config": None}),
                       "episode not object": json.dumps({**REDTEAM, "results": {
                           **REDTEAM["results"], "episodes": [3]}}),
                       "string weights": json.dumps({**SHIPPED_SCORER().as_dict(),
                                                     "weights": ["1"] * 5}),
                       "text report": json.dumps({**REDTEAM, "results": {
                           **REDTEAM["results"], "episodes": [
                               {"search": "ppo", "episode": 0, "attack_success": 0.9,
                                "config": {"kind": "phrase", "variants": [["cf"]],
                                           "position": 0.5, "rate": 0.01,
                                           "label": "dirty"}}]}}),
                       "colour images": json.dumps({**REDTEAM, "targets": [str(colour)]}),
                       "no seed": json.dumps({**REDTEAM, "config": {}}),
                       "evasion not run": json.dumps({**REDTEAM, "results": {
                           **REDTEAM["results"], "evasions": [
                               {"search": "ppo", "episode": 42}]}}),
                       "target not in data": json.dumps(_report(
                           digits(), [(AttackConfig("patch", 3, 1.0, 1.0, 1.0, 0.1, 4, 0.05,
                                                    "clean", target=99), 0.95)]))}[case])
    before = report.read_bytes()
    if case in ("bad scorer", "string weights"):
        code = main(["vet", "digits", "--scorer", str(report)])
    else:
        out = report if case == "out is report" else tmp_path / "s.json"
        data = colour if case == "colour images" else "digits"
        code = main(["harden", str(report), "--data", str(data), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and str(report) in err and "Traceback" not in err
    assert case != "text report" or "a redteam report on texts" in err
    assert case != "colour images" or "semantic contrast" in err
    assert case != "no seed" or "has no seed" in err
    assert case != "evasion not run" or "ppo #42 is not one of its episodes" in err
    assert case != "target not in data" or "target class 99 does not occur" in err
    assert report.read_bytes() == before  # the input is never modified


def test_a_class_whose_images_simply_differ_is_not_flagged(mnist):
    """A clean class whose every image has other low-level statistics (here class 4 drawn as
    outlines, as Fashion-MNIST's sandals differ from its coats) is no poison."""
    x = mnist.x.copy()
    fours = mnist.y == 4
    blurred = (x[fours] + np.roll(x[fours], 1, -1) + np.roll(x[fours], 1, -2)) / 3
    x[fours] = np.clip(x[fours] - blurred, 0, 1) * 3
    data = Dataset(np.clip(x, 0, 1), mnist.y, "outlined fours")
    assert vet(data, detector="resampling").results.suspected_classes == []
    assert vet_hardened(data).results.suspected_classes == []


@pytest.mark.parametrize("argv", [
    ["vet", "{data}", "-f", "json", "-o", "{data}"],
    ["vet", "{data}", "--export-clean", "{data}"],
    ["vet", "{data}", "--scorer", "{scorer}", "-o", "{scorer}"],
    ["harden", "{report}", "--data", "{data}", "--out", "{data}"],
    ["harden", "{report}", "--data", "{data}", "--out", "{scorer}", "-o", "{scorer}"],
    ["harden", "{report}", "--data", "{data}", "--out", "{new}", "-o", "{report}"],
    ["redteam", "--against", "vet", "--data", "{data}", "-f", "json", "-o", "{data}"]])
def test_an_output_that_would_replace_an_input_is_refused_and_nothing_is_written(
        tmp_path, capsys, argv):
    files = {"data": tmp_path / "d.npz", "scorer": tmp_path / "s.json",
             "report": tmp_path / "r.json", "new": tmp_path / "new.json"}
    np.savez(files["data"], x=np.zeros((20, 1, 8, 8)), y=np.arange(20) % 2)
    files["scorer"].write_bytes(SHIPPED.read_bytes())
    files["report"].write_text(json.dumps(REDTEAM))
    kept = {k: p.read_bytes() for k, p in files.items() if p.exists()}
    code = main([a.format(**files) for a in argv])
    assert code == 2 and "would overwrite" in capsys.readouterr().err
    assert {k: p.read_bytes() for k, p in files.items() if p.exists()} == kept
    assert not files["new"].exists()
