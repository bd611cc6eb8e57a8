"""Image classifier architectures for state-dict files and the CIFAR zoo, written small: ResNet-18,
PreAct-ResNet-18, VGG-11 (batch norm), MobileNetV2 and a small ViT, each scaled by `width` (64 is
the published ResNet width; the zoo trains narrow ones on 2 CPU cores) and taking (N, 3, H, W)
images in [0, 1] (the normalisation is inside the model).

`build(spec)` makes a module from an architecture spec: a name here (`resnet18`), or
`package.module:Callable` (your own code, imported), either with literal keyword arguments:
`resnet18(classes=10, width=16)`, `mylab.nets:Net(depth=3)`.
"""

from __future__ import annotations

import ast
import importlib

from .gate import ModelError

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def _nn():
    import torch

    return torch, torch.nn


def _normalise(channels: int):
    torch, nn = _nn()

    class Normalise(nn.Module):
        def __init__(self):
            super().__init__()
            mean = CIFAR_MEAN if channels == 3 else (0.5,) * channels
            std = CIFAR_STD if channels == 3 else (0.25,) * channels
            self.register_buffer("mean", torch.tensor(mean).view(1, channels, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, channels, 1, 1))

        def forward(self, x):
            return (x - self.mean) / self.std

    return Normalise()


def resnet18(classes: int = 10, width: int = 64, channels: int = 3, preact: bool = False):
    """ResNet-18 for 32x32 inputs (3x3 stem, no max-pool), or PreAct-ResNet-18 (He et al.
    2016b), BackdoorBench's model."""
    torch, nn = _nn()
    F = torch.nn.functional

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cin if preact else cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                layers = [nn.Conv2d(cin, cout, 1, stride, bias=False)]
                self.shortcut = nn.Sequential(*(layers if preact else
                                                layers + [nn.BatchNorm2d(cout)]))

        def forward(self, x):
            if preact:
                out = F.relu(self.bn1(x))
                short = self.shortcut(out) if len(self.shortcut) else x
                out = self.conv1(out)
                return self.conv2(F.relu(self.bn2(out))) + short
            out = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.normalise = _normalise(channels)
            self.conv1 = nn.Conv2d(channels, width, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            stages, cin = [], width
            for i, stride in enumerate((1, 2, 2, 2)):
                cout = width * 2 ** i
                stages.append(nn.Sequential(Block(cin, cout, stride), Block(cout, cout, 1)))
                cin = cout
            self.layer1, self.layer2, self.layer3, self.layer4 = stages
            self.bn_final = nn.BatchNorm2d(cin) if preact else nn.Identity()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.linear = nn.Linear(cin, classes)

        def forward(self, x):
            out = self.conv1(self.normalise(x))
            out = out if preact else F.relu(self.bn1(out))
            out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
            out = F.relu(self.bn_final(out)) if preact else out
            return self.linear(self.pool(out).flatten(1))

    return ResNet()


def preact_resnet18(classes: int = 10, width: int = 64, channels: int = 3):
    return resnet18(classes, width, channels, preact=True)


def vgg11(classes: int = 10, width: int = 64, channels: int = 3):
    """VGG-11 with batch norm, for 32x32 inputs (one linear layer after the convolutions)."""
    _, nn = _nn()
    plan = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")
    layers, cin = [_normalise(channels)], channels
    for item in plan:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        cout = width * item
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                   nn.ReLU(inplace=False)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(*layers))
    model.add_module("classifier", nn.Linear(cin, classes))
    return model


def mobilenet_v2(classes: int = 10, width: int = 32, channels: int = 3):
    """MobileNetV2 (Sandler et al. 2018) for 32x32 inputs: stride 1 in the stem and the first
    two stages, as the usual CIFAR versions; `width` is the stem's channels (32 published)."""
    _, nn = _nn()

    def conv(cin, cout, kernel, stride, groups=1, act=True):
        parts = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                 nn.BatchNorm2d(cout)]
        return parts + ([nn.ReLU6()] if act else [])

    class Inverted(nn.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            hidden = cin * expand
            parts = (conv(cin, hidden, 1, 1) if expand != 1 else []) + \
                conv(hidden, hidden, 3, stride, groups=hidden) + conv(hidden, cout, 1, 1, act=False)
            self.body = nn.Sequential(*parts)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    scale = width / 32
    plan = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))
    layers = [_normalise(channels), *conv(channels, width, 3, 1)]
    cin = width
    for expand, out, repeats, stride in plan:
        cout = max(8, int(out * scale))
        for i in range(repeats):
            layers.append(Inverted(cin, cout, stride if i == 0 else 1, expand))
            cin = cout
    last = max(64, int(1280 * scale))
    layers += conv(cin, last, 1, 1) + [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(*layers))
    model.add_module("classifier", nn.Linear(last, classes))
    return model


def vit_small(classes: int = 10, width: int = 64, channels: int = 3, patch: int = 4,
              depth: int = 6, heads: int = 4, image: int = 32):
    """A small Vision Transformer (Dosovitskiy et al. 2021) for 32x32 inputs: 4x4 patches,
    `depth` pre-norm encoder layers of `width` dimensions, a class token."""
    torch, nn = _nn()
    F = torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(),
                                     nn.Linear(2 * width, width))

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, heads, d // heads) \
                .permute(2, 0, 3, 1, 4)
            attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
            x = x + self.proj(attended)
            return x + self.mlp(self.norm2(x))

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.normalise = _normalise(channels)
            self.patches = nn.Conv2d(channels, width, patch, patch)
            count = (image // patch) ** 2
            self.cls = nn.Parameter(torch.zeros(1, 1, width))
            self.position = nn.Parameter(0.02 * torch.randn(1, count + 1, width))
            self.blocks = nn.Sequential(*(Block() for _ in range(depth)))
            self.norm = nn.LayerNorm(width)
            self.head = nn.Linear(width, classes)

        def forward(self, x):
            tokens = self.patches(self.normalise(x)).flatten(2).transpose(1, 2)
            tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1) + self.position
            return self.head(self.norm(self.blocks(tokens))[:, 0])

    return ViT()


BUILT_IN = {"resnet18": resnet18, "preact-resnet18": preact_resnet18, "vgg11": vgg11,
            "mobilenet-v2": mobilenet_v2, "vit-small": vit_small}


def build(spec: str):
    """A module from an architecture spec (see the module's docstring)."""
    name, kwargs = _parse(spec)
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise ModelError(f"architecture {spec!r}: cannot import {name}: {exc}") from None
    elif name in BUILT_IN:
        factory = BUILT_IN[name]
    else:
        raise ModelError(f"architecture {spec!r}: not one of {', '.join(BUILT_IN)}, nor "
                         "package.module:Callable")
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ModelError(f"architecture {spec!r}: {exc}") from None


def _parse(spec: str) -> tuple[str, dict]:
    spec = spec.strip()
    if "(" not in spec:
        return spec, {}
    if not spec.endswith(")"):
        raise ModelError(f"architecture {spec!r}: arguments must end with ')'")
    name, _, rest = spec.partition("(")
    try:
        call = ast.parse(f"f({rest}", mode="eval").body
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (SyntaxError, ValueError) as exc:
        raise ModelError(f"architecture {spec!r}: arguments must be key=literal: {exc}") \
            from None
    if call.args or any(k is None for k in kwargs):
        raise ModelError(f"architecture {spec!r}: arguments must be key=literal")
    return name.strip(), kwargs
