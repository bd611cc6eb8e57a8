"""HTML reports: one self-contained page (nothing fetched), every finding shown, and nothing from
the scanned files able to inject markup into the page."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np

from trojanscope.artifacts import scan
from trojanscope.attacks.pickle_payloads import PAYLOADS
from trojanscope.cli import main
from trojanscope.data.png import encode_png
from trojanscope.findings import Report
from trojanscope.render.html import render_html
from trojanscope.results import RepairResults, VetResults

VOID = {"meta", "br", "img", "hr", "input", "link"}


class Page(HTMLParser):
    """Collects tags, external references and any unbalanced closing tag."""

    def __init__(self):
        super().__init__()
        self.stack, self.tags, self.external, self.unbalanced = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith("data:"):
                self.external.append(value)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.unbalanced.append(tag)


def _parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    assert page.external == [] and page.unbalanced == [] and page.stack == []
    return page


def test_a_scan_page_lists_every_finding_and_nothing_in_a_file_name_becomes_markup(tmp_path):
    hostile = tmp_path / "<img src=x onerror=alert(1)>.pkl"
    hostile.write_bytes(PAYLOADS["classic"]("echo owned"))
    report = scan(tmp_path)
    text = render_html(report)
    page = _parse(text)
    assert "img" not in page.tags and "script" not in page.tags
    assert "&lt;img src=x onerror=alert(1)&gt;.pkl" in text
    for finding in report.findings:
        assert finding.rule in text
    assert "<details" in text  # the evidence, folded
    # the opcodes behind the critical finding: the import marked, the call that follows
    assert "&gt;       0 GLOBAL (&#x27;os&#x27;, &#x27;system&#x27;)" in text and "REDUCE" in text


def test_vet_figures_and_images_are_inline(tmp_path):
    rng = np.random.default_rng(0)
    report = Report(command="vet", version="0", targets=("d",), results=VetResults(
        poisoned=True, suspected_classes=[1], suspicious_indices=[], samples=200,
        detector="spectral", scores=rng.random(200).tolist(), cut=0.9,
        per_class=[{"class": c, "outlier_share": s, "suspected": c == 1}
                   for c, s in enumerate([0.01, 0.2, 0.02])]))
    text = render_html(report, images={"class 1 mask": encode_png(rng.random((8, 8)))})
    page = _parse(text)
    assert page.tags.count("svg") == 2 and "img" in page.tags
    assert "data:image/png;base64,iVBORw0KGgo" in text


def test_every_command_writes_html_with_the_format_option(tmp_path, capsys):
    (tmp_path / "weights.pkl").write_bytes(PAYLOADS["classic"]("echo owned"))
    out = tmp_path / "report.html"
    assert main(["scan", str(tmp_path / "weights.pkl"), "-f", "html", "-o", str(out)]) == 1
    _parse(out.read_text())
    assert main(["vet", "digits", "-f", "html"]) == 0
    text = capsys.readouterr().out
    _parse(text)
    assert "Scores per class" in text and "The most suspicious samples" in text
    assert text.count("data:image/png;base64,") == 32  # the thumbnails


def test_a_repair_page_shows_before_and_after_for_every_candidate():
    report = Report(command="repair", version="0", targets=("m.pt", "d"), results=RepairResults(
        method="unlearn", before={"clean_accuracy": 0.93, "attack_success": 0.99},
        after={"clean_accuracy": 0.95, "attack_success": 0.01},
        candidates={"fine-tune": {"clean_accuracy": 0.94, "attack_success": 0.97},
                    "unlearn": {"clean_accuracy": 0.95, "attack_success": 0.01,
                                "by_round": [{"round": 1}]}},
        target_classes=[1], classes_measured=[1], inspect_verdict="trojaned",
        data_split={"repair": 100, "held_out": 50}))
    text = render_html(report)
    _parse(text)
    assert text.count("<svg") == 2 and "Every candidate" in text
    assert "fill='#c92a2a'" in text  # the chosen repair stands out
