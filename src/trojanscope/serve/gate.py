"""The gate: may this file be used? Allowed only when the newest run of every check that any
upload of its bytes got is done and no finding at or above the bar stands in it, unless a
reviewer accepted the finding (on any upload of the same bytes) and the acceptance has not
expired. Anything else is a reason, in words."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..findings import Finding, Severity
from .db import Acceptance, Artifact, now

BAR = Severity.HIGH


def findings_of(artifact: Artifact) -> list[tuple[str, Finding]]:
    """(job kind, finding) for every finding in the artifact's finished reports."""
    out = []
    for job in artifact.jobs:
        if job.status == "done" and job.report:
            out.extend((job.kind, Finding.from_dict(f)) for f in job.report["findings"])
    return out


def accepted(db: Session, artifact: Artifact) -> dict[tuple[str, str], Acceptance]:
    """The acceptances in force for the artifact's bytes (made on any upload of them), by
    (rule, location)."""
    same = select(Artifact.id).where(Artifact.sha256 == artifact.sha256)
    rows = db.scalars(select(Acceptance).where(Acceptance.artifact_id.in_(same),
                                               Acceptance.expires > now())
                      .order_by(Acceptance.id))
    return {(a.rule, a.location): a for a in rows}


def decide(db: Session, sha256: str) -> dict:
    """The gate for these bytes. Every upload of them counts: for each kind of check, the
    newest run of it on any upload decides, so uploading the same bytes again under another
    kind or name (fewer checks) cannot open the gate, and a check run again (a re-check, a
    signature checked once the key is trusted) replaces its earlier result."""
    uploads = list(db.scalars(select(Artifact).where(Artifact.sha256 == sha256)
                              .order_by(Artifact.id)))
    if not uploads:
        return {"allowed": False, "reasons": ["never uploaded: nothing is known of this file"]}
    newest = {}
    for artifact in uploads:
        for job in artifact.jobs:
            newest[job.kind] = job
    reasons = []
    waived = accepted(db, uploads[-1])
    for kind, job in newest.items():
        if job.status in ("queued", "running"):
            reasons.append(f"{kind} has not finished ({job.status})")
        elif job.status == "failed":
            reasons.append(f"{kind} failed: {job.error}")
        elif job.report:
            for data in job.report["findings"]:
                finding = Finding.from_dict(data)
                if finding.severity >= BAR and \
                        (finding.rule, str(finding.location)) not in waived:
                    reasons.append(f"{kind}: {finding.severity} {finding.rule} at "
                                   f"{finding.location}: {finding.message}")
    return {"allowed": not reasons, "reasons": reasons}
