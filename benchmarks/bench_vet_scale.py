"""vet at scale: `vet_at_scale` (Ray tasks make the encoder's features) on CIFAR-10's 50,000
training images, poisoned on disk, with the memory the driver and the Ray workers take.

What is measured:
- data: the training split of the JPEG copy of CIFAR-10 (../shared/datasets/cifar10-jpg.tar.gz,
  or --archive), streamed member by member out of the archive into a folder with a subfolder
  per class (the JPEG files as they are: quality 75). Then dirty-label poisoning (BadNets
  setting): a `--rate` share of all the images (default 1%: 500), drawn with a seeded numpy
  Generator from the classes other than `--target`, get the trigger (`make_trigger`, 32x32:
  badnets, blended or sig) and move into the target class's folder as new quality-95 JPEGs
  (`zz-poison-NNNNN.jpg`, after the clean files); their originals are removed, so the folder
  still holds as many images as were unpacked and the poisoned images carry the target label
  only. `poisoned.json` in the folder records which files are poisoned and where they came
  from. Nothing holds all the images in memory.
- vet: `vet_at_scale(folder, ray="local", workers=N, detector=D)` once per detector (default
  spectre, then spectral); each run recomputes the features (--reuse-features: the features
  once, through the same pieces vet_at_scale uses, then `judge` per detector).
- speed: wall seconds and images per second of each run (Ray's start and end included).
- memory: the driver's peak resident set (ru_maxrss, the whole process's life, and a psutil
  sample every 0.5 s during the run), the largest Ray worker's (psutil, every 0.5 s, over this
  process's descendants whose command line holds "ray::", agents aside) and all this Ray
  instance's processes together. Anchors measured from the same data: the bytes the images
  take as vet holds them in memory (float32 N x 3 x 32 x 32) and as features (float32
  N x 1280). The claim checked: the driver holds features, not images.
- detection: the suspected classes (is the target among them?), and over the samples the
  flagged poisons (true positives), the flagged clean images (false positives), precision,
  recall, the AUROC of the scores against the poison labels (over all samples, and within the
  target class), and the target class's outlier share against the median of the others.

The archive is optional for the project: without it this prints where it looked and exits.
Run: python benchmarks/bench_vet_scale.py [--archive PATH] [--limit 200] [--attack badnets]
     [--rate 0.01] [--target 0] [--seed 0] [--workers 2] [--detectors spectre spectral]
     [--reuse-features] [--folder DIR] [--keep] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
ARCHIVE = SHARED / "cifar10-jpg.tar.gz"
ATTACKS = ("badnets", "blended", "sig")
DETECTORS = ("spectre", "spectral", "local-outlier-factor")
SPLIT = "train"
POISON_PREFIX = "zz-poison-"
RECORD = "poisoned.json"
AGENTS = ("DashboardAgent", "RuntimeEnvAgent")  # Ray's per-node agents, not task workers
MIB = 1 << 20


# ---------------------------------------------------------------- data: unpack and poison

def _train_member(member: tarfile.TarInfo) -> tuple[str, str] | None:
    """(class, file name) of a training image in the archive, or None."""
    pieces = member.name.split("/")
    if not member.isfile() or len(pieces) != 3 or pieces[0] != SPLIT:
        return None
    cls, name = pieces[1], pieces[2]
    if not cls or not name or cls.startswith(".") or name.startswith(".") or \
            not name.lower().endswith((".jpg", ".jpeg")):
        return None
    return cls, name


def unpack(archive: Path, folder: Path, limit: int | None) -> dict[str, int]:
    """The training split into folder/<class>/<file>, streamed from the archive (one member in
    memory at a time); with `limit`, the first `limit` files of each class by name. Returns the
    images per class."""
    keep: set[tuple[str, str]] | None = None
    if limit is not None:  # a first pass over the names only
        names: dict[str, list[str]] = {}
        with tarfile.open(archive, "r|gz") as tar:
            for member in tar:
                found = _train_member(member)
                if found:
                    names.setdefault(found[0], []).append(found[1])
        keep = {(cls, name) for cls, files in names.items() for name in sorted(files)[:limit]}
    counts: dict[str, int] = {}
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            found = _train_member(member)
            if not found or (keep is not None and found not in keep):
                continue
            cls, name = found
            (folder / cls).mkdir(exist_ok=True)
            data = tar.extractfile(member).read()
            (folder / cls / name).write_bytes(data)
            counts[cls] = counts.get(cls, 0) + 1
    return dict(sorted(counts.items()))


def poison_folder(folder: Path, classes: list[str], target: str, attack: str, rate: float,
                  seed: int) -> list[dict]:
    """Dirty-label poisoning on disk: `rate` of all images, drawn from the other classes, get
    the trigger and move to the target class as quality-95 JPEGs. One image in memory at a
    time. Returns the record: one entry per poisoned file."""
    from PIL import Image

    from trojanscope.attacks.image_poison import make_trigger

    files = [(cls, f.name) for cls in classes for f in sorted((folder / cls).iterdir())
             if f.is_file()]
    pool = np.array([i for i, (cls, _) in enumerate(files) if cls != target])
    count = int(round(rate * len(files)))
    if not 0 < count <= len(pool):
        raise SystemExit(f"--rate {rate}: {count} images to poison, out of {len(pool)} "
                         "eligible: choose a rate that poisons at least one")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(pool, size=count, replace=False))
    trigger = None
    record = []
    for k, i in enumerate(chosen, start=1):
        cls, name = files[i]
        source = folder / cls / name
        with Image.open(source) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        x = pixels.transpose(2, 0, 1)[None]  # (1, C, H, W) in [0, 1], as image_poison wants
        if trigger is None:
            trigger = make_trigger(attack, x.shape[-2:], seed)
        stamped = np.clip(trigger(x)[0], 0, 1).transpose(1, 2, 0)
        out = f"{POISON_PREFIX}{k:05d}.jpg"
        Image.fromarray(np.rint(stamped * 255).astype(np.uint8)).save(
            folder / target / out, format="JPEG", quality=95)
        source.unlink()  # dirty label: the image now carries the target label only
        record.append({"file": f"{target}/{out}", "source": f"{cls}/{name}"})
    (folder / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return record


# ---------------------------------------------------------------- memory sampling

class Sampler:
    """Every `every` seconds: this process's resident set, and that of its descendants (the
    Ray instance it started): the largest worker ("ray::" in the command line, agents aside),
    the largest "ray::" process of any kind, and all descendants together."""

    def __init__(self, every: float = 0.5, heartbeat: float = 0.0):
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.every, self.heartbeat = every, heartbeat
        self.driver = self.worker = self.any_ray = self.total = 0
        self.worker_name = ""
        self.workers_seen: set[int] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        beat = self.started
        while not self._stop.is_set():
            self.sample()
            now = time.perf_counter()
            if self.heartbeat and now - beat >= self.heartbeat:
                beat = now
                print(f"  [{now - self.started:6.0f} s] driver {self.driver / MIB:.0f} MiB, "
                      f"largest worker {self.worker / MIB:.0f} MiB, Ray workers seen "
                      f"{len(self.workers_seen)}", file=sys.stderr, flush=True)
            self._stop.wait(self.every)

    def sample(self) -> None:
        psutil = self.psutil
        try:
            self.driver = max(self.driver, self.me.memory_info().rss)
            children = self.me.children(recursive=True)
        except psutil.Error:
            return
        total = 0
        for child in children:
            try:
                rss = child.memory_info().rss
                line = " ".join(child.cmdline())
            except psutil.Error:
                continue
            total += rss
            if "ray::" not in line:
                continue
            self.any_ray = max(self.any_ray, rss)
            if any(agent in line for agent in AGENTS):
                continue
            self.workers_seen.add(child.pid)
            if rss > self.worker:
                self.worker, self.worker_name = rss, line.strip()[:60]
        self.total = max(self.total, total)
        self.samples += 1


def max_rss() -> int:
    """The driver's peak resident set so far, in bytes (ru_maxrss: KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# ---------------------------------------------------------------- vet runs

def run_each(folder: Path, detectors: list[str], workers: int, seed: int,
             shard_images: int, heartbeat: float):
    """(detector, report, seconds, memory) per detector, each a full vet_at_scale run."""
    from trojanscope.cluster.ray_vet import vet_at_scale

    for detector in detectors:
        with Sampler(heartbeat=heartbeat) as sampler:
            started = time.perf_counter()
            report = vet_at_scale(folder, ray="local", workers=workers, detector=detector,
                                  seed=seed, shard_images=shard_images)
            seconds = time.perf_counter() - started
        yield detector, report, seconds, sampler, None


def run_reusing(folder: Path, detectors: list[str], workers: int, seed: int,
                shard_images: int, heartbeat: float):
    """The features once (vet_at_scale's own pieces), then `judge` per detector."""
    from trojanscope.cluster.ray_scan import connected
    from trojanscope.cluster.ray_vet import _features, shards
    from trojanscope.data.vet import judge

    parts, names = shards(folder, shard_images)
    with Sampler(heartbeat=heartbeat) as sampler:
        started = time.perf_counter()
        with connected("local", workers) as ray:
            rows = dict(_features(ray, parts))
        features = np.concatenate([rows[i][0] for i in range(len(parts))])
        labels = np.concatenate([rows[i][1] for i in range(len(parts))])
        del rows
        feature_seconds = time.perf_counter() - started
    for detector in detectors:
        with Sampler(heartbeat=heartbeat) as judged:
            started = time.perf_counter()
            report = judge(features, labels, str(folder), detector, seed, relabel=None,
                           config={"features": "EfficientNet-Lite0 (ImageNet), on Ray"},
                           names=names)
            seconds = time.perf_counter() - started
        sampler.driver = max(sampler.driver, judged.driver)
        yield detector, report, seconds + feature_seconds, sampler, \
            {"feature_seconds": feature_seconds, "judge_seconds": seconds,
             "judge_driver_peak": judged.driver}


def quality(report, truth: np.ndarray, labels: np.ndarray, names: list[str],
            target: int) -> dict:
    from trojanscope.bench.metrics import auroc

    results = report.results
    flagged = np.zeros(len(truth), dtype=bool)
    flagged[list(results.suspicious_indices)] = True
    scores = np.asarray(results.scores, dtype=float)
    tp = int((flagged & truth).sum())
    fp = int((flagged & ~truth).sum())
    inside = labels == target
    per_class = {int(c["class"]): c for c in results.per_class}
    others = [c["outlier_share"] for k, c in per_class.items() if k != target]
    suspected = [str(c) for c in results.suspected_classes]
    return {
        "suspected_classes": suspected,
        "target_suspected": names[target] in suspected or str(target) in suspected,
        "flagged": int(flagged.sum()), "true_positives": tp, "false_positives": fp,
        "poisoned": int(truth.sum()),
        "precision": tp / flagged.sum() if flagged.any() else float("nan"),
        "recall": tp / max(int(truth.sum()), 1),
        "auroc": auroc(scores, truth),
        "auroc_target_class": auroc(scores[inside], truth[inside]),
        "cut": results.cut,
        "target_outlier_share": per_class[target]["outlier_share"],
        "target_z": per_class[target].get("z"),
        "others_median_outlier_share": float(np.median(others)),
        "others_max_outlier_share": float(np.max(others)),
    }


# ---------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", type=Path, default=ARCHIVE,
                        help="cifar10-jpg.tar.gz (default: ../shared/datasets/)")
    parser.add_argument("--folder", type=Path, default=None,
                        help="unpack here (must be empty or absent; default: a temporary "
                             "folder, deleted at the end unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the unpacked folder")
    parser.add_argument("--attack", choices=ATTACKS, default="badnets")
    parser.add_argument("--rate", type=float, default=0.01,
                        help="poisoned share of all the images (default 0.01)")
    parser.add_argument("--target", default="0",
                        help="target class: index among the sorted class names, or a name "
                             "(default 0: airplane)")
    parser.add_argument("--seed", type=int, default=0,
                        help="the poisoned images' draw, the trigger and the detectors")
    parser.add_argument("--workers", type=int, default=2, help="Ray CPUs (default 2)")
    parser.add_argument("--detectors", nargs="+", choices=DETECTORS,
                        default=["spectre", "spectral"])
    parser.add_argument("--reuse-features", action="store_true",
                        help="features once, then judge per detector (vet_at_scale's pieces)")
    parser.add_argument("--shard-images", type=int, default=512)
    parser.add_argument("--limit", type=int, default=None,
                        help="only the first N training images of each class (by name)")
    parser.add_argument("--heartbeat", type=float, default=120.0,
                        help="seconds between progress lines on stderr (0: none)")
    parser.add_argument("--json", type=Path, default=None, help="write all figures here too")
    args = parser.parse_args()

    if not args.archive.is_file():
        print(f"CIFAR-10 (JPEG) archive not found at {args.archive}: this benchmark needs it "
              "(pass --archive PATH); nothing measured.", file=sys.stderr)
        return 2
    if not 0 < args.rate < 1:
        parser.error("--rate must be between 0 and 1")
    if args.folder is not None and args.folder.exists() and any(args.folder.iterdir()):
        parser.error(f"--folder {args.folder} is not empty")

    import trojanscope
    from trojanscope.cluster.ray_vet import shards
    from trojanscope.data.encoder import DIMENSIONS, SIZE

    temporary = args.folder is None
    folder = Path(tempfile.mkdtemp(prefix="bench-vet-scale-")) if temporary else args.folder
    folder.mkdir(parents=True, exist_ok=True)
    out: dict = {"args": {k: str(v) if isinstance(v, Path) else v
                          for k, v in vars(args).items()},
                 "trojanscope": getattr(trojanscope, "__version__", "?"),
                 "python": platform.python_version(), "cpus": os.cpu_count(), "runs": []}
    try:
        # 1. data
        started = time.perf_counter()
        counts = unpack(args.archive, folder, args.limit)
        unpack_seconds = time.perf_counter() - started
        classes = sorted(counts)
        if len(classes) < 2:
            raise SystemExit(f"{args.archive}: fewer than two classes under {SPLIT}/")
        target = classes.index(args.target) if args.target in classes else int(args.target)
        if not 0 <= target < len(classes):
            parser.error(f"--target {args.target}: the classes are {', '.join(classes)}")
        total = sum(counts.values())
        print(f"CIFAR-10 (JPEG) training split: {total:,} images in {len(classes)} classes "
              f"({min(counts.values()):,}-{max(counts.values()):,} per class"
              f"{', --limit ' + str(args.limit) if args.limit else ''}), unpacked to {folder} "
              f"in {unpack_seconds:.1f} s", flush=True)
        started = time.perf_counter()
        record = poison_folder(folder, classes, classes[target], args.attack, args.rate,
                               args.seed)
        poison_seconds = time.perf_counter() - started
        sources = {}
        for entry in record:
            cls = entry["source"].split("/")[0]
            sources[cls] = sources.get(cls, 0) + 1
        print(f"poisoned ({args.attack}, dirty label, seed {args.seed}): {len(record):,} images "
              f"({len(record) / total:.2%} of all) from the other classes "
              f"({', '.join(f'{c} {n}' for c, n in sorted(sources.items()))}) moved into "
              f"'{classes[target]}' (class {target}) as quality-95 JPEGs in "
              f"{poison_seconds:.1f} s; '{classes[target]}' now holds "
              f"{counts[classes[target]] + len(record):,} images, {len(record):,} of them "
              f"poisoned", flush=True)

        # ground truth in vet's row order (shards(): classes by name, files by name)
        parts, names = shards(folder, args.shard_images)
        paths = [p for part in parts for p in part.paths]
        labels = np.array([y for part in parts for y in part.labels])
        poisoned = {str(folder / entry["file"]) for entry in record}
        truth = np.array([p in poisoned for p in paths])
        assert names == classes and len(paths) == total and truth.sum() == len(record)
        images_bytes = total * 3 * 32 * 32 * 4
        feature_bytes = total * DIMENSIONS * 4
        shard_bytes = args.shard_images * 3 * SIZE * SIZE * 4
        out.update(images=total, classes=classes, target=target, target_name=classes[target],
                   poisoned=len(record), poison_sources=sources, shards=len(parts),
                   unpack_seconds=unpack_seconds, poison_seconds=poison_seconds,
                   anchor_images_bytes=images_bytes, anchor_features_bytes=feature_bytes,
                   anchor_shard_bytes=shard_bytes)
        print(f"anchors: the {total:,} images as vet holds them (float32 N x 3 x 32 x 32) "
              f"{images_bytes / MIB:,.0f} MiB; as features (float32 N x {DIMENSIONS}) "
              f"{feature_bytes / MIB:,.0f} MiB; one shard in a worker ({args.shard_images} "
              f"images at {SIZE} px, float32) {shard_bytes / MIB:,.0f} MiB", flush=True)
        mode = "features once, then judge per detector (--reuse-features)" \
            if args.reuse_features else "one full vet_at_scale run per detector (features " \
                                        "recomputed each time)"
        print(f"vet_at_scale(ray='local', workers={args.workers}, shard_images="
              f"{args.shard_images}): {len(parts)} shards; {mode}", flush=True)
        print(f"driver peak before vet (ru_maxrss): {max_rss() / MIB:,.0f} MiB", flush=True)

        # 2-4. vet, timings, memory, detection
        runner = run_reusing if args.reuse_features else run_each
        for detector, report, seconds, mem, extra in runner(
                folder, args.detectors, args.workers, args.seed, args.shard_images,
                args.heartbeat):
            same_labels = list(report.results.labels) == labels.tolist()
            q = quality(report, truth, labels, classes, target)
            peak = max_rss()
            row = {"detector": detector, "seconds": seconds, "images_per_second":
                   total / seconds, "report_seconds": report.timings.get("total_seconds"),
                   "driver_ru_maxrss": peak, "driver_peak_sampled": mem.driver,
                   "worker_peak": mem.worker, "worker_peak_process": mem.worker_name,
                   "workers_seen": len(mem.workers_seen), "ray_process_peak": mem.any_ray,
                   "descendants_total_peak": mem.total, "samples": mem.samples,
                   "labels_in_file_order": same_labels, **q, **(extra or {})}
            out["runs"].append(row)
            print(f"\n== detector {detector} ==")
            if extra:
                print(f"features {extra['feature_seconds']:.1f} s (shared by all detectors), "
                      f"judge {extra['judge_seconds']:.1f} s")
            print(f"wall {seconds:.1f} s (report's own timing {row['report_seconds']} s), "
                  f"{total / seconds:.1f} images/s")
            print(f"driver peak: ru_maxrss {peak / MIB:,.0f} MiB (whole process so far), "
                  f"sampled during the run {mem.driver / MIB:,.0f} MiB  |  images "
                  f"{images_bytes / MIB:,.0f} MiB, features {feature_bytes / MIB:,.0f} MiB: "
                  f"driver / images {mem.driver / images_bytes:.2f}, driver / features "
                  f"{mem.driver / feature_bytes:.2f}")
            print(f"largest Ray worker: {mem.worker / MIB:,.0f} MiB ({mem.worker_name or '-'}; "
                  f"{len(mem.workers_seen)} workers seen, {mem.samples} samples); largest "
                  f"'ray::' process of any kind {mem.any_ray / MIB:,.0f} MiB; all of Ray's "
                  f"processes together {mem.total / MIB:,.0f} MiB")
            among = "among them" if q["target_suspected"] else "NOT among them"
            print(f"suspected classes: {', '.join(q['suspected_classes']) or 'none'}; target "
                  f"'{classes[target]}' {among}")
            print(f"samples: {q['flagged']:,} flagged, {q['true_positives']:,} of "
                  f"{q['poisoned']:,} poisoned (true positives), {q['false_positives']:,} "
                  f"false positives; precision {q['precision']:.3f}, recall "
                  f"{q['recall']:.3f}; AUROC {q['auroc']:.3f} (within the target class "
                  f"{q['auroc_target_class']:.3f}); cut {q['cut']}")
            print(f"outlier share: target {q['target_outlier_share']:.4f} (z "
                  f"{q['target_z']}) against a median of {q['others_median_outlier_share']:.4f} "
                  f"in the other classes (max {q['others_max_outlier_share']:.4f})")
            if not same_labels:
                print("WARNING: the report's labels are not in the order the files are listed",
                      flush=True)
            sys.stdout.flush()
            if args.json:  # after each run: a later run that dies keeps the earlier figures
                write_json(args.json, out)
    finally:
        if temporary and not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        elif temporary:
            print(f"kept {folder}")
    if args.json:
        write_json(args.json, out)
        print(f"figures written to {args.json}")
    return 0


def write_json(path: Path, out: dict) -> None:
    path.write_text(json.dumps(out, indent=2, default=float) + "\n")


if __name__ == "__main__":
    sys.exit(main())
