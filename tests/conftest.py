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


# Optional packages and the extra that brings each (pyproject.toml).
EXTRAS = {"numpy": "vet", "scipy": "vet", "sklearn": "vet", "mlxtend": "vet", "torch": "torch",
          "safetensors": "torch", "cryptography": "sign", "onnx": "onnx",
          "onnxruntime": "all", "h5py": "hdf5", "transformers": "huggingface",
          "sentence_transformers": "text", "PIL": "images", "jsonschema": "test",
          "joblib": "test", "keras": "test", "gguf": "test", "model_signing": "test",
          "cyclonedx": "test", "tflite": "test", "fastapi": "serve", "sqlalchemy": "serve",
          "uvicorn": "serve", "alembic": "serve", "argon2": "serve", "requests": "test",
          "pydantic": "test", "ray": "ray"}


class _ModuleNeedingExtras(pytest.Module):
    """A test module that imports an optional package which is not installed is skipped,
    naming the extra, instead of failing to collect: a plain install runs what it can."""

    def _getobj(self):
        try:
            return super()._getobj()
        except pytest.Collector.CollectError as exc:
            missing = getattr(exc.__cause__, "name", None) or ""
            top = missing.split(".")[0]
            if isinstance(exc.__cause__, ModuleNotFoundError) and top in EXTRAS:
                pytest.skip(f"needs {top}: pip install \"trojanscope[{EXTRAS[top]}]\"",
                            allow_module_level=True)
            raise


def pytest_pycollect_makemodule(module_path, parent):
    if module_path.name.startswith("test_"):
        return _ModuleNeedingExtras.from_parent(parent, path=module_path)
    return None


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
