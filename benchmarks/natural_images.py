"""CIFAR-10 (JPEG) from ../shared/datasets for the benchmarks, decoded once (Pillow, straight from
the tar archive) and kept as uint8 arrays in ~/.cache/trojanscope; None when the archive is
absent, so that benchmarks skip it with a message."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from trojanscope.data.datasets import Dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
ARCHIVE = SHARED / "cifar10-jpg.tar.gz"
CACHE = Path.home() / ".cache" / "trojanscope" / "cifar10-jpg.npz"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


def _arrays() -> dict[str, np.ndarray] | None:
    if CACHE.exists():
        with np.load(CACHE, allow_pickle=False) as cached:
            return {k: cached[k] for k in cached.files}
    if not ARCHIVE.exists():
        return None
    from PIL import Image

    parts: dict[str, tuple[list, list, list]] = {"train": ([], [], []), "test": ([], [], [])}
    with tarfile.open(ARCHIVE) as archive:
        for member in archive:
            pieces = member.name.split("/")
            if not member.isfile() or len(pieces) != 3 or pieces[1] not in CLASSES:
                continue
            data = archive.extractfile(member).read()
            with Image.open(io.BytesIO(data)) as image:
                pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
            images, labels, names = parts[pieces[0]]
            images.append(pixels.transpose(2, 0, 1))
            labels.append(CLASSES.index(pieces[1]))
            names.append(f"{pieces[1]}/{pieces[2]}")
    arrays = {}
    for split, (images, labels, names) in parts.items():
        order = np.argsort(names)  # a fixed order whatever the archive's
        arrays[f"x_{split}"] = np.stack(images)[order]
        arrays[f"y_{split}"] = np.asarray(labels, dtype=np.int64)[order]
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, **arrays)
    return arrays


def cifar10(train_size: int | None = None, test_size: int | None = None,
            seed: int = 0) -> tuple[Dataset, Dataset] | None:
    """(train, test) as float32 in [0, 1]; `train_size`: a class-balanced subset (seeded)."""
    arrays = _arrays()
    if arrays is None:
        return None
    return (_subset(arrays["x_train"], arrays["y_train"], train_size, seed, "cifar10"),
            _subset(arrays["x_test"], arrays["y_test"], test_size, seed, "cifar10-test"))


def _subset(x, y, size, seed, name) -> Dataset:
    if size is not None and size < len(y):
        rng = np.random.default_rng(seed)
        per_class = size // 10
        keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class]
                                       for c in range(10)]))
        x, y = x[keep], y[keep]
    return Dataset(x.astype(np.float32) / 255.0, y, name)
