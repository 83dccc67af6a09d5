"""Schemas of the `data` options, light enough for `forge validate` (no numpy).

A data node holds the task's content (what `prepare` builds and caches) and the loader's
settings (LOADER_KEYS, read when batches are drawn). Every schema has the loader keys through
`Loader`; the task is built from the node without them. The allowed values of the tasks' string
options are defined here once and imported by the tasks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from omegaconf import MISSING, DictConfig

from forge.config.registry import register
from forge.config.rules import at_least, between, each, fraction, one_of, open_fraction, positive

VERSIONS = ("arcagi1", "arcagi2")  # ARC-AGI
ARC_MAX_GRID = 30
LEVELS = ("trivial", "easy", "medium", "hard", "expert")  # sudoku difficulty
MODES = ("kv", "needle")  # recall
ARITHMETIC_OPS = {"add": "+", "sub": "-", "mul": "*"}
MODULAR_OPS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
MAX_DIGITS = 9  # products of two 9-digit numbers still fit int64
SFT_FORMATS = ("auto", "prompt_completion", "messages", "sharegpt", "alpaca", "dolly", "agent_runs", "claude_code", "python_code")
CLAUDE_CODE_KINDS = ("reasoning_action", "error_recovery", "tool_selection", "answer")
SOURCE_KEYS = {  # optional source keys and the formats they apply to ("auto" may resolve to any)
    "kinds": ("claude_code",), "prompt": ("claude_code",), "prompt_file": ("claude_code",),
    "reward_weights": ("agent_runs",), "min_reward": ("agent_runs",),
}
SECRET_ACTIONS = ("quarantine", "redact")  # what SFT preparation does with an example that holds a secret
DIHEDRAL = 8  # rotations and reflections of a square grid, the identity included
SAMPLERS = ("uniform", "prioritized")  # how training batches draw rows (forge.data.loader, forge.data.samplers)
PRIORITIES = ("loss", "reward_surprise")  # where a replayed row's priority comes from (forge.data.samplers)


@dataclass
class Replay:
    """Prioritized replay (Schaul et al. 2016): row i is drawn with probability p_i^alpha / sum p^alpha,
    p_i its last training loss + eps (or, for agent runs, its reward surprise |r_i - mean r| + eps,
    fixed for the run), and its loss weighted by (N P(i))^-beta, beta annealed to 1 over
    trainer.max_steps."""

    alpha: float = at_least(0, default=0.6)  # 0: uniform draws; larger: harder rows more often
    beta: float = between(0, 1, default=0.4)  # the importance-weight exponent at the first step
    eps: float = positive(default=0.01)  # keeps a row the model fits (loss near 0) drawable
    priority: str = one_of(PRIORITIES, default="loss")  # reward_surprise: agent_runs data only


@dataclass
class Loader:
    """Keys the data loader reads; the task never sees them. The sampler keys have defaults, so
    a data config written before them still means what it did (uniform batches)."""

    batch_size: int = at_least(1)
    sampler: str = one_of(SAMPLERS, default="uniform")
    replay: Replay = dataclasses.field(default_factory=Replay)


LOADER_KEYS = tuple(f.name for f in dataclasses.fields(Loader))


@dataclass
class Seeded(Loader):
    seed: int = MISSING


@dataclass
class SplitSizes(Seeded):
    """Tasks that generate a fixed number of problems per split. Each split needs one: training
    validates on val and the evaluate stage scores test."""

    n_train: int = at_least(1)
    n_val: int = at_least(1)
    n_test: int = at_least(1)


@register("data", "forge.data.addition.Addition")
@dataclass
class AdditionConfig(SplitSizes):
    digits: int = at_least(1)
    lsb_first: bool = MISSING


@register("data", "forge.data.algorithmic.Sorting")
@dataclass
class SortingConfig(SplitSizes):
    length: int = at_least(2)
    max_value: int = at_least(1)


@register("data", "forge.data.algorithmic.Arithmetic")
@dataclass
class ArithmeticConfig(SplitSizes):
    op: str = one_of(ARITHMETIC_OPS)
    digits: int = between(1, MAX_DIGITS)
    lsb_first: bool = MISSING


@register("data", "forge.data.algorithmic.Modular")
@dataclass
class ModularConfig(Seeded):
    p: int = at_least(2)
    op: str = one_of(MODULAR_OPS)
    train_fraction: float = open_fraction()


@register("data", "forge.data.recall.Recall")
@dataclass
class RecallConfig(SplitSizes):
    mode: str = one_of(MODES)
    length: int = at_least(1)
    n_keys: int = at_least(1)


@register("data", "forge.data.sudoku.Sudoku")
@dataclass
class SudokuConfig(SplitSizes):
    size: int = MISSING
    levels: list[str] = each(one_of(LEVELS))
    blanks: Optional[int] = at_least(1)
    augment: int = at_least(0)


@register("data", "forge.data.maze.Maze")
@dataclass
class MazeConfig(SplitSizes):
    size: int = at_least(5)
    min_path: int = at_least(1)
    loops: float = between(0, 1)
    augment: int = between(0, DIHEDRAL - 1)

    @staticmethod
    def relations(node: DictConfig) -> Iterator[tuple[str, str]]:
        if node.size % 2 == 0:
            yield "size", "must be odd (walls on the border)"


@register("data", "forge.data.arc.ARC")
@dataclass
class ARCConfig(Seeded):
    version: str = one_of(VERSIONS)
    max_grid: int = between(1, ARC_MAX_GRID)
    max_demos: int = at_least(1)
    augment: int = at_least(0)
    train_on_eval_demos: bool = MISSING


@register("data", "forge.data.mixture.Mixture")
@dataclass
class MixtureConfig(Loader):
    """Each source is a full data config of its own, checked against its own schema."""

    sources: dict[str, Any] = MISSING


@dataclass
class SFTSource:
    """One input of an SFT dataset; the keys after `path` apply to some formats only (SOURCE_KEYS)."""

    format: str = one_of(SFT_FORMATS)
    path: str = MISSING
    kinds: Optional[list[str]] = each(one_of(CLAUDE_CODE_KINDS), default=None)  # claude_code
    successful_only: bool = True  # claude_code
    prompt: Optional[str] = None  # claude_code: the prompt of logs recorded without it
    prompt_file: Optional[str] = None  # claude_code: the same, read from a file
    reward_weights: Optional[dict[str, float]] = None  # agent_runs
    min_reward: Optional[float] = None  # agent_runs
    min_lines: int = at_least(1, default=3)  # python_code
    max_lines: int = at_least(1, default=40)  # python_code

    @staticmethod
    def relations(node: DictConfig) -> Iterator[tuple[str, str]]:
        for key, formats in SOURCE_KEYS.items():
            if node.get(key) is not None and node.format not in (*formats, "auto"):
                yield key, f"applies to format {' or '.join(formats)} only, this source is format {node.format}; remove it"
        if node.get("prompt") is not None and node.get("prompt_file") is not None:
            yield "prompt_file", "give the prompt once: prompt or prompt_file, not both"
        if node.get("min_reward") is not None and not node.get("reward_weights"):
            yield "min_reward", "needs reward_weights: without them every run's reward is 0"
        if node.get("kinds") is not None and not node.kinds:
            yield "kinds", f"names no kind of example; choose from {', '.join(CLAUDE_CODE_KINDS)}"


@register("data", "forge.data.sft.SFT")
@dataclass
class SFTConfig(Seeded):
    sources: list[SFTSource] = MISSING
    seq_len: int = at_least(2)
    packing: bool = MISSING
    val_fraction: float = fraction()
    test_fraction: float = fraction()
    secrets: str = one_of(SECRET_ACTIONS, default="quarantine")

    @staticmethod
    def relations(node: DictConfig) -> Iterator[tuple[str, str]]:
        if node.val_fraction + node.test_fraction >= 1:
            yield "test_fraction", f"must leave rows to train on: val_fraction + test_fraction must be < 1 (val_fraction={node.val_fraction})"
