"""Trigger searches for models that give no gradients (ONNX through onnxruntime), as B3D does
(Dong et al., ICCV 2021: black-box backdoor detection): the same objectives as
`reverse.neural_cleanse` and `reverse.universal_perturbation`, optimised with gradients
estimated from forward passes alone (natural evolution strategies, antithetic Gaussian
samples). Masks, patterns and perturbations live on a coarse grid (GRID x GRID, upsampled), so
that the estimate has few dimensions to cover; every class is searched at once, as in the
white-box searches (one forward pass over all classes, samples and directions per step).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..progress import track
from .reverse import (
    Perturbations,
    Triggers,
    _batches,
    _classes,
    _targeted_loss,
    stamp_success,
)

GRID = 8
SAMPLES = 8      # antithetic pairs per step
SIGMA = 0.5      # of the Gaussian directions, in logit units


def _upsample(torch, coarse, h: int, w: int):
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear",
                                           align_corners=False)


def _losses(torch, model, stamped, labels, targets):
    """stamped (D, K, B, ...): per direction and class, the mean cross-entropy to the class
    over inputs of other classes, and (for D = 1) the success."""
    d, k, b = stamped.shape[:3]
    with torch.no_grad():
        logits = model(stamped.reshape(d * k * b, *stamped.shape[3:])).reshape(d, k, b, -1)
    goal = torch.tensor(targets).view(1, k, 1).expand(d, k, b)
    ce = torch.nn.functional.cross_entropy(logits.reshape(d * k * b, -1), goal.reshape(-1),
                                           reduction="none").reshape(d, k, b)
    weight = (labels.view(1, 1, b) != goal).float()
    count = weight.sum(2).clamp(min=1)
    success = ((logits.argmax(-1) == goal).float() * weight).sum(2) / count
    return (ce * weight).sum(2) / count, success


def _estimate(torch, theta, evaluate, rng: np.random.Generator):
    """NES gradient of the per-class losses (K,) that evaluate(thetas (D, K, P)) returns
    (as (D, K)), at theta (K, P)."""
    noise = torch.from_numpy(rng.standard_normal((SAMPLES, *theta.shape)).astype(np.float32))
    candidates = torch.cat([theta + SIGMA * noise, theta - SIGMA * noise])
    losses = evaluate(candidates)
    difference = (losses[:SAMPLES] - losses[SAMPLES:]).unsqueeze(-1)  # (S, K, 1)
    return (difference * noise).sum(0) / (2 * SIGMA * SAMPLES)


def blackbox_cleanse(model, x: np.ndarray, y: np.ndarray, classes: int | Sequence[int], *,
                     steps: int = 150, batch: int = 16, seed: int = 0,
                     held_out: tuple | None = None, exact: bool = False) -> Triggers:
    """Neural Cleanse's masks and patterns, per class, without gradients. `exact`: the same
    search on the same coarse grid with the gradient computed (a PyTorch model: the reference
    proxies, whose norms must compare with a model searched without gradients)."""
    import torch

    targets = _classes(classes)
    rng = np.random.default_rng(seed)
    _, c, h, w = x.shape
    k, cells = len(targets), GRID * GRID
    theta = torch.cat([torch.full((k, cells), -3.0), torch.zeros((k, c * cells))], 1)
    optimizer = torch.optim.Adam([theta.requires_grad_()], lr=0.1, betas=(0.5, 0.9))
    lam = torch.full((k,), 1e-2)
    best = theta.detach().clone()
    best_norm = torch.full((k,), float("inf"))
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))

    def unpack(params):  # (D, K, P) -> masks (D, K, 1, H, W), patterns (D, K, C, H, W)
        d = params.shape[0]
        coarse_mask = params[..., :cells].reshape(d * k, 1, GRID, GRID)
        coarse_pattern = params[..., cells:].reshape(d * k, c, GRID, GRID)
        mask = torch.sigmoid(_upsample(torch, coarse_mask, h, w)).reshape(d, k, 1, h, w)
        pattern = torch.sigmoid(_upsample(torch, coarse_pattern, h, w)).reshape(d, k, c, h, w)
        return mask, pattern

    for step, (bx, by) in enumerate(track(_batches(xt, yt, batch, steps, rng),
                                          "reverse-engineering triggers (no gradients)",
                                          steps)):
        def evaluate(params, bx=bx, by=by, success=False):
            mask, pattern = unpack(params)
            stamped = (1 - mask.unsqueeze(2)) * bx.view(1, 1, *bx.shape) + \
                (mask * pattern).unsqueeze(2)
            ce, hit = _losses(torch, model, stamped, by, targets)
            return (ce, hit) if success else ce
        optimizer.zero_grad()
        if exact:
            mask, pattern = unpack(theta.unsqueeze(0))
            stamped = (1 - mask[0].unsqueeze(1)) * bx.unsqueeze(0) + \
                (mask[0] * pattern[0]).unsqueeze(1)
            ce, hit = _targeted_loss(torch, model, stamped, by, targets)
            norm = mask[0].flatten(1).mean(1)
            (ce + lam * norm).sum().backward()
            hit = hit.detach()
        else:
            with torch.no_grad():
                grad = _estimate(torch, theta.detach(), evaluate, rng)
                _, hit = evaluate(theta.detach().unsqueeze(0), success=True)
                hit = hit[0]
            mask, _ = unpack(theta.unsqueeze(0))
            norm = mask[0].flatten(1).mean(1)
            (lam * norm).sum().backward()  # the mask's size: an exact gradient
            theta.grad += grad
        optimizer.step()
        with torch.no_grad():
            better = (hit >= 0.99) & (norm.detach() < best_norm)
            best_norm = torch.where(better, norm.detach(), best_norm)
            best[better] = theta.detach()[better]
            if step % 10 == 9:
                lam = torch.where(hit >= 0.99, lam * 1.5, lam / 1.5 ** 1.5).clamp(1e-4, 10.0)
    with torch.no_grad():
        missing = torch.isinf(best_norm)
        best[missing] = theta.detach()[missing]
        mask, pattern = unpack(best.unsqueeze(0))
    mask_np, pattern_np = mask[0].numpy(), pattern[0].numpy()
    hx, hy = held_out if held_out is not None else (x, y)
    success = stamp_success(model, hx, hy, lambda i, v: (1 - mask_np[i]) * v +
                            mask_np[i] * pattern_np[i], targets)
    return Triggers(mask_np, pattern_np, success, mask_np.reshape(k, -1).sum(1))


def blackbox_perturbation(model, x: np.ndarray, y: np.ndarray,
                          classes: int | Sequence[int], *, eps: float = 0.1,
                          steps: int = 100, batch: int = 16, seed: int = 0,
                          held_out: tuple | None = None) -> Perturbations:
    """A universal perturbation per class within `eps` (L-inf), without gradients."""
    import torch

    targets = _classes(classes)
    rng = np.random.default_rng(seed)
    _, c, h, w = x.shape
    k = len(targets)
    theta = torch.zeros((k, c * GRID * GRID), requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=0.05)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))

    def delta_of(params):
        d = params.shape[0]
        coarse = params.reshape(d * k, c, GRID, GRID)
        return (eps * torch.tanh(_upsample(torch, coarse, h, w))).reshape(d, k, c, h, w)

    for bx, by in track(_batches(xt, yt, batch, steps, rng),
                        "universal perturbations (no gradients)", steps):
        def evaluate(params, bx=bx, by=by):
            stamped = (bx.view(1, 1, *bx.shape) + delta_of(params).unsqueeze(2)).clamp(0, 1)
            return _losses(torch, model, stamped, by, targets)[0]
        with torch.no_grad():
            grad = _estimate(torch, theta.detach(), evaluate, rng)
        optimizer.zero_grad()
        theta.grad = grad
        optimizer.step()
    with torch.no_grad():
        delta_np = delta_of(theta.detach().unsqueeze(0))[0].numpy()
    hx, hy = held_out if held_out is not None else (x, y)
    success = stamp_success(model, hx, hy, lambda i, v: np.clip(v + delta_np[i], 0, 1),
                            targets)
    return Perturbations(delta_np, success, eps)
