"""Files written by the real libraries pass: no finding at or above the default threshold."""

from __future__ import annotations

import pickle

import pytest

from trojanscope.artifacts import scan
from trojanscope.findings import Severity


def _quiet(report, allowed=()):
    loud = [(f.rule, str(f.severity), f.message, str(f.location)) for f in report.findings
            if f.rule not in allowed]
    assert not loud, loud
    assert report.exit_code() == 0


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory):
    torch = pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.norm = torch.nn.BatchNorm2d(4)
            self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2),
                                            torch.nn.ReLU(), torch.nn.Dropout(0.1))

        def forward(self, x):
            return self.head(self.norm(self.conv(x)))

    # torch.save(module) pickles the class by reference: make it findable at module level.
    Net.__qualname__ = "Net"
    globals()["Net"] = Net

    torch.manual_seed(0)
    net = Net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.zeros(2, 1, 3, 3)).sum().backward()
    optimizer.step()
    files = {
        "state_dict.pt": net.state_dict(),
        "checkpoint.pth": {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                           "epoch": 3, "rng": torch.get_rng_state(), "loss": 0.25},
        "half.bin": {k: v.half() for k, v in net.state_dict().items()},
        "ints.pt": {"ids": torch.arange(10), "mask": torch.ones(3, dtype=torch.bool)},
    }
    for name, obj in files.items():
        torch.save(obj, folder / name)
    torch.save(net.state_dict(), folder / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(net, folder / "full_module.pt")
    torch.jit.save(torch.jit.script(net), str(folder / "scripted.pt"))
    (folder / "tensor_pickled.pkl").write_bytes(pickle.dumps(torch.ones(3)))
    return folder


@pytest.mark.torch
def test_torch_state_dicts_and_checkpoints_pass(torch_files):
    for name in ("state_dict.pt", "checkpoint.pth", "half.bin", "ints.pt", "legacy.pt"):
        _quiet(scan(torch_files / name))


@pytest.mark.torch
def test_torchscript_archives_pass(torch_files):
    """torch.jit.save's pickles call torch.jit._pickle's list builders (torch.jit is critical)
    and name __torch__ classes: neither is a finding."""
    report = scan(torch_files / "scripted.pt")
    _quiet(report)
    assert report.results["files"][0]["formats"] == ["pickle", "zip"]


@pytest.mark.torch
def test_full_module_names_the_user_class_at_high(torch_files):
    """torch.save(model) pickles the user's class: loading it imports that code, which
    torch.load's default (weights_only) refuses, and so does scan."""
    report = scan(torch_files / "full_module.pt")
    assert report.exit_code() == 1
    unknown = [f for f in report.findings if f.severity >= Severity.LOW]
    assert [(f.rule, f.evidence["module"]) for f in unknown] == \
        [("pickle.unknown-global", "test_real_files")]
    assert "test_real_files" in unknown[0].message


@pytest.mark.torch
def test_pickled_tensor_nested_storage_is_scanned_and_clean(torch_files):
    report = scan(torch_files / "tensor_pickled.pkl")
    _quiet(report, allowed={"pickle.nested"})
    assert any(f.rule == "pickle.nested" for f in report.findings)


@pytest.mark.torch
def test_legacy_format_reads_only_its_pickles(torch_files):
    """The raw storage bytes after the five pickles are not mistaken for pickles."""
    report = scan(torch_files / "legacy.pt")
    assert report.results["files"][0]["formats"] == ["pickle"]
    _quiet(report)


@pytest.mark.sklearn
@pytest.mark.joblib
@pytest.mark.numpy
@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)])
def test_joblib_sklearn_pipelines_pass(tmp_path, compress):
    import joblib
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), np.arange(60) % 2
    from sklearn.neighbors import KNeighborsClassifier

    models = {"pipe": make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
              "forest": RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y),
              # KD and ball trees pickle through their own helper, newObj
              "kd-tree": KNeighborsClassifier(algorithm="kd_tree").fit(x, y),
              "ball-tree": KNeighborsClassifier(algorithm="ball_tree").fit(x, y),
              # NumPy 2 pickles a ufunc by its name
              "ufuncs": make_pipeline(FunctionTransformer(np.log1p), FunctionTransformer(np.abs),
                                      LogisticRegression()).fit(np.abs(x), y)}
    for name, model in models.items():
        path = tmp_path / f"{name}.joblib"
        joblib.dump(model, path, compress=compress)
        _quiet(scan(path))


@pytest.mark.numpy
def test_numpy_files_pass(tmp_path):
    import numpy as np

    np.save(tmp_path / "a.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    np.save(tmp_path / "s.npy", np.zeros(2, dtype=[("x", "<i4"), ("y", "<f8")]))
    np.savez(tmp_path / "b.npz", w=np.eye(3), b=np.ones(3))
    np.savez_compressed(tmp_path / "c.npz", w=np.eye(3))
    (tmp_path / "rng.pkl").write_bytes(pickle.dumps({
        "legacy": np.random.RandomState(0), "gen": np.random.default_rng(0),
        "array": np.arange(3), "scalar": np.float64(1.5)}))
    (tmp_path / "proto2.pkl").write_bytes(pickle.dumps(np.arange(3), protocol=2))
    _quiet(scan(tmp_path))


@pytest.mark.numpy
def test_numpy_object_array_is_medium_only(tmp_path):
    import numpy as np

    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    report = scan(tmp_path / "obj.npy")
    assert [f.rule for f in report.findings] == ["numpy.object-array"]
    assert report.exit_code() == 0
