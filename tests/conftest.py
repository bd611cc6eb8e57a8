from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"


def pytest_addoption(parser):
    parser.addoption("--update-goldens", action="store_true",
                     help="rewrite the golden files in tests/golden from the current output")


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory):
    """The tests' cache (reference proxies, CIFAR arrays) is theirs, not the user's."""
    import os

    os.environ["TROJANSCOPE_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def update_goldens(request) -> bool:
    return request.config.getoption("--update-goldens")


def pytest_collection_modifyitems(config, items):
    missing = {name for name in ("torch", "sklearn", "joblib", "numpy", "keras", "onnx",
                                 "onnxruntime")
               if importlib.util.find_spec(name) is None}
    for item in items:
        for name in missing:
            if name in item.keywords:
                item.add_marker(pytest.mark.skip(reason=f"needs the optional package {name}"))


@pytest.fixture
def write(tmp_path):
    """Write bytes to a file under tmp_path and return its path."""
    def _write(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path
    return _write


@pytest.fixture
def jobs_in_process(monkeypatch):
    """The model commands' jobs run in this process (so that a test may patch the library),
    still answering through JSON as the child process does. tests/test_ml.py runs the real
    child process."""
    import json

    import trojanscope.jobs as jobs

    def run(name, payload, progress=False, **limits):
        try:
            return json.loads(json.dumps(jobs.JOBS[name](payload), default=str))
        except ValueError as exc:
            raise jobs.JobError(str(exc)) from None
    monkeypatch.setattr(jobs, "run_in_child", run)
