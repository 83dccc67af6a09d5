"""Prioritized replay (data.sampler=prioritized): draws follow p^alpha / sum p^alpha, importance
weights (N P)^-beta over their largest, beta annealed to 1, priorities from the training step's
per-row losses, exact resume, and bad settings refused in one line."""

from __future__ import annotations

import csv
from itertools import islice
from pathlib import Path
from typing import Iterator

import pytest
import torch
from scipy.stats import chisquare

from conftest import FIXTURES, run_forge, run_in_process, tiny
from forge.config.combinations import BATCH_LOSS_MODELS
from forge.config.compose import compose
from forge.config.errors import ConfigError
from forge.config.validate import validate
from forge.data.samplers import Draw, PrioritizedBatchSampler
from forge.data.task import IGNORE
from forge.models.sequence import sequence_loss
from forge.train.module import sequence_row_losses, weighted_loss


def sampler(n: int = 4, batch_size: int = 2, alpha: float = 0.5, beta: float = 0.5, eps: float = 0.5,
            total_draws: int = 10) -> PrioritizedBatchSampler:
    return PrioritizedBatchSampler(n, batch_size, seed=0, total_draws=total_draws, alpha=alpha, beta=beta, eps=eps)


def test_draws_follow_priority_to_the_alpha() -> None:
    s = sampler(n=10, batch_size=5, alpha=0.6, eps=0.01)
    losses = torch.tensor([0.0, 0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0], dtype=torch.float64)
    s.update(torch.arange(10), losses)
    counts = torch.zeros(10)
    for epoch in range(2000):  # 2 batches an epoch: 20,000 draws
        s.set_epoch(epoch)
        for draw in s:
            counts += torch.bincount(torch.tensor(draw.rows), minlength=10)
    p = (losses + 0.01) ** 0.6
    expected = (p / p.sum() * counts.sum()).numpy()
    assert chisquare(counts.numpy(), expected).pvalue > 0.01


def test_weights_and_probabilities_on_a_hand_computed_case() -> None:
    # priorities 1, 4, 16, 4 (loss + eps 0.5) to the alpha 0.5: 1, 2, 4, 2, so P = 1/9, 2/9, 4/9, 2/9;
    # (N P)^-0.5 = 3/2, 3/(2 sqrt 2), 3/4, 3/(2 sqrt 2), over the largest (row 0's): 1, 1/sqrt 2, 1/2, 1/sqrt 2
    s = sampler()
    s.update(torch.tensor([0, 1, 2, 3]), torch.tensor([0.5, 3.5, 15.5, 3.5]))
    probs = s.probabilities()
    assert torch.allclose(probs, torch.tensor([1, 2, 4, 2], dtype=torch.float64) / 9)
    weights = s.weights(probs, torch.tensor([2, 0, 1, 2]))
    assert torch.allclose(weights, torch.tensor([0.5, 1.0, 2 ** -0.5, 0.5]))
    assert s.weights(probs, torch.arange(4)).max() == 1.0, "the least likely row of the split has weight 1"


def test_rows_not_trained_on_have_the_highest_priority_so_far() -> None:
    s = sampler(alpha=1.0)
    assert torch.equal(s.probabilities(), torch.full((4,), 0.25, dtype=torch.float64)), "uniform before any loss"
    s.update(torch.tensor([0, 1]), torch.tensor([0.5, 1.5]))  # priorities 1 and 2; rows 2 and 3 take 2
    assert torch.allclose(s.probabilities(), torch.tensor([1, 2, 2, 2], dtype=torch.float64) / 7)


def test_priorities_come_from_the_losses_a_row_drawn_twice_from_their_mean() -> None:
    s = sampler(eps=0.25)
    s.update(torch.tensor([3, 1, 3]), torch.tensor([1.0, 2.0, 3.0]))
    assert s.priorities.tolist() == [0.0, 2.25, 0.0, 2.25] and s.seen.tolist() == [False, True, False, True]
    s.update(torch.tensor([1]), torch.tensor([0.75]))
    assert s.priorities[1] == 1.0, "the last loss replaces the priority"


def test_beta_rises_linearly_to_one_over_the_run_and_weights_use_it() -> None:
    s = sampler(n=8, batch_size=1, beta=0.4, total_draws=10)
    s.update(torch.arange(8), torch.tensor([0.5, 3.5, 15.5, 3.5, 0.5, 0.5, 0.5, 0.5]))
    seen = []
    for epoch in range(2):  # 8 draws an epoch
        s.set_epoch(epoch)
        for draw in s:
            seen.append(s.draws)
            beta = 0.4 + 0.6 * min(1.0, (s.draws - 1) / 10)
            p = torch.tensor([1.0, 2.0, 4.0, 2.0, 1.0, 1.0, 1.0, 1.0])
            assert torch.allclose(draw.weights, p[draw.rows] ** -beta), s.draws
    assert seen == list(range(1, 17))
    assert s.beta == 1.0


def test_state_dict_mid_epoch_continues_with_the_same_draws() -> None:
    def take(s: PrioritizedBatchSampler, batches: Iterator[Draw], n: int) -> list[list[int]]:
        out = []
        for draw in islice(batches, n):
            out.append(draw.rows)
            s.update(torch.tensor(draw.rows), torch.tensor(draw.rows, dtype=torch.float64) / 10)  # a loss per row
        return out

    first, second = sampler(n=40, batch_size=4), sampler(n=40, batch_size=4)
    batches = iter(first)
    take(first, batches, 3)
    state = first.state_dict()
    rest = take(first, batches, 7)
    second.load_state_dict(state)
    assert take(second, iter(second), 10) == rest, "the epoch's 7 batches left, the same"
    assert second.state_dict()["draws"] == first.state_dict()["draws"] == 10
    assert torch.equal(second.priorities, first.priorities)


def test_weighted_loss_weights_each_rows_summed_loss_over_the_batchs_tokens() -> None:
    loss, rows = weighted_loss(torch.tensor([2.0, 6.0]), torch.tensor([2, 3]), torch.tensor([1.0, 0.5]))
    assert loss == pytest.approx((2.0 + 3.0) / 5) and rows.tolist() == [1.0, 2.0]
    logits = torch.randn(3, 5, 7)
    labels = torch.tensor([[1, 2, 3, IGNORE, IGNORE], [IGNORE, 4, 5, 6, 0], [IGNORE, IGNORE, IGNORE, IGNORE, 1]])
    for causal in (True, False):
        sums, counts = sequence_row_losses(logits, labels, causal)
        plain, _ = weighted_loss(sums, counts, torch.ones(3))
        assert torch.allclose(plain, sequence_loss(logits, labels, causal)), "weights of 1: the plain token mean"


def test_every_model_with_its_own_training_loss_is_refused_replay() -> None:
    from forge.config.families import FAMILIES
    from forge.config.instantiate import resolve_target

    own_loss = {m for f in FAMILIES.values() for m in f.models if m != "forge.models.hf.HFCausalLM"
                and hasattr(resolve_target(m), "training_loss")}
    assert own_loss == set(BATCH_LOSS_MODELS)


@pytest.mark.parametrize("overrides, message", [
    (["data.replay.alpha=-0.5"], "data.replay.alpha=-0.5: must be >= 0"),
    (["data.replay.beta=1.5"], "data.replay.beta=1.5: must be in [0, 1]"),
    (["data.replay.eps=0"], "data.replay.eps=0.0: must be > 0"),
    (["data.sampler=prioritised"], "data.sampler=prioritised: not a valid choice"),
    (["data.sampler=prioritized", "data=sudoku", "curriculum=difficulty"], "data.sampler=prioritized: the curriculum"),
    (["data.sampler=prioritized", "+recipe=hrrm_sudoku"], "data.sampler=prioritized: forge.models.hrrm.HRRM trains on one loss per batch"),
    (["data.sampler=prioritized", "trainer=ddp_cpu"], "data.sampler=prioritized: replay keeps its priorities in one process"),
    (["data.sampler=prioritized", "trainer.num_nodes=2"], "data.sampler=prioritized: replay keeps its priorities in one process"),
])
def test_bad_replay_settings_are_refused_naming_the_key(overrides: list[str], message: str) -> None:
    cfg, origin = compose(overrides)
    with pytest.raises(ConfigError) as e:
        validate(cfg, origin.where)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_cli_refuses_a_negative_alpha_in_one_line(tmp_path: Path) -> None:
    proc = run_forge("validate", "data.sampler=prioritized", "data.replay.alpha=-1", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "forge: error: data.replay.alpha=-1.0: must be >= 0 (command line: 'data.replay.alpha=-1')."]


def test_uniform_stays_the_default() -> None:
    cfg, origin = compose([])
    data = validate(cfg, origin.where).data
    assert data.sampler == "uniform" and dict(data.replay) == {"alpha": 0.6, "beta": 0.4, "eps": 0.01, "priority": "loss"}


STEPS = 24
ARGS = ["data.sampler=prioritized", f"trainer.max_steps={STEPS}", "trainer.deterministic=true", "export=none"]


def test_a_run_that_dies_resumes_exactly(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Die at step 15 (16 batches an epoch): the checkpoint of step 10 is resumed, across the
    epoch's end, to the uninterrupted run's weights, losses and priorities."""
    args = [*tiny(cache), *ARGS, "trainer.log_every_n_steps=1", "logger=csv"]
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    run_in_process(*args, run_dir=straight)

    calls = iter(range(1, STEPS + 1))

    def dies_at_step_15() -> bool:
        if next(calls) == 15:
            raise RuntimeError("killed")
        return False

    with monkeypatch.context() as m:
        m.setattr("forge.run_state.stop_requested", dies_at_step_15)
        with pytest.raises(RuntimeError, match="killed"):
            run_in_process(*args, run_dir=broken)
    assert torch.load(broken / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10
    run_in_process(*args, f"resume={broken}", run_dir=broken)

    want = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    got = torch.load(broken / "checkpoints" / "last.ckpt", weights_only=True)
    assert want["global_step"] == got["global_step"] == STEPS
    for name, tensor in want["state_dict"].items():
        assert torch.equal(tensor, got["state_dict"][name]), name
    (want_replay,), (got_replay,) = (c["loops"]["fit_loop"]["state_dict"]["combined_loader"] for c in (want, got))
    assert want_replay["draws"] == got_replay["draws"] == STEPS
    assert torch.equal(want_replay["priorities"], got_replay["priorities"]) and int(want_replay["seen"].sum()) > 300
    resumed = _train_losses(broken)  # the csv logger starts its file again on resume
    assert resumed == {step: loss for step, loss in _train_losses(straight).items() if step >= 10}


def _train_losses(run: Path) -> dict[int, str]:
    """train/loss by step."""
    with open(run / "csv" / "metrics.csv") as f:
        return {int(row["step"]): row["train/loss"] for row in csv.DictReader(f) if row.get("train/loss")}


def test_sft_replays_packed_rows_with_a_causal_lm(tmp_path: Path, cache: Path, tiny_lm: Path) -> None:
    from forge.data.loader import SplitDataset
    from forge.train.causal_lm import load_checkpoint, packed_loss, row_losses

    run = tmp_path / "run"
    run_in_process(
        "model=hf_causal_lm", f"model.source={tiny_lm}", "peft=lora", "peft.r=4", "peft.alpha=8", "data=sft_jsonl",
        f"data.sources=[{{format: prompt_completion, path: {FIXTURES / 'prompt_completion.jsonl'}}}]", "data.seq_len=64",
        "data.batch_size=2", "data.val_fraction=0.25", "data.test_fraction=0.25", "data.sampler=prioritized", "eval=perplexity",
        "eval.batch_size=4", "trainer.max_steps=6", "trainer.val_every_n_steps=6", "trainer.checkpoint_every_n_steps=6",
        "logger=none", "export=none", f"cache_dir={cache}", run_dir=run,
    )
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    (replay,) = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert replay["draws"] == 6 and 0 < int(replay["seen"].sum()) <= 12
    assert bool((replay["priorities"][replay["seen"]] > 0.01).all()), "a packed row's priority is its mean token loss + eps"

    lm = load_checkpoint(str(run / "checkpoints" / "last.ckpt")).lm
    batch = SplitDataset(run / "data", "train")[[0, 1]]
    with torch.no_grad():
        total, count = packed_loss(lm, batch)
        weighted, _ = weighted_loss(*row_losses(lm, batch), torch.ones(2))
    assert torch.allclose(weighted, total / count), "weights of 1: the plain token mean over the packed rows"
