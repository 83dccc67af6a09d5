"""Atomic writes: a file or folder appears whole under its final name, or not at all.

Everything forge writes goes through these: the data is written to a temporary name in the same
folder, flushed to disk, then renamed, so a process killed at any moment leaves either the old
file or the new one. What such a kill does leave is a hidden temporary (`.NAME.XXXXXXXX.tmp`, or
`.NAME.old-PID` when killed while swapping a folder); `is_partial` names them so that a later run
can reclaim the space. Text is written with the secrets of the running run masked (forge.redact).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, IO

from forge import redact

# tempfile.mkstemp / mkdtemp put 8 random characters from [a-z0-9_] between prefix and suffix.
_TEMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")
_OLD = re.compile(r"^\.(?P<name>.+)\.old-\d+$")


def _interruption(error: BaseException) -> BaseException:
    """A stop (SIGTERM, Ctrl-C) that arrives mid-write can be masked by the error a library
    raises while cleaning up on its way out (torch.save's zip writer does), which would turn a
    stop into a failure. The stop is what happened: it is what the write re-raises."""
    seen: BaseException | None = error
    while seen is not None:
        if not isinstance(seen, Exception):
            return seen
        seen = seen.__context__
    return error


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def is_partial(path: Path) -> bool:
    """A leftover of a write killed midway: a temporary of these functions, or the old folder
    that `atomic_dir` had already replaced (its new one is in place)."""
    if _TEMP.match(path.name):
        return True
    old = _OLD.match(path.name)
    return old is not None and (path.parent / old["name"]).exists()


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        raise _interruption(error)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(redact.text(text))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_with(path: str | os.PathLike, writer: Callable[[str], None]) -> None:
    """For libraries that write to a path themselves: `writer(tmp_path)`, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        raise _interruption(error)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Fill a temporary folder, then swap it in for `path` (replacing an older one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _interruption(error)
