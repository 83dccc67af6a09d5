"""Fit a LightningModule on a run's prepared data, checkpointing into the run directory.

The caller (the train stage) says which module: `fit` works the same for every model family."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Any, Callable, Optional

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from forge import atomic
from forge.curriculum.base import Curriculum
from forge.data.loader import ResumableBatchSampler, ResumableLoader, SplitDataset
from forge.data.prepare import load_meta
from forge.data.samplers import PrioritizedBatchSampler, Replayed, reward_surprise
from forge.errors import ForgeError, NonFiniteLossError
from forge.models import count_parameters
from forge.run_dir import RunPaths
from forge.run_state import Stopped, stops_at_a_boundary
from forge.train.callbacks import StopAt, instantiate_callbacks
from forge.train.loggers import build_loggers
from forge.train.trainer import build_trainer

log = logging.getLogger(__name__)


class DataModule(L.LightningDataModule):
    """Train batches in a resumable order; with a curriculum, from the rows it picks this epoch
    (the loader is then rebuilt every epoch); with `replay` (data.replay's alpha, beta, eps,
    priority and the run's total_draws), drawn by priority, each batch carrying its rows and their
    weights."""

    def __init__(
        self, data_dir: Path, batch_size: int, eval_batch_size: int, seed: int, hide_answers: bool, curriculum: Optional[Curriculum],
        replay: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        self.data_dir, self.batch_size, self.eval_batch_size, self.seed = data_dir, batch_size, eval_batch_size, seed
        self.hide_answers, self.curriculum, self.replay = hide_answers, curriculum, replay
        self.prioritized: Optional[PrioritizedBatchSampler] = None

    def train_dataloader(self) -> ResumableLoader:
        data = SplitDataset(self.data_dir, "train", self.hide_answers)
        rows, batch_size = None, self.batch_size
        if self.curriculum is not None:
            rows, batch_size = self.curriculum.pool(data.extras, self.trainer.current_epoch, self.seed)
            if len(rows) < batch_size * self.trainer.world_size:
                raise ForgeError(
                    f"curriculum stage {self.curriculum.name(self.curriculum.position)!r} has {len(rows)} training rows, "
                    f"fewer than one batch of {batch_size} per process: lower its batch_size or add data"
                )
        if len(rows if rows is not None else data) < batch_size * self.trainer.world_size:
            raise ForgeError(
                f"the training split has {len(rows if rows is not None else data)} rows, fewer than one batch of {batch_size} "
                "per process: lower data.batch_size or add data"
            )
        if self.replay is not None:
            if self.trainer.world_size > 1:
                raise ForgeError(f"data.sampler=prioritized: replay keeps its priorities in one process, and this run has "
                                 f"{self.trainer.world_size}; use trainer.devices=1 or data.sampler=uniform")
            settings = dict(self.replay)
            fixed = reward_surprise(data, settings["eps"]) if settings.pop("priority") == "reward_surprise" else None
            self.prioritized = PrioritizedBatchSampler(len(data), batch_size, self.seed, **settings, fixed=fixed)
            return ResumableLoader(Replayed(data), self.prioritized)
        sampler = ResumableBatchSampler(
            len(data), batch_size, self.seed, self.trainer.global_rank, self.trainer.world_size, rows=rows
        )
        return ResumableLoader(data, sampler)

    def val_dataloader(self) -> DataLoader:
        data = SplitDataset(self.data_dir, "val", self.hide_answers)
        rank, world = self.trainer.global_rank, self.trainer.world_size
        rows = list(range(rank, len(data), world))
        batches = [rows[i : i + self.eval_batch_size] for i in range(0, len(rows), self.eval_batch_size)]
        return DataLoader(data, sampler=batches, batch_size=None, generator=torch.Generator())


class ReplayPriorities(L.Callback):
    """Gives each replayed batch's rows their new priorities: the per-row losses the training step
    returns (`row_losses`). It runs before any checkpoint of the step is saved (Lightning runs
    checkpoint callbacks last, and fit puts it before StopOnRequest), so the saved priorities
    include the step."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        trainer.datamodule.prioritized.update(batch["rows"], outputs["row_losses"])


def fit(cfg: DictConfig, paths: RunPaths, build_module: Callable[[dict], L.LightningModule]) -> L.Trainer:
    """`build_module(meta)`: the module for the prepared data's meta.json, built after seeding so
    its initial weights follow `seed`."""
    if not (paths.data / "meta.json").exists():
        raise ForgeError(f"no prepared data in {paths.data}: run stage=prepare first (or stage=all)")
    meta = load_meta(paths.data)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_module(meta)
    ckpt = _resume_checkpoint(cfg, paths)
    curriculum = _curriculum(cfg)
    if curriculum is not None:
        curriculum.attach(SplitDataset(paths.data, "val", not module.causal), meta)
    replay = _replay(cfg)
    callbacks = ([curriculum] if curriculum is not None else []) + ([ReplayPriorities()] if replay else [])
    callbacks += instantiate_callbacks(cfg.get("callbacks"))
    loggers = build_loggers(cfg.logger, paths, resume=ckpt is not None)
    # A curriculum picks each epoch's rows, so the train loader is rebuilt every epoch.
    trainer = build_trainer(cfg, paths, loggers, callbacks, reload_each_epoch=curriculum is not None)
    n_params = count_parameters(module.model)
    n_trained = sum(p.numel() for p in module.model.parameters() if p.requires_grad)
    if trainer.is_global_zero:
        log.info("model: %s, %s parameters (%s trained); precision %s", cfg.model._target_, f"{n_params:,}", f"{n_trained:,}", trainer.precision)
    datamodule = DataModule(paths.data, cfg.data.batch_size, cfg.eval.batch_size, cfg.seed, not module.causal, curriculum, replay)
    start = time.perf_counter()
    try:
        with stops_at_a_boundary():
            try:
                trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
            except SIGTERMException:  # Lightning's own stop on SIGTERM (a SystemExit with code 0): a stop
                raise Stopped(signal.SIGTERM) from None
    except NonFiniteLossError as e:
        kept = f"the last good checkpoint is {paths.last_ckpt}" if paths.last_ckpt.exists() else "no checkpoint was saved yet"
        raise NonFiniteLossError(f"{e}; training stopped, {kept}. Lower optim.lr or set trainer.gradient_clip_val.") from None
    seconds = time.perf_counter() - start
    trainer.save_checkpoint(paths.last_ckpt, weights_only=False)  # final state; every rank saves
    if trainer.is_global_zero:
        summary = {
            "parameters": n_params,
            "trained_parameters": n_trained,
            "steps": trainer.global_step,
            "train_seconds": round(seconds, 3),
            "steps_per_second": _loop_rate(trainer),
            "final_train_loss": float(trainer.callback_metrics.get("train/loss", float("nan"))),
            "final_val_loss": float(trainer.callback_metrics.get("val/loss", float("nan"))),
            **peak_memory(),
        }
        stop = next((cb for cb in trainer.callbacks if isinstance(cb, StopAt)), None)
        if stop is not None:
            summary.update({f"steps_to/{name}": step for name, step in stop.reached.items()})
        summary.update(module.summary(_best_score(trainer), seconds))
        atomic.write_json(paths.train_metrics, summary)
    return trainer


def peak_memory() -> dict[str, float]:
    """This process's peak resident memory and, on a GPU, peak CUDA memory allocated, in MiB: what
    `forge runs start` tells the next run of the same shape to expect."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    out = {"peak_rss_mb": round(rss, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _curriculum(cfg: DictConfig) -> Optional[Curriculum]:
    """A curriculum is a Lightning callback, so its position is saved in every checkpoint."""
    if cfg.curriculum.get("_target_") is None:
        return None
    from forge.config.instantiate import instantiate

    return instantiate(cfg.curriculum)


def _replay(cfg: DictConfig) -> Optional[dict[str, Any]]:
    """The prioritized sampler's settings, beta annealed over every batch the run draws."""
    if cfg.data.get("sampler") != "prioritized":
        return None
    total_draws = cfg.trainer.max_steps * cfg.trainer.accumulate_grad_batches
    return {**OmegaConf.to_container(cfg.data.replay, resolve=True), "total_draws": total_draws}


def _resume_checkpoint(cfg: DictConfig, paths: RunPaths) -> Optional[str]:
    if not cfg.resume:
        return None
    if not paths.last_ckpt.exists():
        raise ForgeError(f"resume={cfg.resume}: there is no {paths.last_ckpt} to resume from")
    log.info("resuming from %s", paths.last_ckpt)
    return str(paths.last_ckpt)


def _loop_rate(trainer: L.Trainer) -> Optional[float]:
    from forge.train.callbacks import Throughput

    timer = next(cb for cb in trainer.callbacks if isinstance(cb, Throughput))
    return round(timer.steps_per_second, 3) if timer.steps_per_second else None


def _best_score(trainer: L.Trainer) -> Optional[float]:
    for cb in trainer.checkpoint_callbacks:
        if getattr(cb, "monitor", None) and cb.best_model_score is not None:
            return round(float(cb.best_model_score), 4)  # val/selection: exact match + a 1e-5 tie-break
    return None
