"""The learning loop's settings: a typed schema with defaults, the project's `learn.yaml` over
it, and `key=value` overrides from the command line over that (OmegaConf's structured configs,
as Hydra's groups use), checked so that a setting that would misbehave later is refused now.

Kept apart from a training run's config: the loop outlives the runs it starts, each of which is
an ordinary `forge runs start` with the recipe and overrides named here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from forge.config.errors import ConfigError

PROJECT_FILE = "learn.yaml"
# What an agent run may report (forge.data.sft.formats.run_reward weighs them: booleans count
# 0/1, tests_passed as the passed fraction of tests_total, the others as reported).
SIGNALS = ("compiled", "tests_passed", "errors", "human_rating", "latency", "cost")
UNIT_SIGNALS = ("compiled", "tests_passed")  # always in [0, 1]
DETECTORS = ("page_hinkley", "adwin")
POLICIES = ("epsilon_greedy", "ucb", "thompson")
START_FROM = ("base", "deployed")
UPDATES = ("retrain", "incremental")


@dataclass
class StoreCfg:
    url: str = "sqlite:///learn/experience.db"  # a SQLAlchemy URL; relative SQLite paths are from the project


@dataclass
class ExportCfg:
    enabled: bool = True
    min_reward: float = 0.8  # a run counts as good training data at this reward or more
    min_runs: int = 50  # export once this many good runs are not exported yet
    dir: str = "learn/exports"  # DVC-tracked JSONL (agent_runs format)


@dataclass
class TrainCfg:
    enabled: bool = True
    min_examples: int = 50  # train once exports hold this many examples no deployed version used
    recipe: Optional[str] = "coder_lora"  # null: the overrides alone say what to train
    overrides: list[str] = field(default_factory=list)
    # base: each round from the base model (ReST-EM); deployed: continue the deployed adapter; null: as `update` implies
    start_from: Optional[str] = None


@dataclass
class GateCfg:
    enabled: bool = True
    alpha: float = 0.05  # significance of the paired test (forge compare)
    margin: float = 0.0  # the candidate must beat the deployed version by at least this much


@dataclass
class DeployCfg:
    enabled: bool = True
    model: str = "agent"  # the registry name of the loop's versions
    stage: str = "prod"
    port: int = 8000


@dataclass
class RetrainCfg:
    after_days: Optional[float] = None  # retrain this long after the last deploy, whatever the data
    reward_drop: Optional[float] = None  # retrain when the deployed model's mean reward falls by this fraction


INPUTS_MIN_WINDOW = 10


@dataclass
class InputsCfg:
    enabled: bool = True
    window: int = 200  # runs in the reference and in the recent window of the input watch (forge.learn.inputs)
    alpha: float = 0.001  # significance of each of its tests; tuned with window for under 2% false alarms per 1,000 runs


@dataclass
class WatchCfg:
    enabled: bool = True
    previous_share: float = 0.2  # share of runs kept on the previous version after a deploy
    detector: str = "page_hinkley"
    delta: Optional[float] = None  # ADWIN's confidence, Page-Hinkley's magnitude; null: the detector's tuned default (forge.learn.drift)
    min_runs: int = 30  # runs of each version before comparing them
    alpha: float = 0.01  # significance of the new-against-previous test that rolls back
    inputs: InputsCfg = field(default_factory=InputsCfg)  # a change of the incoming work's features: reported, no action


@dataclass
class BanditCfg:
    policy: str = "thompson"  # the prompt bandit's and the model router's
    epsilon: float = 0.1  # epsilon_greedy only
    seed: int = 0


@dataclass
class RouterModel:
    name: str = ""  # the loop's own model (deploy.model) is served at its stage; others are the agent's to call
    cost: float = 0.0  # per call
    tier: Optional[str] = None  # select_model(tier=...) chooses among the models of one tier


@dataclass
class RouterCfg:
    cost_cap: Optional[float] = None  # mean cost per run over any `window` runs; null: no cap
    window: int = 500
    models: list[RouterModel] = field(default_factory=list)


@dataclass
class IncrementalCfg:
    rehearsal: float = 0.05  # earlier examples added to a round, as a share of its new ones (Ibrahim et al. 2024)
    seed: int = 0  # of the rehearsal draw and of the earlier examples checked
    rewarm_steps: Optional[int] = None  # the continued run's warmup (passed as optim.warmup_steps); null: the recipe's own
    earlier_examples: int = 256  # earlier examples the candidate is checked on against the deployed version; 0: no check


@dataclass
class LearnCfg:
    store: StoreCfg = field(default_factory=StoreCfg)
    reward_weights: dict[str, float] = field(default_factory=lambda: {"tests_passed": 1.0})
    auto: bool = False  # run a loop step after each recorded run
    interval_s: float = 60.0  # `forge learn watch`: seconds between steps
    export: ExportCfg = field(default_factory=ExportCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    gate: GateCfg = field(default_factory=GateCfg)
    deploy: DeployCfg = field(default_factory=DeployCfg)
    retrain: RetrainCfg = field(default_factory=RetrainCfg)
    watch: WatchCfg = field(default_factory=WatchCfg)
    prompts: dict[str, list[str]] = field(default_factory=dict)  # role -> its prompt variants, for select_prompt
    bandit: BanditCfg = field(default_factory=BanditCfg)
    router: RouterCfg = field(default_factory=RouterCfg)
    update: str = "retrain"  # retrain: rounds as train.start_from says; incremental: continue the deployed adapter
    incremental: IncrementalCfg = field(default_factory=IncrementalCfg)


def load(project: Path = Path("."), overrides: Optional[list[str]] = None, values: Optional[dict[str, Any]] = None) -> DictConfig:
    """The schema's defaults, then `project/learn.yaml`, then `values`, then `overrides`."""
    cfg = OmegaConf.structured(LearnCfg)
    layers: list[tuple[str, Any]] = []
    file = project / PROJECT_FILE
    if file.exists():
        layers.append((str(file), lambda: OmegaConf.load(file)))
    if values:
        layers.append(("the given settings", lambda: OmegaConf.create(values)))
    if overrides:
        layers.append(("the command line", lambda: OmegaConf.from_dotlist(list(overrides))))
    for where, layer in layers:
        try:
            cfg = OmegaConf.merge(cfg, layer())
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None)
            raise ConfigError(f"learn{'.' + key if key else ''}: {_first_line(e)} (in {where}); see `forge learn --help` for the keys") from None
    check(cfg)
    check_update(cfg)
    return cfg


def check(cfg: DictConfig) -> None:
    """Settings that would misbehave later, refused now with the key and what to do."""
    unknown = [s for s in cfg.reward_weights if s not in SIGNALS]
    if unknown:
        raise ConfigError(f"learn.reward_weights.{unknown[0]}: not a signal an agent run reports; use {', '.join(SIGNALS)}")
    if not cfg.reward_weights or all(w == 0 for w in cfg.reward_weights.values()):
        raise ConfigError("learn.reward_weights: give at least one non-zero weight (e.g. tests_passed: 1.0)")
    unit = all(s in UNIT_SIGNALS and w >= 0 for s, w in cfg.reward_weights.items()) and sum(cfg.reward_weights.values()) <= 1 + 1e-9
    if not unit:  # the bandit, the router and the watch learn from rewards in [0, 1]
        raise ConfigError(f"learn.reward_weights: the loop learns from a reward in [0, 1]: weigh only {' and '.join(UNIT_SIGNALS)}, "
                          "with weights of 0 or more summing to at most 1 (e.g. tests_passed: 0.8, compiled: 0.2); other "
                          "signals are recorded as they are")
    top = sum(cfg.reward_weights.values())
    if cfg.export.enabled and cfg.export.min_reward > top:
        raise ConfigError(f"learn.export.min_reward={cfg.export.min_reward:g}: no run can reach it (the highest reward these weights give "
                          f"is {top:g}); lower it or raise learn.reward_weights")
    for key, value in (("export.min_runs", cfg.export.min_runs), ("train.min_examples", cfg.train.min_examples),
                       ("watch.min_runs", cfg.watch.min_runs), ("router.window", cfg.router.window)):
        if value < 1:
            raise ConfigError(f"learn.{key}={value}: must be at least 1")
    for key, value in (("watch.previous_share", cfg.watch.previous_share), ("bandit.epsilon", cfg.bandit.epsilon)):
        if not 0 <= value <= 1:
            raise ConfigError(f"learn.{key}={value:g}: must be in [0, 1]")
    for key, value in (("gate.alpha", cfg.gate.alpha), ("watch.alpha", cfg.watch.alpha)):
        if not 0 < value < 1:
            raise ConfigError(f"learn.{key}={value:g}: a significance level in (0, 1), e.g. 0.05")
    if cfg.watch.delta is not None and (cfg.watch.delta <= 0 or (cfg.watch.detector == "adwin" and cfg.watch.delta >= 1)):
        raise ConfigError(f"learn.watch.delta={cfg.watch.delta:g}: must be positive (below 1 for adwin), or null for the detector's default")
    if cfg.watch.inputs.window < INPUTS_MIN_WINDOW:
        raise ConfigError(f"learn.watch.inputs.window={cfg.watch.inputs.window}: must be at least {INPUTS_MIN_WINDOW} runs "
                          "(each test compares two windows of this many runs), e.g. 200")
    if not 0 < cfg.watch.inputs.alpha < 1:
        raise ConfigError(f"learn.watch.inputs.alpha={cfg.watch.inputs.alpha:g}: a significance level in (0, 1), e.g. 0.001")
    for key, value, choices in (("watch.detector", cfg.watch.detector, DETECTORS), ("bandit.policy", cfg.bandit.policy, POLICIES)):
        if value not in choices:
            raise ConfigError(f"learn.{key}={value}: choose one of {', '.join(choices)}")
    if cfg.retrain.reward_drop is not None and not 0 < cfg.retrain.reward_drop < 1:
        raise ConfigError(f"learn.retrain.reward_drop={cfg.retrain.reward_drop:g}: a fraction in (0, 1), e.g. 0.1 for a 10% fall")
    if cfg.retrain.after_days is not None and cfg.retrain.after_days <= 0:
        raise ConfigError(f"learn.retrain.after_days={cfg.retrain.after_days:g}: must be positive")
    for role, variants in cfg.prompts.items():
        if not variants or len(set(variants)) != len(variants):
            raise ConfigError(f"learn.prompts.{role}: give one or more distinct prompt variant names")
    names = [m.name for m in cfg.router.models]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise ConfigError("learn.router.models: each model needs its own non-empty name")
    if any(m.cost < 0 for m in cfg.router.models):
        raise ConfigError("learn.router.models: a cost per call cannot be negative")
    if cfg.router.cost_cap is not None and cfg.router.models and cfg.router.cost_cap < min(m.cost for m in cfg.router.models):
        raise ConfigError(f"learn.router.cost_cap={cfg.router.cost_cap:g}: below the cheapest model's cost "
                          f"({min(m.cost for m in cfg.router.models):g}); no model fits under it")


def check_update(cfg: DictConfig) -> None:
    """`update` and what it needs: incremental continues the deployed adapter, so a start from
    the base would contradict it."""
    for key, value, choices in (("update", cfg["update"], UPDATES), ("train.start_from", cfg.train.start_from, START_FROM)):
        if value is not None and value not in choices:
            raise ConfigError(f"learn.{key}={value}: choose one of {', '.join(choices)}")
    if incremental(cfg) and cfg.train.start_from == "base":
        raise ConfigError("learn.train.start_from=base: update=incremental continues the deployed adapter; set train.start_from=deployed "
                          "or leave it null, or use update=retrain")
    inc = cfg.incremental
    if not 0 <= inc.rehearsal <= 1:
        raise ConfigError(f"learn.incremental.rehearsal={inc.rehearsal:g}: must be in [0, 1] (a share of the round's new examples)")
    for key, value in (("incremental.rewarm_steps", inc.rewarm_steps), ("incremental.earlier_examples", inc.earlier_examples)):
        if value is not None and value < 0:
            raise ConfigError(f"learn.{key}={value}: must be 0 or more")


def start_from(cfg: DictConfig) -> str:
    """Where a round starts: `train.start_from`, or what `update` implies when it is null."""
    return cfg.train.start_from or ("deployed" if incremental(cfg) else "base")


def incremental(cfg: DictConfig) -> bool:
    """`update: incremental`, read as an item: `cfg.update` is the mapping's own update method."""
    return bool(cfg["update"] == "incremental")


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
