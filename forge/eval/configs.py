"""Schema of the `eval` options, light enough for `forge validate`. They have no `_target_`:
the evaluate stage reads them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

from omegaconf import DictConfig

from forge.config.registry import register
from forge.config.rules import at_least, each, one_of, positive
from forge.data.code_tasks import SPLITS as CODE_TASK_SPLITS

METRICS = ("exact_match", "arc_vote", "lm")
SPLITS = ("val", "test")
PROMPTS = ("completion", "chat")  # HumanEval: continue the prompt, or ask through the chat template
SUITES = ("humaneval", "code_tasks")  # the 164 HumanEval problems, or generated tasks (forge.data.code_tasks)


@dataclass
class CodeTasksConfig:
    """Which generated tasks `suite: code_tasks` scores: the first `count` of a split, drawn from `seed`."""

    split: str = one_of(CODE_TASK_SPLITS, default="heldout")
    count: int = at_least(1, default=64)
    seed: int = at_least(0, default=0)


@dataclass
class HumanEvalConfig:
    prompt: str = one_of(PROMPTS)
    suite: str = one_of(SUITES, default="humaneval")
    code_tasks: CodeTasksConfig = field(default_factory=CodeTasksConfig)
    limit: Optional[int] = at_least(1)
    samples: int = at_least(1)
    temperature: float = at_least(0)
    k: list[int] = each(at_least(1))
    max_new_tokens: int = at_least(1)
    batch_size: int = at_least(1)
    timeout_s: float = positive()
    memory_mb: int = at_least(1)
    workers: int = at_least(1)

    @staticmethod
    def relations(node: DictConfig) -> Iterator[tuple[str, str]]:
        if any(k > node.samples for k in node.k):
            yield "k", f"pass@k needs samples >= k (samples={node.samples}); raise samples or lower k"


@dataclass
class SandboxConfig:
    """How model-generated programs run (forge.eval.isolation): behind bubblewrap, or refused."""

    allow_unisolated: bool = False  # run them anyway where bubblewrap is missing (recorded in the results)
    processes: int = at_least(1, default=64)
    open_files: int = at_least(16, default=256)
    file_mb: int = at_least(1, default=16)  # largest file a program may write (standard error included)
    scratch_mb: int = at_least(1, default=64)  # its writable folder and its /tmp, each


@register("eval")
@dataclass
class EvalConfig:
    metric: str = one_of(METRICS)
    split: str = one_of(SPLITS)
    batch_size: int = at_least(1)
    compare_base: bool = False  # causal LMs: score the base model too, side by side
    humaneval: Optional[HumanEvalConfig] = None
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
