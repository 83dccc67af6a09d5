"""The Lightning Trainer for a hardware target (the `trainer` group) and the run directory."""

from __future__ import annotations

import logging
import os
import sys
from datetime import timedelta
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from omegaconf import DictConfig

from forge.errors import ForgeError
from forge.run_dir import RunPaths
from forge.train.callbacks import PlainProgress, StopOnRequest, Throughput
from forge.train.checkpoint_io import AtomicCheckpointIO
from forge.train.quiet import quiet_console


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: without them bf16 matmuls are emulated and far slower than fp32."""
    try:
        caps = torch._C._cpu._get_cpu_capability()
    except AttributeError:
        return False
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def resolve_precision(t: DictConfig) -> str:
    if t.precision != "auto":
        return t.precision
    if t.accelerator == "cpu":
        return "bf16-mixed" if cpu_has_native_bf16() else "32-true"
    return "bf16-mixed"


def processes_per_node(t: DictConfig) -> int:
    if t.accelerator == "cpu" and t.strategy != "auto" and isinstance(t.devices, int):
        return max(1, t.devices)
    return 1


def set_threads(t: DictConfig) -> int:
    """Give each process its share of the cores it may run on (never oversubscribe)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = t.threads or max(1, cores // processes_per_node(t))
    torch.set_num_threads(threads)
    return threads


def _one_console_handler() -> None:
    """`import lightning` adds a console handler to its logger, which also propagates to the root
    logger forge configures: drop Lightning's so each message is printed once."""
    if logging.getLogger().handlers:
        logging.getLogger("lightning").handlers.clear()


def build_trainer(
    cfg: DictConfig, paths: RunPaths, loggers: list[Any], extra_callbacks: list[Any], reload_each_epoch: bool = False
) -> L.Trainer:
    t = cfg.trainer
    _one_console_handler()
    quiet_console()
    set_threads(t)
    strategy: Any = t.strategy
    if t.strategy == "ddp" and t.process_group_backend:
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend=t.process_group_backend)
    last = ModelCheckpoint(
        dirpath=paths.checkpoints, save_top_k=0, save_last=True, every_n_train_steps=t.checkpoint_every_n_steps
    )
    best = ModelCheckpoint(
        dirpath=paths.checkpoints,
        filename="best",
        monitor="val/selection",
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )
    clock = Throughput()
    tty = sys.stdout.isatty()
    progress = RichProgressBar() if tty else PlainProgress(t.log_every_n_steps, clock)
    callbacks: list[Any] = [*extra_callbacks, last, best, clock, progress, StopOnRequest(paths.last_ckpt)]
    try:
        return L.Trainer(
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=strategy,
            precision=resolve_precision(t),
            max_steps=t.max_steps,
            max_time=timedelta(minutes=t.max_minutes) if t.max_minutes else None,
            max_epochs=-1,
            val_check_interval=t.val_every_n_steps,
            check_val_every_n_epoch=None,
            log_every_n_steps=t.log_every_n_steps,
            gradient_clip_val=t.gradient_clip_val,
            accumulate_grad_batches=t.accumulate_grad_batches,
            deterministic=t.deterministic,
            default_root_dir=str(paths.root),
            logger=loggers or False,
            callbacks=callbacks,
            plugins=[AtomicCheckpointIO()],
            enable_progress_bar=tty,
            enable_model_summary=False,
            use_distributed_sampler=False,
            num_sanity_val_steps=0,
            reload_dataloaders_every_n_epochs=1 if reload_each_epoch else 0,
        )
    except (MisconfigurationException, RuntimeError, ValueError) as e:  # Lightning says what is missing
        raise ForgeError(f"trainer: {e}") from None
