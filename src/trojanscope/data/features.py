"""Features for the detectors: train a small proxy CNN on the data itself (seeded, CPU-sized)
and read the activations of its penultimate layer. Needs torch (the `torch` extra)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..progress import track


def _torch():
    try:
        import torch
    except ImportError:
        raise RuntimeError("vet needs PyTorch for its proxy model: pip install "
                           "'trojanscope[torch]'") from None
    return torch


@dataclass
class TrainConfig:
    epochs: int = 6
    batch_size: int = 128
    learning_rate: float = 2e-3
    width: int = 32
    seed: int = 0
    augment: bool = False  # random shifts of up to 2 pixels and horizontal flips (photos)


def build_proxy(channels: int, classes: int, width: int):
    torch = _torch()
    nn = torch.nn

    class ProxyCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                nn.Linear(2 * width * 16, 128), nn.ReLU())
            self.head = nn.Linear(128, classes)

        def forward(self, x):
            return self.head(self.body(x))

        def features(self, x):
            return self.body(x)

    return ProxyCNN()


def train_proxy(x: np.ndarray, y: np.ndarray, config: TrainConfig | None = None, model=None,
                what: str = "the proxy model"):
    """Train the proxy (or `model`, an nn.Module) on (x, y); deterministic for a given seed on
    the CPU. `what`: the model's name on the progress bar."""
    torch = _torch()
    config = config or TrainConfig()
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    classes = int(y.max()) + 1
    if model is None:
        model = build_proxy(x.shape[1], classes, config.width)
    from ..ml.model import best_device

    device = best_device()
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    targets = torch.from_numpy(np.asarray(y, dtype=np.int64))
    model.train()
    for _ in track(range(config.epochs), f"training {what}", config.epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            images = inputs[batch]
            if config.augment:
                images = _augment(torch, images, generator)
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(images.to(device)),
                                                     targets[batch].to(device))
            loss.backward()
            optimizer.step()
    model.eval()
    return model.cpu()


def _augment(torch, images, generator):
    """Each image shifted by up to 2 pixels (edges repeated) and flipped left-right at random."""
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
    rows = torch.randint(0, 5, (n,), generator=generator)
    cols = torch.randint(0, 5, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    out = torch.stack([padded[i, :, r:r + h, c:c + w] for i, (r, c) in
                       enumerate(zip(rows.tolist(), cols.tolist()))])
    out[flips] = out[flips].flip(-1)
    return out


def extract(model, x: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(features, logits) of every sample, batched, without gradients."""
    torch = _torch()
    feats, logits = [], []
    with torch.no_grad():
        for start in track(range(0, len(x), batch_size), "features",
                           -(-len(x) // batch_size)):
            batch = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size],
                                                          dtype=np.float32))
            f = model.features(batch)
            feats.append(f.numpy())
            logits.append(model.head(f).numpy())
    return np.concatenate(feats), np.concatenate(logits)


def probability(logits: np.ndarray) -> np.ndarray:
    """P(class 1) from two-class logits (one row per sample), without overflow."""
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted[:, 1] / shifted.sum(1)
