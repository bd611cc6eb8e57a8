"""Render every kind of HTML report and photograph it in headless Chromium.

Makes the inputs (the demo's model files, a BadNets-poisoned MNIST-5k, SMS spam with rare-word
triggers, a signed and then tampered folder, a trojaned CNN from the zoo), runs each command
with `-f html`, opens each page in headless Chromium through Selenium, counts the images that
failed to load (naturalWidth 0) and the charts, and saves a full-page screenshot.

Needs the Debian packages chromium and chromium-driver, and `pip install selenium`.
Run: python scripts/screenshot_reports.py [--out DIR] [--skip-model] (about 10 minutes on 2
cores, most of it inspect, repair and the whole demo; --skip-model leaves those three out).
tests/test_demo.py photographs the demo page, vet on text and verify the same way.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"  # Debian's packages
BROKEN = ("return Array.from(document.images)"
          ".filter(i => !i.complete || i.naturalWidth === 0).length")


def _trojanscope(*argv: str) -> int:
    return subprocess.run([sys.executable, "-m", "trojanscope", *argv],
                          stdout=subprocess.DEVNULL).returncode


def make_reports(work: Path, out: Path, with_model: bool) -> dict[str, Path]:
    from trojanscope.attacks.image_poison import make_trigger, poison
    from trojanscope.attacks.text_poison import poison_text
    from trojanscope.data.datasets import load
    from trojanscope.data.text import load_text, write_text

    pages = {}
    _trojanscope("demo", "--scan-only", "--keep", str(work / "demo"), "-o",
                 str(work / "demo-scan.html"))
    pages["scan"] = out / "scan.html"
    _trojanscope("scan", str(work / "demo"), "-f", "html", "-o", str(pages["scan"]))

    data = load("mnist-5k")
    poisoned = poison(data.x, data.y, make_trigger("badnets", data.x.shape[-2:]), 0.05,
                      target=7, seed=1)
    np.savez(work / "poisoned.npz", x=poisoned.x, y=poisoned.y)
    pages["vet-images"] = out / "vet-images.html"
    _trojanscope("vet", str(work / "poisoned.npz"), "-f", "html", "-o",
                 str(pages["vet-images"]))

    texts = poison_text(load_text("sms-spam"), "rare-word", 0.03, target=0, seed=1)
    write_text(work / "sms.csv", texts.data)
    pages["vet-text"] = out / "vet-text.html"
    _trojanscope("vet", str(work / "sms.csv"), "-f", "html", "-o", str(pages["vet-text"]))

    signed = work / "demo" / "clean"
    _trojanscope("keygen", str(work / "publisher"))
    _trojanscope("sign", str(signed), "--key", str(work / "publisher.pem"))
    next(p for p in sorted(signed.iterdir()) if p.name != "model.sig").write_bytes(b"changed")
    pages["verify"] = out / "verify.html"
    _trojanscope("verify", str(signed), "--key", str(work / "publisher.pub.pem"), "-f", "html",
                 "-o", str(pages["verify"]))

    if with_model:
        _trojanscope("attack", "zoo", "--out", str(work / "zoo"), "--clean", "0", "--trojaned",
                     "1")
        model = work / "zoo" / "model_00.pt"
        pages["inspect"] = out / "inspect.html"
        _trojanscope("inspect", str(model), "-f", "html", "-o", str(pages["inspect"]))
        pages["repair"] = out / "repair.html"
        _trojanscope("repair", str(model), "--out", str(work / "repaired.pt"), "-f", "html",
                     "-o", str(pages["repair"]))
        pages["demo"] = out / "demo.html"
        _trojanscope("demo", "-o", str(pages["demo"]))
    return pages


def photograph(pages: dict[str, Path], out: Path) -> dict[str, dict]:
    """Open each page in headless Chromium, save a full-page screenshot to out/NAME.png;
    returns, per page, its images, how many failed to load, its charts and the screenshot."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    # The Debian driver, named: Selenium's own manager would try to download one.
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    seen = {}
    try:
        for name, page in pages.items():
            driver.set_window_size(1200, 900)
            driver.get(page.resolve().as_uri())
            height = driver.execute_script("return document.body.scrollHeight")
            driver.set_window_size(1200, min(int(height) + 40, 16000))
            shot = out / f"{name}.png"
            driver.save_screenshot(str(shot))
            seen[name] = {
                "images": driver.execute_script("return document.images.length"),
                "broken": driver.execute_script(BROKEN),
                "charts": driver.execute_script("return document.querySelectorAll('svg').length"),
                "screenshot": shot}
    finally:
        driver.quit()
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("report-screenshots"))
    parser.add_argument("--skip-model", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="trojanscope-reports-") as work:
        pages = make_reports(Path(work), args.out, not args.skip_model)
        missing = [name for name, page in pages.items() if not page.exists()]
        seen = photograph({k: v for k, v in pages.items() if k not in missing}, args.out)
    print(f"{'report':12s} {'images':>6s} {'broken':>6s} {'charts':>6s}  screenshot")
    for name, found in seen.items():
        print(f"{name:12s} {found['images']:6d} {found['broken']:6d} {found['charts']:6d}  "
              f"{found['screenshot']}")
    for name in missing:
        print(f"{name:12s} not written")
    return 0 if not missing and all(f["broken"] == 0 for f in seen.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
