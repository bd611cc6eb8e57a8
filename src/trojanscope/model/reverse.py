"""Reverse-engineer triggers from a model and a little clean data, every class at once.

Two searches, each batched across the K classes (one forward pass over K x B inputs per step
instead of K separate loops):

- `neural_cleanse` (Wang et al., S&P 2019): per class a mask m and pattern p, input
  (1 - m) * x + m * p, minimising cross-entropy to the class plus lambda * |m|; lambda adapts per
  class to keep the attack success at >= 99%. A backdoor target needs a much smaller mask.
- `universal_perturbation`: per class one additive perturbation d, |d|_inf <= eps, that sends
  clean inputs to the class. It does not assume a small trigger: a blended or warping backdoor
  makes its target reachable with a budget that leaves other classes out of reach.

- `universal_warp`: per class one smooth displacement field (a coarse grid, upsampled, at most
  `pixels` of shift) that sends clean inputs to the class: the search WaNet-style warping
  triggers need, which neither a mask nor an additive budget finds.

Only inputs of other classes count towards a class's success. Deterministic for a seed.
`classes` is the number of classes (search them all) or a list of the classes to search (repair
searches its targets again on a model it is changing); results follow that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..ml.model import device_of
from ..progress import track


@dataclass
class Triggers:
    """Per class: mask (K,1,H,W) in [0,1], pattern (K,C,H,W) in [0,1], success on held-out
    inputs of other classes, and mask L1 norm."""
    mask: np.ndarray
    pattern: np.ndarray
    success: np.ndarray
    norm: np.ndarray


@dataclass
class Perturbations:
    delta: np.ndarray    # (K,C,H,W)
    success: np.ndarray  # (K,) on held-out inputs of other classes
    eps: float


def _batches(x, y, batch: int, steps: int, rng):
    for _ in range(steps):
        rows = rng.choice(len(x), size=min(batch, len(x)), replace=False)
        yield x[rows], y[rows]


def _tensors(torch, x: np.ndarray, y: np.ndarray, device):
    return (torch.from_numpy(x.astype(np.float32)).to(device),
            torch.from_numpy(y.astype(np.int64)).to(device))


def _classes(classes: int | Sequence[int]) -> list[int]:
    return list(range(classes)) if isinstance(classes, int) else [int(k) for k in classes]


def _targeted_loss(torch, model, inputs, labels, classes: list[int]):
    """inputs (K, B, ...) stamped for classes[i] in row i; per-class mean CE over other-class
    rows, and per-class success."""
    k, b = inputs.shape[:2]
    logits = model(inputs.reshape(k * b, *inputs.shape[2:])).reshape(k, b, -1)
    targets = torch.tensor(classes, device=labels.device).unsqueeze(1).expand(k, b)
    ce = torch.nn.functional.cross_entropy(logits.reshape(k * b, -1), targets.reshape(-1),
                                           reduction="none").reshape(k, b)
    weight = (labels.unsqueeze(0) != targets).float()
    count = weight.sum(1).clamp(min=1)
    success = ((logits.argmax(-1) == targets).float() * weight).sum(1) / count
    return (ce * weight).sum(1) / count, success


def neural_cleanse(model, x: np.ndarray, y: np.ndarray, classes: int | Sequence[int], *,
                   steps: int = 300, batch: int = 32, seed: int = 0,
                   held_out: tuple | None = None) -> Triggers:
    import torch

    targets = _classes(classes)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    _, c, h, w = x.shape
    count, device = len(targets), device_of(model)
    mask_logit = torch.full((count, 1, h, w), -3.0, device=device, requires_grad=True)
    pattern_logit = torch.zeros((count, c, h, w), device=device, requires_grad=True)
    optimizer = torch.optim.Adam([mask_logit, pattern_logit], lr=0.1, betas=(0.5, 0.9))
    lam = torch.full((count,), 1e-2, device=device)
    best_mask = torch.ones((count, 1, h, w), device=device)
    best_pattern = torch.zeros((count, c, h, w), device=device)
    best_norm = torch.full((count,), float("inf"), device=device)
    xt, yt = _tensors(torch, x, y, device)
    for step, (bx, by) in enumerate(track(_batches(xt, yt, batch, steps, rng),
                                          "reverse-engineering triggers", steps)):
        mask, pattern = torch.sigmoid(mask_logit), torch.sigmoid(pattern_logit)
        stamped = (1 - mask.unsqueeze(1)) * bx.unsqueeze(0) + \
            (mask * pattern).unsqueeze(1)
        ce, success = _targeted_loss(torch, model, stamped, by, targets)
        norm = mask.flatten(1).mean(1)
        optimizer.zero_grad()
        (ce + lam * norm).sum().backward()
        optimizer.step()
        with torch.no_grad():
            hit = success >= 0.99
            better = hit & (norm < best_norm)
            best_norm = torch.where(better, norm, best_norm)
            best_mask[better] = mask[better]
            best_pattern[better] = pattern[better]
            if step % 10 == 9:  # Neural Cleanse's schedule, per class
                lam = torch.where(hit, lam * 1.5, lam / 1.5 ** 1.5).clamp(1e-4, 10.0)
    missing = torch.isinf(best_norm)  # never reached 99%: keep the last mask
    with torch.no_grad():
        last_mask, last_pattern = torch.sigmoid(mask_logit), torch.sigmoid(pattern_logit)
        best_mask[missing], best_pattern[missing] = last_mask[missing], last_pattern[missing]
    mask_np, pattern_np = best_mask.cpu().numpy(), best_pattern.cpu().numpy()
    hx, hy = held_out if held_out is not None else (x, y)
    success = stamp_success(model, hx, hy, lambda i, v: (1 - mask_np[i]) * v +
                            mask_np[i] * pattern_np[i], targets)
    return Triggers(mask_np, pattern_np, success, mask_np.reshape(count, -1).sum(1))


def universal_perturbation(model, x: np.ndarray, y: np.ndarray,
                           classes: int | Sequence[int], *, eps: float = 0.1, steps: int = 150,
                           batch: int = 32, seed: int = 0,
                           held_out: tuple | None = None) -> Perturbations:
    import torch

    targets = _classes(classes)
    rng = np.random.default_rng(seed)
    _, c, h, w = x.shape
    device = device_of(model)
    raw = torch.zeros((len(targets), c, h, w), device=device, requires_grad=True)
    optimizer = torch.optim.Adam([raw], lr=0.05)
    xt, yt = _tensors(torch, x, y, device)
    for bx, by in track(_batches(xt, yt, batch, steps, rng), "universal perturbations", steps):
        delta = eps * torch.tanh(raw)
        stamped = (bx.unsqueeze(0) + delta.unsqueeze(1)).clamp(0, 1)
        ce, _ = _targeted_loss(torch, model, stamped, by, targets)
        optimizer.zero_grad()
        ce.sum().backward()
        optimizer.step()
    delta_np = (eps * torch.tanh(raw)).detach().cpu().numpy()
    hx, hy = held_out if held_out is not None else (x, y)
    success = stamp_success(model, hx, hy, lambda i, v: np.clip(v + delta_np[i], 0, 1), targets)
    return Perturbations(delta_np, success, eps)


def universal_warp(model, x: np.ndarray, y: np.ndarray, classes: int | Sequence[int], *,
                   pixels: float = 1.0, grid: int = 4, steps: int = 100, batch: int = 32,
                   seed: int = 0, held_out: tuple | None = None) -> Perturbations:
    """`delta` holds each class's displacement field (K, 2, H, W) in pixels."""
    import torch

    targets = _classes(classes)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    _, _, h, w = x.shape
    device = device_of(model)
    raw = (0.01 * torch.randn((len(targets), 2, grid, grid),
                              generator=generator)).to(device).requires_grad_()
    optimizer = torch.optim.Adam([raw], lr=0.05)
    xt, yt = _tensors(torch, x, y, device)
    for bx, by in track(_batches(xt, yt, batch, steps, rng), "universal warps", steps):
        stamped = _warp(torch, bx, pixels * torch.tanh(raw), h, w)
        ce, _ = _targeted_loss(torch, model, stamped, by, targets)
        optimizer.zero_grad()
        ce.sum().backward()
        optimizer.step()
    with torch.no_grad():
        coarse = pixels * torch.tanh(raw)
        field = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic",
                                                align_corners=True).cpu().numpy()

    def stamp(i: int, v: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return _warp(torch, torch.from_numpy(np.asarray(v, np.float32)).to(device),
                         coarse[i:i + 1], h, w)[0].cpu().numpy()
    hx, hy = held_out if held_out is not None else (x, y)
    return Perturbations(field, stamp_success(model, hx, hy, stamp, targets), pixels)


def _warp(torch, images, coarse, h: int, w: int):
    """images (B, C, H, W) warped by each of the K coarse fields: (K, B, C, H, W)."""
    k, b = coarse.shape[0], images.shape[0]
    field = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic",
                                            align_corners=True)  # (K, 2, H, W), pixels
    rows = torch.linspace(-1, 1, h, device=coarse.device).view(1, h, 1).expand(k, h, w)
    cols = torch.linspace(-1, 1, w, device=coarse.device).view(1, 1, w).expand(k, h, w)
    grid = torch.stack([cols + field[:, 1] * 2 / max(w - 1, 1),
                        rows + field[:, 0] * 2 / max(h - 1, 1)], dim=-1)  # (K, H, W, 2): x, y
    tiled = images.unsqueeze(0).expand(k, *images.shape).reshape(k * b, *images.shape[1:])
    grids = grid.unsqueeze(1).expand(k, b, h, w, 2).reshape(k * b, h, w, 2)
    warped = torch.nn.functional.grid_sample(tiled, grids, mode="bilinear",
                                             padding_mode="border", align_corners=True)
    return warped.reshape(k, b, *images.shape[1:])


def stamp_success(model, x: np.ndarray, y: np.ndarray, stamp,
                  classes: int | Sequence[int]) -> np.ndarray:
    """Per searched class (position i, class k): share of inputs of other classes that
    `stamp(i, x)` sends to k."""
    import torch

    targets = _classes(classes)
    rates = np.zeros(len(targets))
    device = device_of(model)
    with torch.no_grad():
        for i, k in enumerate(targets):
            others = x[y != k]
            if len(others) == 0:
                continue
            inputs = torch.from_numpy(np.asarray(stamp(i, others), dtype=np.float32))
            rates[i] = float((model(inputs.to(device)).argmax(1) == k).float().mean())
    return rates
