"""Trojaned and clean models for tests, the reference zoo and benchmarks: small CNNs trained on
the embedded data, poisoned (BadNets, Blended, WaNet) or not, saved as TorchScript with the truth
beside them in `zoo.json`. Used by tests and benchmarks only; inspect never imports this."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data.datasets import Dataset
from ..data.features import TrainConfig, train_proxy
from .image_poison import badnets_trigger, blended_trigger, poison, wanet_trigger

ATTACKS = ("badnets", "blended", "wanet")
ARCHITECTURES = ("cnn", "lenet", "mlp")
CORNERS = ("bottom-right", "top-left", "top-right", "bottom-left")


@dataclass(frozen=True)
class ModelSpec:
    attack: str | None  # None: a clean model
    target: int = 0
    rate: float = 0.1
    seed: int = 0
    variant: int = 0    # which trigger of the attack's family (patch corner and size, pattern)
    architecture: str = "cnn"  # cnn: the proxy CNN; lenet; mlp

    def trigger(self, shape: tuple[int, int]):
        if self.attack == "badnets":
            return badnets_trigger(size=max(2, shape[0] // 8) + self.variant % 2,
                                   corner=CORNERS[self.variant % len(CORNERS)])
        if self.attack == "blended":
            return blended_trigger(shape, alpha=0.2, seed=self.variant)
        if self.attack == "wanet":
            # A mean shift of 2 px: at WaNet's 0.5 the small zoo CNNs learn it to ASR <= 0.15
            # in 4-12 epochs; at 2 px, 0.73-0.88 in 10 epochs (MNIST-5k, measured).
            return wanet_trigger(shape, strength=2.0, seed=self.variant)
        raise ValueError(f"unknown attack {self.attack!r}: one of {', '.join(ATTACKS)}")


def train_model(data: Dataset, spec: ModelSpec, epochs: int = 10, width: int = 16):
    """A small CNN trained on `data`, poisoned as `spec` says. Returns (module, trigger or None)."""
    x, y, trigger = data.x, data.y, None
    if spec.attack is not None:
        trigger = spec.trigger(data.x.shape[-2:])
        bad = poison(data.x, data.y, trigger, spec.rate, spec.target, seed=spec.seed)
        x, y = bad.x, bad.y
    config = TrainConfig(epochs=epochs, width=width, seed=spec.seed)
    if spec.architecture == "cnn":
        return train_proxy(x, y, config), trigger
    import torch

    torch.manual_seed(spec.seed)  # the initial weights
    module = build_model(spec.architecture, data.x.shape[1:], int(data.y.max()) + 1, width)
    return train_proxy(x, y, config, model=module), trigger


def build_model(architecture: str, shape: tuple[int, ...], classes: int, width: int = 16):
    """The other architectures of the zoo (the CNN is the proxy's): LeNet-5 and a two-layer MLP,
    `width` scaling their layers."""
    import torch

    nn = torch.nn
    channels, side = shape[0], shape[1] * shape[2]
    if architecture == "lenet":
        return nn.Sequential(
            nn.Conv2d(channels, width // 2 + 2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width // 2 + 2, width, 5), nn.ReLU(), nn.AdaptiveMaxPool2d(5), nn.Flatten(),
            nn.Linear(width * 25, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, classes))
    if architecture == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(channels * side, 16 * width), nn.ReLU(),
                             nn.Linear(16 * width, 8 * width), nn.ReLU(),
                             nn.Linear(8 * width, classes))
    raise ValueError(f"unknown architecture {architecture!r}: one of {', '.join(ARCHITECTURES)}")


def zoo_specs(clean: int, trojaned: int, classes: int, seed: int = 0,
              architecture: str = "cnn") -> list[ModelSpec]:
    """Clean models differ in seed; trojaned ones cycle through attacks, targets and triggers."""
    rng = np.random.default_rng(seed)
    specs = [ModelSpec(None, seed=seed * 1000 + i, architecture=architecture)
             for i in range(clean)]
    for i in range(trojaned):
        specs.append(ModelSpec(ATTACKS[i % len(ATTACKS)], target=int(rng.integers(classes)),
                               rate=0.1, seed=seed * 1000 + clean + i, variant=i // len(ATTACKS),
                               architecture=architecture))
    return specs


def build_zoo(data: Dataset, out: Path, clean: int = 10, trojaned: int = 10, seed: int = 0,
              epochs: int = 10, architecture: str = "cnn") -> list[dict]:
    """Train the zoo into `out` (model_NN.pt as TorchScript) and write `out/zoo.json`."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    entries = []
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}: one of "
                         f"{', '.join(ARCHITECTURES)}")
    for index, spec in enumerate(zoo_specs(clean, trojaned, len(data.classes), seed,
                                           architecture)):
        model, _ = train_model(data, spec, epochs=epochs)
        name = f"model_{index:02d}.pt"
        torch.jit.save(torch.jit.script(model), str(out / name))
        entries.append({"file": name, "trojaned": spec.attack is not None, **asdict(spec)})
    (out / "zoo.json").write_text(json.dumps({"models": entries}, indent=1) + "\n")
    return entries

