"""The loop's export: good runs once each, no evaluation task, no secret, agent_runs JSONL that
forge's SFT data reads back, a file named by its runs, orphans found."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from forge.learn import export


@dataclass
class Run:
    id: str
    task: str
    response: Optional[str] = "def f():\n    return 1\n"
    messages: Optional[list[dict[str, Any]]] = None
    task_id: Optional[str] = None
    signals: dict[str, Any] = field(default_factory=lambda: {"compiled": True, "tests_passed": 3, "tests_total": 3})
    reward: float = 1.0


def test_select_keeps_each_good_run_once_and_leaves_out_evaluation_tasks_and_secrets() -> None:
    runs = [Run("a", "add two numbers"), Run("b", "add two numbers"),  # the same task and answer twice
            Run("c", "add two numbers", response="def f():\n    return 2\n"),
            Run("d", "the held-out task"), Run("e", "other", task_id="CodeTask/heldout/1"),
            Run("f", "call the API", response='key = "AKIAIOSFODNN7ABCDEFG"\n')]
    chosen = export.select(runs, evaluation={"the held-out task", "CodeTask/heldout/1"})
    assert [r.id for r in chosen.runs] == ["a", "c"]
    assert chosen.left_out == {"duplicates": 1, "evaluation_tasks": 2, "secrets": 1}
    later = export.select([runs[1], Run("g", "add two numbers", response="def f():\n    return 3\n")], set(), exported=chosen.runs)
    assert [r.id for r in later.runs] == ["g"] and later.left_out == {"duplicates": 1}, "an answer exported before is not exported again"


def test_the_file_is_agent_runs_jsonl_named_by_its_runs(tmp_path: Path) -> None:
    from forge.data.sft.detect import record_format
    from forge.data.sft.formats import run_reward

    runs = [Run("b", "t1"), Run("a", "t2", response=None, messages=[{"role": "assistant", "content": "ok"}])]
    path, digest = export.write(runs, tmp_path / "exports", dvc_project=None)
    assert path.name == export.file_name(list(reversed(runs))), "the same runs give the same name, in any order"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0] == {"id": "b", "task": "t1", "response": "def f():\n    return 1\n", "signals": runs[0].signals}
    assert records[1]["messages"] == [{"role": "assistant", "content": "ok"}] and "response" not in records[1]
    assert all(record_format(r) == "agent_runs" for r in records)
    assert run_reward(records[0]["signals"], {"tests_passed": 1.0}) == 1.0
    assert len(digest) == 64
    assert export.orphans(tmp_path / "exports", known={path.name}) == []
    assert export.orphans(tmp_path / "exports", known=set()) == [path]
