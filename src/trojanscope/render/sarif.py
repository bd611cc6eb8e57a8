"""SARIF 2.1.0, for code-scanning dashboards. One run; rules come from the catalogue."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..findings import RULES, Finding, Report, Severity, all_rules
from . import RenderOptions, json_safe, renderer

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning",
          Severity.LOW: "note", Severity.INFO: "note"}
# GitHub code scanning reads this 0-10 score to order security results.
SECURITY_SEVERITY = {Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5",
                     Severity.LOW: "3.0", Severity.INFO: "0.0"}


@renderer("sarif", "SARIF 2.1.0, for code-scanning dashboards")
def _render(report: Report, options: RenderOptions) -> str:
    return render_sarif(report)


def render_sarif(report: Report) -> str:
    used = sorted({f.rule for f in report.findings})
    rules = [_rule(rule_id) for rule_id in used]
    index = {rule_id: i for i, rule_id in enumerate(used)}
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "trojanscope",
                "version": report.version,
                "informationUri": "https://pypi.org/project/trojanscope/",
                "rules": rules,
            }},
            "results": [_result(f, index[f.rule]) for f in report.findings],
            "invocations": [{
                "executionSuccessful": not report.errors,
                "toolExecutionNotifications": [
                    {"level": "error", "message": {"text": f"{e.path}: {e.message}"}}
                    for e in report.errors],
            }],
        }],
    }
    return json.dumps(json_safe(log), indent=2, allow_nan=False) + "\n"


def _rule(rule_id: str) -> dict[str, Any]:
    rule = RULES.get(rule_id) or all_rules().get(rule_id)  # a report read back from JSON
    # a rule of another version of the tool: described by its id
    title, remedy, severity = (rule.title, rule.remedy, rule.severity) if rule else \
        (rule_id, "", Severity.MEDIUM)
    return {
        "id": rule_id,
        "name": rule_id.replace(".", "/"),
        "shortDescription": {"text": title},
        "help": {"text": remedy},
        "defaultConfiguration": {"level": LEVELS[severity]},
        "properties": {"security-severity": SECURITY_SEVERITY[severity],
                       "tags": ["security", rule_id.split(".")[0]]},
    }


def _result(finding: Finding, rule_index: int) -> dict[str, Any]:
    loc = finding.location
    physical: dict[str, Any] = {"artifactLocation": {"uri": loc.path.replace("\\", "/")}}
    if loc.offset is not None and not loc.member:
        physical["region"] = {"byteOffset": loc.offset}
    key = f"{finding.rule}|{loc.path}|{'!'.join(loc.member)}|{finding.message}"
    # a file name that is not UTF-8 holds surrogates: hashed as they are
    fingerprint = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return {
        "ruleId": finding.rule,
        "ruleIndex": rule_index,
        "level": LEVELS[finding.severity],
        "message": {"text": f"{finding.message} ({loc})"},
        "locations": [{
            "physicalLocation": physical,
            "logicalLocations": [{"fullyQualifiedName": str(loc), "kind": "member"}],
        }],
        "partialFingerprints": {"trojanscope/v1": fingerprint[:32]},
        "properties": {"severity": str(finding.severity), "evidence": dict(finding.evidence),
                       "remedy": finding.remedy},
    }
