"""Generated code tasks: the same seed gives the same tasks, train and held-out share no template,
every canonical solution passes its hidden tests in the sandbox, and the HumanEval evaluation
scores them end to end with per-task outcomes that forge compare reads."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from forge.config.compose import compose
from forge.config.errors import ConfigError
from forge.config.validate import validate
from forge.data.code_tasks import TEMPLATES, generate, templates
from forge.eval import isolation
from forge.eval.humaneval import problems, program
from forge.eval.sandbox import run_programs

UNISOLATED = [] if isolation.level().name == isolation.BUBBLEWRAP else ["eval.sandbox.allow_unisolated=true"]


def test_the_same_seed_gives_the_same_tasks_and_another_seed_others() -> None:
    a, b = generate("heldout", 24, seed=3), generate("heldout", 24, seed=3)
    assert a == b
    assert len({t["task_id"] for t in a}) == 24 and len({t["prompt"] for t in a}) == 24, "distinct tasks"
    other = generate("heldout", 24, seed=4)
    assert sum(x["prompt"] == y["prompt"] for x, y in zip(a, other)) < 6
    assert generate("heldout", 8, seed=3) == a[:8], "a smaller count is a prefix"


def test_train_and_heldout_are_disjoint_by_template() -> None:
    assert len(TEMPLATES) >= 24 and len({t.name for t in TEMPLATES}) == len(TEMPLATES)
    held = [t.name for t in templates("heldout")]
    assert held == [t.name for i, t in enumerate(TEMPLATES) if i % 4 == 3]
    assert {t.difficulty for t in templates("heldout")} == {t.difficulty for t in TEMPLATES} == {1, 2, 3}
    train_tasks, held_tasks = generate("train", 96), generate("heldout", 64)
    names = lambda ts: {t["task_id"].split("/")[1] for t in ts}  # noqa: E731
    assert names(held_tasks) == set(held) and not names(train_tasks) & set(held)
    assert not {t["entry_point"] for t in held_tasks} & {t["entry_point"] for t in train_tasks}, "no held-out function name is trained on"


def test_tasks_have_humaneval_format() -> None:
    task = generate("train", 1, seed=0)[0]
    assert task["task_id"] == "CodeTask/sum_multiples/0" and set(task) >= {"prompt", "canonical_solution", "test", "entry_point"}
    assert task["prompt"].startswith(f"def {task['entry_point']}(") and ">>> " in task["prompt"] and task["prompt"].endswith('    """\n')
    assert task["test"].startswith("def check(candidate):\n") and task["test"].count("assert candidate(") >= 5
    ast.parse(task["prompt"] + task["canonical_solution"] + "\n" + task["test"])


def test_every_canonical_solution_passes_its_tests_and_a_wrong_one_fails() -> None:
    tasks = generate("train", 2 * len(templates("train")), seed=1) + generate("heldout", 2 * len(templates("heldout")), seed=1)
    assert {t["task_id"].split("/")[1] for t in tasks} == {t.name for t in TEMPLATES}, "every template, twice"
    right = run_programs([program(t, t["canonical_solution"]) for t in tasks], timeout_s=10, memory_mb=512, workers=2)
    assert all(o.passed for o in right), [(t["task_id"], o.status) for t, o in zip(tasks, right) if not o.passed]
    wrong = run_programs([program(t, "    return None\n") for t in tasks], timeout_s=10, memory_mb=512, workers=2)
    assert not any(o.passed for o in wrong), [t["task_id"] for t, o in zip(tasks, wrong) if o.passed]


def test_the_evaluation_takes_its_problems_from_the_suite() -> None:
    spec = {"split": "heldout", "count": 10, "seed": 2}
    assert problems(4, "code_tasks", spec) == generate("heldout", 10, seed=2)[:4]
    assert problems(2)[0]["task_id"] == "HumanEval/0", "HumanEval stays the default"


def test_eval_code_tasks_runs_end_to_end_with_per_task_outcomes(tmp_path: Path, cache: Path, tiny_lm: Path) -> None:
    from conftest import run_in_process
    from test_llm import lm_args

    run = tmp_path / "run"
    run_in_process(*lm_args(tiny_lm, cache, "eval=code_tasks", "eval.humaneval.limit=3", "eval.humaneval.max_new_tokens=8",
                            "eval.humaneval.batch_size=2", "eval.humaneval.code_tasks.seed=5", "export=none", *UNISOLATED),
                   run_dir=run)
    metrics = json.loads((run / "metrics.json").read_text())
    expected = [t["task_id"] for t in generate("heldout", 3, seed=5)]
    assert expected[0].startswith("CodeTask/clamp_values/")
    for model, prefix in (("fine-tuned", ""), ("base", "base/")):
        assert metrics[f"{prefix}humaneval/suite"] == "code_tasks" and metrics[f"{prefix}humaneval/problems"] == 3
        assert metrics[f"{prefix}humaneval/pass@1"] == 0.0, "a random model solves nothing"
        rows = [json.loads(line) for line in (run / "humaneval" / f"{model}.chat.jsonl").read_text().splitlines()]
        assert [r["task_id"] for r in rows] == expected and all(r["status"] and r["passed"] is False for r in rows)

    from forge.compare import humaneval_outcomes

    _, outcomes = humaneval_outcomes(run, "base")
    assert outcomes == dict.fromkeys(expected, False), "forge compare pairs them by task id"


@pytest.mark.parametrize(
    "override, message",
    [
        ("eval.humaneval.suite=human_eval", "eval.humaneval.suite=human_eval: not a valid choice (command line: "
         "'eval.humaneval.suite=human_eval'). Did you mean 'humaneval'? Valid choices: code_tasks, humaneval."),
        ("eval.humaneval.code_tasks.split=test", "eval.humaneval.code_tasks.split=test: not a valid choice"),
        ("eval.humaneval.code_tasks.count=0", "eval.humaneval.code_tasks.count=0: must be >= 1"),
        ("eval.humaneval.code_tasks.seed=-1", "eval.humaneval.code_tasks.seed=-1: must be >= 0"),
        ("eval.humaneval.code_tasks.size=3", "eval.humaneval.code_tasks.size: no such key"),
    ],
)
def test_bad_settings_are_one_line_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        cfg, origin = compose(["+recipe=coder_lora", "eval=code_tasks", override])
        validate(cfg, origin.where)
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


def test_eval_code_tasks_composes_over_humaneval() -> None:
    cfg, origin = compose(["+recipe=coder_lora", "eval=code_tasks"])
    he = validate(cfg, origin.where).eval.humaneval
    assert (he.suite, he.prompt, he.code_tasks.split, he.code_tasks.count, he.code_tasks.seed) == ("code_tasks", "chat", "heldout", 64, 0)
    cfg, origin = compose(["+recipe=coder_lora"])
    assert validate(cfg, origin.where).eval.humaneval.suite == "humaneval"
