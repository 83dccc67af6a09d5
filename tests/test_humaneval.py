"""HumanEval scoring: real problems run in the sandbox; a crash, hang, memory bomb or network call
fails only its own program."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.eval.humaneval import CHAT_REPLY, SCRIPT_TAIL, problems, program, prompt_text, truncate
from forge.eval.sandbox import network_isolation, run_program, run_programs


def test_canonical_solutions_pass_and_wrong_ones_fail() -> None:
    items = problems()
    assert len(items) == 164
    subset = items[:12]
    right = run_programs([program(p, p["canonical_solution"]) for p in subset], timeout_s=10, memory_mb=1024, workers=2)
    assert all(o.passed for o in right), [o.status for o in right]
    wrong = run_programs([program(p, "    return None\n") for p in subset], timeout_s=10, memory_mb=1024, workers=2)
    assert not any(o.passed for o in wrong)


@pytest.mark.parametrize(
    "code, status",
    [
        ("while True:\n    pass\n", "timeout"),
        ("x = bytearray(4 << 30)\n", "MemoryError"),
        ("import os\nos._exit(3)\n", "exit code 3"),
        ("import ctypes\nctypes.string_at(0)\n", "failed"),  # segfault
        ("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)\n", "failed"),
    ],
)
def test_bad_programs_fail_alone(code: str, status: str) -> None:
    outcomes = run_programs([code, "assert 1 + 1 == 2\n"], timeout_s=3, memory_mb=512, workers=2)
    assert not outcomes[0].passed and status in outcomes[0].status
    assert outcomes[1].passed, "the next program is unaffected"


def test_sandbox_runs_in_an_empty_folder_without_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "x")
    assert run_program("import os\nassert 'SECRET_TOKEN' not in os.environ and os.listdir('.') == []\n", 5, 512).passed
    assert network_isolation() in ("namespace", "socket-guard")


def test_completions_stop_at_the_next_top_level_statement() -> None:
    assert truncate("    return x\n\ndef other():\n    pass") == "    return x\n"
    assert truncate("    if x:\n        return 1\n    return 2\nif __name__ == '__main__':") == "    if x:\n        return 1\n    return 2"


def test_chat_answers_restating_the_function_are_scored_as_scripts() -> None:
    from conftest import tiny_tokenizer

    items = problems()[:12]
    text = prompt_text(items[0], "chat", tiny_tokenizer())
    assert "<|im_start|>user\n" in text and text.endswith("<|im_start|>assistant\n" + CHAT_REPLY)
    assert items[0]["prompt"].strip() in text
    answer = "{prompt}{solution}\n\nif __name__ == '__main__':\n    print(input())\n```\nThis works because..."
    scripts = [truncate(answer.format(prompt=p["prompt"], solution=p["canonical_solution"]), SCRIPT_TAIL) for p in items]
    assert all(s.rstrip().endswith(p["canonical_solution"].rstrip()) for s, p in zip(scripts, items)), "example calls and prose are cut"
    right = run_programs([program(p, s, "chat") for p, s in zip(items, scripts)], timeout_s=10, memory_mb=1024, workers=2)
    assert all(o.passed for o in right), [o.status for o in right]
    body_only = run_programs([program(p, p["canonical_solution"], "chat") for p in items[:2]], timeout_s=10, memory_mb=1024, workers=2)
    assert all(o.passed for o in body_only), "an answer that gives only the body continues the prompt"
