"""Compose a config exactly as `forge` does, turning Hydra's errors into short ConfigErrors."""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from forge.config.errors import ConfigError, choices_text, suggest, yaml_line

CONFIG_MODULE = "forge.conf"
CONFIG_NAME = "config"


@dataclass
class Origin:
    """Where the values of a composed config came from, to point an error at a file and line."""

    overrides: list[str] = field(default_factory=list)
    files: list[tuple[Path, str]] = field(default_factory=list)  # (yaml file, its package)

    def where(self, full_key: str) -> str:
        for ov in self.overrides:
            if ov.lstrip("+~").split("=", 1)[0] == full_key:
                return f" (command line: '{ov}')"
        for path, package in self.files:
            if package and not (full_key + ".").startswith(package + "."):
                continue
            rel = full_key[len(package) + 1 :] if package else full_key
            line = yaml_line(path, rel.split("."))
            if line is not None:
                return f" ({path}:{line})"
        return ""


def config_dirs(overrides: list[str]) -> list[Path]:
    """forge's own config folder plus every file:// folder the overrides add to the search path."""
    dirs = [Path(str(importlib.resources.files(CONFIG_MODULE)))]
    for ov in overrides:
        if ov.startswith("hydra.searchpath="):
            from hydra.core.override_parser.overrides_parser import OverridesParser

            value = OverridesParser.create().parse_override(ov).value()
            for entry in value if isinstance(value, list) else [value]:
                if str(entry).startswith("file://"):
                    dirs.insert(0, Path(str(entry)[len("file://") :]))
    return dirs


def group_options(group: str, overrides: list[str]) -> list[str]:
    options = set()
    for d in config_dirs(overrides):
        options |= {p.stem for p in (d / group).glob("*.yaml")}
    return sorted(options)


def compose(overrides: list[str]) -> tuple[DictConfig, Origin]:
    """The job config (no `hydra` node) and its origin; raises ConfigError on any user mistake."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.errors import HydraException, MissingConfigException

    import yaml

    try:
        with initialize_config_module(CONFIG_MODULE, version_base=None):
            cfg = hydra_compose(CONFIG_NAME, overrides=overrides, return_hydra_config=True)
    except MissingConfigException as e:
        raise _missing_option(e, overrides) from None
    except yaml.YAMLError as e:
        raise _yaml_error(e, overrides) from None
    except HydraException as e:
        raise _composition_error(e, overrides) from None
    origin = _origin(cfg, overrides)
    with_hydra = OmegaConf.to_container(cfg, resolve=False)
    del with_hydra["hydra"]
    return OmegaConf.create(with_hydra), origin


def _origin(cfg: DictConfig, overrides: list[str]) -> Origin:
    choices = cfg.hydra.runtime.choices
    dirs = config_dirs(overrides)
    files: list[tuple[Path, str]] = []
    for group, option in choices.items():
        if option is None or group.startswith("hydra/"):
            continue
        for d in dirs:
            path = d / group / f"{option}.yaml"
            if path.exists():
                package = "" if group == "recipe" else group
                files.append((path, package))
                break
    # A recipe overrides the groups, so it is the likelier origin of a bad value: look there first.
    files.sort(key=lambda f: f[1] != "")
    files.append((dirs[-1] / f"{CONFIG_NAME}.yaml", ""))
    return Origin(overrides=list(overrides), files=files)


def _missing_option(e: Exception, overrides: list[str]) -> ConfigError:
    missing = getattr(e, "missing_cfg_file", "") or ""
    if "/" not in missing:
        return ConfigError(str(e).split("\n")[0])
    group, option = missing.rsplit("/", 1)
    options = getattr(e, "options", None) or group_options(group, overrides)
    kind = "recipe" if group == "recipe" else f"option for '{group}'"
    return ConfigError(
        f"{group}={option}: no such {kind}.{suggest(option, options)} {choices_text(options)}"
    )


def _yaml_error(e: Exception, overrides: list[str]) -> ConfigError:
    """Hydra parses YAML from strings, so find the file that fails to parse and its line."""
    import yaml

    for d in config_dirs(overrides):
        for path in sorted(d.rglob("*.yaml")):
            try:
                yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as bad:
                mark = getattr(bad, "problem_mark", None)
                at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
                problem = getattr(bad, "problem", None) or str(bad)
                return ConfigError(f"YAML error in {path}{at}: {problem}. Fix the file and retry.")
    return ConfigError(f"YAML error: {e}")


def _composition_error(e: Exception, overrides: list[str]) -> ConfigError:
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause = e.__cause__
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and cause.full_key:
        key = re.sub(r"\[(\d+)\]", r".\1", cause.full_key)  # list items: a.b[0].c -> a.b.0.c
        parent, _, leaf = key.rpartition(".")
        others = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
        valid = _keys_at(parent, others) if len(others) < len(overrides) else None
        if valid is not None:
            where = Origin(overrides).where(key)
            hint = suggest(leaf, valid) or " " + choices_text(valid)
            return ConfigError(f"{key}: no such key{where}.{hint}")
    first = str(e).strip().split("\n")
    return ConfigError(" ".join(line.strip() for line in first if "hydra.cc/docs" not in line))


def _keys_at(parent: str, overrides: list[str]) -> Optional[list[str]]:
    try:
        cfg, _ = compose(overrides)
    except ConfigError:
        return None
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return [str(k) for k in node.keys()] if isinstance(node, DictConfig) else None
