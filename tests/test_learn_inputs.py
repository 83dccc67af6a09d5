"""The input watch: a change of the prompts' length or of the roles' mix is reported once, a stream
that does not change is not, the watch continues across a restart through the store, and the loop
writes the report to the audit log and `forge learn status` shows the watch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from forge.config.errors import ConfigError
from forge.errors import ForgeError
from forge.learn import Learner
from forge.learn.config import load
from forge.learn.inputs import STATE, InputWatch
from forge.learn.store import Store

ROLES, SHARES = ["coder", "fixer", "judge", "planner"], [0.6, 0.25, 0.13, 0.02]


def stream(seed: int, runs: int = 1000, change: str | None = None, at: int = 400) -> list[dict]:
    """Log-normal prompt lengths (median 400) and four roles; from run `at`, prompts 1.5 times as
    long, or a new role on 30% of the runs."""
    rng = np.random.default_rng(seed)
    lengths = np.rint(np.exp(rng.normal(np.log(400), 0.8, runs))).astype(int)
    roles = rng.choice(ROLES, runs, p=SHARES).astype(object)
    if change == "longer":
        lengths[at:] = np.rint(lengths[at:] * 1.5).astype(int)
    elif change == "new role":
        roles[at:][rng.random(runs - at) < 0.3] = "reviewer"
    return [{"prompt_length": int(n), "role": str(r)} for n, r in zip(lengths, roles)]


def watch(values: list[dict], into: InputWatch | None = None) -> list:
    into = into or InputWatch()
    return [shift for run in values for shift in into.add(run)]


def test_prompts_half_as_long_again_are_reported_once_within_a_few_hundred_runs() -> None:
    found = watch(stream(1, 1400, "longer"))
    assert [s.feature for s in found] == ["prompt_length"]
    shift = found[0]
    assert 400 < shift.runs <= 700 and shift.p < 0.001 and shift.test == "Kolmogorov-Smirnov"
    reference, recent = (float(part.split(",")[0].split()[1]) for part in (shift.reference, shift.recent))
    assert 1.3 < recent / reference < 1.7, "the summaries show the means before and after"


def test_a_new_task_type_at_30_percent_is_reported_once_with_its_share() -> None:
    found = watch(stream(2, 1400, "new role"))
    assert [s.feature for s in found] == ["role"]
    shift = found[0]
    assert 400 < shift.runs <= 600 and shift.test == "chi-square"
    assert "reviewer" in shift.recent and "reviewer" not in shift.reference
    assert shift.reason().startswith("the incoming role changed: coder ")


def test_streams_that_do_not_change_are_not_reported() -> None:
    reported = [seed for seed in range(20) if watch(stream(seed))]
    assert reported == [], "20 streams of 1,000 runs without a change (the benchmark: 0.9% of 1,000 streams report)"


def test_the_watch_continues_across_a_restart_through_the_store(tmp_path: Path) -> None:
    values, url = stream(3, 1400, "longer"), f"sqlite:///{tmp_path / 'experience.db'}"
    twin = InputWatch(window=100)
    expected = watch(values, twin)
    first = InputWatch(window=100)
    before = watch(values[:450], first)
    with Store.open(url) as store:
        store.put_state(STATE, first.dumps())
    with Store.open(url) as store:
        again = InputWatch.loads(store.get_state(STATE))
    assert before + watch(values[450:], again) == expected and expected
    assert (again.seen, again.summary()) == (twin.seen, twin.summary())
    assert InputWatch.restore(again.dumps(), 100, 0.01).alpha == 0.01, "a new alpha applies to the saved windows"
    resized = InputWatch.restore(again.dumps(), 50, 0.001)
    assert (resized.seen, resized.summary()["role"]) == (1400, "filling the reference: 0/50 runs"), "a new window starts afresh"


def record(learner: Learner, n: int, task: str, start: int = 0) -> None:
    for i in range(start, start + n):
        learner.record_run(task.format(i=i), "coder", "agent", response="r", signals={"tests_passed": 1, "tests_total": 1})


def test_the_loop_logs_a_change_of_the_recorded_runs_and_status_shows_the_watch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from forge.cli.learn import main

    settings = {"auto": True, "export": {"enabled": False}, "train": {"enabled": False}, "watch": {"inputs": {"window": 20}}}
    learner = Learner(tmp_path, **settings)
    record(learner, 40, "sum {i}")
    learner.record_run("the held-out task" * 50, "coder", "agent", response="r", heldout=True, signals={"tests_passed": 1})
    assert learner.store.actions(action="inputs") == [], "held-out runs are not incoming work"
    record(learner, 20, "reverse the words of a sentence, keeping punctuation in place {i}", start=40)
    entries = learner.store.actions(action="inputs")
    assert len(entries) == 1 and entries[0].status == "changed"
    assert entries[0].reason == ("the incoming prompt length changed: mean 49.5, median 64 over the last 20 runs against "
                                 "mean 5.5, median 5.5 over the 20 before (Kolmogorov-Smirnov, p=9.55e-06 < 0.001, at run 55)")
    assert entries[0].details["feature"] == "prompt_length" and entries[0].details["runs"] == 55
    learner.close()

    (tmp_path / "learn.yaml").write_text("watch:\n  inputs:\n    window: 20\nexport:\n  enabled: false\ntrain:\n  enabled: false\n")
    (tmp_path / "runs.jsonl").write_text("".join(json.dumps({"task": f"t{i}", "role": "judge", "model": "agent", "response": "r",
                                                             "signals": {"tests_passed": 1}}) + "\n" for i in range(30)))
    monkeypatch.chdir(tmp_path)
    main(["record", "runs.jsonl"])
    main(["step"])
    capsys.readouterr()
    main(["history", "--action", "inputs", "--json"])
    newest = json.loads(capsys.readouterr().out)
    assert [e["details"]["feature"] for e in newest] == ["role", "prompt_length"]
    assert newest[0]["reason"] == ("the incoming role changed: judge 75%, coder 25% over the last 20 runs against coder 100% over "
                                   "the 20 before (chi-square, p=4.82e-06 < 0.001, at run 75)")
    main(["status"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3:] == ["input watch: 90 runs watched by the loop's passes (window 20, alpha 0.001)",
                          "  prompt_length: reference mean 17.75, median 2.5; recent mean 3, median 3 (15/20 runs)",
                          "  role: filling the reference: 15/20 runs"], "after a report, the next runs are the reference"
    main(["status", "--json", "watch.inputs.enabled=false"])
    assert json.loads(capsys.readouterr().out)["inputs"]["enabled"] is False


@pytest.mark.parametrize("override, message", [
    ("watch.inputs.window=5", "learn.watch.inputs.window=5: must be at least 10 runs (each test compares two windows of this many "
                              "runs), e.g. 200"),
    ("watch.inputs.alpha=0", "learn.watch.inputs.alpha=0: a significance level in (0, 1), e.g. 0.001"),
    ("watch.inputs.alpha=1.5", "learn.watch.inputs.alpha=1.5: a significance level in (0, 1), e.g. 0.001"),
])
def test_bad_settings_are_one_line(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, [override])
    assert str(e.value) == message


def test_a_watch_made_in_code_checks_its_settings_too() -> None:
    with pytest.raises(ForgeError, match=r"^input watch: window=5: must be a whole number of runs, at least 10 \(e.g. 200\)$"):
        InputWatch(window=5)
    with pytest.raises(ForgeError, match=r"^input watch: alpha=1: a significance level in \(0, 1\), e.g. 0.001$"):
        InputWatch(alpha=1)
