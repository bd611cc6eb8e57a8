"""CIFAR-10 as a built-in data set (`--data cifar10`) where a copy is at hand: the JPEG archive
`cifar10-jpg.tar.gz` ({train,test}/<class>/NNNN.jpg) in $TROJANSCOPE_DATASETS or
../shared/datasets, decoded once (Pillow, straight from the archive, nothing unpacked) and kept
as uint8 arrays in trojanscope's cache folder (cache.py). Nothing is downloaded; without a
copy, `cifar10()` returns None and `load("cifar10")` says where it looked."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np

from ..cache import cache_dir
from .datasets import Dataset, subset

NAME = "cifar10-jpg.tar.gz"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


def archive_paths() -> list[Path]:
    """Where the archive is looked for, in order."""
    folders = [Path(os.environ["TROJANSCOPE_DATASETS"])] \
        if os.environ.get("TROJANSCOPE_DATASETS") else []
    return [folder / NAME for folder in (*folders, Path("../shared/datasets"),
                                         Path(__file__).resolve().parents[4] / "shared" /
                                         "datasets")]


def _arrays() -> dict[str, np.ndarray] | None:
    cached_file = cache_dir() / "cifar10-jpg.npz"
    if cached_file.exists():
        with np.load(cached_file, allow_pickle=False) as cached:
            return {k: cached[k] for k in cached.files}
    found = [path for path in archive_paths() if path.is_file()]
    if not found:
        return None
    archive_path = found[0]
    from PIL import Image

    parts: dict[str, tuple[list, list, list]] = {"train": ([], [], []), "test": ([], [], [])}
    with tarfile.open(archive_path) as archive:
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
    cached_file.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cached_file, **arrays)
    return arrays


def cifar10(train_size: int | None = None, test_size: int | None = None,
            seed: int = 0) -> tuple[Dataset, Dataset] | None:
    """(train, test) as float32 in [0, 1]; a size: a class-balanced subset (seeded)."""
    arrays = _arrays()
    if arrays is None:
        return None
    sets = []
    for split, size in (("train", train_size), ("test", test_size)):
        y = arrays[f"y_{split}"]
        whole = Dataset(arrays[f"x_{split}"], y, "cifar10" if split == "train" else
                        "cifar10-test")
        part = subset(whole, size, seed) if size else whole
        sets.append(Dataset(part.x.astype(np.float32) / 255.0, part.y, part.name))
    return sets[0], sets[1]
