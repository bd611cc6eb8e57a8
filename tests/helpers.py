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


def mutate(draw, data: bytes, rounds: tuple[int, int] = (0, 4), longest_cut: int = 16,
           length_fields: bool = False) -> bytes:
    """`data` with a few random flips, insertions, deletions and a truncation (hypothesis
    draws them); `length_fields`: also 4-byte fields set to absurd lengths."""
    import struct

    from hypothesis import strategies as st

    data = bytearray(data)
    kinds = ["flip", "insert", "delete", "truncate"] + (["length"] if length_fields else [])
    for _ in range(draw(st.integers(*rounds))):
        kind = draw(st.sampled_from(kinds))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, longest_cut))]
        elif kind == "truncate":
            del data[at:]
        elif kind == "length" and len(data) >= at + 4:  # plant an absurd length field
            data[at:at + 4] = struct.pack("<I", draw(st.sampled_from([0xFFFFFFFF, 2**31, 2**24])))
    return bytes(data)


def valid_json_report(report: Report | dict) -> dict:
    """The report's JSON form, checked against the published schema (report.schema.json), which
    holds each command's results schema."""
    import json
    from importlib import resources

    import jsonschema

    from trojanscope.render.json import report_to_dict

    data = report if isinstance(report, dict) else json.loads(json.dumps(report_to_dict(report)))
    schema = json.loads(resources.files("trojanscope.render").joinpath("report.schema.json")
                        .read_text("utf-8"))
    jsonschema.validate(data, schema)
    return data
