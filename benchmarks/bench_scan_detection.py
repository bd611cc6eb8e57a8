"""Detection on a corpus of harmful files (every payload in every container) and harmless files
written by real libraries, for trojanscope, picklescan and modelscan side by side.

A harmful file counts as caught when the tool's exit code says "issues found"; a harmless file
counts as a false alarm the same way. Files carry the extension their format usually has, so the
anchors (which choose scanners by extension) get their best chance.
Run: python benchmarks/bench_scan_detection.py [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anchors

from trojanscope.attacks import model_files as mf
from trojanscope.attacks.payload_files import GENERATORS
from trojanscope.attacks.pickle_payloads import PAYLOADS

CONTAINERS = {
    "raw pickle (.pkl)": (".pkl", lambda p: p),
    "torch zip (.pt)": (".pt", mf.torch_zip),
    "torch zip, odd member (.pt)": (".pt", lambda p: mf.torch_zip(p, "archive/data/0")),
    "legacy torch, 4th pickle (.bin)": (".bin", lambda p: mf.torch_legacy(p, at=3)),
    "legacy torch tar (.tar)": (".tar", lambda p: mf.torch_legacy_tar(p, "tensors")),
    "numpy object array (.npy)": (".npy", mf.npy_object),
    "joblib zlib (.joblib)": (".joblib", mf.WRAPPERS["zlib"]),
    "gzip (.pkl.gz)": (".pkl.gz", mf.WRAPPERS["gzip"]),
    "zip in zip (.zip)": (".zip", mf.WRAPPERS["zip-in-zip"]),
    "7z (.7z)": (".7z", mf.WRAPPERS["7z"]),
}
TOOLS = ("trojanscope", "picklescan", "modelscan")
# One harmful file per generator, under the name its format usually has.
GENERATOR_FILES = {
    "pickle": "model.pkl", "torch": "model.pt", "torch-legacy": "model.bin",
    "joblib": "model.joblib", "numpy": "array.npy", "keras-lambda": "model.keras",
    "keras-module": "model.keras", "keras-h5": "model.h5", "onnx-external": "model.onnx",
    "onnx-shadow": "model.onnx", "savedmodel": "saved_model.pb", "gguf": "model.gguf",
    "safetensors": "model.safetensors", "tokenizer-config": "tokenizer_config.json",
}


def harmless_files(folder: Path) -> list[Path]:
    """Real files from torch, joblib/scikit-learn and NumPy, where those are installed."""
    try:
        import torch

        net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4),
                                  torch.nn.Flatten(), torch.nn.Linear(4, 2))
        torch.save(net.state_dict(), folder / "state_dict.pt")
        torch.save(net.state_dict(), folder / "legacy.pt", _use_new_zipfile_serialization=False)
        torch.save({"model": net.state_dict(), "opt": torch.optim.Adam(net.parameters())
                    .state_dict(), "epoch": 1}, folder / "checkpoint.pth")
        torch.save(net, folder / "full_module.pt")
        torch.onnx.export(net.eval(), (torch.rand(1, 1, 3, 3),), str(folder / "export.onnx"),
                          dynamo=False)
    except ImportError:
        pass
    try:
        import os

        os.environ.setdefault("KERAS_BACKEND", "torch")
        import keras

        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="relu")])
        model.save(folder / "model.keras")
        model.save(folder / "model.h5")
    except ImportError:
        pass
    try:
        import gguf
        import numpy as np
        from safetensors.numpy import save_file

        save_file({"w": np.ones((2, 2), np.float32)}, folder / "model.safetensors")
        writer = gguf.GGUFWriter(str(folder / "model.gguf"), "llama")
        writer.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
        writer.add_tensor("w", np.ones(4, np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    except ImportError:
        pass
    try:
        import joblib
        import numpy as np
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 2
        joblib.dump(make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
                    folder / "pipeline.joblib")
        joblib.dump(RandomForestClassifier(n_estimators=2).fit(x, y), folder / "forest.joblib",
                    compress=3)
        np.save(folder / "weights.npy", np.arange(10.0))
        np.savez(folder / "arrays.npz", a=np.eye(3), b=np.ones(2))
        (folder / "plain.pkl").write_bytes(mf.harmless_pickle())
    except ImportError:
        pass
    return sorted(p for p in folder.iterdir() if p.is_file())


def verdict(tool: str, path: Path) -> bool | None:
    cmd = anchors.command(tool, path)
    if cmd is None:
        return None
    code, _, output = anchors.run(cmd, timeout=120)
    return anchors.flagged(tool, code, output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, help="keep the corpus here")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="trojanscope-corpus-"))
    (folder / "harmful").mkdir(parents=True, exist_ok=True)
    (folder / "harmless").mkdir(exist_ok=True)
    harmful = []
    for cname, (ext, wrap) in CONTAINERS.items():
        for pname, make in PAYLOADS.items():
            path = folder / "harmful" / f"{pname}--{len(harmful):03d}{ext}"
            path.write_bytes(wrap(make("touch /tmp/trojanscope-corpus-canary")))
            harmful.append((cname, pname, path))
    for name, filename in GENERATOR_FILES.items():
        path = folder / "formats" / name / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.write_bytes(GENERATORS[name]("touch /tmp/trojanscope-corpus-canary"))
        except ImportError:
            path.parent.rmdir()
    formats = sorted((folder / "formats").glob("*/*"))
    harmless = harmless_files(folder / "harmless")
    tools = [t for t in TOOLS if anchors.command(t, folder) is not None]
    jobs = [(t, p) for t in tools for p in [h[2] for h in harmful] + harmless + formats]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(jobs, pool.map(lambda job: verdict(*job), jobs)))

    print(f"corpus: {len(harmful)} harmful files ({len(PAYLOADS)} payloads x {len(CONTAINERS)} "
          f"containers), {len(harmless)} harmless files; in {folder}")
    versions = {t: ("dev" if t == "trojanscope" else anchors.version(t)) for t in tools}
    print("\ncaught / harmful files (errors in brackets):")
    print(f"{'container':34s} " + " ".join(f"{t + ' ' + versions[t]:>20s}" for t in tools))
    totals = defaultdict(lambda: [0, 0])
    for cname in CONTAINERS:
        cells = []
        for tool in tools:
            got = [results[(tool, p)] for c, _, p in harmful if c == cname]
            caught, errors = sum(g is True for g in got), sum(g is None for g in got)
            totals[tool][0] += caught
            totals[tool][1] += errors
            cells.append(f"{caught}/{len(got)}" + (f" [{errors}]" if errors else ""))
        print(f"{cname:34s} " + " ".join(f"{c:>20s}" for c in cells))
    print(f"{'all':34s} " + " ".join(
        f"{f'{totals[t][0]}/{len(harmful)} ({totals[t][0] / len(harmful):.0%})':>20s}"
        for t in tools))
    print("\nother formats, one harmful file each (yes / no / error):")
    print(f"{'generator':18s} " + " ".join(f"{t:>12s}" for t in tools))
    for path in formats:
        marks = [{True: "yes", False: "no", None: "error"}[results[(t, path)]] for t in tools]
        print(f"{path.parent.name:18s} " + " ".join(f"{m:>12s}" for m in marks))
    print("\nfalse alarms on harmless files (exit code 'issues found'):")
    for tool in tools:
        alarms = [p.name for p in harmless if results[(tool, p)] is True]
        errors = [p.name for p in harmless if results[(tool, p)] is None]
        print(f"  {tool:12s} {len(alarms)}/{len(harmless)} {alarms}"
              + (f"  errors: {errors}" if errors else ""))
    print(f"\ncaught per payload, out of {len(CONTAINERS)} containers:")
    print(f"{'payload':24s} " + " ".join(f"{t:>12s}" for t in tools))
    for pname in PAYLOADS:
        counts = [sum(results[(t, p)] is True for _, n, p in harmful if n == pname) for t in tools]
        print(f"{pname:24s} " + " ".join(f"{c:>12d}" for c in counts))


if __name__ == "__main__":
    main()
