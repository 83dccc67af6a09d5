"""The reasoning models: shapes, gradients, halting that really skips work, the carried batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from forge.data.task import IGNORE
from forge.models.cogment import Cogment
from forge.models.hrrm import HRRM
from forge.models.transformer import Transformer

V, L = 7, 16


def hrrm(variant: str, **changes: object) -> HRRM:
    cfg = dict(variant=variant, d_model=16, n_heads=2, d_ff=32, n_layers=1, mixer="attention", h_cycles=2,
               l_cycles=2, segments=4, halt_explore=0.0, halt_at_inference=True, memory_slots=2, ema_decay=0.0)
    return HRRM(V, L, **{**cfg, **changes})


def cogment(**changes: object) -> Cogment:
    cfg = dict(d_model=16, n_heads=2, d_ff=32, mixer="attention", encoder_layers=1, core_layers=1, max_steps=4,
               halt_epsilon=0.01, ponder_cost=0.01, deep_supervision=0.5, memory_slots=3)
    return Cogment(V, L, **{**cfg, **changes})


def batch(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, V, (n, L), generator=gen)
    labels = torch.randint(0, V, (n, L), generator=gen)
    labels[:, : L // 2] = IGNORE
    return inputs, labels


MODELS = {
    "hrm": lambda: hrrm("hrm"),
    "trm": lambda: hrrm("trm", mixer="mlp"),
    "cogment": cogment,
    "transformer": lambda: Transformer(V, L, 16, 1, 2, 32, causal=False),
}


@pytest.mark.parametrize("name", MODELS)
def test_forward_and_backward_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = MODELS[name]()
    inputs, labels = batch()
    assert model(inputs).shape == (len(inputs), L, V)
    if hasattr(model, "training_loss"):
        loss, _ = model.training_loss(inputs, labels)
    else:
        loss = nn.functional.cross_entropy(model(inputs).transpose(1, 2), labels, ignore_index=IGNORE)
    loss.backward()
    assert torch.isfinite(loss)
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()] == []


@pytest.mark.parametrize("name", MODELS)
def test_models_run_under_bf16_autocast(name: str) -> None:
    """`precision: bf16-mixed` (GPU, and CPUs with native bf16) must not trip on mixed dtypes."""
    torch.manual_seed(0)
    model = MODELS[name]()
    inputs, labels = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(inputs)
        loss = model.training_loss(inputs, labels)[0] if hasattr(model, "training_loss") else logits.sum()
    loss.float().backward()
    assert logits.shape == (len(inputs), L, V) and torch.isfinite(loss)


def _rows_through(module: nn.Module, run: callable) -> int:
    """How many examples `module` processed while `run` ran."""
    seen = []
    handle = module.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    run()
    handle.remove()
    return sum(seen)


@pytest.mark.parametrize("variant", ["hrm", "trm"])
def test_hrrm_halted_examples_stop_being_computed(variant: str) -> None:
    inputs, _ = batch(8)
    model = hrrm(variant).eval()
    full = _rows_through(model.low, lambda: model(inputs))
    assert model.segments_run == 4
    with torch.no_grad():
        model.halt.bias.fill_(5.0)  # every halting head fires after the first segment
    once = _rows_through(model.low, lambda: model(inputs))
    assert model.segments_run == 1 and once * 4 == full


def test_cogment_halting_skips_core_steps_and_mixture_is_a_distribution() -> None:
    inputs, _ = batch(8)
    model = cogment().eval()
    with torch.no_grad():
        model.halt.bias.fill_(-20.0)  # never halts early: all max_steps
        log_mix = model(inputs)
        assert torch.allclose(log_mix.exp().sum(-1), torch.ones(8, L), atol=1e-5)
        full = _rows_through(model.core, lambda: model(inputs))
        model.halt.bias.fill_(20.0)  # halts after the first step
        once = _rows_through(model.core, lambda: model(inputs))
    assert full == 8 * 4 and once == 8 and model.steps_run == 1


def test_hrrm_carry_keeps_unhalted_examples_and_refills_halted_ones() -> None:
    model = hrrm("trm")
    first, labels = batch(4)
    second = (first + 1) % V
    with torch.no_grad():
        model.halt.bias.fill_(-20.0)  # nobody halts before `segments`
    model.training_loss(first, labels)
    model.training_loss(second, labels)
    assert torch.equal(model.carry["inputs"], first) and model.carry["steps"].tolist() == [2] * 4
    with torch.no_grad():
        model.halt.bias.fill_(20.0)  # everybody halts now, so the next batch takes every slot
    model.training_loss(second, labels)
    model.training_loss(second, labels)
    assert torch.equal(model.carry["inputs"], second) and model.carry["steps"].tolist() == [1] * 4


def test_hrrm_gradient_flows_only_through_the_last_update() -> None:
    """The no-grad cycles must not build a graph: memory stays flat as cycles grow."""
    inputs, labels = batch()
    for cycles in (2, 8):
        model = hrrm("hrm", h_cycles=cycles, l_cycles=cycles)
        loss, _ = model.training_loss(inputs, labels)
        nodes, stack, seen = 0, [loss.grad_fn], set()
        while stack:
            fn = stack.pop()
            if fn is None or fn in seen:
                continue
            seen.add(fn)
            nodes += 1
            stack.extend(f for f, _ in fn.next_functions)
        if cycles == 2:
            small = nodes
    assert nodes == small


def test_bad_model_values_name_the_key() -> None:
    with pytest.raises(ValueError, match="model.variant"):
        hrrm("xyz")
    with pytest.raises(ValueError, match="model.max_steps"):
        cogment(max_steps=0)
    with pytest.raises(ValueError, match="model.mixer"):
        hrrm("hrm", mixer="conv")
