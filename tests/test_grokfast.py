"""GrokFast: the paper's EMA and MA filters on hand-computed gradients, the late start, and a
resumed run that continues the filter exactly."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from conftest import kill_at_first_checkpoint, run_forge
from forge.train.grokfast import GrokFast

GRADS = [torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.0]), torch.tensor([-1.0, 4.0]), torch.tensor([2.0, 2.0])]


def filtered(callback: GrokFast, grads: list[torch.Tensor], accuracy: float = 0.0) -> list[torch.Tensor]:
    """The gradient the optimizer sees at each step, for a one-parameter model."""
    model = nn.Module()
    model.w = nn.Parameter(torch.zeros(2))
    out = []
    for step, g in enumerate(grads):
        model.w.grad = g.clone()
        trainer = SimpleNamespace(callback_metrics={"train/exact_match": torch.tensor(accuracy)}, global_step=step)
        callback.on_before_optimizer_step(trainer, model, None)
        out.append(model.w.grad.clone())
    return out


def test_ema_filter_matches_the_paper() -> None:
    alpha, lamb = 0.9, 2.0
    mu, expected = None, []
    for g in GRADS:  # mu starts at the first gradient, then mu <- alpha mu + (1 - alpha) g; g + lamb mu
        mu = g if mu is None else alpha * mu + (1 - alpha) * g
        expected.append(g + lamb * mu)
    got = filtered(GrokFast("ema", alpha=alpha, lamb=lamb), GRADS)
    assert torch.allclose(torch.stack(got), torch.stack(expected))
    assert torch.allclose(got[1], torch.tensor([3.0, 0.0]) + 2.0 * torch.tensor([1.2, -1.8]))  # by hand


def test_ma_filter_waits_for_a_full_window_then_adds_the_window_mean() -> None:
    got = filtered(GrokFast("ma", lamb=5.0, window=3), GRADS)
    assert torch.equal(got[0], GRADS[0]) and torch.equal(got[1], GRADS[1])
    assert torch.allclose(got[2], GRADS[2] + 5.0 * torch.tensor([1.0, 2.0 / 3.0]))  # mean of g1..g3
    assert torch.allclose(got[3], GRADS[3] + 5.0 * torch.tensor([4.0 / 3.0, 2.0]))  # mean of g2..g4


def test_late_start_leaves_gradients_alone_until_the_training_set_is_fit() -> None:
    callback = GrokFast("ema", alpha=0.5, lamb=1.0, start_after_train_accuracy=0.99)
    assert [torch.equal(a, b) for a, b in zip(filtered(callback, GRADS, accuracy=0.5), GRADS)] == [True] * 4
    got = filtered(callback, GRADS[:2], accuracy=1.0)
    assert callback.started_at == 0
    assert torch.allclose(got[0], 2 * GRADS[0]) and torch.allclose(got[1], GRADS[1] + 0.5 * (GRADS[0] + GRADS[1]))


def test_state_dict_round_trip_continues_the_filter() -> None:
    straight = filtered(GrokFast("ma", lamb=5.0, window=3), GRADS)
    first = GrokFast("ma", lamb=5.0, window=3)
    filtered(first, GRADS[:2])
    second = GrokFast("ma", lamb=5.0, window=3)
    second.load_state_dict(first.state_dict())
    assert torch.equal(torch.stack(filtered(second, GRADS[2:])), torch.stack(straight[2:]))


def test_unknown_filter_is_refused(tmp_path: Path) -> None:
    proc = run_forge("validate", "+recipe=grokfast_modular", "optim.grokfast.filter=median", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "optim.grokfast.filter=median" in proc.stderr and "ema" in proc.stderr


TINY = [
    "+recipe=grokfast_modular", "optim/grokfast=ma", "optim.grokfast.window=4", "data.p=11", "data.batch_size=16",
    "model.d_model=16", "model.d_ff=32", "model.n_layers=1", "model.n_heads=2", "trainer.max_steps=80",
    "trainer.stop_at=null", "trainer.val_every_n_steps=40", "trainer.checkpoint_every_n_steps=5", "logger=csv",
]


def test_grokfast_state_survives_a_killed_run(tmp_path: Path) -> None:
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    args = [*TINY, f"cache_dir={tmp_path / 'cache'}", "stage=train"]
    run_forge("stage=prepare", *args[:-1], f"hydra.run.dir={straight}", cwd=tmp_path)
    run_forge("stage=prepare", *args[:-1], f"hydra.run.dir={broken}", cwd=tmp_path)
    run_forge(*args, f"hydra.run.dir={straight}", cwd=tmp_path)
    assert 0 < kill_at_first_checkpoint(*args, run_dir=broken, cwd=tmp_path) < 80
    run_forge(*args, f"hydra.run.dir={broken}", f"resume={broken}", cwd=tmp_path)
    a, b = (torch.load(r / "checkpoints" / "last.ckpt", weights_only=True) for r in (straight, broken))
    assert a["global_step"] == b["global_step"] == 80
    state_a, state_b = a["callbacks"]["GrokFast"], b["callbacks"]["GrokFast"]
    assert state_a["seen"] == state_b["seen"] == 80
    for name, history in state_a["history"].items():
        assert torch.equal(history, state_b["history"][name]), name
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
