"""The web service: the JSON API under /api/v1 (Bearer tokens) and the pages (password login,
session cookie, CSRF token on every form), rendered on the server with Jinja2, no script.

This process stores uploads, keeps records and renders; it never opens an uploaded file as a
model or a data set: the workers do (worker.py).
"""


import base64
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from .. import __version__
from . import auth, gate, queue
from .db import Acceptance, Artifact, AuditEntry, Job, Project, User, now, open_database
from .storage import BlobStore, TooLarge
from .upload import BadUpload, Stalled, read_upload

COOKIE = "trojanscope_session"
LOGIN_FAILURES, LOGIN_WINDOW = 10, 300.0  # failed logins from one address, per seconds
HEADERS = {  # every answer: no framing, no sniffing, nothing loaded from elsewhere
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'"}
DATA_SUFFIXES = (".npz", ".csv", ".tsv", ".jsonl")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    db_url: str | None = None
    max_upload: int = 2 << 30  # bytes


def create_app(settings: Settings, sessions=None) -> FastAPI:
    sessions = sessions or open_database(settings.data_dir, settings.db_url)
    store = BlobStore(settings.data_dir)
    templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
    app = FastAPI(title="trojanscope", version=__version__, docs_url=None, redoc_url=None,
                  description="Every model and data set a team takes in, checked and "
                              "remembered. Every /api/v1 call needs `Authorization: Bearer "
                              "TOKEN` (`trojanscope serve create-token`).")

    def database():
        with sessions() as db:
            yield db

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(HEADERS)
        return response

    failures: dict[str, list[float]] = {}  # address -> times of its recent failed logins

    def too_many_failures(address: str) -> bool:
        import time

        recent = [t for t in failures.get(address, []) if time.monotonic() - t < LOGIN_WINDOW]
        failures[address] = recent
        return len(recent) >= LOGIN_FAILURES

    Db = Annotated[Session, Depends(database)]

    def api_user(request: Request, db: Db) -> User:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        user = auth.token_user(db, token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise HTTPException(401, "a valid API token is needed: Authorization: Bearer TOKEN",
                                headers={"WWW-Authenticate": "Bearer"})
        return user

    def needs(role: str):
        def check(user: Annotated[User, Depends(api_user)]) -> User:
            if not auth.may(user.role, role):
                raise HTTPException(403, f"needs the {role} role; this token is {user.role}'s")
            return user
        return check

    Viewer = Annotated[User, Depends(needs("viewer"))]
    Reviewer = Annotated[User, Depends(needs("reviewer"))]
    Admin = Annotated[User, Depends(needs("admin"))]

    # --- the API ---------------------------------------------------------------------------

    @app.post("/api/v1/artifacts", status_code=201)
    async def upload(request: Request, user: Reviewer, db: Db) -> dict:
        """Multipart: `file` (required); optional `signature` (its .sig bundle), `data`
        (clean data for inspecting a model), `kind` (model or data; default: from the name),
        `project` (default: default)."""
        artifact = await _store_upload(request, db, user)
        return await run_in_threadpool(lambda: {
            "id": artifact.id, "sha256": artifact.sha256,
            "jobs": [_job_json(j, report=False) for j in artifact.jobs]})

    @app.get("/api/v1/artifacts")
    def list_artifacts(user: Viewer, db: Db, limit: int = 50,
                       project: str | None = None) -> list[dict]:
        """The newest artifacts first, of one project when `project` is given."""
        query = select(Artifact).order_by(Artifact.id.desc()).limit(min(max(limit, 1), 500))
        if project is not None:
            query = query.join(Project).where(Project.name == project)
        return [_artifact_json(a, reports=False) for a in db.scalars(query)]

    @app.get("/api/v1/artifacts/{artifact_id}")
    def get_artifact(artifact_id: int, user: Viewer, db: Db) -> dict:
        return _artifact_json(_artifact(db, artifact_id), reports=True)

    @app.get("/api/v1/gate/{sha256}")
    def gate_decision(sha256: str, user: Viewer, db: Db) -> dict:
        decision = gate.decide(db, sha256.lower())
        return {"allowed": decision["allowed"], "reasons": decision["reasons"]}

    @app.post("/api/v1/artifacts/{artifact_id}/acceptances", status_code=201)
    def accept_api(artifact_id: int, body: dict, user: Reviewer, db: Db) -> dict:
        """Accept a finding: {"rule", "location", "reason", "days"} (days: until it expires)."""
        try:
            rule, location = str(body["rule"]), str(body["location"])
            reason, days = str(body["reason"]).strip(), int(body.get("days", 30))
        except (KeyError, TypeError, ValueError, OverflowError):
            raise HTTPException(422, "give rule, location, reason and days") from None
        acceptance = _accept(db, user, _artifact(db, artifact_id), rule, location, reason, days)
        return {"id": acceptance.id, "expires": acceptance.expires.isoformat()}

    @app.post("/api/v1/recheck")
    def recheck_api(user: Admin, db: Db) -> dict:
        return {"requeued": _recheck(db, user)}

    @app.get("/api/v1/audit")
    def audit(user: Admin, db: Db, limit: int = 100) -> list[dict]:
        rows = db.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit))
        return [{"at": e.at.isoformat(), "user": e.user.name if e.user else None,
                 "action": e.action, "detail": e.detail} for e in rows]

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs(request: Request):
        """The OpenAPI description as a page rendered here: nothing fetched from elsewhere
        (the usual Swagger page loads its script from a CDN, which an offline site lacks)."""
        spec = app.openapi()
        operations = [(method.upper(), path, op) for path, methods in spec["paths"].items()
                      for method, op in methods.items()]
        return render(request, "docs.html", operations=operations, spec=spec)

    # --- the pages -------------------------------------------------------------------------

    def page_session(request: Request, db: Db):
        found = auth.session_of(db, request.cookies.get(COOKIE))
        if found is None:
            raise HTTPException(303, headers={"Location": "/login"})
        return found

    Page = Annotated[object, Depends(page_session)]

    def render(request: Request, name: str, session=None, **context) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {
            "user": session.user if session else None,
            "csrf": session.csrf if session else "", "version": __version__, **context})

    def form_guard(session, csrf: str | None, role: str) -> None:
        if not auth.csrf_ok(session, csrf):
            raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
        if not auth.may(session.user.role, role):
            raise HTTPException(403, f"needs the {role} role")

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, error: str = ""):
        return render(request, "login.html", error=error)

    @app.post("/login")
    def login(request: Request, db: Db, name: Annotated[str, Form()],
              password: Annotated[str, Form()]):
        import time
        from urllib.parse import urlsplit

        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
            raise HTTPException(403, "a login from another site's form")  # login CSRF
        address = request.client.host if request.client else "?"
        if too_many_failures(address):  # refused before any password is hashed
            raise HTTPException(429, f"{LOGIN_FAILURES} failed logins from this address: "
                                     f"wait {LOGIN_WINDOW / 60:.0f} minutes")
        user = db.scalar(select(User).where(User.name == name))
        if not auth.check_password(user, password):
            failures.setdefault(address, []).append(time.monotonic())
            return RedirectResponse("/login?error=1", status_code=303)
        cookie = auth.new_session(db, user)
        db.commit()
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https",
                            max_age=auth.SESSION_HOURS * 3600)
        return response

    @app.post("/logout")
    def logout(session: Page, db: Db, csrf: Annotated[str, Form()] = ""):
        form_guard(session, csrf, "viewer")
        db.delete(db.merge(session))
        db.commit()
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse)
    def dashboard(request: Request, session: Page, db: Db):
        rows = list(db.scalars(select(Artifact).order_by(Artifact.id.desc()).limit(100)))
        verdicts = {a.id: gate.decide(db, a.sha256) for a in rows}
        return render(request, "dashboard.html", session, artifacts=rows, verdicts=verdicts)

    @app.get("/upload", response_class=HTMLResponse)
    def upload_page(request: Request, session: Page):
        return render(request, "upload.html", session)

    @app.post("/upload")
    async def upload_form(request: Request, session: Page, db: Db):
        if not auth.may(session.user.role, "reviewer"):
            raise HTTPException(403, "needs the reviewer role")
        user = await run_in_threadpool(db.merge, session.user)
        artifact = await _store_upload(request, db, user, session=session)
        return RedirectResponse(f"/artifacts/{artifact.id}", status_code=303)

    @app.get("/artifacts/{artifact_id}", response_class=HTMLResponse)
    def artifact_page(request: Request, artifact_id: int, session: Page, db: Db):
        from ..findings import Report
        from ..render.html import STYLE, report_fragment

        artifact = _artifact(db, artifact_id)
        sections = []
        for job in artifact.jobs:
            html = None
            if job.status == "done" and job.report:
                images = {k: base64.b64decode(v) for k, v in (job.images or {}).items()}
                html = report_fragment(Report.from_dict(job.report), images,
                                       "Pictures: recovered triggers or suspicious samples")
            sections.append((job, html))
        versions = list(db.scalars(select(Artifact).where(Artifact.name == artifact.name)
                                   .order_by(Artifact.id.desc()).limit(20)))
        return render(request, "artifact.html", session, artifact=artifact, sections=sections,
                      style=STYLE, decision=gate.decide(db, artifact.sha256),
                      accepted=gate.accepted(db, artifact), versions=versions,
                      findings=gate.findings_of(artifact))

    @app.post("/artifacts/{artifact_id}/accept")
    def accept_form(artifact_id: int, session: Page, db: Db,
                    rule: Annotated[str, Form()], location: Annotated[str, Form()],
                    reason: Annotated[str, Form()], days: Annotated[int, Form()] = 30,
                    csrf: Annotated[str, Form()] = ""):
        form_guard(session, csrf, "reviewer")
        _accept(db, db.merge(session.user), _artifact(db, artifact_id), rule, location,
                reason.strip(), days)
        return RedirectResponse(f"/artifacts/{artifact_id}", status_code=303)

    @app.post("/recheck")
    def recheck_form(session: Page, db: Db, csrf: Annotated[str, Form()] = ""):
        form_guard(session, csrf, "admin")
        _recheck(db, db.merge(session.user))
        return RedirectResponse("/", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if exc.status_code == 303:
            return RedirectResponse(exc.headers["Location"], status_code=303)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=exc.headers)

    # --- shared ------------------------------------------------------------------------------

    async def _store_upload(request: Request, db: Session, user: User, session=None):
        """Read the upload as it arrives, then record it. The database is used only from the
        thread pool, never on the event loop (a wait for a connection there stops every
        request), and no connection is held while the body streams in."""
        await run_in_threadpool(db.commit)
        try:
            got = await read_upload(request, store, settings.max_upload)
        except TooLarge as exc:
            raise HTTPException(413, f"upload {exc}") from None
        except Stalled as exc:
            raise HTTPException(408, str(exc)) from None
        except BadUpload as exc:
            raise HTTPException(400, str(exc)) from None
        return await run_in_threadpool(_record, db, user, got, session)

    def _record(db: Session, user: User, got, session) -> Artifact:
        if session is not None and not auth.csrf_ok(session, got.fields.get("csrf")):
            _forget(db, got)
            raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
        main = got.files["file"]
        kind = got.fields.get("kind") or ("data" if main.filename.lower().endswith(
            DATA_SUFFIXES) else "model")
        if kind not in ("model", "data"):
            _forget(db, got)
            raise HTTPException(422, f"kind must be model or data, not {kind!r}")
        project_name = (got.fields.get("project") or "default").strip()[:100] or "default"
        project = _project(db, project_name)
        artifact = Artifact(sha256=main.sha256, name=main.filename[:255], kind=kind,
                            size=main.size, project_id=project.id, uploaded_by=user.id,
                            signature_sha256=_sha(got, "signature"), data_sha256=_sha(got, "data"))
        db.add(artifact)
        db.flush()
        queue.enqueue(db, artifact)
        db.commit()
        db.refresh(artifact)
        return artifact

    def _forget(db: Session, got) -> None:
        """A refused upload's files, unless another artifact holds the same bytes."""
        for stored in got.files.values():
            known = db.scalar(select(Artifact.id).where(
                (Artifact.sha256 == stored.sha256) | (Artifact.signature_sha256 == stored.sha256)
                | (Artifact.data_sha256 == stored.sha256)).limit(1))
            if known is None:
                store.path(stored.sha256).unlink(missing_ok=True)

    def _accept(db: Session, user: User, artifact: Artifact, rule: str, location: str,
                reason: str, days: int) -> Acceptance:
        if not reason:
            raise HTTPException(422, "say why the finding is acceptable")
        if not 1 <= days <= 365:
            raise HTTPException(422, "an acceptance lasts 1 to 365 days")
        if not any(f.rule == rule and str(f.location) == location
                   for _, f in gate.findings_of(artifact)):
            raise HTTPException(404, "no such finding in this artifact's reports")
        found = db.scalar(select(Acceptance).where(
            Acceptance.artifact_id == artifact.id, Acceptance.rule == rule,
            Acceptance.location == location))
        if found is None:
            found = Acceptance(artifact_id=artifact.id, rule=rule, location=location)
            db.add(found)
        found.reason, found.user_id = reason, user.id
        found.expires, found.created = now() + dt.timedelta(days=days), now()
        db.add(AuditEntry(user_id=user.id, action="accept-finding",
                          detail={"artifact": artifact.id, "sha256": artifact.sha256,
                                  "rule": rule, "location": location, "reason": reason,
                                  "days": days}))
        db.commit()
        return found

    def _recheck(db: Session, user: User) -> int:
        count = queue.requeue_all(db)
        db.add(AuditEntry(user_id=user.id, action="recheck-all", detail={"jobs": count}))
        db.commit()
        return count

    return app


def _project(db: Session, name: str) -> Project:
    """The project `name`, made if new; two uploads may make it at once: one insert wins."""
    from sqlalchemy.exc import IntegrityError

    for _ in range(3):
        found = db.scalar(select(Project).where(Project.name == name))
        if found is not None:
            return found
        try:
            with db.begin_nested():
                db.add(Project(name=name))
        except IntegrityError:
            continue
    return db.scalar(select(Project).where(Project.name == name))


def _sha(got, name: str) -> str | None:
    found = got.files.get(name)
    return found.sha256 if found else None


def _artifact(db: Session, artifact_id: int) -> Artifact:
    artifact = db.get(Artifact, artifact_id) if 0 < artifact_id < 2 ** 62 else None
    if artifact is None:
        raise HTTPException(404, f"no artifact {artifact_id}")
    return artifact


def _job_json(job: Job, report: bool) -> dict:
    out = {"id": job.id, "kind": job.kind, "status": job.status, "attempts": job.attempts}
    if job.status == "done" and report:
        out["report"] = job.report
    if job.status == "failed":
        out["error"] = job.error
    if job.finished:
        out.update({"finished": job.finished.isoformat(), "tool_version": job.tool_version,
                    "policy_digest": job.policy_digest})
    return out


def _artifact_json(artifact: Artifact, reports: bool) -> dict:
    return {"id": artifact.id, "sha256": artifact.sha256, "name": artifact.name,
            "kind": artifact.kind, "size": artifact.size, "project": artifact.project.name,
            "uploaded_by": artifact.uploader.name, "created": artifact.created.isoformat(),
            "signature_sha256": artifact.signature_sha256, "data_sha256": artifact.data_sha256,
            "jobs": [_job_json(j, report=reports) for j in artifact.jobs]}
