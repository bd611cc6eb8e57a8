"""CycloneDX 1.6 (JSON): the files a command examined as components of an AI bill of
materials, and its findings as vulnerabilities that affect them, for supply-chain tools
(Dependency-Track and the like).

A file in which scan recognised a format that holds a model (a format handler's
`holds_model`: pickle, safetensors, ONNX, GGUF, ...; not a plain archive) is a
`machine-learning-model` component, so is every model that inspect, repair, diff, sign or
verify examined; vet's data sets are `data`, any other a `file`. Each carries trojanscope's
path and formats as properties. Each finding is a vulnerability named by its rule id, rated
with trojanscope's severity, with the remedy as its recommendation and the place inside the
file (archive member, byte offset) as properties. The serial number is derived from the
content, so the same report gives the same bytes. No hashes: scan does not read the tensor
bytes it skips, and a renderer reads no files.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ..findings import Finding, Report
from ..results import ScanResults
from . import RenderOptions, json_safe, renderer

SPEC_VERSION = "1.6"
MODEL_COMMANDS = {"inspect", "repair", "diff", "sign", "verify"}


@renderer("cyclonedx", "CycloneDX 1.6 JSON: an AI bill of materials with the findings")
def _render(report: Report, options: RenderOptions) -> str:
    return render_cyclonedx(report)


def render_cyclonedx(report: Report) -> str:
    components = _components(report)
    bom: dict[str, Any] = {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "version": 1,
        "metadata": {
            "tools": {"components": [{"type": "application", "name": "trojanscope",
                                      "version": report.version}]},
            "properties": [{"name": "trojanscope:command", "value": report.command}],
        },
        "components": components,
        "vulnerabilities": [_vulnerability(i, f) for i, f in enumerate(report.findings)],
    }
    bom = json_safe(bom)
    body = json.dumps(bom, sort_keys=True, allow_nan=False)
    bom = {"bomFormat": "CycloneDX", "specVersion": SPEC_VERSION,
           "serialNumber": uuid.uuid5(uuid.NAMESPACE_URL, f"trojanscope:{body}").urn, **bom}
    return json.dumps(bom, indent=2, allow_nan=False) + "\n"


def _components(report: Report) -> list[dict[str, Any]]:
    """A component per file: scan's files with their formats, else the command's targets, and
    any file a finding names that is neither."""
    scanned = report.results.files if isinstance(report.results, ScanResults) else None
    files = {entry["path"]: list(entry.get("formats", ())) for entry in scanned or ()}
    if not files:
        files = {target: [] for target in report.targets}
    for finding in report.findings:
        files.setdefault(finding.location.path, [])
    from ..artifacts.registry import model_formats

    models = model_formats()
    kind = "machine-learning-model" if report.command in MODEL_COMMANDS else \
        "data" if report.command == "vet" else "file"
    out = []
    for path, formats in files.items():
        properties = [{"name": "trojanscope:path", "value": path}]
        properties += [{"name": "trojanscope:format", "value": f} for f in formats]
        out.append({
            "type": "machine-learning-model" if models & set(formats) else kind,
            "bom-ref": _ref(path),
            "name": path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or path,
            "properties": properties,
        })
    return out


def _ref(path: str) -> str:
    return f"file:{path}"


def _vulnerability(index: int, finding: Finding) -> dict[str, Any]:
    place = [{"name": "trojanscope:member", "value": "!".join(finding.location.member)}] \
        if finding.location.member else []
    if finding.location.offset is not None:
        place.append({"name": "trojanscope:offset", "value": str(finding.location.offset)})
    return {
        "bom-ref": f"finding-{index}",
        "id": finding.rule,
        "source": {"name": "trojanscope"},
        "ratings": [{"source": {"name": "trojanscope"}, "severity": str(finding.severity),
                     "method": "other"}],
        "description": finding.message,
        "recommendation": finding.remedy,
        "affects": [{"ref": _ref(finding.location.path)}],
        "properties": place,
    }
