"""The platform against a real server on loopback, on SQLite and on PostgreSQL: every API call
authenticated, uploads checked by workers and remembered, the gate, triage with an audit
trail, and the security of uploads and forms. Harmful files are built from bytes; a canary
file proves that nothing in them ran."""

from __future__ import annotations

import hashlib
import io
import re
import time

import numpy as np
import pytest
import requests
from helpers import valid_json_report
from servers import Server, postgres, postgres_bin

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")


@pytest.fixture(scope="session")
def postgres_databases():
    if postgres_bin() is None:
        pytest.skip("needs PostgreSQL's server: apt-get install postgresql")
    pytest.importorskip("psycopg")
    with postgres() as new_database:
        yield new_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request):
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_databases")()


@pytest.fixture
def server(tmp_path, database):
    running = Server(tmp_path / "data", database).start()
    yield running
    running.stop()


def _pickle_running(command: str) -> bytes:
    """A protocol-2 pickle that calls os.system(command) when loaded."""
    arg = command.encode()
    return (b"\x80\x02cos\nsystem\nq\x00X" + len(arg).to_bytes(4, "little") + arg +
            b"q\x01\x85q\x02Rq\x03.")


def _safetensors() -> bytes:
    header = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    return len(header).to_bytes(8, "little") + header + b"\x00" * 8


def test_the_migrations_make_the_schema_of_the_models(tmp_path, database):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from trojanscope.cluster.result_cache import CacheBase
    from trojanscope.serve.db import Base, make_engine
    from trojanscope.serve.migrations import upgrade

    engine = make_engine(database or f"sqlite:///{tmp_path / 'fresh.db'}")
    upgrade(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection),
                                [Base.metadata, CacheBase.metadata]) == []


def test_every_api_call_needs_a_token_and_the_right_role(server):
    sha = "0" * 64
    calls = [("get", "/api/v1/artifacts"), ("get", "/api/v1/artifacts/1"),
             ("get", f"/api/v1/gate/{sha}"), ("post", "/api/v1/artifacts"),
             ("post", "/api/v1/artifacts/1/acceptances"), ("post", "/api/v1/recheck"),
             ("get", "/api/v1/audit")]
    for method, path in calls:
        for headers in ({}, {"Authorization": "Bearer ts_not-a-token"},
                        {"Authorization": server.tokens["admin"]}):  # no scheme
            answer = requests.request(method, server.url + path, headers=headers, timeout=30)
            assert answer.status_code == 401, (method, path, headers)
            assert answer.headers.get("www-authenticate") == "Bearer"
    assert server.upload("viewer", "a.safetensors", _safetensors()).status_code == 403
    for role in ("viewer", "reviewer"):
        answer = requests.post(server.url + "/api/v1/recheck", headers=server.headers(role),
                               timeout=30)
        assert answer.status_code == 403
    assert requests.get(server.url + "/api/v1/audit", headers=server.headers("reviewer"),
                        timeout=30).status_code == 403
    docs = requests.get(server.url + "/docs", timeout=30)
    assert docs.status_code == 200 and "POST /api/v1/artifacts" in docs.text
    assert "<script" not in docs.text  # rendered here: nothing fetched from a CDN
    assert "/api/v1/gate/{sha256}" in requests.get(server.url + "/openapi.json",
                                                   timeout=30).json()["paths"]


def test_an_upload_is_scanned_remembered_and_gated(server, tmp_path):
    canary = tmp_path / "canary"
    harmful = _pickle_running(f"touch {canary}")
    answer = server.upload("reviewer", "model.pkl", harmful)
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"id", "sha256", "jobs"}
    assert body["sha256"] == hashlib.sha256(harmful).hexdigest()
    assert [j["kind"] for j in body["jobs"]] == ["scan"]
    found = server.settled(body["id"])
    scan = found["jobs"][0]
    assert scan["status"] == "done" and scan["tool_version"] and len(scan["policy_digest"]) == 64
    report = valid_json_report(scan["report"])  # the command line's JSON report
    assert report["summary"]["max_severity"] == "critical"
    gate = server.gate(body["sha256"])
    assert gate["allowed"] is False and "pickle.unsafe-global" in gate["reasons"][0]

    harmless = server.upload("reviewer", "weights.safetensors", _safetensors()).json()
    server.settled(harmless["id"])
    assert server.gate(harmless["sha256"]) == {"allowed": True, "reasons": []}
    assert server.gate("f" * 64)["allowed"] is False  # never seen: not allowed
    listed = requests.get(server.url + "/api/v1/artifacts", headers=server.headers("viewer"),
                          timeout=30).json()
    assert [a["id"] for a in listed] == [harmless["id"], body["id"]]
    other = server.upload("reviewer", "w.safetensors", _safetensors(), project="vision").json()
    in_vision = requests.get(server.url + "/api/v1/artifacts?project=vision",
                             headers=server.headers("viewer"), timeout=30).json()
    assert [(a["id"], a["project"]) for a in in_vision] == [(other["id"], "vision")]
    assert not canary.exists()  # nothing in the harmful file ran


def test_accepting_a_finding_opens_the_gate_and_is_audited(server):
    data = _pickle_running("id")
    artifact = server.upload("reviewer", "m.pkl", data).json()
    finding = server.settled(artifact["id"])["jobs"][0]["report"]["findings"][0]
    where = finding["location"]["path"] + "@" + str(finding["location"]["offset"])
    accept = {"rule": finding["rule"], "location": where, "reason": "sandboxed loader",
              "days": 7}
    path = f"{server.url}/api/v1/artifacts/{artifact['id']}/acceptances"
    assert requests.post(path, json=accept, headers=server.headers("viewer"),
                         timeout=30).status_code == 403
    assert requests.post(path, json={**accept, "rule": "pickle.other"},
                         headers=server.headers("reviewer"), timeout=30).status_code == 404
    assert requests.post(path, json=accept, headers=server.headers("reviewer"),
                         timeout=30).status_code == 201
    assert server.gate(artifact["sha256"]) == {"allowed": True, "reasons": []}
    audit = requests.get(server.url + "/api/v1/audit", headers=server.headers("admin"),
                         timeout=30).json()
    assert audit[0]["action"] == "accept-finding" and audit[0]["user"] == "reviewer"
    assert audit[0]["detail"]["reason"] == "sandboxed loader"


def test_recheck_runs_every_job_again(server):
    artifact = server.upload("reviewer", "w.safetensors", _safetensors()).json()
    first = server.settled(artifact["id"])["jobs"][0]["finished"]
    answer = requests.post(server.url + "/api/v1/recheck", headers=server.headers("admin"),
                           timeout=30)
    assert answer.json() == {"requeued": 1}
    again = server.settled(artifact["id"])["jobs"][0]
    assert again["status"] == "done" and again["finished"] > first


def test_names_cannot_escape_and_an_oversized_upload_is_refused(server):
    evil_name = "../../../etc/<script>alert(1)</script>.pkl"
    artifact = server.upload("reviewer", evil_name, b"\x80\x02K\x01.").json()
    server.settled(artifact["id"])
    stored = [p for p in (server.data_dir / "blobs").rglob("*") if p.is_file()]
    assert [p.name for p in stored] == [artifact["sha256"]]  # the name is never a path
    page = _logged_in(server, "admin").get(f"{server.url}/artifacts/{artifact['id']}",
                                           timeout=30).text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page

    big = b"\x00" * (server.max_upload_mb * 2 ** 20 + 10)
    answer = server.upload("reviewer", "big.bin", big)
    assert answer.status_code == 413
    stored_after = [p for p in (server.data_dir / "blobs").rglob("*") if p.is_file()]
    assert stored_after == stored  # nothing kept, no temporary file left


def test_a_compression_bomb_is_scanned_within_the_limits(server, database):
    """56 KB that unpack to 4.6 GB (a pickle in gzip in gzip): scan's expansion limit holds
    in the worker. The database plays no part: SQLite only."""
    if database is not None:
        pytest.skip("the scanner's limits do not depend on the database")
    import gzip
    import zlib

    size = 4600 * 2 ** 20
    inner = zlib.compressobj(1, zlib.DEFLATED, 31)
    zeros = b"\x00" * 2 ** 22
    parts = [inner.compress(b"\x80\x04\x8e" + size.to_bytes(8, "little"))]
    parts += [inner.compress(zeros) for _ in range(size // len(zeros))]
    bomb = gzip.compress(b"".join(parts) + inner.compress(b".") + inner.flush(), 9)
    assert len(bomb) < 100_000
    started = time.monotonic()
    artifact = server.upload("reviewer", "weights.pkl.gz", bomb).json()
    scan = server.settled(artifact["id"], timeout=120)["jobs"][0]
    assert scan["status"] == "done" and time.monotonic() - started < 120
    assert "scan.limit-exceeded" in {f["rule"] for f in scan["report"]["findings"]}
    assert server.gate(artifact["sha256"])["allowed"] is False


def test_forms_need_a_login_and_their_csrf_token(server):
    assert requests.get(server.url + "/", allow_redirects=False, timeout=30).headers[
        "location"] == "/login"
    data = _pickle_running("id")
    artifact = server.upload("reviewer", "m.pkl", data).json()
    finding = server.settled(artifact["id"])["jobs"][0]["report"]["findings"][0]
    where = finding["location"]["path"] + "@" + str(finding["location"]["offset"])
    browser = _logged_in(server, "admin")
    form = {"rule": finding["rule"], "location": where, "reason": "known", "days": "3"}
    url = f"{server.url}/artifacts/{artifact['id']}/accept"
    assert browser.post(url, data=form, allow_redirects=False, timeout=30).status_code == 403
    assert browser.post(url, data={**form, "csrf": "wrong"}, allow_redirects=False,
                        timeout=30).status_code == 403
    assert server.gate(artifact["sha256"])["allowed"] is False
    token = _csrf(browser.get(f"{server.url}/artifacts/{artifact['id']}", timeout=30).text)
    assert browser.post(url, data={**form, "csrf": token}, allow_redirects=False,
                        timeout=30).status_code == 303
    assert server.gate(artifact["sha256"])["allowed"] is True
    stranger = requests.Session()  # another site's form, without the session's token
    assert stranger.post(url, data=form, allow_redirects=False, timeout=30).status_code == 303
    wrong = requests.post(server.url + "/login", data={"name": "admin", "password": "nope"},
                          allow_redirects=False, timeout=30)
    assert wrong.headers["location"] == "/login?error=1" and "set-cookie" not in wrong.headers


def test_a_data_set_is_vetted_and_a_harmful_model_is_never_loaded(server, tmp_path):
    pytest.importorskip("sklearn")
    from trojanscope.attacks.image_poison import make_trigger, poison
    from trojanscope.data.datasets import digits

    data = digits()
    bad = poison(data.x, data.y, make_trigger("blended", (8, 8)), 0.1, 1, seed=0)
    buffer = io.BytesIO()
    np.savez(buffer, x=bad.x, y=bad.y)
    artifact = server.upload("reviewer", "train.npz", buffer.getvalue()).json()
    assert [j["kind"] for j in artifact["jobs"]] == ["scan", "vet"]
    vet = server.settled(artifact["id"], timeout=300)["jobs"][1]
    assert vet["status"] == "done", vet.get("error")
    assert vet["report"]["results"]["suspected_classes"] == [1]
    assert server.gate(artifact["sha256"])["allowed"] is False
    again = server.upload("reviewer", "weights.bin", buffer.getvalue(), kind="model").json()
    assert [j["kind"] for j in again["jobs"]] == ["scan"]  # fewer checks for the same bytes
    server.settled(again["id"])
    assert server.gate(artifact["sha256"])["allowed"] is False  # every upload of them counts

    canary = tmp_path / "canary"
    model = server.upload("reviewer", "model.pt", _pickle_running(f"touch {canary}"),
                          data=("clean.npz", buffer.getvalue())).json()
    assert [j["kind"] for j in model["jobs"]] == ["scan", "inspect"]
    inspect = server.settled(model["id"])["jobs"][1]
    assert inspect["status"] == "failed" and "refused: scan found" in inspect["error"]
    assert not canary.exists()


def test_a_signature_is_verified_against_the_trusted_keys(server, tmp_path):
    pytest.importorskip("cryptography")
    from trojanscope.api import sign
    from trojanscope.provenance import keys

    folder = tmp_path / "publisher"
    folder.mkdir()
    model = folder / "weights.safetensors"
    model.write_bytes(_safetensors())
    keys.generate(folder / "k.pem", folder / "k.pub.pem")
    sign(model, folder / "k.pem")
    signature = (folder / "weights.safetensors.sig").read_bytes()
    untrusted = server.upload("reviewer", "weights.safetensors", model.read_bytes(),
                              signature=("weights.safetensors.sig", signature)).json()
    verify = server.settled(untrusted["id"])["jobs"][1]
    assert verify["kind"] == "verify" and "no trusted public key" in verify["error"]
    (server.data_dir / "trusted_keys").mkdir()
    (server.data_dir / "trusted_keys" / "publisher.pem").write_bytes(
        (folder / "k.pub.pem").read_bytes())
    good = server.upload("reviewer", "weights.safetensors", model.read_bytes(),
                         signature=("weights.safetensors.sig", signature)).json()
    verify = server.settled(good["id"])["jobs"][1]
    assert verify["status"] == "done" and verify["report"]["results"]["verified"] is True
    assert server.gate(good["sha256"])["allowed"] is True
    tampered = server.upload("reviewer", "weights.safetensors", _safetensors()[:-1] + b"\x01",
                             signature=("weights.safetensors.sig", signature)).json()
    server.settled(tampered["id"])
    assert server.gate(tampered["sha256"])["allowed"] is False


def _logged_in(server, role: str) -> requests.Session:
    password = "correct horse battery"
    server.cli("serve", "create-user", f"{role}-person", "--role", role,
               env={"TROJANSCOPE_PASSWORD": password})
    browser = requests.Session()
    answer = browser.post(server.url + "/login", data={"name": f"{role}-person",
                                                      "password": password},
                          allow_redirects=False, timeout=30)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    return browser


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_a_job_survives_its_worker_killed_and_the_queue_survives_a_restart(tmp_path, database):
    import os
    import signal
    import subprocess
    import sys

    pytest.importorskip("sklearn")
    from trojanscope.data.datasets import digits

    server = Server(tmp_path / "data", database, workers=0, lease=2.0).start()
    try:
        data = digits()
        buffer = io.BytesIO()
        np.savez(buffer, x=data.x, y=data.y)
        artifact = server.upload("reviewer", "train.npz", buffer.getvalue()).json()
        queued = [server.upload("reviewer", f"w{i}.safetensors", _safetensors()[:-1] +
                                bytes([i])).json() for i in range(10)]
        where = ["--data-dir", str(server.data_dir)] + (["--db", database] if database else [])
        worker = [sys.executable, "-m", "trojanscope", "worker", *where, "--lease", "2"]
        first = subprocess.Popen(worker, start_new_session=True)
        deadline = time.monotonic() + 120
        while server.artifact(artifact["id"])["jobs"][1]["status"] != "running":
            assert time.monotonic() < deadline, "the worker never took the vet job"
            time.sleep(0.1)
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its child, mid-job
        first.wait()
        server.stop()  # and the server, with jobs still queued
        server = Server(tmp_path / "data", database, workers=2, lease=2.0).start()
        vet = server.settled(artifact["id"], timeout=300)["jobs"][1]
        assert vet["status"] == "done" and vet["attempts"] == 2
        for each in queued:
            jobs = server.settled(each["id"], timeout=120)["jobs"]
            assert [(j["kind"], j["status"], j["attempts"]) for j in jobs] == \
                [("scan", "done", 1)]
    finally:
        server.stop()


def test_a_dead_worker_of_the_server_is_replaced(tmp_path, database):
    import os
    import signal
    import subprocess

    if database is not None:
        pytest.skip("the worker pool does not depend on the database")
    server = Server(tmp_path / "data", None, workers=1, lease=2.0).start()
    try:
        children = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True,
                                  text=True).stdout.split()
        for pid in children:  # the worker (and multiprocessing's resource tracker, if any)
            os.kill(int(pid), signal.SIGKILL)
        artifact = server.upload("reviewer", "w.safetensors", _safetensors()).json()
        assert server.settled(artifact["id"], timeout=60)["jobs"][0]["status"] == "done"
    finally:
        server.stop()


def test_credentials_can_be_taken_back_and_logins_are_limited(tmp_path, database):
    if database is not None:
        pytest.skip("the same code on either database: SQLite only")
    server = Server(tmp_path / "data", None, workers=0).start()
    try:
        browser = _logged_in(server, "reviewer")
        page = browser.get(server.url + "/upload", timeout=30)
        assert page.status_code == 200 and page.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in page.headers["content-security-policy"]
        server.cli("serve", "create-user", "reviewer-person", "--role", "reviewer",
                   env={"TROJANSCOPE_PASSWORD": "a new long passphrase"})
        assert browser.get(server.url + "/upload", allow_redirects=False,
                           timeout=30).status_code == 303  # the old session ended
        assert server.upload("reviewer", "w.safetensors", _safetensors()).status_code == 201
        assert "took back 1 token" in server.cli("serve", "revoke", "reviewer")
        assert server.upload("reviewer", "w.safetensors", _safetensors()).status_code == 401
        foreign = requests.post(server.url + "/login", data={"name": "x", "password": "y"},
                                headers={"Origin": "https://evil.example"},
                                allow_redirects=False, timeout=30)
        assert foreign.status_code == 403
        codes = [requests.post(server.url + "/login", data={"name": "x", "password": "y"},
                               allow_redirects=False, timeout=30).status_code
                 for _ in range(11)]
        assert codes[:10] == [303] * 10 and codes[10] == 429
    finally:
        server.stop()
