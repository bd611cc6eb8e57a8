"""Small helpers shared by the tests."""

from __future__ import annotations

from trojanscope.findings import Report, Severity


def rules(report: Report, at_least: Severity = Severity.INFO) -> set[str]:
    return {f.rule for f in report.findings if f.severity >= at_least}


def worst(report: Report) -> Severity | None:
    return report.max_severity


def only(report: Report, rule: str):
    hits = [f for f in report.findings if f.rule == rule]
    got = [(f.rule, str(f.location)) for f in report.findings]
    assert len(hits) == 1, f"expected one {rule}, got {got}"
    return hits[0]


def recording_vgg(record: str):
    """An architecture for state-dict tests that writes the id of the process building it."""
    import os
    from pathlib import Path

    from trojanscope.ml.architectures import build

    Path(record).write_text(str(os.getpid()))
    return build("vgg11(width=2)")
