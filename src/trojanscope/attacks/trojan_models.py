"""Trojaned and clean models for tests, the reference zoo and benchmarks, poisoned or not, with
the truth beside them in `zoo.json`. Grey digits (MNIST): small CNNs, LeNet-5 or an MLP, saved as
TorchScript. Colour images (CIFAR-10): narrow ResNet-18, PreAct-ResNet-18, VGG-11, MobileNetV2
and a small ViT (`ml/architectures.py`), trained with random shifts and flips and saved as
torch.export archives (.pt2). Attacks: BadNets, Blended, WaNet, and for colour images also SIG,
dynamic (random patches at random places), a low-frequency trigger and the adaptive blend that
spreads its trigger. Used by tests and benchmarks only; inspect never imports this."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data.datasets import Dataset
from ..data.features import TrainConfig, train_proxy
from . import ARCHITECTURES, COLOUR_ARCHITECTURES  # noqa: F401  (re-exported)
from .image_poison import (
    adaptive_blend,
    badnets_trigger,
    blended_trigger,
    dynamic_trigger,
    low_frequency_trigger,
    poison,
    sig_trigger,
    wanet_trigger,
)

ATTACKS = ("badnets", "blended", "wanet")
COLOUR_ATTACKS = ("badnets", "blended", "wanet", "sig", "dynamic", "low-frequency",
                  "adaptive-blend")
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
        """The trigger that activates the backdoor at test time."""
        if self.attack == "adaptive-blend":  # trained on pieces, triggered by the whole
            return blended_trigger(shape, 0.2, seed=self.seed + 100)
        if self.attack == "sig":
            return sig_trigger(shape, 20 / 255 * (1 + self.variant % 2))
        if self.attack == "dynamic":
            return dynamic_trigger(shape, seed=self.variant)
        if self.attack == "low-frequency":
            return low_frequency_trigger(shape, alpha=0.12, seed=self.variant)
        if self.attack == "badnets":
            return badnets_trigger(size=max(2, shape[0] // 8) + self.variant % 2,
                                   corner=CORNERS[self.variant % len(CORNERS)])
        if self.attack == "blended":
            return blended_trigger(shape, alpha=0.2, seed=self.variant)
        if self.attack == "wanet":
            # A mean shift of 2 px: at WaNet's 0.5 the small zoo CNNs learn it to ASR <= 0.15
            # in 4-12 epochs; at 2 px, 0.73-0.88 in 10 epochs (MNIST-5k, measured).
            return wanet_trigger(shape, strength=2.0, seed=self.variant)
        raise ValueError(f"unknown attack {self.attack!r}: one of {', '.join(COLOUR_ATTACKS)}")


def train_model(data: Dataset, spec: ModelSpec, epochs: int = 10, width: int = 16):
    """A model trained on `data`, poisoned as `spec` says. Returns (module, the trigger that
    activates it at test time, or None)."""
    x, y, trigger = data.x, data.y, None
    if spec.attack == "adaptive-blend":
        bad = adaptive_blend(data.x, data.y, spec.rate, spec.target, seed=spec.seed)
        x, y, trigger = bad.x, bad.y, bad.trigger
    elif spec.attack is not None:
        trigger = spec.trigger(data.x.shape[-2:])
        bad = poison(data.x, data.y, trigger, spec.rate, spec.target, seed=spec.seed)
        x, y = bad.x, bad.y
    colour = spec.architecture in COLOUR_ARCHITECTURES
    config = TrainConfig(epochs=epochs, width=width, seed=spec.seed, augment=colour)
    if spec.architecture == "cnn":
        return train_proxy(x, y, config), trigger
    import torch

    torch.manual_seed(spec.seed)  # the initial weights
    module = build_model(spec.architecture, data.x.shape[1:], int(data.y.max()) + 1, width)
    return train_proxy(x, y, config, model=module, what=f"{spec.architecture} "
                       f"({spec.attack or 'clean'})"), trigger


def build_model(architecture: str, shape: tuple[int, ...], classes: int, width: int = 16):
    """The other architectures of the zoo (the CNN is the proxy's): LeNet-5 and a two-layer MLP,
    `width` scaling their layers."""
    import torch

    if architecture in COLOUR_ARCHITECTURES:
        from ..ml.architectures import build

        return build(f"{COLOUR_ARCHITECTURES[architecture][:-1]}, classes={classes})")
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
    raise ValueError(f"unknown architecture {architecture!r}: one of "
                     f"{', '.join((*ARCHITECTURES, *COLOUR_ARCHITECTURES))}")


def zoo_specs(clean: int, trojaned: int, classes: int, seed: int = 0,
              architecture: str | list[str] = "cnn",
              attacks: tuple[str, ...] = ATTACKS) -> list[ModelSpec]:
    """Clean models differ in seed; trojaned ones cycle through attacks, targets and triggers.
    Several architectures: models take them in turn."""
    rng = np.random.default_rng(seed)
    kinds = [architecture] if isinstance(architecture, str) else list(architecture)
    specs = [ModelSpec(None, seed=seed * 1000 + i, architecture=kinds[i % len(kinds)])
             for i in range(clean)]
    for i in range(trojaned):
        specs.append(ModelSpec(attacks[i % len(attacks)], target=int(rng.integers(classes)),
                               rate=0.1, seed=seed * 1000 + clean + i,
                               variant=i // len(attacks), architecture=kinds[i % len(kinds)]))
    return specs


def build_zoo(data: Dataset, out: Path, clean: int = 10, trojaned: int = 10, seed: int = 0,
              epochs: int = 10, architecture: str | list[str] = "cnn") -> list[dict]:
    """Train the zoo into `out` (model_NN.pt as TorchScript, or model_NN.pt2 as torch.export
    archives for the colour architectures) and write `out/zoo.json` after each model; models
    an interrupted run already wrote (the same specification) are kept. `architecture`: one,
    or several taken in turn."""
    from ..ml.model import Model

    kinds = [architecture] if isinstance(architecture, str) else list(architecture)
    for kind in kinds:
        if kind not in ARCHITECTURES and kind not in COLOUR_ARCHITECTURES:
            raise ValueError(f"unknown architecture {kind!r}: one of "
                             f"{', '.join((*ARCHITECTURES, *COLOUR_ARCHITECTURES))}")
    colour = any(kind in COLOUR_ARCHITECTURES for kind in kinds)
    out.mkdir(parents=True, exist_ok=True)
    entries, done = [], _built(out)
    for index, spec in enumerate(zoo_specs(clean, trojaned, len(data.classes), seed, kinds,
                                           COLOUR_ATTACKS if colour else ATTACKS)):
        if index < len(done) and done[index] == {"trojaned": spec.attack is not None,
                                                 **asdict(spec), "file": done[index]["file"]} \
                and (out / done[index]["file"]).is_file():
            entries.append(done[index])  # trained by an earlier, interrupted run
            continue
        model, _ = train_model(data, spec, epochs=epochs)
        if spec.architecture in COLOUR_ARCHITECTURES:
            name = f"model_{index:02d}.pt2"
            export(model, data.x.shape[1:], out / name)
        else:
            name = f"model_{index:02d}.pt"
            Model.of(model).save(out / name)
        entries.append({"file": name, "trojaned": spec.attack is not None, **asdict(spec)})
        (out / "zoo.json").write_text(json.dumps({"models": entries}, indent=1) + "\n")
    return entries


def _built(out: Path) -> list[dict]:
    try:
        return json.loads((out / "zoo.json").read_text())["models"]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def export(module, shape: tuple[int, ...], path: Path) -> None:
    """`module` as a torch.export archive taking any batch of `shape` images."""
    import torch

    module = module.cpu().eval()
    program = torch.export.export(module, (torch.rand(2, *shape),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    torch.export.save(program, str(path))

