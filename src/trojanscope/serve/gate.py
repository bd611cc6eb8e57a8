"""The gate: may this file be used? Allowed only when every check of its newest upload is done
and no finding at or above the bar stands, unless a reviewer accepted it and the acceptance has
not expired. Anything else is a reason, in words."""

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
    """The acceptances in force for the artifact, by (rule, location)."""
    rows = db.scalars(select(Acceptance).where(Acceptance.artifact_id == artifact.id,
                                               Acceptance.expires > now()))
    return {(a.rule, a.location): a for a in rows}


def decide(db: Session, sha256: str) -> dict:
    """The gate for the newest upload of these bytes."""
    artifact = db.scalar(select(Artifact).where(Artifact.sha256 == sha256)
                         .order_by(Artifact.id.desc()).limit(1))
    if artifact is None:
        return {"allowed": False, "reasons": ["never uploaded: nothing is known of this file"]}
    return decide_for(db, artifact)


def decide_for(db: Session, artifact: Artifact) -> dict:
    reasons = []
    for job in artifact.jobs:
        if job.status in ("queued", "running"):
            reasons.append(f"{job.kind} has not finished ({job.status})")
        elif job.status == "failed":
            reasons.append(f"{job.kind} failed: {job.error}")
    waived = accepted(db, artifact)
    for kind, finding in findings_of(artifact):
        if finding.severity >= BAR and (finding.rule, str(finding.location)) not in waived:
            reasons.append(f"{kind}: {finding.severity} {finding.rule} at {finding.location}: "
                           f"{finding.message}")
    return {"allowed": not reasons, "reasons": reasons}
