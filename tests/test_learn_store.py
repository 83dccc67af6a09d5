"""The experience store: records round-trip exactly, rewards come from the weights, bad records
write nothing, concurrent writers lose nothing, old databases are migrated, state persists, and
`forge learn record|status|history` work on a real SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import forge_env, run_forge
from forge.config.errors import ConfigError
from forge.errors import ForgeError
from forge.learn import Learner
from forge.learn.records import parse
from forge.learn.store import MIGRATIONS, Export, Store, migrate

WEIGHTS = {"tests_passed": 1.0}


def record(i: int = 0, **extra: object) -> dict:
    return {"task": f"write f{i}", "role": "coder", "model": "smol", "response": f"def f{i}(): return {i}",
            "signals": {"compiled": True, "tests_passed": i % 4, "tests_total": 4}, **extra}


def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'experience.db'}"


def test_runs_round_trip_exactly_through_a_sqlite_file(tmp_path: Path) -> None:
    runs = [
        parse(record(1, id="a1", time="2025-01-02T03:04:05.123456+00:00", task_id="t1", prompt_variant="terse", version="v1",
                     latency=1.25, cost=0.003), WEIGHTS),
        parse({"task": "Ünïcode ✓ task", "role": "fixer", "model": "big", "version": "v2", "heldout": True, "time": "2025-01-02T05:04:05+02:00",
               "messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "run", "arguments": {"x": [1, 2.5]}}}]},
                            {"role": "tool", "content": "ok"}, {"role": "assistant", "content": "done ✓"}],
               "signals": {"errors": 2, "human_rating": 4.5}}, {"human_rating": 0.2, "errors": -0.1}),
        parse(record(3), WEIGHTS),
    ]
    with Store.open(url(tmp_path)) as store:
        assert store.add(runs) == [r.id for r in runs]
    assert (tmp_path / "store" / "experience.db").is_file()
    with Store.open(url(tmp_path)) as store:
        back = store.runs()
        assert sorted(back, key=lambda r: r.id) == sorted(runs, key=lambda r: r.id)
        assert [r.id for r in back] == [runs[1].id, "a1", runs[2].id]  # in time order; +02:00 read as UTC
        assert runs[1].time == "2025-01-02T03:04:05.000000+00:00" and runs[1].reward == pytest.approx(0.7)
        assert [r.id for r in store.runs(role="coder")] == ["a1", runs[2].id]
        assert [r.id for r in store.runs(model="smol", version="v1")] == ["a1"]
        assert [r.id for r in store.runs(heldout=True)] == [runs[1].id]
        assert [r.id for r in store.runs(min_reward=0.5)] == [runs[1].id, runs[2].id]
        assert [r.id for r in store.runs(since="2025-01-02T03:04:05.5+00:00")] == [runs[2].id]
        assert [r.id for r in store.runs(limit=2)] == ["a1", runs[2].id]  # the latest two, in order
        assert store.count(exported=False) == 3 and store.count(role="nobody") == 0
    assert parse(runs[0].record(), WEIGHTS) == runs[0]  # an exported record reads back as the same run


def test_stored_runs_read_back_as_agent_runs_training_data(tmp_path: Path) -> None:
    from forge.data.sft.formats import agent_run

    runs = [parse(record(3, prompt_variant="p", version="v1"), WEIGHTS),
            parse({**record(1), "response": None, "messages": [{"role": "assistant", "content": "x = 1"}]}, WEIGHTS)]
    with Store.open(url(tmp_path)) as store:
        store.add(runs)
        lines = [json.dumps(r.record()) for r in store.runs()]
    examples = [agent_run(WEIGHTS, 0.2)(json.loads(line), "g") for line in lines]
    assert [m["content"] for m in examples[0][0].messages] == ["write f3", "def f3(): return 3"]
    assert [m["content"] for m in examples[1][0].messages] == ["write f1", "x = 1"]


def test_the_reward_is_computed_from_the_configured_weights_never_taken_from_the_record(tmp_path: Path) -> None:
    learner = Learner(tmp_path, reward_weights={"tests_passed": 0.8, "compiled": 0.2})
    run_id = learner.record_run("t", "coder", "smol", response="r", signals={"compiled": True, "tests_passed": 3, "tests_total": 4},
                                cost=0.05)
    (run,) = learner.store.runs()
    assert run.id == run_id and run.reward == pytest.approx(0.8 * 0.75 + 0.2)
    assert run.signals == {"compiled": True, "tests_passed": 3, "tests_total": 4, "cost": 0.05}
    assert parse({**record(2), "reward": 99.0}, WEIGHTS).reward == 0.5
    (stat,) = learner.stats()
    assert (stat.runs, stat.pass_rate, stat.cost) == (1, 0.0, 0.05)
    learner.close()
    assert (tmp_path / "learn" / "experience.db").is_file()  # the default store, in the project


@pytest.mark.parametrize("bad, message", [
    ({"role": None}, "record_run: field 'role' is missing; a run needs task, role, model, signals and response or messages"),
    ({"signals": {"compiled": True, "passed": 1}}, "record_run: signals.passed is not a signal; use compiled, tests_passed, errors, "
                                                   "human_rating, latency, cost, tests_total"),
    ({"signals": {"tests_passed": "3"}}, "record_run: signals.tests_passed must be a number or true/false, got '3'"),
    ({"heldout": "yes"}, "record_run: field 'heldout' must be true or false, got 'yes'"),
    ({"response": None}, "record_run: give the agent's answer as 'response' (text) or 'messages' (a list of chat messages)"),
    ({"signals": {"tests_passed": 5, "tests_total": 4}}, "record_run: signals.tests_passed=5 is more than signals.tests_total=4"),
])
def test_a_bad_run_is_a_one_line_error_and_nothing_is_written(tmp_path: Path, bad: dict, message: str) -> None:
    with Learner(tmp_path) as learner:
        fields = {**record(), **bad}
        with pytest.raises(ForgeError) as error:
            learner.record_run(fields.pop("task"), fields.pop("role"), fields.pop("model"), **fields)
        assert str(error.value) == message
        assert learner.store.count() == 0


def test_a_file_with_one_bad_line_records_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from forge.cli.learn import main

    monkeypatch.chdir(tmp_path)
    lines = [json.dumps(record(0)), json.dumps(record(1)), "", json.dumps({**record(2), "model": 7}), json.dumps(record(3))]
    (tmp_path / "runs.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ForgeError, match=r"^line 4 of runs.jsonl: field 'model' must be a non-empty string, got 7$"):
        main(["record", "runs.jsonl"])
    (tmp_path / "dup.jsonl").write_text(json.dumps(record(0, id="x")) + "\n" + json.dumps(record(1, id="x")) + "\n")
    with pytest.raises(ForgeError, match=r"^line 2 of dup.jsonl: id 'x' is also on line 1"):
        main(["record", "dup.jsonl"])
    with Store.open("sqlite:///learn/experience.db", tmp_path) as store:
        assert store.count() == 0
        store.add([parse(record(0, id="x"), WEIGHTS)])
        with pytest.raises(ForgeError, match="run id 'x' is already in the store; nothing was recorded"):
            store.add([parse(record(1, id="y"), WEIGHTS), parse(record(2, id="x"), WEIGHTS)])
        assert [r.id for r in store.runs()] == ["x"]


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from forge.learn.records import parse
    from forge.learn.store import Store

    url, name, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    (go.parent / f"ready-{name}").touch()  # imported: the test starts both writers together
    while not go.exists():
        time.sleep(0.005)
    store = Store.open(url)  # both open a new database at once: it is created and migrated once
    for i in range(200):
        store.add([parse({"task": f"t{i}", "role": name, "model": "m", "response": "r", "id": f"{name}-{i}",
                          "signals": {"tests_passed": i % 2}}, {"tests_passed": 1.0})])
        if i % 20 == 0:
            store.put_state(name, str(i).encode())
            store.log("record", "ok", f"{name} at {i}")
""")


def test_two_processes_recording_at_once_lose_nothing(tmp_path: Path) -> None:
    go = tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url(tmp_path), name, str(go)], env=forge_env(),
                                stderr=subprocess.PIPE, text=True) for name in ("alpha", "beta")]
    deadline = time.time() + 60
    while not all((tmp_path / f"ready-{n}").exists() for n in ("alpha", "beta")) and time.time() < deadline:
        time.sleep(0.01)
    go.touch()
    for writer in writers:
        assert writer.wait(timeout=60) == 0, writer.stderr.read()
    with Store.open(url(tmp_path)) as store:
        runs = store.runs()
        assert {r.id for r in runs} == {f"{n}-{i}" for n in ("alpha", "beta") for i in range(200)}
        assert sum(a.role != b.role for a, b in zip(runs, runs[1:])) > 1  # the two wrote at the same time
        assert store.count(role="alpha") == store.count(role="beta") == 200
        assert len(store.actions()) == 20 and store.get_state("alpha") == store.get_state("beta") == b"180"


def test_a_version_1_database_is_migrated_when_opened(tmp_path: Path) -> None:
    engine = sa.create_engine(url(tmp_path).replace("/store/", "/"))
    assert migrate(engine, 1) == 1
    with engine.begin() as conn:
        assert "passed" not in {c["name"] for c in sa.inspect(conn).get_columns("runs")}
        conn.execute(sa.text("INSERT INTO runs (id, time, task, role, model, response, signals, reward, heldout) VALUES "
                             "('old', '2024-05-01T00:00:00.000000+00:00', 't', 'coder', 'smol', 'r', :s, 1.0, 0)"),
                     {"s": json.dumps({"tests_passed": 2, "tests_total": 2})})
    engine.dispose()
    with Store.open(url(tmp_path).replace("/store/", "/")) as store:
        assert store.version == len(MIGRATIONS) == 2
        (run,) = store.runs()
        assert (run.id, run.reward, run.passed) == ("old", 1.0, True)
        assert store.stats()[0].pass_rate == 1.0  # the pass flag filled in for the old run
        inspector = sa.inspect(store.engine)
        assert {"ix_runs_role", "ix_runs_model_version", "ix_runs_reward", "ix_runs_time"} <= {i["name"] for i in inspector.get_indexes("runs")}
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE schema_version SET version = 9"))
    with pytest.raises(ForgeError, match="schema version 9, newer than this forge knows"):
        Store.open(url(tmp_path).replace("/store/", "/"))


def test_state_blobs_survive_reopening_and_a_failed_transaction_writes_none(tmp_path: Path) -> None:
    with Store.open(url(tmp_path)) as store:
        with store.transaction():
            store.put_state("bandit/coder", b"\x00\x01arms")
            store.put_state("router", b"r1")
        store.put_state("router", b"r2")
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.put_state("bandit/coder", b"changed")
                store.add([parse(record(1), WEIGHTS)])
                raise RuntimeError("killed between the two")
    with Store.open(url(tmp_path)) as store:
        assert store.get_state("bandit/coder") == b"\x00\x01arms" and store.get_state("router") == b"r2"
        assert store.get_state("drift") is None and store.count() == 0


def test_exports_mark_runs_all_or_none_and_deploys_mark_them_used(tmp_path: Path) -> None:
    runs = [parse(record(i), WEIGHTS) for i in range(4)] + [parse(record(9, heldout=True), WEIGHTS)]
    with Store.open(url(tmp_path)) as store:
        store.add(runs)
        with pytest.raises(ForgeError, match="1 of its 2 runs are unknown, held out or already exported; nothing was marked"):
            store.mark_exported([runs[0].id, runs[4].id], Export("learn/exports/a.jsonl", "0" * 64, 2))
        assert store.exports() == [] and store.count(exported=True) == 0
        first = Export("learn/exports/1.jsonl", "a" * 64, 2)
        store.mark_exported([runs[0].id, runs[1].id], first)
        assert store.exports() == [first]
        assert [r.id for r in store.runs(exported=False, heldout=False)] == [runs[2].id, runs[3].id]
        assert store.mark_used([first.id], "v3") == 2
        assert store.count(used=True) == 2 and store.count(used=False) == 3
        assert store.log("deploy", "done", "v3 beat v2", {"p": 0.01}) == 1
        assert store.log("gate", "rejected", "not better") == 2
        assert [(a.action, a.details) for a in store.actions()] == [("gate", {}), ("deploy", {"p": 0.01})]
        assert [a.id for a in store.actions(action="deploy")] == [1]


def test_store_urls_that_cannot_work_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^learn.store.url=nonsense: not a database URL"):
        Store.open("nonsense")
    with pytest.raises(ConfigError, match=r"^learn.store.url=nosuchdb://x/y: no database driver for it"):
        Store.open("nosuchdb://x/y")


def _learn(capsys: pytest.CaptureFixture, *argv: str) -> str:
    """What `forge learn ARGV` prints, run in this process (the command line itself is tested above)."""
    from forge.cli.learn import main

    capsys.readouterr()
    main(list(argv))
    return capsys.readouterr().out


def test_cli_record_from_a_file_and_stdin_then_status_and_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "runs.jsonl").write_text("\n".join(json.dumps(record(i, version="v1")) for i in range(4)) + "\n")
    out = run_forge("learn", "record", "runs.jsonl", cwd=tmp_path).stdout
    assert out == "recorded 4 runs in sqlite:///learn/experience.db, mean reward 0.375\n"
    stdin = json.dumps(record(3, model="big", prompt_variant="p2", cost=0.5)) + "\n"
    proc = subprocess.run([sys.executable, "-m", "forge", "learn", "record", "-", "--json"], input=stdin, cwd=tmp_path,
                          env=forge_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert {k: v for k, v in json.loads(proc.stdout).items() if k != "ids"} == {"recorded": 1, "mean_reward": 0.75,
                                                                                "store": "sqlite:///learn/experience.db"}
    proc = subprocess.run([sys.executable, "-m", "forge", "learn", "record", "-"], input='{"task": "x"}\n', cwd=tmp_path,
                          env=forge_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr == ("forge: error: line 1 of standard input: field 'role' is missing; "
                                                    "a run needs task, role, model, signals and response or messages\n")
    monkeypatch.chdir(tmp_path)
    status = json.loads(_learn(capsys, "status", "--json"))
    assert (status["runs"], status["exported"], status["used"]) == (5, 0, 0)
    assert [(g["model"], g["version"], g["prompt_variant"], g["runs"], g["mean_reward"], g["pass_rate"], g["cost"])
            for g in status["groups"]] == [("big", None, "p2", 1, 0.75, 0.0, 0.5), ("smol", "v1", None, 4, 0.375, 0.0, None)]
    table = _learn(capsys, "status").splitlines()
    assert table[0] == "5 runs in sqlite:///learn/experience.db: 0 exported, 0 used by a deployed version"
    assert table[1].split() == ["role", "model", "version", "prompt", "runs", "reward", "pass", "cost", "exported", "used"]
    assert table[3].split() == ["coder", "smol", "v1", "-", "4", "0.375", "0%", "-", "0", "0"]
    with Store.open("sqlite:///learn/experience.db", tmp_path) as store:
        store.log("export", "done", "50 good runs", {"count": 50})
        store.log("gate", "rejected", "candidate not better (p=0.4)")
    history = _learn(capsys, "history", "--limit", "1").splitlines()
    assert len(history) == 2 and history[1].split()[2:] == ["gate", "rejected", "candidate", "not", "better", "(p=0.4)"]
    entries = json.loads(_learn(capsys, "history", "--json"))
    assert [(e["action"], e["details"]) for e in entries] == [("gate", {}), ("export", {"count": 50})]
    other = json.loads(_learn(capsys, "status", "--json", "store.url=sqlite:///other.db"))
    assert other["runs"] == 0 and (tmp_path / "other.db").is_file()
    with pytest.raises(ConfigError, match=r"^learn: 'report' is not a subcommand; give one of record, status, history"):
        _learn(capsys, "report")
    with pytest.raises(ConfigError, match=r"^forge learn status: unexpected argument 'x'; settings go as key=value"):
        _learn(capsys, "status", "x")
