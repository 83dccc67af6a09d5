"""Which schema a config group's option must fit, found by plugin discovery.

Each concept keeps its schemas beside its code (`forge/data/configs.py` next to the tasks,
`forge/models/configs.py` next to the models, ...) and registers them with
`@register(group, target)`. The config layer is the bottom layer and imports none of them at
module level: `schemas()` imports the modules named in SCHEMA_MODULES the first time schemas
are needed, and each registers itself as it loads. This is how Hydra discovers its plugins
(modules named by convention, imported on demand). A new concept adds its configs module to
SCHEMA_MODULES. Schema modules stay light: no torch, Lightning, transformers or numpy, so
`forge validate` stays sub-second.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from dataclasses import dataclass
from typing import Callable, Optional

# The config groups, in the order validation checks them.
GROUPS = ("model", "data", "curriculum", "compressor", "trainer", "optim", "peft", "eval", "export", "logger")
SCHEMA_MODULES = (
    "forge.models.configs",
    "forge.data.configs",
    "forge.curriculum.configs",
    "forge.compress.configs",
    "forge.train.configs",
    "forge.eval.configs",
    "forge.export.configs",
)
# Groups whose value is a mapping of named entries, each an option of its own (`callbacks`:
# lightning-hydra-template's instantiate_callbacks; an entry that is null is off).
ENTRY_GROUPS = ("callbacks",)
# Groups with an option that switches them off (`_target_: null`).
OPTIONAL_GROUPS = ("curriculum", "compressor", "peft", "logger")

_registry: dict[str, dict[Optional[str], type]] = {group: {} for group in (*GROUPS, *ENTRY_GROUPS)}
_loaded = False


def register(group: str, target: Optional[str] = None) -> Callable[[type], type]:
    """Register a schema dataclass for the option of `group` whose `_target_` is `target`
    (None: the group's options have no `_target_`, like `trainer`). With a target, what is
    registered is the schema with a first field `_target_` defaulting to it, so the target is
    written once, here."""
    if group not in _registry:
        raise ValueError(f"register: unknown config group {group!r}; one of {', '.join(_registry)}")

    def add(cls: type) -> type:
        schema = cls if target is None else _with_target(cls, target)
        _registry[group][target] = schema
        return schema

    return add


def _with_target(cls: type, target: str) -> type:
    """`cls` as a dataclass led by `_target_`, then its own fields, then those of its bases from
    the nearest: the order a config file lists them (shared keys such as batch_size last)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    order = [name for klass in cls.__mro__ for name in vars(klass).get("__annotations__", {}) if name in fields]
    spec = [("_target_", str, dataclasses.field(default=target))]
    for name in dict.fromkeys(order):
        if name != "_target_":
            f = fields[name]
            spec.append((name, hints[name], dataclasses.field(default=f.default, default_factory=f.default_factory, metadata=f.metadata)))
    namespace = {"__doc__": cls.__doc__, "__module__": cls.__module__, "__qualname__": cls.__qualname__}
    relations = getattr(cls, "relations", None)
    if relations is not None:
        namespace["relations"] = staticmethod(relations)
    return dataclasses.make_dataclass(cls.__name__, spec, namespace=namespace)


def schemas() -> dict[str, dict[Optional[str], type]]:
    """{group: {target: schema}}, the schema modules imported on first use."""
    global _loaded
    if not _loaded:
        for name in SCHEMA_MODULES:
            importlib.import_module(name)
        _loaded = True
    return _registry


@dataclass
class Off:
    """An option that switches its group off."""

    _target_: Optional[str] = None


for _group in OPTIONAL_GROUPS:
    register(_group)(Off)
