"""Hardware targets resolve to the Lightning settings the README promises."""

from __future__ import annotations

import os

import pytest
import torch

from forge.config.compose import compose
from forge.train import trainer as targets


@pytest.mark.parametrize("native_bf16, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_cpu_precision_follows_native_bf16(monkeypatch: pytest.MonkeyPatch, native_bf16: bool, expected: str) -> None:
    monkeypatch.setattr(targets, "cpu_has_native_bf16", lambda: native_bf16)
    cfg, _ = compose(["trainer=cpu"])
    assert targets.resolve_precision(cfg.trainer) == expected


def test_gpu_targets_use_bf16() -> None:
    for target in ("gpu", "ddp", "fsdp"):
        cfg, _ = compose([f"trainer={target}"])
        assert targets.resolve_precision(cfg.trainer) == "bf16-mixed"


def test_threads_are_shared_between_cpu_processes() -> None:
    cores = len(os.sched_getaffinity(0))
    before = torch.get_num_threads()
    try:
        cfg, _ = compose(["trainer=cpu"])
        assert targets.set_threads(cfg.trainer) == cores
        cfg, _ = compose(["trainer=ddp_cpu"])
        assert targets.set_threads(cfg.trainer) == max(1, cores // 2)
        assert torch.get_num_threads() == max(1, cores // 2)
    finally:
        torch.set_num_threads(before)
