"""The experience store against a real PostgreSQL server, beside SQLite: the same operations, two
writer processes at once, a migration from schema 1, and timings for 10,000 runs.

Starts a throwaway cluster from the server binaries of Debian's `postgresql` package (initdb in a
temporary folder, pg_ctl on a free loopback port; as the `postgres` user when run as root, since
initdb refuses root), reaches it through a `postgresql+psycopg://` URL (pip install
'forge[learn-postgres]'), stops and deletes it at the end. Writes
benchmarks/results/learn_store_postgres.json.

    python benchmarks/learn_store_postgres.py [--runs 10000] [--pg-bin /usr/lib/postgresql/15/bin]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Callable, Iterator

import sqlalchemy as sa

from machine import cpu_model  # benchmarks/machine.py, beside this script

from forge.errors import ForgeError
from forge.learn.records import parse
from forge.learn.store import MIGRATIONS, Export, Store, migrate

HERE = Path(__file__).resolve().parent
WEIGHTS = {"tests_passed": 1.0, "compiled": 0.5}
ROLES = ("coder", "fixer", "judge")


def record(i: int, **extra: object) -> dict:
    return {"task": f"task {i}: write f{i} ✓", "role": ROLES[i % 3], "model": f"m{i % 2}", "version": f"v{i % 4}",
            "prompt_variant": f"p{i % 5}", "task_id": f"t{i % 97}", "response": f"def f{i}():\n    return {i}\n",
            "signals": {"compiled": i % 7 != 0, "tests_passed": i % 5, "tests_total": 4},
            "latency": 0.25 + i % 10, "cost": 0.001 * (i % 3), "time": f"2025-01-01T00:00:{i % 60:02d}.{i:06d}+00:00", **extra}


# --- a throwaway PostgreSQL cluster ---

def pg_bin(given: str | None) -> Path:
    if given:
        return Path(given)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        sys.exit("no PostgreSQL server binaries: apt-get install -y postgresql (or give --pg-bin)")
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def cluster(bin_dir: Path) -> Iterator[tuple[str, str]]:
    """A running server: (URL of a fresh database on it, the server's version)."""
    root = Path(tempfile.mkdtemp(prefix="forge-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to the postgres user
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    try:
        subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "forge", "-A", "trust", "-E", "UTF8",
                        "--no-instructions"], check=True, capture_output=True)
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
                        "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=on", "start"],
                       check=True, capture_output=True)
        admin = sa.create_engine(f"postgresql+psycopg://forge@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            version = conn.execute(sa.text("SHOW server_version")).scalar_one()
            for name in ("learn", "learn_v1", "learn_writers", "learn_bench"):
                conn.execute(sa.text(f"CREATE DATABASE {name}"))
        admin.dispose()
        yield f"postgresql+psycopg://forge@127.0.0.1:{port}", version
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


# --- the checks, each on a URL ---

def same_operations(url: str) -> None:
    runs = [parse(record(i), WEIGHTS) for i in range(5)]
    runs.append(parse({"task": "chat", "role": "coder", "model": "m0", "heldout": True, "signals": {"human_rating": 4},
                       "messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
                                    {"role": "tool", "content": "ok"}, {"role": "assistant", "content": "fini ✓"}]}, WEIGHTS))
    with Store.open(url) as store:
        store.add(runs)
        try:
            store.add([parse(record(99), WEIGHTS), parse(record(0, id=runs[0].id), WEIGHTS)])
            raise AssertionError("a batch with a stored id was accepted")
        except ForgeError:
            assert store.count() == 6, "a refused batch was half-written"
        export = Export("learn/exports/1.jsonl", "f" * 64, 2)
        store.mark_exported([runs[0].id, runs[1].id], export)
        try:
            store.mark_exported([runs[2].id, runs[5].id], Export("x", "0" * 64, 2))
            raise AssertionError("a held-out run was exported")
        except ForgeError:
            pass
        assert store.mark_used([export.id], "v9") == 2
        with store.transaction():
            store.put_state("bandit/coder", b"\x00\xffarms")
            store.put_state("router", b"r1")
        try:
            with store.transaction():
                store.put_state("router", b"lost")
                raise RuntimeError
        except RuntimeError:
            pass
        assert store.log("export", "done", "2 runs", {"export": export.id}) >= 1
    with Store.open(url) as store:
        assert sorted(store.runs(), key=lambda r: r.id) == sorted(runs, key=lambda r: r.id), "round trip"
        assert store.count() == 6 and store.count(exported=True) == 2 and store.count(used=True) == 2
        assert store.count(heldout=True) == 1 and store.exports() == [export]
        assert store.get_state("bandit/coder") == b"\x00\xffarms" and store.get_state("router") == b"r1"
        assert [a.details for a in store.actions(action="export")] == [{"export": export.id}]
        assert sum(s.runs for s in store.stats()) == 6 and store.version == len(MIGRATIONS)


def migration(url: str) -> None:
    engine = sa.create_engine(url)
    assert migrate(engine, 1) == 1
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO runs (id, time, task, role, model, response, signals, reward, heldout) VALUES "
                             "('old', '2024-05-01T00:00:00.000000+00:00', 't', 'coder', 'm', 'r', :s, 1.0, false)"),
                     {"s": json.dumps({"tests_passed": 3, "tests_total": 3})})
    engine.dispose()
    with Store.open(url) as store:
        assert store.version == len(MIGRATIONS)
        (run,) = store.runs()
        assert run.passed is True and store.stats()[0].pass_rate == 1.0


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from forge.learn.records import parse
    from forge.learn.store import Store

    url, name, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.005)
    store = Store.open(url)  # both open a fresh database at once: it is migrated once
    for i in range(200):
        store.add([parse({"task": f"t{i}", "role": name, "model": "m", "response": "r", "id": f"{name}-{i}",
                          "signals": {"tests_passed": i % 2}}, {"tests_passed": 1.0})])
        if i % 20 == 0:
            store.put_state("shared", name.encode())
            store.log("record", "ok", f"{name} at {i}")
""")


def two_writers(url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        go = Path(tmp) / "go"
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, url, name, str(go)], stderr=subprocess.PIPE, text=True)
                   for name in ("alpha", "beta")]
        go.touch()
        for writer in writers:
            assert writer.wait(timeout=300) == 0, writer.stderr.read()
    with Store.open(url) as store:
        runs = store.runs()
        assert {r.id for r in runs} == {f"{n}-{i}" for n in ("alpha", "beta") for i in range(200)}, "runs lost"
        assert len(store.actions()) == 20 and store.get_state("shared") in (b"alpha", b"beta")
        assert sum(a.role != b.role for a, b in zip(runs, runs[1:])) > 1, "the writers did not overlap"


def timings(url: str, n: int) -> dict[str, float]:
    runs = [parse(record(i), WEIGHTS) for i in range(n)]
    found: dict[str, float] = {}

    def clock(name: str, fn: Callable[[], object]) -> object:
        start = time.perf_counter()
        out = fn()
        found[name] = round(time.perf_counter() - start, 4)
        return out

    with Store.open(url) as store:
        clock(f"add_{n // 2}_in_one_transaction_s", lambda: store.add(runs[: n // 2]))
        rest = runs[n // 2:]
        clock(f"add_{len(rest) - 100}_in_transactions_of_100_s", lambda: [store.add(rest[i:i + 100]) for i in range(0, len(rest) - 100, 100)])
        clock("add_100_one_at_a_time_s", lambda: [store.add([r]) for r in rest[len(rest) - 100:]])
        assert clock(f"runs_all_{n}_s", store.runs) and len(store.runs()) == n
        clock("runs_role_min_reward_not_exported_s", lambda: store.runs(role="coder", min_reward=1.0, exported=False, heldout=False))
        clock("runs_model_version_latest_500_s", lambda: store.runs(model="m0", version="v2", limit=500))
        clock("count_not_exported_s", lambda: store.count(exported=False, min_reward=1.0))
        clock("stats_s", store.stats)
        clock("put_state_100_s", lambda: [store.put_state(f"k{i % 10}", bytes(1000)) for i in range(100)])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--pg-bin", help="the folder of initdb and pg_ctl (default: the newest /usr/lib/postgresql/*/bin)")
    args = parser.parse_args()
    try:
        import psycopg
    except ImportError:
        sys.exit("no PostgreSQL driver: pip install 'forge[learn-postgres]'")
    checks = {"same_operations": same_operations, "migration_from_schema_1": migration, "two_writers_200_runs_each": two_writers}
    result: dict = {"date": date.today().isoformat(), "runs": args.runs, "checks": {}, "timings": {}}
    with tempfile.TemporaryDirectory() as tmp, cluster(pg_bin(args.pg_bin)) as (server, version):
        urls = {"sqlite": lambda name: f"sqlite:///{Path(tmp) / name}.db", "postgresql": lambda name: f"{server}/{name}"}
        result["machine"] = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                             "sqlalchemy": sa.__version__, "sqlite": sqlite3.sqlite_version,
                             "postgresql": version, "psycopg": psycopg.__version__}
        for backend, url in urls.items():
            for name, check in checks.items():
                database = {"same_operations": "learn", "migration_from_schema_1": "learn_v1", "two_writers_200_runs_each": "learn_writers"}[name]
                start = time.perf_counter()
                try:
                    check(url(database))
                    outcome = f"passed in {time.perf_counter() - start:.2f} s"
                except Exception as e:  # recorded, not hidden: the result file says what failed
                    outcome = f"FAILED: {type(e).__name__}: {e}"
                result["checks"].setdefault(name, {})[backend] = outcome
                print(f"{backend:10} {name:28} {outcome}", flush=True)
            result["timings"][backend] = timings(url("learn_bench"), args.runs)
            print(f"{backend:10} timings {json.dumps(result['timings'][backend])}", flush=True)
    out = HERE / "results" / "learn_store_postgres.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}")
    if any(o.startswith("FAILED") for c in result["checks"].values() for o in c.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
