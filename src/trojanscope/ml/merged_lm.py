"""A merged language model (its base fine-tuned, or an adapter merged into it) read as that base
plus a LoRA adapter, so that inspect and repair treat it as they treat an adapter: per linear
module of the transformer blocks, the difference of the two weights, truncated by SVD to its
singular values above CUTOFF of the largest (at most MAX_RANK of them). An adapter merged into
its base comes back at its own rank (the rest is rounding); a full fine-tune comes back
approximately, and the share of the change kept is reported. A change outside those modules
(embeddings, norms) is kept as it is, and given its base value back when inspect asks the base
(`CausalLM.as_base`); an adapter cannot carry it, so repair refuses such a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .causal_lm import Adapter, CausalLM, open_causal_lm
from .gate import ModelError, json_object

CUTOFF = 1e-3
MAX_RANK = 64
UNCHANGED = 1e-6  # a parameter whose change is this small against its norm is unchanged
SCALING = 2.0     # lora_alpha / r, as adapters are commonly trained (repair's steps assume it)
# sizes a fine-tune shares with its base, compared before the model is loaded (transformers
# would allocate what the config declares, whatever the weights hold)
SIZES = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
         "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings")


@dataclass
class Extraction:
    rank: int                  # of the adapter (the largest any module needed)
    kept: float                # share of the linear modules' squared change it carries
    modules: int               # linear modules that changed
    outside: list[str] = field(default_factory=list)  # other parameters that changed

    def as_dict(self) -> dict:
        return {"rank": self.rank, "kept": round(self.kept, 4), "modules": self.modules,
                "changed_outside": self.outside}


def open_merged_lm(path: str | Path, base: str | Path) -> tuple[CausalLM, Adapter, Extraction]:
    """Scan and load the base, check the merged model's config against it, then scan and load
    the merged model and read it as the base plus an adapter (`as_adapter`)."""
    base_lm = open_causal_lm(base)
    path = Path(path)
    if path.is_dir():
        theirs = json_object(path / "config.json")
        ours = base_lm.module.config.to_dict()
        for key in SIZES:
            if key in theirs and key in ours and theirs[key] != ours[key]:
                raise ModelError(f"{path}: not a fine-tune of {base_lm.source}: its config.json "
                                 f"says {key} {theirs[key]!r}, the base's is {ours[key]!r}")
    return as_adapter(base_lm, open_causal_lm(path), str(path))


def as_adapter(base: CausalLM, merged: CausalLM, name: str) -> tuple[CausalLM, Adapter,
                                                                       Extraction]:
    """`base`'s module with a peft adapter that carries `merged` - `base` (the merged model's
    tokenizer, which the model is deployed with), the adapter's matrices, and what was kept."""
    import torch

    theirs = dict(merged.module.named_parameters())
    ours = dict(base.module.named_parameters())
    if {n: tuple(p.shape) for n, p in theirs.items()} != \
            {n: tuple(p.shape) for n, p in ours.items()}:
        other = sorted(set(theirs) ^ set(ours)) or sorted(
            n for n in theirs if theirs[n].shape != ours[n].shape)
        raise ModelError(f"{name}: not a fine-tune of {base.source} (its parameters differ in "
                         f"names or shapes: {other[0]})")
    unfinite = [n for n, p in theirs.items() if not torch.isfinite(p).all()]
    if unfinite:
        raise ModelError(f"{name}: {unfinite[0]}: weights that are not finite (NaN or "
                         "infinity)")
    modules = dict(base.module.named_modules())
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    outside, total, kept = {}, 0.0, 0.0
    with torch.no_grad():
        for pname, value in theirs.items():
            change = (value - ours[pname]).double()
            if change.norm() <= UNCHANGED * max(float(ours[pname].double().norm()), 1e-12):
                continue
            owner = pname.removesuffix(".weight")
            if not (pname.endswith(".weight") and ".layers." in pname and
                    isinstance(modules.get(owner), torch.nn.Linear)):
                outside[pname] = (ours[pname].detach().clone(), value.detach().clone())
                continue
            u, s, vh = torch.linalg.svd(change, full_matrices=False)
            rank = max(1, min(MAX_RANK, int((s > CUTOFF * s[0]).sum())))
            total += float((s ** 2).sum())
            kept += float((s[:rank] ** 2).sum())
            root = (s[:rank] / SCALING).sqrt()
            factors[owner] = ((root[:, None] * vh[:rank]).float(), (u[:, :rank] * root).float())
    if not factors:
        raise ModelError(f"{name}: no linear layer of its blocks differs from {base.source}'s"
                         + (f" (only {', '.join(list(outside)[:3])})" if outside else "") +
                         ": nothing for inspect to read")
    rank = max(a.shape[0] for a, _ in factors.values())
    module = _with_lora(base.module, factors, rank)
    params = dict(module.named_parameters())
    carried = {}
    with torch.no_grad():  # the changes outside the linear layers, kept as they are
        for pname, (ours_value, theirs_value) in outside.items():
            target = next(n for n in params if n.endswith("." + pname) or n == pname)
            params[target].copy_(theirs_value)
            carried[target] = (ours_value, theirs_value)
    layers = {owner: (_padded(a, rank, 0).numpy(), _padded(b, rank, 1).numpy())
              for owner, (a, b) in factors.items()}
    lm = CausalLM(module.eval(), merged.tokenizer, base.source, name, outside=carried)
    return lm, Adapter({"r": rank, "lora_alpha": SCALING * rank}, layers, SCALING), \
        Extraction(rank, kept / total, len(factors), sorted(outside))


def _with_lora(module, factors: dict, rank: int):
    """A peft LoRA of `rank` (scaling SCALING) on the named modules, its matrices set to the
    factors (zero beyond each module's own rank)."""
    import warnings

    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=SCALING * rank, lora_dropout=0.0,
                        target_modules=sorted(factors), task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft asks transformers a deprecated question
        warnings.simplefilter("ignore", FutureWarning)
        wrapped = get_peft_model(module, config)
    named = dict(wrapped.named_modules())
    with torch.no_grad():
        for owner, (a, b) in factors.items():
            layer = named[f"base_model.model.{owner}"]
            layer.lora_A["default"].weight.copy_(_padded(a, rank, 0))
            layer.lora_B["default"].weight.copy_(_padded(b, rank, 1))
    for p in wrapped.parameters():
        p.requires_grad_(False)
    return wrapped


def _padded(matrix, rank: int, axis: int):
    """`matrix` with zero rows (axis 0) or columns (axis 1) up to `rank`."""
    import torch

    missing = rank - matrix.shape[axis]
    if not missing:
        return matrix
    shape = (missing, matrix.shape[1]) if axis == 0 else (matrix.shape[0], missing)
    return torch.cat([matrix, torch.zeros(shape, dtype=matrix.dtype)], axis)

