"""Continual learning: init_from starts a run from an earlier one; EWC and rehearsal keep the
earlier task, with the formula's penalty and gradient, state carried forward and exact resume."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.plugins.precision import Precision

from conftest import FIXTURES, kill_at_first_checkpoint, run_forge, run_in_process
from forge.data.loader import SplitDataset
from forge.models.sequence import sequence_loss
from forge.train.continual import EWC, Rehearsal, trained_parameters
from forge.train.module import load_checkpoint

TWO_TASKS = """# @package _global_
defaults:
  - /data@data.sources.add: arithmetic
  - /data@data.sources.sub: arithmetic
  - override /data: mixture
  - override /model: transformer
  - override /curriculum: staged
  - override /logger: csv
  - _self_

data:
  sources:
    add: {op: add, digits: 2, n_train: 40, n_val: 8, n_test: 8}
    sub: {op: sub, digits: 2, n_train: 40, n_val: 8, n_test: 8}
model: {d_model: 16, d_ff: 32, n_layers: 1, n_heads: 2}
curriculum:
  batch_size: 8
  stages:
    - {name: add, mix: {add: 1.0}, steps: 12, epochs: null, threshold: null}
trainer: {max_steps: 12, val_every_n_steps: 1000, checkpoint_every_n_steps: 4, log_every_n_steps: 1, deterministic: true}
eval: {batch_size: 64}
"""
SUB = "curriculum.stages=[{name:sub,mix:{sub:1.0},steps:12,epochs:null,threshold:null}]"


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    """The overrides of the two-task recipe, and a finished run of task A (addition)."""
    root = tmp_path_factory.mktemp("continual")
    (root / "recipes" / "recipe").mkdir(parents=True)
    (root / "recipes" / "recipe" / "two.yaml").write_text(TWO_TASKS)
    args = [f"hydra.searchpath=[file://{root / 'recipes'}]", "+recipe=two", f"cache_dir={root / 'cache'}"]
    run_in_process(*args, run_dir=root / "A")
    return args, root / "A"


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_init_from_starts_from_the_earlier_runs_weights(two_tasks, tmp_path: Path) -> None:
    args, a = two_tasks
    run_in_process(*args, SUB, f"init_from={a}", "trainer.max_steps=1", "optim.lr=1e-12", "trainer.gradient_clip_val=null",
                   run_dir=tmp_path / "B")
    for name, value in _weights(a).items():
        assert torch.allclose(value, _weights(tmp_path / "B")[name], atol=1e-9), name


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # the hook alone, without a Trainer
def test_ewc_penalty_and_gradient_follow_the_formula(two_tasks) -> None:
    _, a = two_tasks
    module = load_checkpoint(str(a / "checkpoints" / "last.ckpt"))
    params = trained_parameters(module)
    gen = torch.Generator().manual_seed(0)
    ewc = EWC(previous=str(a), strength=3.0)
    ewc.fisher = {n: torch.rand(p.shape, generator=gen) for n, p in params.items()}
    ewc.anchor = {n: p.detach() + torch.randn(p.shape, generator=gen) for n, p in params.items()}
    expected = 0.5 * 3.0 * sum(float((ewc.fisher[n] * (p.detach() - ewc.anchor[n]) ** 2).sum()) for n, p in params.items())
    assert float(ewc.penalty(params)) == pytest.approx(expected, rel=1e-6)
    # the gradient added is the penalty's own, by autograd, on top of the data's
    data_grad = {n: torch.randn(p.shape, generator=gen) for n, p in params.items()}
    for n, p in params.items():
        p.grad = data_grad[n].clone()
    ewc.on_before_optimizer_step(None, module, None)
    theta = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    penalty = 0.5 * 3.0 * sum((ewc.fisher[n] * (t - ewc.anchor[n]) ** 2).sum() for n, t in theta.items())
    penalty.backward()
    for n, p in params.items():
        assert torch.allclose(p.grad, data_grad[n] + theta[n].grad, atol=1e-6), n


def test_fisher_is_the_mean_squared_per_example_gradient_on_the_earlier_source(two_tasks) -> None:
    _, a = two_tasks
    module = load_checkpoint(str(a / "checkpoints" / "last.ckpt"))
    params = trained_parameters(module)
    fisher = EWC(previous=str(a), samples=10**6, sources=["add"]).estimate(module, params)
    data = SplitDataset(a / "data", "train")
    rows = (data.extras["source"] == 0).nonzero().squeeze(1).tolist()
    assert len(rows) == 40
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for row in rows:
        batch = data[[row]]
        grads = torch.autograd.grad(sequence_loss(module.model(batch["inputs"]), batch["labels"], True), list(params.values()),
                                    allow_unused=True)
        for (n, _), g in zip(params.items(), grads):
            if g is not None:
                expected[n] += g**2 / len(rows)
    for n in params:
        assert torch.allclose(fisher[n], expected[n], rtol=1e-4, atol=1e-10), n


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_rehearsal_mixes_a_share_of_earlier_rows_into_the_gradient(two_tasks) -> None:
    _, a = two_tasks
    module = load_checkpoint(str(a / "checkpoints" / "last.ckpt")).train()
    params = trained_parameters(module)
    rehearsal = Rehearsal(previous=str(a), share=0.25, sources=["add"], seed=7)
    rehearsal.on_train_start(None, module)
    rehearsal.on_train_batch_start(None, module, {"inputs": torch.zeros(8, 2)}, 0)
    gen = torch.Generator().manual_seed(1)
    data_grad = {n: torch.randn(p.shape, generator=gen) for n, p in params.items()}
    for n, p in params.items():
        p.grad = data_grad[n].clone()
    rehearsal.on_before_optimizer_step(SimpleNamespace(precision_plugin=Precision()), module, None)
    pick = torch.randint(40, (2,), generator=torch.Generator().manual_seed(7)).tolist()  # ceil(0.25 * 8) rows of add
    data = SplitDataset(a / "data", "train")
    batch = data[pick]  # the add rows come first in a mixture's split
    grads = torch.autograd.grad(sequence_loss(module.model(batch["inputs"]), batch["labels"], True), list(params.values()),
                                allow_unused=True)
    for (n, p), g in zip(params.items(), grads):
        expected = 0.75 * data_grad[n] + (0.25 * g if g is not None else 0)
        assert torch.allclose(p.grad, expected, atol=1e-6), n
    assert rehearsal.replayed == 2


def test_ewc_carries_the_fisher_of_every_earlier_task(two_tasks, tmp_path: Path) -> None:
    args, a = two_tasks
    b, c = tmp_path / "B", tmp_path / "C"
    run_in_process(*args, SUB, f"init_from={a}", "callbacks=[default,ewc]", "callbacks.ewc.sources=[add]", run_dir=b)
    state_b = torch.load(b / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["EWC"]
    assert state_b["tasks"] == 1
    for name, value in _weights(a).items():
        if name in state_b["anchor"]:
            assert torch.equal(state_b["anchor"][name], value.float()), name  # anchored at A's weights
    assert "train/ewc_penalty" in (b / "csv" / "metrics.csv").read_text().splitlines()[0]
    run_in_process(*args, f"init_from={b}", "callbacks=[default,ewc]", "callbacks.ewc.decay=0.5", run_dir=c)
    state_c = torch.load(c / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["EWC"]
    assert state_c["tasks"] == 2
    module = load_checkpoint(str(b / "checkpoints" / "last.ckpt"))
    new = EWC(previous=str(b)).estimate(module, trained_parameters(module))
    for name, fisher in state_c["fisher"].items():
        assert torch.allclose(fisher, 0.5 * state_b["fisher"][name] + new[name], rtol=1e-5, atol=1e-12), name


def test_a_resumed_run_with_ewc_and_rehearsal_is_exact(two_tasks, tmp_path: Path) -> None:
    args, a = two_tasks
    both = [*args, SUB, f"init_from={a}", "callbacks=[default,ewc,rehearsal]", "callbacks.rehearsal.share=0.3"]
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    run_forge(*both, f"hydra.run.dir={straight}", cwd=tmp_path)
    assert kill_at_first_checkpoint(*both, run_dir=broken, cwd=tmp_path) == 4
    run_forge(*both, f"hydra.run.dir={broken}", f"resume={broken}", cwd=tmp_path)
    x, y = (torch.load(r / "checkpoints" / "last.ckpt", weights_only=True) for r in (straight, broken))
    assert x["global_step"] == y["global_step"] == 12
    assert x["callbacks"]["Rehearsal"]["replayed"] == y["callbacks"]["Rehearsal"]["replayed"] == 12 * 3
    for key, value in x["state_dict"].items():
        assert torch.equal(value, y["state_dict"][key]), key


@pytest.mark.parametrize("extra, message", [
    (["callbacks=[default,ewc]"], "callbacks.ewc.previous=None: ewc needs the earlier task's run: set init_from=RUN"),
    (["init_from=RUN_A", "callbacks=[default,rehearsal]", "callbacks.rehearsal.share=1.5"],
     "callbacks.rehearsal.share=1.5: must be in (0, 1]"),
    (["init_from=RUN_A", "callbacks=[default,ewc]", "callbacks.ewc.decay=0"], "callbacks.ewc.decay=0.0: must be in (0, 1]"),
    (["init_from=nowhere"], "init_from=nowhere: no such run directory or checkpoint"),
    (["init_from=RUN_A", "model.d_model=32"], "init_from=RUN_A: its model does not fit this run's"),
])
def test_bad_continual_settings_are_one_line(two_tasks, tmp_path: Path, extra: list[str], message: str) -> None:
    args, a = two_tasks
    extra = [e.replace("RUN_A", str(a)) for e in extra]
    proc = run_forge(*args, SUB, *extra, f"hydra.run.dir={tmp_path / 'bad'}", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert message.replace("RUN_A", str(a)) in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_init_from_is_refused_for_a_causal_lm(tmp_path: Path) -> None:
    proc = run_forge("+recipe=coder_lora", f"init_from={tmp_path}", "stage=train", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "init_from=" in proc.stderr and "peft.init_from=DIR" in proc.stderr


def test_ewc_and_rehearsal_on_a_lora_adapter_cover_its_parameters_only(tmp_path: Path, cache: Path, tiny_lm: Path) -> None:
    lora = ["model=hf_causal_lm", f"model.source={tiny_lm}", "peft=lora", "peft.r=4", "peft.alpha=8", "data=sft_jsonl",
            f"data.sources=[{{format: prompt_completion, path: {FIXTURES / 'prompt_completion.jsonl'}}}]", "data.seq_len=64",
            "data.batch_size=2", "data.val_fraction=0.25", "data.test_fraction=0.25", "eval=perplexity", "eval.batch_size=4",
            "trainer.max_steps=3", "trainer.val_every_n_steps=3", "trainer.checkpoint_every_n_steps=3", "trainer.log_every_n_steps=1",
            "logger=csv", "export=none", f"cache_dir={cache}"]
    a, b = tmp_path / "A", tmp_path / "B"
    run_in_process(*lora, run_dir=a)
    run_in_process(*lora, "callbacks=[default,ewc,rehearsal]", f"callbacks.ewc.previous={a}", "callbacks.ewc.samples=4",
                   f"callbacks.rehearsal.previous={a}", "callbacks.rehearsal.share=0.5", run_dir=b)
    ckpt = torch.load(b / "checkpoints" / "last.ckpt", weights_only=True)
    fisher = ckpt["callbacks"]["EWC"]["fisher"]
    assert set(fisher) == set(ckpt["state_dict"]) and all("lora_" in name for name in fisher)  # the adapter's, nothing frozen
    assert any(float(f.sum()) > 0 for f in fisher.values())
    assert ckpt["callbacks"]["Rehearsal"]["replayed"] == 3  # ceil(0.5 x 2 rows) a step
    header = (b / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "train/ewc_penalty" in header and "train/rehearsal_loss" in header
