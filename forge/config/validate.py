"""Check a composed config against the schemas and return it typed (strings become numbers).

Each node is merged into its schema (types, misspelt and missing keys), then checked against the
bounds its schema's fields declare (forge.config.rules), so a value out of range fails here, in
one line naming the key and where it was set, before anything heavy runs."""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Callable, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from forge.config.combinations import check_combination
from forge.config.errors import ConfigError, choices_text, suggest
from forge.config.registry import GROUPS, schemas
from forge.config.rules import violations
from forge.config.schema import ALLOWED_TARGET_PREFIXES, ForgeConfig

Where = Callable[[str], str]


def validate(cfg: DictConfig, where: Optional[Where] = None) -> DictConfig:
    """The config merged into its schemas; ConfigError names the first bad key and its origin."""
    where = where or (lambda key: "")
    top = _merge(OmegaConf.structured(ForgeConfig), cfg, "", "the top level", where)
    for group in GROUPS:
        node = cfg.get(group)
        if not isinstance(node, DictConfig):
            raise ConfigError(f"{group}: missing or not a mapping{where(group)}; choose {group}=OPTION.")
        schema = _schema(group, node, where)
        top[group] = _merge(OmegaConf.structured(schema), node, group, f"{group}", where)
    mixture = top.data.get("sources") if isinstance(top.data.get("sources"), DictConfig) else {}
    for name, source in mixture.items():  # data=mixture: each source is a data config
        key = f"data.sources.{name}"
        if not isinstance(source, DictConfig):
            raise ConfigError(f"{key}: not a data config{where(key)}; give a mapping with a _target_.")
        top.data.sources[name] = _merge(OmegaConf.structured(_schema("data", source, where)), source, key, key, where)
    callbacks = OmegaConf.to_container(top.callbacks, resolve=True)  # entries point at optim, trainer
    for name in callbacks:  # each entry is a node with a _target_, or null (off)
        key = f"callbacks.{name}"
        entry = OmegaConf.create({"entry": callbacks[name]}).entry
        if entry is None:
            continue
        if not isinstance(entry, DictConfig):
            raise ConfigError(f"{key}: not a callback{where(key)}; give a mapping with a _target_, or null for none.")
        top.callbacks[name] = _merge(OmegaConf.structured(_schema("callbacks", entry, where)), entry, key, key, where)
    _check_cv(top, where)
    check_combination(top, where)
    return top


def _check_cv(top: DictConfig, where: Where) -> None:
    """Settings of the cv block that only make sense together; whether the data has rows enough
    for the folds and the gap is known once it is prepared (forge.data.folds)."""
    cv = top.cv
    folds, fold = cv.folds, cv.fold
    if folds is not None and folds < 2:
        raise ConfigError(f"cv.folds={folds}: cross-validation needs at least 2 folds{where('cv.folds')}; or null for none.")
    if fold is not None and (folds is None or not 0 <= fold < folds):
        raise ConfigError(f"cv.fold={fold}: must be one of 0..cv.folds-1 and needs cv.folds{where('cv.fold')}.")
    if cv.scheme == "walk_forward":
        if folds is None:
            raise ConfigError(f"cv.scheme=walk_forward: needs cv.folds{where('cv.scheme')}; set cv.folds=K (K >= 2).")
        if cv.stratify:
            raise ConfigError(f"cv.stratify=true: walk-forward folds are blocks of consecutive rows, not dealt by label"
                              f"{where('cv.stratify')}; leave cv.stratify null with cv.scheme=walk_forward.")
        return
    walk_only = {"gap": cv.gap or None, "max_train": cv.max_train, "time_column": cv.time_column, "group_column": cv.group_column}
    for name, value in walk_only.items():
        if value is not None:
            raise ConfigError(f"cv.{name}={value}: only walk-forward folds have it{where(f'cv.{name}')}; "
                              f"set cv.scheme=walk_forward or leave cv.{name} unset.")


def _schema(group: str, node: DictConfig, where: Where) -> type:
    target = node.get("_target_")
    options = schemas()[group]
    if target in options:
        return options[target]
    key = f"{group}._target_"
    if target is not None and not str(target).startswith(ALLOWED_TARGET_PREFIXES):
        raise ConfigError(
            f"{key}={target}: not allowed{where(key)}. forge only instantiates classes under "
            + ", ".join(ALLOWED_TARGET_PREFIXES)
        )
    known = [str(t) for t in options if t is not None]
    raise ConfigError(
        f"{key}={target}: no schema for this target{where(key)}.{suggest(str(target), known)} "
        + choices_text(known)
    )


def _merge(schema: DictConfig, node: DictConfig, prefix: str, what: str, where: Where) -> DictConfig:
    def full(key: object) -> str:
        key = re.sub(r"\[(\d+)\]", r".\1", str(key))  # list items: levels[0].lr -> levels.0.lr
        return f"{prefix}.{key}" if prefix else key

    _check_list_items(OmegaConf.get_type(schema), node, prefix, what, where)
    try:
        merged = OmegaConf.merge(schema, node)
    except ConfigKeyError as e:
        key = full(e.full_key or e.key)
        fields = getattr(e.object_type, "__dataclass_fields__", None)
        valid = [str(k) for k in (fields or schema.keys())]
        raise ConfigError(
            f"{key}: no such key in {what}{where(key)}.{suggest(str(e.key), valid)} "
            + choices_text(valid)
        ) from None
    except ValidationError as e:
        key = full(e.full_key or e.key)
        msg = str(e).split("\n")[0]
        raise ConfigError(f"{key}: {msg}{where(key)}.") from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"{what}: {str(e).splitlines()[0]}") from None
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        key = full(missing[0])
        raise ConfigError(f"{key}: no value given{where(key)}; set it in the group file or with {key}=VALUE.")
    for name, value, rule in violations(OmegaConf.get_type(schema), merged):
        key = full(name)
        raise ConfigError(rule.message(key, value, where(key)))
    return merged


def _check_list_items(schema_cls: Optional[type], node: DictConfig, prefix: str, what: str, where: Where) -> None:
    """Check each item of a list-of-schemas field on its own first: OmegaConf's merge loses the
    item's index from its error, and a user needs it (`curriculum.levels.2.lr`)."""
    if schema_cls is None or not dataclasses.is_dataclass(schema_cls):
        return
    for name, hint in typing.get_type_hints(schema_cls).items():
        item_cls = next(iter(typing.get_args(hint)), None) if typing.get_origin(hint) is list else None
        items = node.get(name) if isinstance(node, DictConfig) else None
        if item_cls is None or not dataclasses.is_dataclass(item_cls) or not isinstance(items, ListConfig):
            continue
        for i, item in enumerate(items):
            _merge(OmegaConf.structured(item_cls), item, f"{prefix}.{name}.{i}" if prefix else f"{name}.{i}", what, where)
