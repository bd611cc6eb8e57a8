"""Real servers for the platform's tests, on loopback: a PostgreSQL server from Debian's package
(initdb in a temporary folder, run as the postgres user when the tests run as root),
`trojanscope serve` itself as a child process, and a Ray cluster of two nodes."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


@contextmanager
def postgres():
    """A PostgreSQL server on a free loopback port; yields a function that makes a new,
    empty database and returns its URL."""
    import tempfile

    bin_dir = postgres_bin()
    assert bin_dir is not None
    as_root = os.geteuid() == 0
    # its own folder: pytest's are private to root, and postgres refuses to run as root
    folder = Path(tempfile.mkdtemp(prefix="trojanscope-postgres-"))
    if as_root:
        shutil.chown(folder, "postgres", "postgres")
    run = (lambda *args: subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                                        capture_output=True)) if as_root else \
        (lambda *args: subprocess.run(list(args), check=True, capture_output=True))
    data, port = folder / "data", free_port()
    run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "trojan", "-E", "UTF8")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    made = []

    def new_database() -> str:
        name = f"t{len(made)}"
        subprocess.run([str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U",
                        "trojan", "-d", "postgres", "-c", f"CREATE DATABASE {name}"],
                       check=True, capture_output=True)
        made.append(name)
        return f"postgresql://trojan@127.0.0.1:{port}/{name}"

    try:
        yield new_database
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


class Server:
    """`trojanscope serve` on a free port, with a token per role."""

    def __init__(self, data_dir: Path, db: str | None, workers: int = 1, lease: float = 3.0,
                 max_upload_mb: int = 5, ray: str | None = None):
        self.data_dir, self.db, self.workers, self.ray = data_dir, db, workers, ray
        self.lease, self.max_upload_mb = lease, max_upload_mb
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tokens = {role: self.cli("serve", "create-token", "--role", role).strip()
                       for role in ("viewer", "reviewer", "admin")}
        self.process = None

    def cli(self, *args: str, stdin: str | None = None, env: dict | None = None) -> str:
        where = ["--data-dir", str(self.data_dir)] + (["--db", self.db] if self.db else [])
        done = subprocess.run([sys.executable, "-m", "trojanscope", *args, *where],
                              capture_output=True, text=True, input=stdin, timeout=120,
                              env={**os.environ, **(env or {})})
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self) -> Server:
        where = ["--data-dir", str(self.data_dir)] + (["--db", self.db] if self.db else [])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trojanscope", "serve", *where, "--port", str(self.port),
             "--workers", str(self.workers), "--lease", str(self.lease), "--max-upload",
             str(self.max_upload_mb), *(["--ray", self.ray] if self.ray else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + "/login", timeout=1)
                return self
            except (requests.ConnectionError, requests.Timeout):
                if self.process.poll() is not None:
                    raise RuntimeError(self.process.stderr.read().decode()) from None
                time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def headers(self, role: str) -> dict:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def upload(self, role: str, name: str, content: bytes, **extra) -> requests.Response:
        """POST the file `content` as `name`; `signature` and `data` (name, bytes) go as files,
        anything else as form fields."""
        files = {"file": (name, content)}
        for field in ("signature", "data"):
            if field in extra:
                files[field] = extra.pop(field)
        return requests.post(self.url + "/api/v1/artifacts", headers=self.headers(role),
                             files=files, data=extra, timeout=60)

    def artifact(self, artifact_id: int, role: str = "viewer") -> dict:
        answer = requests.get(f"{self.url}/api/v1/artifacts/{artifact_id}",
                              headers=self.headers(role), timeout=30)
        answer.raise_for_status()
        return answer.json()

    def settled(self, artifact_id: int, timeout: float = 120) -> dict:
        """The artifact once none of its jobs is queued or running."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.artifact(artifact_id)
            if all(j["status"] in ("done", "failed") for j in found["jobs"]):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs did not finish: {found['jobs']}")
            time.sleep(0.2)

    def gate(self, sha256: str) -> dict:
        return requests.get(f"{self.url}/api/v1/gate/{sha256}", headers=self.headers("viewer"),
                            timeout=30).json()


RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


@contextmanager
def ray_cluster(nodes: int = 2, cpus: int = 1):
    """A Ray cluster on this machine started as an operator starts one (`ray start --head`
    on a chosen loopback port, then `ray start --address` for each further node), with token
    authentication (Ray's default for a head); yields its address. The token is in
    os.environ while the cluster runs, for the tests' drivers and their child processes."""
    import secrets

    ray = str(Path(sys.executable).parent / "ray")
    port = free_port()
    address = f"127.0.0.1:{port}"
    saved = {key: os.environ.get(key) for key in (*RAY_ENV, "RAY_AUTH_TOKEN")}
    os.environ.update(RAY_ENV, RAY_AUTH_TOKEN=secrets.token_hex(32))
    common = [f"--num-cpus={cpus}", "--disable-usage-stats"]
    try:
        subprocess.run([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                        "--include-dashboard=false", *common], check=True, capture_output=True)
        for _ in range(nodes - 1):
            subprocess.run([ray, "start", f"--address={address}", *common], check=True,
                           capture_output=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # every node has joined
            status = subprocess.run([ray, "status", f"--address={address}"],
                                    capture_output=True, text=True).stdout
            if status.count(" node_") >= nodes:
                break
            time.sleep(1)
        yield address
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
