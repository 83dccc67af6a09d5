"""Structured schemas for every config group.

A group option declares what it is with `_target_` (or has none, like the `trainer` group);
`SCHEMAS[group][target]` is the dataclass its values must fit. Validation merges the composed
node into that dataclass, so a wrong type, a misspelt or a missing key fails before any heavy
import. The YAML files hold the values (fields here are MISSING), the schemas only the shape.
Later features add an entry here next to the YAML file that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

STAGES = ("all", "prepare", "train", "compress", "evaluate", "export")


@dataclass
class CVSchema:
    folds: Optional[int] = None
    fold: Optional[int] = None
    stratify: bool = True
    seed: int = 0


@dataclass
class ForgeConfig:
    """Top-level keys; the groups are checked one by one against SCHEMAS."""

    stage: str = "all"
    seed: int = 0
    resume: Optional[str] = None
    cache_dir: Optional[str] = None
    # Metric names (train.json / metrics.json) a sweeper optimizes; null: test exact match.
    objective: Optional[list[str]] = None
    cv: CVSchema = field(default_factory=CVSchema)
    model: Any = None
    data: Any = None
    curriculum: Any = None
    compressor: Any = None
    trainer: Any = None
    optim: Any = None
    peft: Any = None
    eval: Any = None
    export: Any = None
    logger: Any = None


@dataclass
class TransformerSchema:
    _target_: str = "forge.models.transformer.Transformer"
    d_model: int = MISSING
    n_layers: int = MISSING
    n_heads: int = MISSING
    d_ff: int = MISSING
    dropout: float = MISSING
    causal: bool = MISSING
    init: str = "small"


@dataclass
class HRRMSchema:
    _target_: str = "forge.models.hrrm.HRRM"
    variant: str = MISSING
    d_model: int = MISSING
    n_heads: int = MISSING
    d_ff: int = MISSING
    n_layers: int = MISSING
    mixer: str = MISSING
    h_cycles: int = MISSING
    l_cycles: int = MISSING
    segments: int = MISSING
    halt_explore: float = MISSING
    halt_at_inference: bool = MISSING
    memory_slots: int = MISSING
    ema_decay: float = MISSING


@dataclass
class CogmentSchema:
    _target_: str = "forge.models.cogment.Cogment"
    d_model: int = MISSING
    n_heads: int = MISSING
    d_ff: int = MISSING
    mixer: str = MISSING
    encoder_layers: int = MISSING
    core_layers: int = MISSING
    max_steps: int = MISSING
    halt_epsilon: float = MISSING
    ponder_cost: float = MISSING
    deep_supervision: float = MISSING
    memory_slots: int = MISSING


@dataclass
class HFCausalLMSchema:
    _target_: str = "forge.models.hf.HFCausalLM"
    source: str = MISSING
    trust_remote_code: bool = MISSING
    dtype: str = MISSING
    attn_implementation: str = MISSING
    gradient_checkpointing: bool = MISSING


@dataclass
class RTNSchema:
    _target_: str = "forge.compress.rtn.RTN"
    bits: int = MISSING
    group: int = MISSING
    target_size_mb: Optional[float] = MISSING
    skip: list[str] = MISSING
    float_dtype: str = MISSING
    calibration_batches: int = MISSING
    tune_steps: int = MISSING
    tune_lr: float = MISSING


@dataclass
class BitNetSchema:
    _target_: str = "forge.compress.bitnet.BitNet"
    qat: bool = MISSING
    packing: str = MISSING
    skip: list[str] = MISSING
    float_dtype: str = MISSING


@dataclass
class VPTQSchema:
    _target_: str = "forge.compress.vptq.VPTQ"
    vector_length: int = MISSING
    codebook_size: int = MISSING
    residual_codebook_size: int = MISSING
    outlier_fraction: float = MISSING
    outlier_codebook_size: int = MISSING
    kmeans_iters: int = MISSING
    damp: float = MISSING
    calibration_batches: int = MISSING
    skip: list[str] = MISSING
    float_dtype: str = MISSING
    tune_steps: int = MISSING
    tune_lr: float = MISSING


@dataclass
class LoRASchema:
    _target_: str = "forge.models.peft.LoRA"
    r: int = MISSING
    alpha: float = MISSING
    dropout: float = MISSING
    target_modules: Any = MISSING
    dora: bool = MISSING
    quantize_base: bool = MISSING


@dataclass
class SFTSourceSchema:
    """One input of an SFT dataset; the keys after `path` apply to some formats only."""

    format: str = MISSING
    path: str = MISSING
    kinds: Optional[list[str]] = None  # claude_code
    successful_only: bool = True  # claude_code
    reward_weights: Optional[dict[str, float]] = None  # agent_runs
    min_reward: Optional[float] = None  # agent_runs
    min_lines: int = 3  # python_code
    max_lines: int = 40  # python_code


@dataclass
class SFTSchema:
    _target_: str = "forge.data.sft.SFT"
    sources: list[SFTSourceSchema] = MISSING
    seq_len: int = MISSING
    packing: bool = MISSING
    val_fraction: float = MISSING
    test_fraction: float = MISSING
    seed: int = MISSING
    batch_size: int = MISSING


@dataclass
class AdditionSchema:
    _target_: str = "forge.data.addition.Addition"
    digits: int = MISSING
    lsb_first: bool = MISSING
    n_train: int = MISSING
    n_val: int = MISSING
    n_test: int = MISSING
    seed: int = MISSING
    batch_size: int = MISSING


@dataclass
class LevelSchema:
    name: str = MISSING
    lr: float = MISSING
    batch_size: int = MISSING
    max_epochs: int = MISSING
    patience: int = MISSING
    gradient_clip: Optional[float] = MISSING
    threshold: float = MISSING


@dataclass
class DifficultySchema:
    _target_: str = "forge.curriculum.difficulty.Difficulty"
    replay: float = MISSING
    remedial: int = MISSING
    levels: list[LevelSchema] = MISSING


@dataclass
class StageSchema:
    name: str = MISSING
    mix: dict[str, float] = MISSING
    steps: Optional[int] = None
    epochs: Optional[int] = None
    threshold: Optional[float] = None


@dataclass
class StagedSchema:
    _target_: str = "forge.curriculum.staged.Staged"
    batch_size: int = MISSING
    stages: list[StageSchema] = MISSING


@dataclass
class SudokuSchema:
    _target_: str = "forge.data.sudoku.Sudoku"
    size: int = MISSING
    n_train: int = MISSING
    n_val: int = MISSING
    n_test: int = MISSING
    levels: list[str] = MISSING
    blanks: Optional[int] = MISSING
    augment: int = MISSING
    seed: int = MISSING
    batch_size: int = MISSING


@dataclass
class MazeSchema:
    _target_: str = "forge.data.maze.Maze"
    size: int = MISSING
    n_train: int = MISSING
    n_val: int = MISSING
    n_test: int = MISSING
    min_path: int = MISSING
    loops: float = MISSING
    augment: int = MISSING
    seed: int = MISSING
    batch_size: int = MISSING


@dataclass
class ARCSchema:
    _target_: str = "forge.data.arc.ARC"
    version: str = MISSING
    max_grid: int = MISSING
    max_demos: int = MISSING
    augment: int = MISSING
    train_on_eval_demos: bool = MISSING
    seed: int = MISSING
    batch_size: int = MISSING


@dataclass
class SortingSchema:
    _target_: str = "forge.data.algorithmic.Sorting"
    length: int = MISSING
    max_value: int = MISSING
    n_train: int = MISSING
    n_val: int = MISSING
    n_test: int = MISSING
    seed: int = MISSING
    batch_size: int = MISSING


@dataclass
class ArithmeticSchema:
    _target_: str = "forge.data.algorithmic.Arithmetic"
    op: str = MISSING
    digits: int = MISSING
    lsb_first: bool = MISSING
    n_train: int = MISSING
    n_val: int = MISSING
    n_test: int = MISSING
    seed: int = MISSING
    batch_size: int = MISSING


@dataclass
class ModularSchema:
    _target_: str = "forge.data.algorithmic.Modular"
    p: int = MISSING
    op: str = MISSING
    train_fraction: float = MISSING
    seed: int = MISSING
    batch_size: int = MISSING


@dataclass
class RecallSchema:
    _target_: str = "forge.data.recall.Recall"
    mode: str = MISSING
    length: int = MISSING
    n_keys: int = MISSING
    n_train: int = MISSING
    n_val: int = MISSING
    n_test: int = MISSING
    seed: int = MISSING
    batch_size: int = MISSING


@dataclass
class MixtureSchema:
    """Each source is a full data config of its own (checked when the data is built)."""

    _target_: str = "forge.data.mixture.Mixture"
    sources: dict[str, Any] = MISSING
    batch_size: int = MISSING


@dataclass
class NoneSchema:
    """An option that switches its group off."""

    _target_: Optional[str] = None


@dataclass
class TrainerSchema:
    accelerator: str = MISSING
    devices: Any = MISSING
    strategy: str = MISSING
    num_nodes: int = MISSING
    precision: str = MISSING
    threads: Optional[int] = MISSING
    process_group_backend: Optional[str] = MISSING
    max_steps: int = MISSING
    max_minutes: Optional[float] = MISSING
    val_every_n_steps: int = MISSING
    log_every_n_steps: int = MISSING
    checkpoint_every_n_steps: int = MISSING
    gradient_clip_val: Optional[float] = MISSING
    accumulate_grad_batches: int = MISSING
    deterministic: bool = MISSING
    # {metric: target}: stop at the first validation where each metric has reached its target.
    stop_at: Optional[dict[str, float]] = None


@dataclass
class GrokFastSchema:
    filter: str = MISSING
    alpha: float = MISSING
    lamb: float = MISSING
    window: int = MISSING
    start_after_train_accuracy: Optional[float] = MISSING


@dataclass
class AdamWSchema:
    _target_: str = "torch.optim.AdamW"
    lr: float = MISSING
    betas: list[float] = MISSING
    eps: float = MISSING
    weight_decay: float = MISSING
    warmup_steps: int = MISSING
    schedule: str = MISSING
    min_lr_ratio: float = MISSING
    grokfast: Optional[GrokFastSchema] = None


@dataclass
class AdamSchema(AdamWSchema):
    _target_: str = "torch.optim.Adam"


@dataclass
class HumanEvalSchema:
    prompt: str = MISSING
    limit: Optional[int] = MISSING
    samples: int = MISSING
    temperature: float = MISSING
    k: list[int] = MISSING
    max_new_tokens: int = MISSING
    batch_size: int = MISSING
    timeout_s: float = MISSING
    memory_mb: int = MISSING
    workers: int = MISSING


@dataclass
class EvalSchema:
    metric: str = MISSING
    split: str = MISSING
    batch_size: int = MISSING
    compare_base: bool = False  # causal LMs: score the base model too, side by side
    humaneval: Optional[HumanEvalSchema] = None


@dataclass
class ExportSchema:
    format: str = MISSING
    outputs: list[str] = field(default_factory=list)  # causal LMs: adapter, merged, gguf
    gguf_type: str = "f16"
    gguf_pre: str = "gpt-2"
    ollama: dict[str, Any] = field(default_factory=dict)


@dataclass
class DVCLiveSchema:
    _target_: str = "forge.train.dvclive_logger.DVCLiveLogger"
    dvcyaml: Optional[str] = MISSING
    save_dvc_exp: bool = MISSING
    report: Optional[str] = MISSING


@dataclass
class CSVLoggerSchema:
    _target_: str = "lightning.pytorch.loggers.CSVLogger"


@dataclass
class TensorBoardSchema:
    _target_: str = "lightning.pytorch.loggers.TensorBoardLogger"


@dataclass
class MLFlowSchema:
    _target_: str = "lightning.pytorch.loggers.MLFlowLogger"
    experiment_name: str = MISSING
    tracking_uri: Optional[str] = MISSING


@dataclass
class WandbSchema:
    _target_: str = "lightning.pytorch.loggers.WandbLogger"
    project: str = MISSING
    offline: bool = MISSING


# Keys whose string value must be one of a few words.
CHOICES: dict[str, tuple[str, ...]] = {
    "trainer.precision": ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true"),
    "optim.schedule": ("constant", "linear", "cosine"),
    "optim.grokfast.filter": ("ema", "ma"),
    "eval.split": ("val", "test"),
    "eval.metric": ("exact_match", "arc_vote", "lm"),
    "export.format": ("safetensors", "hf", "none"),
    "export.gguf_type": ("f32", "f16", "q8_0"),
    "eval.humaneval.prompt": ("completion", "chat"),
    "compressor.float_dtype": ("float32", "float16", "bfloat16"),
    "compressor.packing": ("trits", "2bit"),
    "model.dtype": ("float32", "bfloat16", "float16"),
    "model.variant": ("hrm", "trm"),
    "model.mixer": ("attention", "mlp"),
    "model.init": ("small", "torch_default"),
    "data.version": ("arcagi1", "arcagi2"),
    "data.mode": ("kv", "needle"),
}


def _by_target(*schemas: type) -> dict[Optional[str], type]:
    return {s.__dataclass_fields__["_target_"].default: s for s in schemas}


SCHEMAS: dict[str, dict[Optional[str], type]] = {
    "model": _by_target(TransformerSchema, HRRMSchema, CogmentSchema, HFCausalLMSchema),
    "data": _by_target(
        SFTSchema, AdditionSchema, SudokuSchema, MazeSchema, ARCSchema, SortingSchema, ArithmeticSchema, ModularSchema, RecallSchema, MixtureSchema
    ),
    "curriculum": _by_target(NoneSchema, DifficultySchema, StagedSchema),
    "compressor": _by_target(NoneSchema, RTNSchema, BitNetSchema, VPTQSchema),
    "trainer": {None: TrainerSchema},
    "optim": _by_target(AdamWSchema, AdamSchema),
    "peft": _by_target(NoneSchema, LoRASchema),
    "eval": {None: EvalSchema},
    "export": {None: ExportSchema},
    "logger": _by_target(
        NoneSchema, DVCLiveSchema, CSVLoggerSchema, TensorBoardSchema, MLFlowSchema, WandbSchema
    ),
}
GROUPS = tuple(SCHEMAS)

# The only modules a config's `_target_` may name: a recipe from elsewhere cannot run arbitrary
# code by naming it. Extend this list in code, not in YAML.
ALLOWED_TARGET_PREFIXES = (
    "forge.",
    "torch.optim.",
    "lightning.pytorch.loggers.",
)
