"""Every schema says what its constructor takes: the fields of each registered schema are the
parameters of the class its `_target_` names, so the two cannot drift apart."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
from typing import Any, Callable

import pytest

from forge.config.registry import schemas
from forge.data.configs import LOADER_KEYS

# Parameters forge passes itself, never from the config node: a model gets the vocabulary size
# and sequence length of the prepared data (forge.models.build_model), a causal LM its cache
# folder (HFCausalLM.from_config), a text task the model's tokenizer (forge.data.prepare).
INJECTED = {"model": {"vocab_size", "max_len", "cache_dir"}, "data": {"tokenizer"}}
# Keys of a node read by forge, not by the constructor: the data loader's, and the optimizer's
# learning-rate schedule and GrokFast filter (forge.train.module.build_optimizer).
READ_BY_FORGE = {"data": set(LOADER_KEYS), "optim": {"warmup_steps", "schedule", "min_lr_ratio", "grokfast"}}
# Targets that are not forge classes: their constructors take far more than forge sets, so the
# schema's fields must be a subset of what they accept.
FOREIGN = ("torch.", "lightning.")
# Logger targets whose extra keys go on through **kwargs: to dvclive.Live for DVCLive.
PASSED_ON = {"forge.train.dvclive_logger.DVCLiveLogger": "dvclive.Live"}

REGISTERED = [(group, target, schema) for group, options in schemas().items() for target, schema in options.items() if target]


def _resolve(path: str) -> Callable[..., Any]:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _parameters(target: Callable[..., Any]) -> set[str]:
    params = inspect.signature(target).parameters.values()
    return {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _fields(schema: type) -> set[str]:
    return {f.name for f in dataclasses.fields(schema)} - {"_target_"}


def test_every_group_has_schemas() -> None:
    assert {g for g, _, _ in REGISTERED} == {"model", "data", "curriculum", "compressor", "optim", "peft", "logger", "callbacks"}
    assert len(REGISTERED) >= 25


@pytest.mark.parametrize("group, target, schema", REGISTERED, ids=[t for _, t, _ in REGISTERED])
def test_schema_fields_are_the_constructor_parameters(group: str, target: str, schema: type) -> None:
    fields = _fields(schema) - READ_BY_FORGE.get(group, set())
    params = _parameters(_resolve(target)) - INJECTED.get(group, set())
    if target in PASSED_ON:
        assert fields <= _parameters(_resolve(PASSED_ON[target])), f"{target}: keys {PASSED_ON[target]} does not take"
    elif target.startswith(FOREIGN):
        assert fields <= params, f"{target} takes no {sorted(fields - params)}"
    else:
        assert fields == params, f"schema only: {sorted(fields - params)}; constructor only: {sorted(params - fields)}"


def test_grokfast_schema_is_the_callback_parameters() -> None:
    """Nested in `optim`, built by forge itself rather than from a `_target_`."""
    from forge.train.configs import GrokFastConfig
    from forge.train.grokfast import GrokFast

    assert _fields(GrokFastConfig) == _parameters(GrokFast)


def test_sft_source_keys_are_read_by_the_formats() -> None:
    """A source is a plain mapping each format reads the keys it needs from: every key of the
    schema is read somewhere in forge.data.sft."""
    from pathlib import Path

    from forge.data.configs import SFTSource

    code = "".join(p.read_text() for p in (Path(__file__).parents[1] / "forge" / "data" / "sft").glob("*.py"))
    assert all(f'"{name}"' in code for name in _fields(SFTSource) - {"format", "path"}), "a source key no format reads"


def test_config_only_groups_have_no_target() -> None:
    """trainer, eval and export are read key by key by forge (the Trainer is built from renamed
    keys), so there is no constructor to compare with; their keys are checked by test_config."""
    for group in ("trainer", "eval", "export"):
        assert list(schemas()[group]) == [None]


def test_schema_modules_are_light() -> None:
    """Schemas load with `forge validate`, which must not import torch: every schema module is
    free of heavy imports (checked in a fresh interpreter)."""
    import subprocess

    from forge.config.registry import SCHEMA_MODULES

    code = (
        "import sys\nfrom forge.config.registry import schemas\nschemas()\n"
        "print(sorted(m for m in ('torch', 'lightning', 'transformers', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"{SCHEMA_MODULES} import {out.strip()}"
