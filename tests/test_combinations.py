"""Groups that each validate alone but would misbehave together are refused at validation, with
one line naming the key, why, and what to choose instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_forge

from forge.config.compose import compose
from forge.config.errors import ConfigError
from forge.config.validate import validate

REFUSED = [
    (["+recipe=quickstart", "peft=lora"], "peft._target_=forge.models.peft.LoRA: adapters need a model that takes them (model=hf_causal_lm)"),
    (["+recipe=quickstart", "eval=humaneval"], "eval.metric=lm: a tokens model (forge.models.transformer.Transformer) is evaluated with exact_match, arc_vote"),
    (["+recipe=coder_lora", "export=safetensors"], "export.format=safetensors: a causal_lm model (forge.models.hf.HFCausalLM) exports as hf"),
    (["model=smollm2_135m", "data=addition"], "data._target_=forge.data.addition.Addition: a causal_lm model (forge.models.hf.HFCausalLM) trains on text data, this is tokens data"),
    (["+recipe=quickstart", "curriculum=difficulty"], "it schedules difficulty levels, and forge.data.addition.Addition rates none"),
    (["+recipe=quickstart", "curriculum=staged"], "its stages mix the sources of data=mixture"),
    (["+recipe=coder_lora", "curriculum=difficulty"], "a causal_lm model (forge.models.hf.HFCausalLM) trains without this curriculum"),
    (["+recipe=quickstart", "eval=arc_vote"], "eval.metric=arc_vote: votes over ARC task augmentations and needs data=arc"),
]


@pytest.mark.parametrize("overrides,message", REFUSED, ids=[" ".join(o) for o, _ in REFUSED])
def test_mis_combinations_are_refused_before_anything_runs(overrides: list[str], message: str) -> None:
    cfg, origin = compose(overrides)
    with pytest.raises(ConfigError) as e:
        validate(cfg, origin.where)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_the_error_names_the_command_line_choice_and_what_to_choose(tmp_path: Path) -> None:
    proc = run_forge("validate", "+recipe=coder_lora", "export=safetensors", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "forge: error: export.format=safetensors: a causal_lm model (forge.models.hf.HFCausalLM) exports as hf "
        "(command line: 'export=safetensors'). Choose export=hf or none."
    ]


@pytest.mark.parametrize("recipe", sorted(p.stem for p in (Path(__file__).parents[1] / "recipes").glob("*.yaml")))
def test_every_recipe_is_a_valid_combination(recipe: str) -> None:
    cfg, origin = compose([f"+recipe={recipe}"])
    validate(cfg, origin.where)
