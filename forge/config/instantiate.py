"""Build objects from `_target_` nodes, only from the modules forge allows."""

from __future__ import annotations

import importlib
from typing import Any

from omegaconf import DictConfig, OmegaConf

from forge.config.errors import ConfigError
from forge.config.schema import ALLOWED_TARGET_PREFIXES


def resolve_target(path: str) -> Any:
    if not path.startswith(ALLOWED_TARGET_PREFIXES):
        raise ConfigError(
            f"_target_={path}: not allowed. forge only instantiates classes under "
            + ", ".join(ALLOWED_TARGET_PREFIXES)
        )
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as e:
        raise ConfigError(f"_target_={path}: module '{e.name}' is not installed; pip install it.") from None
    except AttributeError:
        raise ConfigError(f"_target_={path}: '{module}' has no '{name}'.") from None


def instantiate(node: DictConfig, **extra: Any) -> Any:
    """Call node._target_ with the node's other keys as keyword arguments, plus `extra`."""
    kwargs = OmegaConf.to_container(node, resolve=True)
    target = kwargs.pop("_target_")
    try:
        return resolve_target(target)(**kwargs, **extra)
    except ValueError as e:  # constructors reject bad combinations of values with a message
        raise ConfigError(f"{target}: {e}") from None
