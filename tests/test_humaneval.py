"""HumanEval scoring: real problems run in the sandbox; a crash, hang, memory bomb or network call
fails only its own program."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.eval.humaneval import CHAT_REPLY, SCRIPT_TAIL, problems, program, prompt_text, truncate
from forge.eval import isolation
from forge.eval.sandbox import run_program, run_programs


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
    assert isolation.level().name in (isolation.BUBBLEWRAP, isolation.NAMESPACE, isolation.NONE)


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


def test_without_a_boundary_untrusted_code_is_refused_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from forge.errors import ForgeError

    monkeypatch.setattr(isolation, "level", lambda: isolation.Level(isolation.NAMESPACE, "bubblewrap (bwrap) is not installed"))
    with pytest.raises(ForgeError) as e:
        isolation.require(allow_unisolated=False)
    assert str(e.value) == (
        "eval.sandbox: model-generated code would run without an isolation boundary (bubblewrap (bwrap) is not installed; best "
        "here: namespace); install bubblewrap (Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install "
        "bubblewrap), or set eval.sandbox.allow_unisolated=true to run it anyway (recorded in the results)"
    )
    import forge.eval.humaneval as he

    monkeypatch.setattr(he, "complete", lambda model, tok, prompts, *a, **k: [p["canonical_solution"] for p in problems(len(prompts))])
    cfg = {"prompt": "completion", "limit": 3, "samples": 1, "temperature": 0.0, "k": [1], "max_new_tokens": 8, "batch_size": 2,
           "timeout_s": 10, "memory_mb": 1024, "workers": 2}
    with pytest.raises(ForgeError):
        he.pass_at_k(None, None, cfg, sandbox={"allow_unisolated": False})
    metrics, _ = he.pass_at_k(None, None, cfg, sandbox={"allow_unisolated": True})
    assert metrics["pass@1"] == 1.0 and metrics["sandbox"] == "namespace" and metrics["sandbox_unisolated_allowed"] is True


def test_a_run_that_would_run_code_unisolated_is_refused_before_it_trains(
    tmp_path: Path, cache: Path, tiny_lm: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conftest import run_in_process
    from test_llm import lm_args

    from forge.errors import ForgeError

    monkeypatch.setattr(isolation, "level", lambda: isolation.Level(isolation.NONE, "bubblewrap (bwrap) is not installed"))
    with pytest.raises(ForgeError, match="^eval.sandbox: model-generated code would run without an isolation boundary"):
        run_in_process(*lm_args(tiny_lm, cache, "eval=humaneval", "eval.humaneval.limit=1", "export=none"), run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "data").exists() and not (tmp_path / "run" / "checkpoints").exists(), "refused before it prepared or trained"
