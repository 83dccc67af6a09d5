"""What each model family accepts, as plain data: validation reads it without importing torch,
and the family implementations (forge.families) read the same declarations.

A family is the one place that knows how a kind of model is tokenized, built, trained, loaded,
evaluated and exported. Adding one is a `FamilySpec` here plus its implementation module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

# Data kinds: which data targets produce which kind of prepared dataset.
DATA_KINDS: dict[str, tuple[str, ...]] = {
    # Token tasks: forge's own vocabulary, inputs and labels of a fixed length.
    "tokens": (
        "forge.data.addition.Addition",
        "forge.data.algorithmic.Arithmetic",
        "forge.data.algorithmic.Modular",
        "forge.data.algorithmic.Sorting",
        "forge.data.arc.ARC",
        "forge.data.maze.Maze",
        "forge.data.mixture.Mixture",
        "forge.data.recall.Recall",
        "forge.data.sudoku.Sudoku",
    ),
    # Text tokenized with the model's own tokenizer, packed into rows.
    "text": ("forge.data.sft.SFT",),
}


@dataclass(frozen=True)
class FamilySpec:
    name: str
    implementation: str  # "module:Class" of its forge.families.Family, imported when a stage runs
    models: tuple[str, ...]  # model targets of this family
    data_kinds: tuple[str, ...]
    evals: tuple[str, ...]  # eval.metric values
    exports: tuple[str, ...]  # export.format values ("none" is always accepted)
    adapters: bool  # may peft be set?
    curricula: tuple[Optional[str], ...]  # curriculum targets (None: no curriculum)
    selection: str  # what picks best.ckpt, for messages and train.json


FAMILIES: dict[str, FamilySpec] = {
    spec.name: spec
    for spec in (
        FamilySpec(
            name="tokens",
            implementation="forge.families.tokens:TokenFamily",
            models=("forge.models.transformer.Transformer", "forge.models.hrrm.HRRM", "forge.models.cogment.Cogment"),
            data_kinds=("tokens",),
            evals=("exact_match", "arc_vote"),
            exports=("safetensors",),
            adapters=False,
            curricula=(None, "forge.curriculum.staged.Staged", "forge.curriculum.difficulty.Difficulty"),
            selection="best validation exact match",
        ),
        FamilySpec(
            name="causal_lm",
            implementation="forge.families.causal_lm:CausalLMFamily",
            models=("forge.models.hf.HFCausalLM",),
            data_kinds=("text",),
            evals=("lm",),
            exports=("hf",),
            adapters=True,
            curricula=(None,),
            selection="lowest held-out loss",
        ),
    )
}


def family_name(model_target: Any) -> Optional[str]:
    """The family of a model target, or None if no family declares it."""
    return next((f.name for f in FAMILIES.values() if model_target in f.models), None)


def data_kind(data_target: Any) -> Optional[str]:
    return next((kind for kind, targets in DATA_KINDS.items() if data_target in targets), None)
