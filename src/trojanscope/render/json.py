"""The stable JSON form of a Report (schema: docs/report.schema.json, `schema_version` 1)."""

from __future__ import annotations

import json
from typing import Any

from ..findings import Report, Severity
from ..results import ScanResults
from . import RenderOptions, json_safe, renderer

SCHEMA_VERSION = 1


def report_to_dict(report: Report) -> dict[str, Any]:
    """The report as JSON values (json_safe: no NaN or infinity)."""
    counts = {str(s): 0 for s in Severity}
    for finding in report.findings:
        counts[str(finding.severity)] += 1
    return json_safe({
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "trojanscope", "version": report.version},
        "command": report.command,
        "targets": list(report.targets),
        "summary": {"findings": len(report.findings), "by_severity": counts,
                    "errors": len(report.errors),
                    "max_severity": None if report.max_severity is None
                    else str(report.max_severity)},
        "findings": [f.to_dict() for f in report.findings],
        "errors": [e.to_dict() for e in report.errors],
        "results": report.results.to_dict(),
        "timings": dict(report.timings),
        "config": dict(report.config),
    })


@renderer("json", "the stable JSON report (schema: trojanscope/render/report.schema.json)")
def _render(report: Report, options: RenderOptions) -> str:
    return render_json(report)


def render_json(report: Report, *, timings: bool = True) -> str:
    data = report_to_dict(report)
    if not timings:  # for golden files: the one part of a report that changes run to run
        data["timings"] = {}
        if isinstance(report.results, ScanResults) and report.results.files:
            data["results"]["files"] = [{k: v for k, v in entry.items() if k != "seconds"}
                                        for entry in data["results"]["files"]]
    return json.dumps(data, indent=2, sort_keys=False, default=str, allow_nan=False) + "\n"
