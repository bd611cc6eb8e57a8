"""Adversarial Neuron Pruning (Wu and Wang, NeurIPS 2021), on clean data only.

Backdoor neurons are the ones whose small perturbation wrecks a model's clean behaviour: they
sit on a knife edge that the trigger pushes over. ANP gives every neuron (output channel of a
convolution, unit of a hidden linear layer) a mask m in [0, 1] and learns it to keep clean
inputs right even while an adversary scales each neuron's weights by (m + d) and its bias by
(1 + e), |d|, |e| <= eps. Neurons whose mask falls are the ones to prune. No trigger is needed.

The masks act on the layers' own parameters, written in place, and their gradients follow by
the chain rule from the parameters' gradients (dL/dm_k = sum of dL/dW'_k * W_k): the same code
serves nn.Modules and TorchScript modules, which take no hooks or reparametrisations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..progress import track
from .torch_model import frozen, prunable_layers


@dataclass(frozen=True)
class AnpConfig:
    eps: float = 0.4      # the adversary's budget per neuron (the paper's default)
    alpha: float = 0.2    # weight of the unperturbed loss against the perturbed one
    steps: int = 1000
    batch: int = 128
    learning_rate: float = 0.2
    seed: int = 0


def neuron_masks(module, x: np.ndarray, y: np.ndarray,
                 config: AnpConfig = AnpConfig()) -> list[tuple[str, np.ndarray]]:
    """Per prunable layer (name, mask per output neuron in [0, 1]); lower = more suspect.
    The module's parameters are restored afterwards."""
    import torch

    layers = [layer for _, layer in prunable_layers(module)]
    weights = [layer.weight.detach().clone() for layer in layers]
    biases = [layer.bias.detach().clone() if layer.bias is not None else None
              for layer in layers]
    masks = [torch.ones(len(w)) for w in weights]
    velocity = [torch.zeros(len(w)) for w in weights]
    ones = [torch.ones(len(w)) for w in weights]
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))

    def write(scale_w, scale_b) -> None:
        with torch.no_grad():
            for layer, w, b, sw, sb in zip(layers, weights, biases, scale_w, scale_b):
                layer.weight.copy_(w * sw.view(-1, *[1] * (w.ndim - 1)))
                layer.weight.grad = None
                if b is not None:
                    layer.bias.copy_(b * sb)
                    layer.bias.grad = None

    def gradients(scale_w, scale_b, bx, by):
        """dL/d(weight scale) and dL/d(bias scale) per neuron, at the given scales."""
        write(scale_w, scale_b)
        torch.nn.functional.cross_entropy(module(bx), by).backward()
        grad_w = [(layer.weight.grad * w).flatten(1).sum(1)
                  for layer, w in zip(layers, weights)]
        grad_b = [layer.bias.grad * b if b is not None else torch.zeros(len(w))
                  for layer, w, b in zip(layers, weights, biases)]
        return grad_w, grad_b

    def box(values):
        return [v.clamp(-config.eps, config.eps) for v in values]

    with frozen(module):
        for layer in layers:  # gradients for these only, to carry them to the masks
            layer.weight.requires_grad_(True)
            if layer.bias is not None:
                layer.bias.requires_grad_(True)
        try:
            for _ in track(range(config.steps), "adversarial neuron perturbation",
                           config.steps):
                rows = torch.from_numpy(rng.choice(len(xt), size=min(config.batch, len(xt)),
                                                   replace=False))
                bx, by = xt[rows], yt[rows]
                # The adversary: a random start in the box, then one signed ascent step.
                noise_w = [(torch.rand(len(m), generator=generator) * 2 - 1) * config.eps
                           for m in masks]
                noise_b = [(torch.rand(len(m), generator=generator) * 2 - 1) * config.eps
                           for m in masks]
                grad_w, grad_b = gradients([m + n for m, n in zip(masks, noise_w)],
                                           [1 + n for n in noise_b], bx, by)
                noise_w = box([n + config.eps * g.sign() for n, g in zip(noise_w, grad_w)])
                noise_b = box([n + config.eps * g.sign() for n, g in zip(noise_b, grad_b)])
                # The defender: masks that keep clean inputs right with and without it.
                natural, _ = gradients(masks, ones, bx, by)
                robust, _ = gradients([m + n for m, n in zip(masks, noise_w)],
                                      [1 + n for n in noise_b], bx, by)
                for i, m in enumerate(masks):
                    velocity[i] = 0.9 * velocity[i] + config.alpha * natural[i] + \
                        (1 - config.alpha) * robust[i]
                    masks[i] = (m - config.learning_rate * velocity[i]).clamp(0, 1)
        finally:
            write(ones, ones)
    return [(name, m.numpy()) for (name, _), m in zip(prunable_layers(module), masks)]
