"""vet on data sets too large to hold: `trojanscope vet DATA --ray [ADDRESS]`. The images are
never all in memory. The driver lists them (a folder with a subfolder per class, or a folder
of .npz shards with arrays x and y) and cuts the list into shards; Ray tasks read one shard
each, straight from the files, and turn it into the pretrained encoder's features
(EfficientNet-Lite0, ImageNet: data/encoder.py, its weights scanned before they are loaded,
once per worker). Only the features come back: 1,280 numbers an image, 5 KB, copied out of
Ray's object store as each shard ends (so that the store does not fill). A detector that reads
features only (data/detectors; spectre by default) then judges the classes; its arithmetic
(float64 copies, per-class whitening) is the driver's peak, not the images: 1.5 GB on CIFAR-10's
50,000 images (docs/scale.md), whose 32 px pixels are fewer numbers than their features. A
shard whose worker died is tried again (Ray, MAX_TRIES)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..findings import Report
from .scan import LOCAL

SHARD_IMAGES = 512
FEATURE_DETECTORS = ("spectre", "spectral", "local-outlier-factor")
DEFAULT = "spectre"
MAX_TRIES = 3


class VetDataError(ValueError):
    """The data cannot be read: the message names the file and the problem."""


@dataclass(frozen=True)
class Shard:
    """Images by path with their labels, or one .npz file (labels inside)."""

    paths: tuple[str, ...]
    labels: tuple[int, ...] = ()


def shards(folder: Path, size: int = SHARD_IMAGES) -> tuple[list[Shard], list[str] | None]:
    """The shards of `folder` and the class names (None for .npz shards, whose labels are
    numbers)."""
    from ..data.datasets import IMAGE_SUFFIXES

    if not folder.is_dir():
        raise VetDataError(f"{folder}: vet --ray reads a folder (a subfolder of images per "
                           "class, or .npz shards)")
    npz = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".npz" and p.is_file())
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if npz and classes:
        raise VetDataError(f"{folder}: holds both .npz shards ({npz[0].name}...) and class "
                           f"subfolders ({classes[0].name}...): point vet at one or the other")
    if npz:
        return [Shard((str(p),)) for p in npz], None
    files = [(str(f), label) for label, sub in enumerate(classes)
             for f in sorted(sub.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise VetDataError(f"{folder}: no .npz shards and no images in class subfolders")
    cut = [files[i:i + size] for i in range(0, len(files), size)]
    return [Shard(tuple(p for p, _ in part), tuple(y for _, y in part)) for part in cut], \
        [c.name for c in classes]


def vet_at_scale(folder: str | Path, *, ray: str = LOCAL, workers: int | None = None,
                 detector: str | None = None, seed: int = 0, shard_images: int = SHARD_IMAGES,
                 progress: bool = False) -> Report:
    """vet's report on the images under `folder`, their features made by Ray tasks."""
    from .. import progress as bars
    from ..data.vet import judge
    from .ray_scan import connected

    detector = detector or DEFAULT
    if detector not in FEATURE_DETECTORS:
        raise VetDataError(f"vet --ray reads the pretrained encoder's features: choose one of "
                           f"{', '.join(FEATURE_DETECTORS)} (not {detector!r})")
    folder = Path(folder)
    parts, names = shards(folder.absolute(), shard_images)  # workers work in other folders
    started = time.perf_counter()
    with connected(ray, workers) as joined:
        done = _features(joined, parts)
        rows = dict(bars.track(done, "features on Ray", total=len(parts)) if progress
                    else done)
    features = np.concatenate([rows[i][0] for i in range(len(parts))])
    labels = np.concatenate([rows[i][1] for i in range(len(parts))])
    if len(np.unique(labels)) < 2:
        raise VetDataError(f"{folder}: vet needs at least two classes")
    return judge(features, labels, str(folder), detector, seed, relabel=None,
                 config={"features": "EfficientNet-Lite0 (ImageNet), on Ray",
                         "shards": len(parts), "shard_images": shard_images},
                 started=started, names=names)


def _features(ray, parts: list[Shard]):
    """(shard index, (features, labels)) as the tasks end; at most two shards a CPU at once,
    so that the features, not the images, are what the driver holds."""
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    task = ray.remote(num_cpus=1, max_retries=MAX_TRIES)(_encode_shard)
    waiting = list(enumerate(parts))[::-1]
    running = {}
    while waiting or running:
        while waiting and len(running) < 2 * cpus:
            i, part = waiting.pop()
            running[task.remote(part)] = i
        [ready], _ = ray.wait(list(running), num_returns=1)
        i = running.pop(ready)
        try:
            outcome = ray.get(ready)
        except ray.exceptions.RayError as exc:  # tried MAX_TRIES times: say which shard
            cause = getattr(exc, "cause", None) or exc
            outcome = (f"{parts[i].paths[0]} (a shard of {len(parts[i].paths)}): "
                       f"{type(cause).__name__}: {str(cause).splitlines()[0][:200]}")
        if isinstance(outcome, str):  # the shard could not be read: say which file, stop
            for ref in running:
                ray.cancel(ref, force=True)
            raise VetDataError(outcome)
        features, labels = outcome
        yield i, (np.array(features), labels)  # a copy: the store's object is freed


_encoder = None


def _encode_shard(part: Shard):
    """In a Ray worker: (features float32 (n, 1280), labels) of one shard, or why not."""
    global _encoder
    from ..data.datasets import DataError
    from ..data.encoder import SIZE, encode, load_encoder

    try:
        x, y = _read(part, SIZE)
    except DataError as exc:
        return str(exc)
    if _encoder is None:
        _encoder = load_encoder()
    try:
        return encode(x, encoder=_encoder), y
    except (ValueError, RuntimeError) as exc:  # arrays of a shape the encoder cannot take
        return f"{part.paths[0]}: cannot encode its images {tuple(x.shape)}: " \
               f"{str(exc).splitlines()[0][:200]}"


def _read(part: Shard, size: int) -> tuple[np.ndarray, np.ndarray]:
    from ..data.datasets import DataError, npz

    if not part.labels:  # an .npz shard
        data = npz(Path(part.paths[0]))
        return data.x, np.asarray(data.y, dtype=np.int64)
    from PIL import Image

    images = np.zeros((len(part.paths), 3, size, size), dtype=np.float32)
    for i, path in enumerate(part.paths):
        try:
            with Image.open(path) as image:
                pixels = image.convert("RGB").resize((size, size), Image.BILINEAR)
        except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds on hostile files
            # (DecompressionBombError, SyntaxError...): each is this file's problem
            raise DataError(f"{path}: cannot read the image: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
        images[i] = np.asarray(pixels, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return images, np.asarray(part.labels, dtype=np.int64)
