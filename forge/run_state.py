"""The state of a run, kept in `RUN/run.json` by the process that runs it.

`track` writes the record atomically at every stage boundary: status (running, finished, failed,
stopped), the stages done, start and end times, pid and host, the error of a failure. A process
killed with SIGKILL cannot write its end, so liveness is not read from the record alone: the
running process holds an OS lock on `RUN/.run.lock` for its whole life (the kernel drops it when
the process dies, however it dies), and rewrites a heartbeat time for readers on other hosts, who
cannot see that lock. `read_state` combines the two and reports such a run as "died". Sweeps,
cross-validation and run management read runs through it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import shutil
import signal
import socket
import threading
import traceback
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any, Iterator, Optional, Sequence

from forge import atomic
from forge.errors import ForgeError

log = logging.getLogger("forge")
STATE_FILE = "run.json"
LOCK_FILE = ".run.lock"
HEARTBEAT_SECONDS = 20.0
STALE_SECONDS = 120.0  # a heartbeat this old, seen from another host, means the run died
ENDED = ("finished", "failed", "stopped")

_held_locks: set[int] = set()  # lock fds of this process, closed in forked children
_signalled: list[int] = []  # SIGTERM / SIGINT received while a run is tracked
_tracking = 0  # nested tracks in this process (a cv run and its current fold)
_ending = False  # while the final record is written, a signal must not interrupt it


class Stopped(BaseException):
    """Raised by SIGTERM inside a tracked run. Not an Exception, so that nothing that handles
    failures (a sweep point, a stage) mistakes a stop for one."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_state(root: Path) -> Optional[dict[str, Any]]:
    """The run's record, None without one. A record that says "running" is checked: on this
    host by its lock, from another host by the age of its heartbeat; a run that is not alive
    reads "died"."""
    record = _load(Path(root))
    if record is None or record.get("status") != "running" or _alive(Path(root), record):
        return record
    record = _load(Path(root))  # it may have ended between the read and the check
    if record is not None and record.get("status") == "running":
        record["status"] = "died"
    return record


def mark_failed(root: Path, error: str) -> None:
    """Record that a run which is no longer running failed after all (a sweep point whose
    objective is NaN, or one that failed before its run began)."""
    record = _load(Path(root)) or {"stages_done": [], "started": now(), "pid": os.getpid(), "host": socket.gethostname()}
    record.update(status="failed", error=error, ended=record.get("ended") or now())
    atomic.write_json(Path(root) / STATE_FILE, record)


class RunState:
    """The record of the run this process is running; `active=False` (a rank other than zero,
    which must not write) makes every method a no-op."""

    def __init__(self, root: Path, record: dict[str, Any], active: bool = True) -> None:
        self.root = root
        self.record = record
        self.active = active
        self._write_lock = threading.Lock()

    def stage_started(self, name: str) -> None:
        self.update(stage=name)

    def stage_done(self, name: str, order: Sequence[str] = ()) -> None:
        """Add `name` to the stages done, in the place `order` gives it (else last)."""
        done = [s for s in self.record.get("stages_done", []) if s != name] + [name]
        if order:
            done.sort(key=lambda s: order.index(s) if s in order else len(order))
        self.update(stages_done=done, stage=None)

    def update(self, **fields: Any) -> None:
        self.record.update(fields)
        self.write()

    def write(self) -> None:
        if not self.active:
            return
        with self._write_lock:
            self.record["heartbeat"] = now()
            atomic.write_json(self.root / STATE_FILE, _finite(self.record))


@contextmanager
def track(root: Path, keep: bool = False, active: bool = True) -> Iterator[RunState]:
    """Hold the run directory for this process and keep its record: running while the body runs,
    then finished, failed (the exception propagates) or stopped (SIGINT, or SIGTERM, which exits
    with 128 + 15). `keep` continues an earlier record of the same directory (one stage of a DVC
    pipeline after another): its stages done and start time. A directory that a live run holds
    is refused; leftovers of writes killed midway in it are deleted first."""
    root = Path(root)
    if not active:
        yield RunState(root, {}, active=False)
        return
    root.mkdir(parents=True, exist_ok=True)
    fd = _lock(root)
    heartbeat: Optional[_Heartbeat] = None
    try:
        _reclaim(root)
        before = (_load(root) or {}) if keep else {}
        state = RunState(root, {
            "status": "running", "stages_done": before.get("stages_done", []),
            "stage": None, "started": before.get("started", now()), "ended": None, "pid": os.getpid(),
            "host": socket.gethostname(), "error": None, "traceback": None,
        })
        state.write()
        heartbeat = _Heartbeat(state)
        with _signals_stop_the_run():
            try:
                yield state
            except BaseException as e:
                heartbeat.stop()
                _end(state, e)
                if isinstance(e, Stopped):
                    raise SystemExit(128 + e.signum) from None
                raise
            heartbeat.stop()
            _end(state, None)
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        _unlock(fd)


def _end(state: RunState, error: Optional[BaseException]) -> None:
    global _ending
    _ending = True
    try:
        if error is None:
            state.update(status="finished", ended=now())
        elif _signalled or isinstance(error, (KeyboardInterrupt, Stopped)):
            name = signal.Signals(_signalled[0]).name if _signalled else "KeyboardInterrupt"
            state.update(status="stopped", ended=now(), error=f"stopped by {name}")
        else:
            state.update(status="failed", ended=now(), error=_one_line(error), traceback=traceback.format_exc())
    finally:
        _ending = False


def _one_line(error: BaseException) -> str:
    if isinstance(error, SystemExit):
        return f"exited with code {error.code}"
    message = " ".join(str(error).split())
    return message if isinstance(error, ForgeError) else f"{type(error).__name__}: {message}"


def _finite(value: Any) -> Any:
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _load(root: Path) -> Optional[dict[str, Any]]:
    path = root / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise ForgeError(f"{path} is not valid JSON ({e}); delete it or restore it") from None


def _alive(root: Path, record: dict[str, Any]) -> bool:
    if record.get("host") == socket.gethostname():
        return _locked(root)
    try:
        age = (datetime.now(timezone.utc) - datetime.fromisoformat(record["heartbeat"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return False
    return age < STALE_SECONDS


def _locked(root: Path) -> bool:
    try:
        fd = os.open(root / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock, if this took it
    return False


def _lock(root: Path) -> int:
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = _load(root) or {}
        raise ForgeError(
            f"{root} is in use by a running forge (pid {holder.get('pid')} on {holder.get('host')}, started "
            f"{holder.get('started')}): wait for it to end, or choose another run directory"
        ) from None
    _held_locks.add(fd)
    return fd


def _unlock(fd: int) -> None:
    _held_locks.discard(fd)
    os.close(fd)


def _close_in_child() -> None:
    """A forked child (a data loader worker) shares the lock; closing its copy, without
    unlocking, leaves the lock to this process alone, so it ends when this process dies."""
    for fd in _held_locks:
        try:
            os.close(fd)
        except OSError:
            pass
    _held_locks.clear()


os.register_at_fork(after_in_child=_close_in_child)


def _reclaim(root: Path) -> None:
    """Delete what writes killed midway left in the run directory (not in run directories nested
    in it, such as cv folds, which reclaim their own when they run)."""
    count = size = 0
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        for name in [*dirs, *files]:
            path = here / name
            if atomic.is_partial(path):
                size += _size(path)
                count += 1
                if name in dirs:
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        dirs[:] = [d for d in dirs if (here / d).exists() and not (here / d / STATE_FILE).exists()]
    if count:
        log.info("reclaimed %s bytes in %d partial file(s) left by writes killed midway in %s", f"{size:,}", count, root)


def _size(path: Path) -> int:
    """Bytes that deleting `path` frees: files linked elsewhere too (prepared data is hard-linked
    from the cache) free nothing."""
    if path.is_symlink() or not path.is_dir():
        return _freed(path)
    return sum(_freed(Path(folder) / name) for folder, _, files in os.walk(path) for name in files)


def _freed(path: Path) -> int:
    st = path.lstat()
    return st.st_size if st.st_nlink == 1 else 0


class _Heartbeat:
    """Rewrites the record every HEARTBEAT_SECONDS, for readers on another host."""

    def __init__(self, state: RunState) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(state,), name="forge-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self, state: RunState) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                state.write()
            except OSError as e:  # a full disk or a deleted run directory must not end the run
                log.warning("run.json heartbeat not written: %s", e)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


def _on_signal(signum: int, frame: Optional[FrameType]) -> None:
    if _ending:
        return
    _signalled.append(signum)
    if _deferring and signum == signal.SIGTERM:
        return  # the training loop stops at the next step boundary, after a checkpoint (stop_requested)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Stopped(signum)


_deferring = False


@contextmanager
def stops_at_a_boundary() -> Iterator[None]:
    """While the body runs, SIGTERM only asks the run to stop: the body checks `stop_requested`
    where it can stop cleanly (a training step boundary: checkpoint saved, resume exact)."""
    global _deferring
    _deferring = True
    try:
        yield
    finally:
        _deferring = False
    if stop_requested():
        raise Stopped(signal.SIGTERM)


def stop_requested() -> bool:
    return signal.SIGTERM in _signalled


@contextmanager
def _signals_stop_the_run() -> Iterator[None]:
    """SIGTERM and SIGINT raise in the main thread, so that the run records "stopped" on its way
    out (Lightning calls a handler installed before it, alongside its own)."""
    global _tracking
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)} if _tracking == 0 else {}
    if _tracking == 0:
        _signalled.clear()
        for s in previous:
            signal.signal(s, _on_signal)
    _tracking += 1
    try:
        yield
    finally:
        _tracking -= 1
        for s, handler in previous.items():
            signal.signal(s, handler)
