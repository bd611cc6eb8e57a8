"""The job queue, in the database: no broker. A worker claims a job by a compare-and-set on its
row (status and attempts as read), holds it with a lease that it renews while it works, and
hands in the result only while it still holds the lease. A job whose worker died returns to
the queue when its lease ends; one that has killed MAX_ATTEMPTS workers fails, so that a file
which crashes every worker cannot stop the queue.

The model and data checks (vet, inspect) wait for the artifact's scan: they are claimed only
once scan is done, and fail at once, without loading anything, when scan found a file that
would run code.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session, aliased

from .db import Artifact, Job, now

LEASE = dt.timedelta(seconds=60)
MAX_ATTEMPTS = 3
AFTER_SCAN = ("vet", "inspect")  # load the file: only after scan passed it


def jobs_for(artifact: Artifact) -> list[str]:
    """The checks an artifact gets: scan always; verify with a signature; vet for data; inspect
    for a model that came with clean data."""
    kinds = ["scan"]
    if artifact.signature_sha256:
        kinds.append("verify")
    if artifact.kind == "data":
        kinds.append("vet")
    elif artifact.data_sha256:
        kinds.append("inspect")
    return kinds


def enqueue(db: Session, artifact: Artifact, kinds: list[str] | None = None) -> list[Job]:
    jobs = [Job(artifact_id=artifact.id, kind=kind, status="queued")
            for kind in (kinds or jobs_for(artifact))]
    db.add_all(jobs)
    db.flush()
    return jobs


def claimable(at: dt.datetime):
    """Queued, or running with its lease run out; the ML checks only after a finished scan."""
    scan = aliased(Job)
    scan_unfinished = exists().where(and_(scan.artifact_id == Job.artifact_id,
                                          scan.kind == "scan", scan.status != "done"))
    return and_(or_(Job.status == "queued",
                    and_(Job.status == "running", Job.lease_until < at)),
                or_(Job.kind.not_in(AFTER_SCAN), ~scan_unfinished))


def claim(db: Session, worker: str, lease: dt.timedelta = LEASE) -> Job | None:
    """The oldest claimable job, now held by `worker`; None when there is none. Safe with any
    number of workers on either database: two may read the same row, one wins the update."""
    at = now()
    for job in db.scalars(select(Job).where(claimable(at)).order_by(Job.id).limit(20)):
        if job.attempts >= MAX_ATTEMPTS:  # it took every worker down with it
            _give_up(db, job, at)
            continue
        won = db.execute(
            update(Job).where(Job.id == job.id, Job.attempts == job.attempts,
                              claimable(at))
            .values(status="running", worker=worker, lease_until=at + lease,
                    attempts=job.attempts + 1, started=at)
            .execution_options(synchronize_session=False)).rowcount
        db.commit()
        if won == 1:
            db.refresh(job)
            return job
    db.commit()
    return None


def renew(db: Session, job_id: int, worker: str, lease: dt.timedelta = LEASE) -> bool:
    """Extend the lease; False when the job is no longer this worker's."""
    held = db.execute(update(Job).where(Job.id == job_id, Job.worker == worker,
                                        Job.status == "running")
                      .values(lease_until=now() + lease)
                      .execution_options(synchronize_session=False)).rowcount
    db.commit()
    return held == 1


def finish(db: Session, job_id: int, worker: str, *, report: dict | None = None,
           images: dict | None = None, error: str | None = None, version: str = "",
           policy: str = "") -> bool:
    """Hand in the result (done) or the reason (failed), only while `worker` holds the job;
    False when it lost it (its lease ran out and another worker took it over)."""
    done = db.execute(update(Job).where(Job.id == job_id, Job.worker == worker,
                                        Job.status == "running")
                      .values(status="failed" if error else "done", report=report,
                              images=images, error=error, finished=now(), lease_until=None,
                              tool_version=version, policy_digest=policy)
                      .execution_options(synchronize_session=False)).rowcount
    db.commit()
    return done == 1


def requeue_all(db: Session, artifact_ids: list[int] | None = None) -> int:
    """Every finished job again (after the tool or its policy changed): back to queued."""
    query = update(Job).where(Job.status.in_(("done", "failed")))
    if artifact_ids is not None:
        query = query.where(Job.artifact_id.in_(artifact_ids))
    count = db.execute(query.values(status="queued", attempts=0, worker=None, lease_until=None,
                                    report=None, images=None, error=None, finished=None)
                       .execution_options(synchronize_session=False)).rowcount
    db.commit()
    return count


def _give_up(db: Session, job: Job, at: dt.datetime) -> None:
    db.execute(update(Job).where(Job.id == job.id, Job.attempts == job.attempts,
                                 claimable(at))
               .values(status="failed", finished=at, lease_until=None,
                       error=f"gave up after {job.attempts} workers stopped while running it "
                             "(a file that crashes or exhausts the checker)")
               .execution_options(synchronize_session=False))
    db.commit()
