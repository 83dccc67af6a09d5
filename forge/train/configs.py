"""Schemas of the `trainer`, `optim` and `logger` options, light enough for `forge validate`
(no torch, no Lightning). The trainer keys are forge's own (the Trainer is built from them in
forge.train.trainer); the optimizer's go to its constructor, less the schedule and GrokFast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Optional

from omegaconf import MISSING, DictConfig, ListConfig

from forge.config.registry import register
from forge.config.rules import Rule, at_least, between, bound, each, fraction, one_of, positive

PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true")
SCHEDULES = ("constant", "linear", "cosine")
FILTERS = ("ema", "ma")  # GrokFast: exponential or windowed moving average of the gradients


def _devices(v: Any) -> bool:
    """What Lightning's `devices` takes: a count, -1 for all, "auto", or a list of indices
    (as a list or a "0,1" string)."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v >= 1 or v == -1
    if isinstance(v, str):
        parts = [p.strip() for p in v.split(",") if p.strip()]
        return v in ("auto", "-1") or (bool(parts) and all(p.isdigit() for p in parts) and v.strip() != "0")
    if isinstance(v, (list, ListConfig)):
        return len(v) > 0 and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v)
    return False


DEVICES = Rule("must be a count >= 1, -1 (all), auto, or a list of device indices", _devices)


@register("trainer")
@dataclass
class TrainerConfig:
    accelerator: str = MISSING
    devices: Any = bound(DEVICES)
    strategy: str = MISSING
    num_nodes: int = at_least(1)
    precision: str = one_of(PRECISIONS)
    threads: Optional[int] = at_least(1)
    process_group_backend: Optional[str] = MISSING
    # The learning-rate schedule is laid out over max_steps, so it is a real budget (no -1).
    max_steps: int = at_least(1)
    max_minutes: Optional[float] = positive()
    val_every_n_steps: int = at_least(1)
    log_every_n_steps: int = at_least(1)
    checkpoint_every_n_steps: int = at_least(1)
    gradient_clip_val: Optional[float] = at_least(0)
    accumulate_grad_batches: int = at_least(1)
    deterministic: bool = MISSING
    # {metric: target}: stop at the first validation where each metric has reached its target.
    stop_at: Optional[dict[str, float]] = None


@register("callbacks", "forge.train.grokfast.GrokFast")
@dataclass
class GrokFastConfig:
    filter: str = one_of(FILTERS)
    alpha: float = fraction()
    lamb: float = at_least(0)
    window: int = at_least(1)
    start_after_train_accuracy: Optional[float] = between(0, 1)


@register("callbacks", "forge.train.callbacks.StopAt")
@dataclass
class StopAtConfig:
    targets: Optional[dict[str, float]] = None  # null or {}: never stops early


UP_TO_ONE = Rule("must be in (0, 1]", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1)


@dataclass
class EarlierTaskConfig:
    """The keys the continual-learning callbacks (forge.train.continual) share: whose rows they
    keep learning from."""

    previous: Optional[str] = None  # the earlier task's run directory (default: init_from)
    sources: Optional[list[str]] = None  # for a data=mixture: the earlier task's sources (null: all)
    split: str = one_of(("train", "val", "test"))
    seed: int = 0

    @staticmethod
    def relations(node: DictConfig) -> Iterator[tuple[str, str]]:
        if not node.get("previous"):
            name = node._target_.rsplit(".", 1)[-1].lower()  # ewc, rehearsal: the callback's entry
            yield "previous", f"{name} needs the earlier task's run: set init_from=RUN (the run this one continues) or callbacks.{name}.previous=RUN"


@register("callbacks", "forge.train.continual.EWC")
@dataclass
class EWCConfig(EarlierTaskConfig):
    strength: float = at_least(0)  # lambda: the penalty is strength/2 * sum F (theta - theta*)^2
    decay: float = bound(UP_TO_ONE)  # online EWC: the carried Fisher is multiplied by this per task
    samples: int = at_least(1)  # earlier rows the Fisher is averaged over


@register("callbacks", "forge.train.continual.Rehearsal")
@dataclass
class RehearsalConfig(EarlierTaskConfig):
    share: float = bound(UP_TO_ONE)  # of each optimizer step's gradient, from earlier rows


@register("optim", "torch.optim.AdamW")
@dataclass
class AdamWConfig:
    lr: float = positive()
    betas: list[float] = each(fraction())
    eps: float = at_least(0)
    weight_decay: float = at_least(0)
    warmup_steps: int = at_least(0)
    schedule: str = one_of(SCHEDULES)
    min_lr_ratio: float = between(0, 1)
    grokfast: Optional[GrokFastConfig] = None

    @staticmethod
    def relations(node: DictConfig) -> Iterator[tuple[str, str]]:
        if len(node.betas) != 2:
            yield "betas", "must be two numbers: [beta1, beta2]"


@register("optim", "torch.optim.Adam")
@dataclass
class AdamConfig(AdamWConfig):
    pass


@register("logger", "forge.train.dvclive_logger.DVCLiveLogger")
@dataclass
class DVCLiveConfig:
    dvcyaml: Optional[str] = MISSING
    save_dvc_exp: bool = MISSING
    report: Optional[str] = MISSING


@register("logger", "lightning.pytorch.loggers.CSVLogger")
@dataclass
class CSVLoggerConfig:
    pass


@register("logger", "lightning.pytorch.loggers.TensorBoardLogger")
@dataclass
class TensorBoardConfig:
    pass


@register("logger", "lightning.pytorch.loggers.MLFlowLogger")
@dataclass
class MLFlowConfig:
    experiment_name: str = MISSING
    tracking_uri: Optional[str] = MISSING


@register("logger", "lightning.pytorch.loggers.WandbLogger")
@dataclass
class WandbConfig:
    project: str = MISSING
    offline: bool = MISSING
