"""The experience store: recorded runs, exports, the audit log and the loop's state, in one database.

An embedded SQLite file in the project by default, addressed by a SQLAlchemy URL so that agents
on many machines can share one PostgreSQL server instead. SQLite runs in WAL mode (readers never
block the writer) and every write transaction starts with BEGIN IMMEDIATE under a busy timeout,
so several writer processes queue instead of failing; each write is one transaction, so a
killed process leaves either all of it or none.

The schema is versioned: the database records its version, and `MIGRATIONS` (alembic operations,
so the same DDL runs on SQLite and PostgreSQL) bring an older database up to date when it is
opened, under a lock so that two processes opening it at once migrate it once.
"""

from __future__ import annotations

import json
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import StaticPool

from forge.config.errors import ConfigError
from forge.errors import ForgeError
from forge.learn.records import Run, now, passed, utc

BUSY_TIMEOUT_S = 60.0  # how long a SQLite writer waits for another one before failing
LOCK_ID = 0x666F726765  # PostgreSQL advisory lock held while migrating ("forge")
UPSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}  # INSERT ... ON CONFLICT DO UPDATE
Since = Union[str, datetime]


@dataclass
class Export:
    path: str
    sha256: str
    count: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: str = field(default_factory=now)


@dataclass
class Action:
    id: int
    time: str
    action: str
    status: str
    reason: str
    details: dict[str, Any]


@dataclass
class Stat:
    role: str
    model: str
    version: Optional[str]
    prompt_variant: Optional[str]
    runs: int
    mean_reward: float
    pass_rate: Optional[float]  # over the runs that report tests
    cost: Optional[float]  # total over the runs that report a cost
    exported: int
    used: int


# The current schema, for queries; `MIGRATIONS` is what creates it.
META = sa.MetaData()
RUNS = sa.Table(
    "runs", META,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("time", sa.String(32), nullable=False),
    sa.Column("task", sa.Text, nullable=False),
    sa.Column("task_id", sa.String(255)),
    sa.Column("role", sa.String(255), nullable=False),
    sa.Column("prompt_variant", sa.String(255)),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("version", sa.String(255)),
    sa.Column("response", sa.Text),
    sa.Column("messages", sa.Text),  # JSON
    sa.Column("signals", sa.Text, nullable=False),  # JSON
    sa.Column("reward", sa.Float, nullable=False),
    sa.Column("heldout", sa.Boolean, nullable=False),
    sa.Column("latency", sa.Float),
    sa.Column("cost", sa.Float),
    sa.Column("export_id", sa.String(64)),  # null until exported
    sa.Column("used_by", sa.String(255)),  # null until a version trained on it is deployed
    sa.Column("passed", sa.Boolean),  # all tests passed; null without tests (schema 2)
)
EXPORTS = sa.Table(
    "exports", META,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("time", sa.String(32), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
)
ACTIONS = sa.Table(
    "actions", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time", sa.String(32), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("status", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # JSON
)
STATE = sa.Table(
    "state", META,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("time", sa.String(32), nullable=False),
)
SCHEMA = sa.Table("schema_version", META, sa.Column("version", sa.Integer, nullable=False))


def _v1(op: Any, conn: Connection) -> None:
    """The first schema: runs, exports, the audit log and the state blobs."""
    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("time", sa.String(32), nullable=False),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("task_id", sa.String(255)),
        sa.Column("role", sa.String(255), nullable=False),
        sa.Column("prompt_variant", sa.String(255)),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("version", sa.String(255)),
        sa.Column("response", sa.Text),
        sa.Column("messages", sa.Text),
        sa.Column("signals", sa.Text, nullable=False),
        sa.Column("reward", sa.Float, nullable=False),
        sa.Column("heldout", sa.Boolean, nullable=False),
        sa.Column("latency", sa.Float),
        sa.Column("cost", sa.Float),
        sa.Column("export_id", sa.String(64)),
        sa.Column("used_by", sa.String(255)),
    )
    op.create_table(
        "exports",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("time", sa.String(32), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("status", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
    )
    op.create_table(
        "state",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("time", sa.String(32), nullable=False),
    )


def _v2(op: Any, conn: Connection) -> None:
    """The pass flag as a column (pass rates by SQL aggregation), filled in for the runs already
    there, and indexes for the loop's queries."""
    op.add_column("runs", sa.Column("passed", sa.Boolean))
    runs = sa.table("runs", sa.column("id", sa.String), sa.column("signals", sa.Text), sa.column("passed", sa.Boolean))
    for id_, signals in conn.execute(sa.select(runs.c.id, runs.c.signals)).all():
        flag = passed(json.loads(signals))
        if flag is not None:
            conn.execute(runs.update().where(runs.c.id == id_).values(passed=flag))
    op.create_index("ix_runs_role", "runs", ["role"])
    op.create_index("ix_runs_model_version", "runs", ["model", "version"])
    op.create_index("ix_runs_reward", "runs", ["reward"])
    op.create_index("ix_runs_time", "runs", ["time"])
    op.create_index("ix_runs_export_id", "runs", ["export_id"])


# Schema version N is reached by applying MIGRATIONS[N-1]; append, never edit a released one.
MIGRATIONS: list[Callable[[Any, Connection], None]] = [_v1, _v2]


def migrate(engine: Engine, target: Optional[int] = None) -> int:
    """Bring the database to `target` (default: the newest) in one transaction; its version after."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    target = len(MIGRATIONS) if target is None else target
    with _write(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": LOCK_ID})
        op = Operations(MigrationContext.configure(conn))
        op.create_table("schema_version", sa.Column("version", sa.Integer, nullable=False), if_not_exists=True)
        version = conn.execute(sa.select(SCHEMA.c.version)).scalar()
        if version is None:
            version = 0
            conn.execute(SCHEMA.insert().values(version=0))
        if version > len(MIGRATIONS):
            raise ForgeError(f"the store is at schema version {version}, newer than this forge knows ({len(MIGRATIONS)}); "
                             "upgrade forge to open it")
        for step in MIGRATIONS[version:target]:
            step(op, conn)
        version = max(version, target)
        conn.execute(SCHEMA.update().values(version=version))
    return version


class Store:
    """Runs, exports, actions and state in one database. A Store serves one process; each
    thread gets its own connections and its own current transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()

    @classmethod
    def open(cls, url: str, project: Path = Path(".")) -> "Store":
        """The store at `url` (relative SQLite paths are from `project`), migrated to the newest schema."""
        engine = _engine(url, Path(project))
        try:
            migrate(engine)
        except OperationalError as e:
            engine.dispose()
            raise ForgeError(f"learn.store.url={_shown(engine)}: cannot open the store ({_first_line(e)}); "
                             "check the URL and that the database server is running") from None
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The URL with its password hidden, for messages."""
        return _shown(self.engine)

    @property
    def version(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(SCHEMA.c.version)).scalar_one())

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction for several calls: all of them are stored, or none. Nested uses
        join the outer one."""
        current = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        with _write(self.engine, self.url) as conn:
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None

    # --- runs ---

    def add(self, runs: Sequence[Run]) -> list[str]:
        """Store the runs, all or none; their ids."""
        ids = [r.id for r in runs]
        twice = next((i for i in ids if ids.count(i) > 1), None)
        if twice is not None:
            raise ForgeError(f"run id {twice!r} is given twice; give each run its own id (or none, for a new one)")
        if not runs:
            return []
        try:
            with self.transaction() as conn:
                for chunk in _chunks(ids):
                    taken = conn.execute(sa.select(RUNS.c.id).where(RUNS.c.id.in_(chunk)).limit(1)).scalar()
                    if taken is not None:
                        raise ForgeError(f"run id {taken!r} is already in the store; nothing was recorded; give each run its own id")
                conn.execute(RUNS.insert(), [_row(r) for r in runs])
        except IntegrityError:  # another process stored one of these ids in the meantime
            raise ForgeError("a run with one of these ids was stored by another writer meanwhile; nothing was recorded") from None
        return ids

    def runs(self, *, limit: Optional[int] = None, **where: Any) -> list[Run]:
        """Runs in the order they happened, filtered by `where` (see `_filters`); with `limit`,
        the latest that many."""
        query = sa.select(RUNS).where(*_filters(**where))
        if limit is not None:
            query = query.order_by(RUNS.c.time.desc(), RUNS.c.id.desc()).limit(limit)
        else:
            query = query.order_by(RUNS.c.time, RUNS.c.id)
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
        found = [_run(row) for row in rows]
        return found[::-1] if limit is not None else found

    def count(self, **where: Any) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(RUNS).where(*_filters(**where))).scalar_one())

    def mark_exported(self, ids: Sequence[str], export: Export) -> None:
        """Record the export and that these runs are in it, together; refused (nothing changed)
        if any run is unknown, held out or already exported."""
        with self.transaction() as conn:
            conn.execute(EXPORTS.insert().values(id=export.id, time=export.time, path=export.path,
                                                 sha256=export.sha256, count=export.count))
            changed = 0
            for chunk in _chunks(list(ids)):
                changed += conn.execute(RUNS.update().where(RUNS.c.id.in_(chunk), RUNS.c.export_id.is_(None),
                                                            RUNS.c.heldout.is_(False)).values(export_id=export.id)).rowcount
            if changed != len(set(ids)):
                raise ForgeError(f"export {export.id}: {len(set(ids)) - changed} of its {len(set(ids))} runs are unknown, held out "
                                 "or already exported; nothing was marked")

    def mark_used(self, export_ids: Sequence[str], version: str) -> int:
        """Mark the runs of these exports as used by `version` (deployed); how many were marked."""
        with self.transaction() as conn:
            return conn.execute(RUNS.update().where(RUNS.c.export_id.in_(list(export_ids)), RUNS.c.used_by.is_(None))
                                .values(used_by=version)).rowcount

    def exports(self) -> list[Export]:
        with self._read() as conn:
            rows = conn.execute(sa.select(EXPORTS).order_by(EXPORTS.c.time, EXPORTS.c.id)).mappings().all()
        return [Export(**row) for row in rows]

    def stats(self) -> list[Stat]:
        """Per role, model, version and prompt variant: runs, mean reward, pass rate, cost, and
        how many are exported and used."""
        keys = (RUNS.c.role, RUNS.c.model, RUNS.c.version, RUNS.c.prompt_variant)
        query = sa.select(*keys, sa.func.count().label("runs"), sa.func.avg(RUNS.c.reward).label("mean_reward"),
                          sa.func.avg(sa.cast(RUNS.c.passed, sa.Integer)).label("pass_rate"),
                          sa.func.sum(RUNS.c.cost).label("cost"), sa.func.count(RUNS.c.export_id).label("exported"),
                          sa.func.count(RUNS.c.used_by).label("used")).group_by(*keys)
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
        stats = [Stat(**{**row, "mean_reward": float(row["mean_reward"]),
                         "pass_rate": None if row["pass_rate"] is None else float(row["pass_rate"]),
                         "cost": None if row["cost"] is None else float(row["cost"])}) for row in rows]
        return sorted(stats, key=lambda s: (s.role, s.model, s.version or "", s.prompt_variant or ""))

    # --- the audit log ---

    def log(self, action: str, status: str, reason: str, details: Optional[dict[str, Any]] = None) -> int:
        """Append an entry to the audit log; its id."""
        with self.transaction() as conn:
            result = conn.execute(ACTIONS.insert().values(time=now(), action=action, status=status, reason=reason,
                                                          details=json.dumps(details or {}, sort_keys=True)))
            return int(result.inserted_primary_key[0])

    def actions(self, limit: Optional[int] = None, action: Optional[str] = None) -> list[Action]:
        """The audit log, newest first."""
        query = sa.select(ACTIONS).order_by(ACTIONS.c.id.desc())
        if action is not None:
            query = query.where(ACTIONS.c.action == action)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
        return [Action(**{**row, "details": json.loads(row["details"])}) for row in rows]

    # --- state blobs (bandit, router, drift detectors, the loop) ---

    def get_state(self, key: str) -> Optional[bytes]:
        with self._read() as conn:
            value = conn.execute(sa.select(STATE.c.value).where(STATE.c.key == key)).scalar()
        return None if value is None else bytes(value)

    def put_state(self, key: str, blob: bytes) -> None:
        """Store a blob under `key`, replacing the one there; inside `transaction()` with others."""
        if not isinstance(blob, (bytes, bytearray)):
            raise TypeError(f"state {key!r}: a blob is bytes, got {type(blob).__name__}")
        values = {"key": key, "value": bytes(blob), "time": now()}
        with self.transaction() as conn:
            if conn.dialect.name in UPSERT:
                statement = UPSERT[conn.dialect.name](STATE).values(**values)
                conn.execute(statement.on_conflict_do_update(index_elements=[STATE.c.key],
                                                             set_={"value": statement.excluded.value, "time": statement.excluded.time}))
            elif not conn.execute(STATE.update().where(STATE.c.key == key).values(value=values["value"], time=values["time"])).rowcount:
                conn.execute(STATE.insert().values(**values))

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        current = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        try:
            with self.engine.connect() as conn:
                yield conn
        except OperationalError as e:
            raise ForgeError(f"store {self.url}: {_first_line(e)}") from None


def _filters(role: Optional[str] = None, model: Optional[str] = None, version: Optional[str] = None,
             prompt_variant: Optional[str] = None, task_id: Optional[str] = None, since: Optional[Since] = None,
             exported: Optional[bool] = None, used: Optional[bool] = None, heldout: Optional[bool] = None,
             min_reward: Optional[float] = None) -> list[Any]:
    """Conditions on runs: equal to the given values; recorded at or after `since`; exported,
    used or held out (or not); reward at least `min_reward`. None leaves a field free."""
    where: list[Any] = []
    for column, value in ((RUNS.c.role, role), (RUNS.c.model, model), (RUNS.c.version, version),
                          (RUNS.c.prompt_variant, prompt_variant), (RUNS.c.task_id, task_id)):
        if value is not None:
            where.append(column == value)
    if since is not None:
        where.append(RUNS.c.time >= utc(since, "since"))
    for column, flag in ((RUNS.c.export_id, exported), (RUNS.c.used_by, used)):
        if flag is not None:
            where.append(column.is_not(None) if flag else column.is_(None))
    if heldout is not None:
        where.append(RUNS.c.heldout.is_(heldout))
    if min_reward is not None:
        where.append(RUNS.c.reward >= min_reward)
    return where


def _row(run: Run) -> dict[str, Any]:
    return {"id": run.id, "time": run.time, "task": run.task, "task_id": run.task_id, "role": run.role,
            "prompt_variant": run.prompt_variant, "model": run.model, "version": run.version, "response": run.response,
            "messages": None if run.messages is None else json.dumps(run.messages, ensure_ascii=False),
            "signals": json.dumps(run.signals, ensure_ascii=False), "reward": run.reward, "heldout": run.heldout,
            "latency": run.latency, "cost": run.cost, "export_id": None, "used_by": None, "passed": run.passed}


def _run(row: Any) -> Run:
    return Run(task=row["task"], role=row["role"], model=row["model"], signals=json.loads(row["signals"]), reward=row["reward"],
               response=row["response"], messages=None if row["messages"] is None else json.loads(row["messages"]),
               id=row["id"], time=row["time"], task_id=row["task_id"], prompt_variant=row["prompt_variant"],
               version=row["version"], heldout=bool(row["heldout"]), latency=row["latency"], cost=row["cost"])


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    """Pieces small enough for any database's limit on bound parameters."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


@contextmanager
def _write(engine: Engine, shown: str = "") -> Iterator[Connection]:
    try:
        with engine.connect() as conn:
            conn.execution_options(forge_write=True)
            with conn.begin():
                yield conn
    except OperationalError as e:
        raise ForgeError(f"store {shown or _shown(engine)}: {_first_line(e)}") from None


def _engine(url: str, project: Path) -> Engine:
    try:
        parsed = sa.make_url(url)
    except ArgumentError:
        raise ConfigError(f"learn.store.url={url}: not a database URL; use e.g. sqlite:///learn/experience.db "
                          "or postgresql+psycopg://USER@HOST/DB") from None
    try:
        if parsed.get_backend_name() != "sqlite":
            return sa.create_engine(parsed, pool_pre_ping=True)
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            engine = sa.create_engine(parsed, poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            path = Path(database) if Path(database).is_absolute() else project / database
            path.parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(parsed.set(database=str(path)), connect_args={"timeout": BUSY_TIMEOUT_S})
    except (NoSuchModuleError, ModuleNotFoundError) as e:
        extra = " (pip install 'forge[learn-postgres]')" if parsed.get_backend_name() == "postgresql" else ""
        raise ConfigError(f"learn.store.url={parsed.render_as_string(hide_password=True)}: no database driver for it "
                          f"({_first_line(e)}); install the driver{extra}") from None
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, record: Any) -> None:
    """Transactions by SQLAlchemy's BEGIN, not the driver's implicit one (which skips DDL), WAL
    so that readers do not block the writer, and the busy timeout in SQLite itself."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """Writers take the write lock first (BEGIN IMMEDIATE): a reader turned writer mid-transaction
    could not wait for it and would fail with 'database is locked'."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("forge_write") else "BEGIN")


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__
