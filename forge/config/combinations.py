"""Cross-group checks: a combination of groups that each validate alone but would misbehave
together (adapters on a model that has none, a code benchmark on a token model, text data for a
token model, a curriculum the data cannot drive, prioritized replay where rows have no loss of
their own) is refused here, before anything is imported.

The rules come from the model families' declarations (forge.config.families), so a new family
brings its own rules with it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig

from forge.config.errors import ConfigError
from forge.config.families import DATA_KINDS, FAMILIES, FamilySpec, data_kind, family_name

Where = Callable[[str], str]
LEVELED_DATA = ("forge.data.sudoku.Sudoku",)  # tasks that rate each example by difficulty level
MIXTURE = "forge.data.mixture.Mixture"
ARC = "forge.data.arc.ARC"
SFT = "forge.data.sft.SFT"
STAGED = "forge.curriculum.staged.Staged"
DIFFICULTY = "forge.curriculum.difficulty.Difficulty"
# Models that train on one loss per batch (their own `training_loss`: segments, halting, ponder
# cost), so prioritized replay has no per-row loss to weight or to take priorities from.
BATCH_LOSS_MODELS = ("forge.models.hrrm.HRRM", "forge.models.cogment.Cogment")


def check_combination(cfg: DictConfig, where: Where) -> None:
    model = cfg.model.get("_target_")
    name = family_name(model)
    if name is None:
        families = ", ".join(f"{f.name} ({', '.join(f.models)})" for f in FAMILIES.values())
        raise ConfigError(f"model._target_={model}: no model family declares this model{_where(where, 'model._target_')}. Families: {families}.")
    family = FAMILIES[name]
    _check_data(cfg, family, where)
    _check_peft(cfg, family, where)
    _check_eval(cfg, family, where)
    _check_export(cfg, family, where)
    _check_curriculum(cfg, family, where)
    _check_init_from(cfg, family, where)
    _check_sampler(cfg, where)


def _check_data(cfg: DictConfig, family: FamilySpec, where: Where) -> None:
    target = cfg.data.get("_target_")
    kind = data_kind(target)
    if kind not in family.data_kinds:
        wanted = [t for k in family.data_kinds for t in DATA_KINDS[k]]
        raise ConfigError(
            f"data._target_={target}: a {family.name} model ({cfg.model._target_}) trains on {' or '.join(family.data_kinds)} "
            f"data, this is {kind} data{_where(where, 'data._target_')}. Choose {_options('data', '_target_', wanted)}, or another model."
        )
    if target == MIXTURE:
        for source, node in cfg.data.sources.items():
            if data_kind(node.get("_target_")) != "tokens":
                key = f"data.sources.{source}._target_"
                raise ConfigError(f"{key}={node.get('_target_')}: a mixture mixes token tasks only{_where(where, key)}.")


def _check_peft(cfg: DictConfig, family: FamilySpec, where: Where) -> None:
    target = cfg.peft.get("_target_")
    if target is not None and not family.adapters:
        models = [f for f in FAMILIES.values() if f.adapters]
        raise ConfigError(
            f"peft._target_={target}: adapters need a model that takes them "
            f"({_options('model', '_target_', [m for f in models for m in f.models])}); {cfg.model._target_} is a "
            f"{family.name} model that trains every weight{_where(where, 'peft._target_')}. Use peft=none or such a model."
        )


def _check_eval(cfg: DictConfig, family: FamilySpec, where: Where) -> None:
    metric = cfg.eval.metric
    if metric not in family.evals:
        raise ConfigError(
            f"eval.metric={metric}: a {family.name} model ({cfg.model._target_}) is evaluated with "
            f"{', '.join(family.evals)}{_where(where, 'eval.metric')}. Choose {_options('eval', 'metric', family.evals)}."
        )
    if metric == "arc_vote" and cfg.data._target_ != ARC:
        raise ConfigError(f"eval.metric=arc_vote: votes over ARC task augmentations and needs data=arc, not "
                          f"{cfg.data._target_}{_where(where, 'eval.metric')}. Choose eval=exact_match.")


def _check_export(cfg: DictConfig, family: FamilySpec, where: Where) -> None:
    fmt = cfg.export.format
    if fmt != "none" and fmt not in family.exports:
        raise ConfigError(
            f"export.format={fmt}: a {family.name} model ({cfg.model._target_}) exports as {', '.join(family.exports)}"
            f"{_where(where, 'export.format')}. Choose {_options('export', 'format', (*family.exports, 'none'))}."
        )


def _check_curriculum(cfg: DictConfig, family: FamilySpec, where: Where) -> None:
    target = cfg.curriculum.get("_target_")
    key = "curriculum._target_"
    if target not in family.curricula:
        raise ConfigError(f"{key}={target}: a {family.name} model ({cfg.model._target_}) trains without this curriculum"
                          f"{_where(where, key)}. Choose {_options('curriculum', '_target_', family.curricula)}.")
    data = cfg.data._target_
    if target == STAGED and data != MIXTURE:
        raise ConfigError(f"{key}={target}: its stages mix the sources of data=mixture, and {data} has none{_where(where, key)}. "
                          "Use data=mixture or curriculum=none.")
    sources = [s.get("_target_") for s in cfg.data.sources.values()] if data == MIXTURE else [data]
    if target == DIFFICULTY and not any(s in LEVELED_DATA for s in sources):
        raise ConfigError(f"{key}={target}: it schedules difficulty levels, and {data} rates none{_where(where, key)}. "
                          f"Use data with levels ({_options('data', '_target_', LEVELED_DATA)}, or a mixture with it) or curriculum=none.")


def _check_init_from(cfg: DictConfig, family: FamilySpec, where: Where) -> None:
    source = cfg.get("init_from")
    if source is None:
        return
    if family.adapters:
        raise ConfigError(f"init_from={source}: it starts forge's token models from an earlier run; a {family.name} model continues "
                          f"an adapter with peft.init_from=DIR, or starts from other weights with model.source{_where(where, 'init_from')}.")
    if not Path(source).exists():
        raise ConfigError(f"init_from={source}: no such run directory or checkpoint{_where(where, 'init_from')}; give a finished run's directory.")


def _check_sampler(cfg: DictConfig, where: Where) -> None:
    """Prioritized replay keeps one process's priorities over the whole training split, and
    weights each row's own loss; by reward surprise, it needs a reward on every row."""
    sources = cfg.data.sources.items() if cfg.data._target_ == MIXTURE else ()
    for name, source in sources:
        if source.get("sampler") == "prioritized":
            key = f"data.sources.{name}.sampler"
            raise ConfigError(f"{key}=prioritized: a mixture's rows are drawn by its own sampler{where(key)}. "
                              "Set data.sampler=prioritized instead.")
    if cfg.data.replay.priority == "reward_surprise":
        _check_reward_surprise(cfg, where)
    if cfg.data.sampler != "prioritized":
        return
    key = "data.sampler"
    if cfg.curriculum.get("_target_") is not None:
        raise ConfigError(f"{key}=prioritized: the curriculum {cfg.curriculum._target_} picks each epoch's rows, and replay "
                          f"draws from all of them{where(key)}. Use curriculum=none or data.sampler=uniform.")
    if cfg.model._target_ in BATCH_LOSS_MODELS:
        raise ConfigError(f"{key}=prioritized: {cfg.model._target_} trains on one loss per batch, and replay needs each "
                          f"row's loss{where(key)}. Use data.sampler=uniform or model=transformer.")
    if _processes(cfg.trainer) > 1:
        raise ConfigError(f"{key}=prioritized: replay keeps its priorities in one process, and trainer.devices="
                          f"{cfg.trainer.devices} with trainer.num_nodes={cfg.trainer.num_nodes} starts several"
                          f"{where(key)}. Use one device (trainer.devices=1, trainer.num_nodes=1) or data.sampler=uniform.")


def _check_reward_surprise(cfg: DictConfig, where: Where) -> None:
    """Only agent_runs records carry a reward; a source of format auto may turn out to be agent
    runs, so it is left to preparation, whose rows then carry rewards or not (checked at train)."""
    key = "data.replay.priority"
    if cfg.data.sampler != "prioritized":
        raise ConfigError(f"{key}=reward_surprise: it sets prioritized replay's priorities, and data.sampler={cfg.data.sampler}"
                          f"{where(key)}. Set data.sampler=prioritized, or remove {key}.")
    formats = [s.get("format") for s in cfg.data.sources] if cfg.data._target_ == SFT else []
    if not formats or any(f not in ("agent_runs", "auto") for f in formats):
        data = f"its sources are {', '.join(sorted(set(formats)))}" if formats else f"data._target_={cfg.data._target_}"
        raise ConfigError(f"{key}=reward_surprise: only agent_runs records carry a reward, and {data}{where(key)}. "
                          f"Use data.replay.priority=loss, or SFT data whose sources are all format agent_runs.")


def _processes(trainer: DictConfig) -> int:
    """How many training processes the trainer config asks for at least (-1 and "auto" count as
    one here; the data module refuses more at run time)."""
    devices = trainer.devices
    if isinstance(devices, str):
        devices = [d for d in devices.split(",") if d.strip()] if "," in devices else 1
    count = len(devices) if not isinstance(devices, int) else max(devices, 1)
    return count * trainer.num_nodes


def _where(where: Where, key: str) -> str:
    """Where `key` came from; a group chosen on the command line (`peft=lora`) is named as such."""
    chosen = where(key.split(".")[0])
    return chosen if "command line" in chosen else where(key)


def _options(group: str, key: str, values: Any) -> str:
    """`group=a, b or c`: the options of `group` whose `key` is one of `values`."""
    names = [name for name, value in _group_values(group, key) if value in tuple(values)]
    return f"{group}=" + (" or ".join(", ".join(names).rsplit(", ", 1)) if names else "?")


@lru_cache(maxsize=None)
def _group_values(group: str, key: str) -> tuple[tuple[str, Optional[str]], ...]:
    """(option, value of `key`) for forge's own options of `group`, read from their YAML files."""
    import yaml

    from forge.config.compose import config_dirs

    out = []
    for path in sorted((config_dirs([])[-1] / group).glob("*.yaml")):
        node = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out.append((path.stem, node.get(key)))
    return tuple(out)
