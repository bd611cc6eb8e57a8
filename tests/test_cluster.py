"""scan past one machine: on a real Ray cluster of two nodes (`ray start` on loopback, token
authentication), and the result cache keyed by content. A scan on Ray, from the cache or both
gives the report a single-process scan gives; a worker killed mid-scan loses no file; an
unchanged file is not scanned again, and a changed one always is."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from servers import ray_cluster

from trojanscope.artifacts import GlobalsPolicy
from trojanscope.artifacts import scan as scan_here
from trojanscope.attacks import pickle_payloads as pp
from trojanscope.attacks.mirror import build_mirror
from trojanscope.cluster import ResultCache, scan
from trojanscope.cluster.ray_scan import MAX_TRIES, _after_failure
from trojanscope.cluster.scan import batches
from trojanscope.findings import Severity
from trojanscope.render.json import report_to_dict

pytest.importorskip("sqlalchemy")
DATA = Path(__file__).parent / "data"


def same(report) -> dict:
    """The report without what differs run to run (times)."""
    found = report_to_dict(report)
    found.pop("timings")
    for entry in found["results"]["files"]:
        entry.pop("seconds")
    return found


@pytest.fixture
def mirror(tmp_path) -> Path:
    """A small hub: harmless files of every kind, harmful ones of every payload format, and
    the tests' own sample files."""
    folder = tmp_path / "mirror"
    build_mirror(folder, 60, seed=3, harmful_share=0.3)
    shutil.copytree(DATA, folder / "samples")
    return folder


@pytest.fixture(scope="module")
def cluster():
    import importlib.util

    if importlib.util.find_spec("ray") is None:  # not imported: Ray reads its settings then
        pytest.skip('needs Ray: pip install "trojanscope[ray]"')
    with ray_cluster(nodes=2) as address:
        yield address


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trojanscope", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


# --- on a Ray cluster --------------------------------------------------------------------


def test_scan_on_ray_reports_what_one_process_reports(cluster, mirror):
    # a relative path: the workers' working folder is not this one
    alone, on_ray = cli("scan", "mirror", "-f", "json", cwd=mirror.parent), \
        cli("scan", "mirror", "--ray", cluster, "-f", "json", cwd=mirror.parent)
    assert on_ray.returncode == alone.returncode == 1, on_ray.stderr
    found, expected = json.loads(on_ray.stdout), json.loads(alone.stdout)
    for report in (found, expected):
        report.pop("timings")
        for entry in report["results"]["files"]:
            entry.pop("seconds")
    assert found == expected
    assert {f["severity"] for f in found["findings"]} >= {"critical", "high"}
    assert found["results"]["files_scanned"] == len(list(p for p in mirror.rglob("*")
                                                         if p.is_file()))


def test_a_worker_killed_during_the_scan_loses_no_file(cluster, mirror):
    for i in range(4):  # files that take a second each: a task is sure to be running
        (mirror / f"heavy-{i}.pkl").write_bytes(pickle.dumps(list(range(1_000_000 + i)), 2))
    killed = []

    def kill_one_task():
        import psutil

        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for process in psutil.process_iter(["cmdline"]):
                if "ray::_scan_task" in " ".join(process.info["cmdline"] or ()):
                    os.kill(process.pid, signal.SIGKILL)
                    killed.append(process.pid)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_task)
    killer.start()
    stats = {}
    try:
        report = scan(mirror, ray=cluster, stats=stats)
    finally:
        killer.join()
    assert killed and stats["failed"] >= 1, stats
    assert same(report) == same(scan_here(mirror))
    assert not report.errors


def test_the_cache_skips_unchanged_files_on_ray(cluster, mirror, tmp_path):
    cache = str(tmp_path / "results.sqlite")
    first = {}
    scan(mirror, ray=cluster, cache=cache, stats=first)
    files = first["files"]
    changed = next(mirror.rglob("*-pickle.pkl"))
    changed.write_bytes(pp.posix_system("id"))  # harmless before, harmful now
    shutil.copy(next(mirror.rglob("*-torch.bin")), mirror / "copy-of-harmful.bin")
    second = {}
    report = scan(mirror, ray=cluster, cache=cache, stats=second)
    assert second["files"] == files + 1
    assert second["cached"] == files  # all but the changed file; the copy by its bytes
    assert second["tasks"] >= 1  # the changed file and the copy were sent to Ray
    assert same(report) == same(scan_here(mirror))
    assert any(f.location.path == str(changed) and f.severity >= Severity.HIGH
               for f in report.findings)
    assert any(f.location.path == str(mirror / "copy-of-harmful.bin")
               for f in report.findings)
    time.sleep(2.1)  # stamps are kept only of files that changed over 2 s before
    stamped = {}
    scan(mirror, ray=cluster, cache=cache, stats=stamped, trust_stamps=True)
    assert stamped["cached"] == files + 1 and stamped["tasks"] >= 1  # hashed on Ray, stamped
    third = {}
    assert same(scan(mirror, ray=cluster, cache=cache, stats=third, trust_stamps=True)) \
        == same(report)
    assert third["cached"] == files + 1 and "tasks" not in third  # Ray not even joined


def test_serve_runs_vet_on_ray_and_scans_from_the_shared_cache(cluster, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("sklearn")
    import io

    import numpy as np
    from servers import Server

    from trojanscope.attacks.image_poison import make_trigger, poison
    from trojanscope.data.datasets import digits

    data = digits()
    bad = poison(data.x, data.y, make_trigger("blended", (8, 8)), 0.1, 1, seed=0)
    buffer = io.BytesIO()
    np.savez(buffer, x=bad.x, y=bad.y)
    harmful = pp.posix_system("id")
    db = f"sqlite:///{tmp_path / 'platform.db'}"
    folder = tmp_path / "hub"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(harmful)
    stats = {}
    scan(folder, cache=db, stats=stats)  # a mirror scan, keeping its results in the platform
    import sqlite3

    with sqlite3.connect(tmp_path / "platform.db") as kept:  # marked, to be known again
        [(row,)] = kept.execute("SELECT result FROM scan_results").fetchall()
        row = json.loads(row)
        row["findings"][0]["message"] = "kept by the mirror scan"
        kept.execute("UPDATE scan_results SET result = ?", (json.dumps(row),))
    server = Server(tmp_path / "data", db, ray=cluster).start()
    try:
        artifact = server.upload("reviewer", "train.npz", buffer.getvalue()).json()
        model = server.upload("reviewer", "uploaded.pkl", harmful).json()
        vet = server.settled(artifact["id"], timeout=300)["jobs"][1]
        assert vet["status"] == "done", vet.get("error")
        assert vet["report"]["results"]["suspected_classes"] == [1]
        scanned = server.settled(model["id"])["jobs"][0]["report"]
        assert [f["location"]["path"] for f in scanned["findings"]] == ["uploaded.pkl"]
        assert scanned["findings"][0]["message"] == "kept by the mirror scan"
    finally:
        server.stop()
    log = server.process.stderr.read().decode()
    assert re.search(rf"job {vet['id']} \(vet\) ran on Ray node [0-9a-f]{{12}}", log), log
    assert "scan) ran on Ray" not in log


# --- the cache, in one process -----------------------------------------------------------


@pytest.mark.parametrize("wait", [0, 2.5], ids=["within-a-tick", "later"])
def test_a_file_rewritten_with_its_old_size_and_time_is_scanned_again(tmp_path, wait):
    harmful = pp.proto(2) + pp.global_("posix", "system") + pp.STOP
    harmless = next(data for n in range(40) if len(
        data := pp.proto(2) + pp.unicode("x" * n) + pp.STOP) == len(harmful))
    path = tmp_path / "model.pkl"
    path.write_bytes(harmless)
    cache = str(tmp_path / "cache.sqlite")
    before = os.stat(path)
    time.sleep(wait)  # 0: rewritten at once, maybe within the file system's clock tick
    assert not scan(path, cache=cache, trust_stamps=True).findings
    path.write_bytes(harmful)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the old modification time
    stats = {}
    report = scan(path, cache=cache, stats=stats, trust_stamps=True)
    assert stats["cached"] == 0
    assert report.findings and report.findings[0].rule.startswith("pickle.")


def test_a_file_changed_through_a_memory_map_is_scanned_again(tmp_path):
    """A write through a shared memory map may leave every time as it was: without
    --trust-stamps every file is hashed, so the change is seen."""
    import mmap

    harmful = pp.proto(2) + pp.global_("posix", "system") + pp.STOP
    harmless = next(data for n in range(40) if len(
        data := pp.proto(2) + pp.unicode("x" * n) + pp.STOP) == len(harmful))
    path, cache = tmp_path / "model.pkl", str(tmp_path / "cache.sqlite")
    path.write_bytes(harmless)
    time.sleep(2.1)  # settled: a stamp would be kept
    with open(path, "r+b") as handle, mmap.mmap(handle.fileno(), 0) as shared:
        shared[0:1] = harmless[0:1]  # the page is dirty and writable from here on
        assert not scan(path, cache=cache).findings
        before = os.stat(path)
        shared[:] = harmful
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    report = scan(path, cache=cache)
    assert report.max_severity == Severity.CRITICAL


def test_the_cache_reads_only_regular_files_and_only_their_size(tmp_path):
    """A link to a file that never ends (/proc) is scanned as it is, and not hashed."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "weights.bin").symlink_to("/proc/self/pagemap")
    (folder / "model.pkl").write_bytes(pp.posix_system("id"))
    done = cli("scan", str(folder), "--cache", str(tmp_path / "c.sqlite"), "-f", "json")
    assert done.returncode == 1, done.stderr
    assert [f["rule"] for f in json.loads(done.stdout)["findings"]
            if "model.pkl" in f["location"]["path"]][0].startswith("pickle.")


def test_a_cached_result_is_only_reused_under_the_same_policy(tmp_path, write):
    path = write("m.pkl", pp.global_("collections", "OrderedDict") + b")R" + pp.STOP)
    allow = write("allow.toml", b'[allow]\n"collections" = ["OrderedDict"]\n')
    cache = str(tmp_path / "cache.sqlite")
    stats = {}
    scan(path, cache=cache, stats=stats)
    scan(path, cache=cache, stats=stats)
    assert stats["cached"] == 1
    scan(path, cache=cache, stats=stats, policy=GlobalsPolicy.default().extended(allow))
    assert stats["cached"] == 0


def test_a_damaged_cache_row_means_a_new_scan_not_a_failure(tmp_path, mirror):
    cache = tmp_path / "cache.sqlite"
    scan(mirror, cache=str(cache))
    import sqlite3

    with sqlite3.connect(cache) as db:
        db.execute("UPDATE scan_results SET result = '{\"path\": 1}'")
    stats = {}
    report = scan(mirror, cache=str(cache), stats=stats)
    assert stats["cached"] == 0
    assert same(report) == same(scan_here(mirror))


def test_cache_and_ray_options_on_the_command_line(tmp_path, mirror):
    cache = str(tmp_path / "c.sqlite")
    first, second = (cli("scan", str(mirror), "--cache", cache, "-f", "json") for _ in range(2))
    assert first.returncode == second.returncode == 1
    assert json.loads(first.stdout)["findings"] == json.loads(second.stdout)["findings"]
    bad = cli("scan", str(mirror), "--cache", "postgresql://nobody@127.0.0.1:1/none")
    assert bad.returncode == 2 and bad.stderr.startswith("error: postgresql://nobody@")
    assert "Traceback" not in bad.stderr
    nobody = cli("scan", str(mirror), "--ray", "127.0.0.1:1")
    assert nobody.returncode == 2 and "no Ray cluster answers" in nobody.stderr
    alone = cli("scan", str(mirror), "--workers", "2")
    assert alone.returncode == 2 and "--workers is for a Ray started here" in alone.stderr


def test_the_cache_can_live_in_the_platforms_postgresql(tmp_path, mirror):
    from servers import postgres, postgres_bin

    if postgres_bin() is None:
        pytest.skip("needs PostgreSQL's server: apt-get install postgresql")
    pytest.importorskip("psycopg")
    deep = mirror.joinpath(*["d" * 200] * 6)  # a path longer than an index takes
    deep.mkdir(parents=True)
    (deep / "evil.pkl").write_bytes(pp.posix_system("id"))
    (mirror / os.fsdecode(b"odd-\xff.pkl")).write_bytes(pp.posix_system("id"))  # not UTF-8
    time.sleep(2.1)
    with postgres() as new_database:
        url = new_database()
        stats = {}
        scan(mirror, cache=url, stats=stats, trust_stamps=True)
        report = scan(mirror, cache=url, stats=stats, trust_stamps=True)
        assert stats["cached"] == stats["files"]
        assert same(report) == same(scan_here(mirror))
        assert ResultCache(url).url == url


def test_writers_racing_on_the_same_result_do_not_fail(tmp_path):
    from trojanscope.artifacts.scanner import FileScan

    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    caches = [ResultCache(url) for _ in range(4)]
    failures = []

    def keep(cache, i):
        try:
            for n in range(30):
                cache.put_many("k", {f"{n:064x}": FileScan("x")})
                cache.put_digests({str(tmp_path / f"f{n}"): ("1:2:3:4:5", f"{n:064x}")})
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            failures.append(exc)

    threads = [threading.Thread(target=keep, args=(c, i)) for i, c in enumerate(caches)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert len(caches[0].get_many("k", [f"{n:064x}" for n in range(30)])) == 30


# --- how work is cut and retried ---------------------------------------------------------


def test_batches_balance_bytes_and_keep_the_order(tmp_path):
    paths = []
    for i, size in enumerate([10 << 20] + [1 << 10] * 300):
        path = tmp_path / f"{i:04d}"
        path.write_bytes(b"\0" * size)
        paths.append(str(path))
    cut = batches(paths, 8)
    assert [p for batch in cut for p in batch] == paths
    assert cut[0] == paths[:1]  # the big file alone
    assert max(len(batch) for batch in cut) <= 256
    assert 4 <= len(cut) <= 12


def test_a_file_that_kills_its_worker_is_cornered_then_reported():
    from collections import deque

    waiting = deque()
    assert not list(_after_failure(["a", "b", "c", "d"], 1, RuntimeError(), waiting))
    assert list(waiting) == [(["a", "b"], 1), (["c", "d"], 1)]
    waiting.clear()
    assert not list(_after_failure(["c"], 1, RuntimeError(), waiting))
    assert list(waiting) == [(["c"], 2)]
    [result] = _after_failure(["c"], MAX_TRIES, RuntimeError(), deque())
    assert result.path == "c" and [f.rule for f in result.findings] == ["scan.crashed"]
    assert result.findings[0].severity >= Severity.HIGH  # the file fails the gate


# --- vet on a data set too large to hold ---------------------------------------------------


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Colour images in a subfolder per class (digits, upsampled and tinted per class)."""
    pytest.importorskip("PIL")
    import numpy as np
    from PIL import Image

    from trojanscope.data.datasets import digits

    data = digits()
    folder = tmp_path / "images"
    for i in range(120):
        image = np.repeat(data.x[i, 0][:, :, None], 3, axis=2) * [1.0, 0.6 + 0.04 * data.y[i],
                                                                  0.8]
        (folder / f"class{data.y[i]}").mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255).astype(np.uint8)).resize((32, 32)).save(
            folder / f"class{data.y[i]}" / f"{i:04d}.png")
    return folder


def test_vet_on_ray_streams_shards_and_reads_as_one_process_would(cluster, image_folder):
    pytest.importorskip("efficientnet_lite_pytorch")
    import numpy as np

    from trojanscope.cluster.ray_scan import connected
    from trojanscope.cluster.ray_vet import _encode_shard, _features, shards, vet_at_scale

    parts, names = shards(image_folder, size=30)
    assert len(parts) == 4 and names == [f"class{c}" for c in range(10)]
    with connected(cluster) as ray:
        rows = dict(_features(ray, parts))
    whole = _encode_shard(type(parts[0])(sum((p.paths for p in parts), ()),
                                         sum((p.labels for p in parts), ())))
    features = np.concatenate([rows[i][0] for i in range(len(parts))])
    assert np.allclose(features, whole[0], atol=1e-4)
    assert (np.concatenate([rows[i][1] for i in range(len(parts))]) == whole[1]).all()
    report = vet_at_scale(image_folder, ray=cluster, shard_images=30)
    assert report.results.samples == 120 and report.results.detector == "spectre"
    assert report.config["shards"] == 4


def test_vet_on_ray_names_an_unreadable_image(cluster, image_folder):
    pytest.importorskip("efficientnet_lite_pytorch")
    broken = image_folder / "class3" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    done = cli("vet", str(image_folder), "--ray", cluster)
    assert done.returncode == 2, done.stderr
    assert f"{broken}: cannot read the image" in done.stderr and "Traceback" not in done.stderr


def test_vet_on_ray_refuses_a_folder_of_both_kinds_and_names_a_hostile_image(image_folder):
    import struct
    import zlib

    import numpy as np

    from trojanscope.cluster.ray_vet import Shard, VetDataError, _read, shards
    from trojanscope.data.datasets import DataError

    np.savez(image_folder / "decoy.NPZ", x=np.zeros((4, 3, 8, 8)), y=np.arange(4))
    with pytest.raises(VetDataError, match="both .npz shards"):
        shards(image_folder)
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)  # 400 megapixels
    chunk = b"IHDR" + header
    bomb = image_folder / "class1" / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk +
                     struct.pack(">I", zlib.crc32(chunk)))
    with pytest.raises(DataError, match=f"{bomb}: cannot read the image"):
        _read(Shard((str(bomb),), (1,)), 32)


def test_vet_on_ray_reads_a_relative_folder_as_the_caller_sees_it(cluster, image_folder):
    """The workers work in another folder: they must get the caller's files."""
    pytest.importorskip("efficientnet_lite_pytorch")
    done = cli("vet", image_folder.name, "--ray", cluster, "-f", "json",
               cwd=image_folder.parent)
    assert done.returncode in (0, 1), done.stderr
    assert json.loads(done.stdout)["results"]["samples"] == 120


def test_a_name_swapped_for_a_named_pipe_is_refused_not_waited_on(tmp_path):
    from trojanscope.artifacts.scanner import open_regular

    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OSError, match="not a regular file"):
        open_regular(tmp_path / "pipe")
    stats = {}
    (tmp_path / "m.pkl").write_bytes(pp.posix_system("id"))
    report = scan(tmp_path / "m.pkl", cache=str(tmp_path / "c.sqlite"), stats=stats)
    assert report.max_severity == Severity.CRITICAL
