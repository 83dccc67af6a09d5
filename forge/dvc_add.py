"""`dvc add` from Python, quietly: the model registry's versions and the learning loop's exports
are files DVC tracks, and forge commits the `.dvc` files itself, so DVC's "git add ..." hints and
progress output would only be noise."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from forge.errors import ForgeError


def dvc_add(project: Path, path: Path, who: str) -> Path:
    """Track `path` (a file or folder inside the DVC project `project`); returns its `.dvc` file.
    `who` names the command in the one-line error."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    log = logging.getLogger("dvc")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), Repo(str(project)) as dvc:
            dvc.add(str(path))
    except DvcException as e:
        raise ForgeError(f"{who}: dvc add {path} failed: {e}") from e
    finally:
        log.setLevel(level)
    return path.with_name(path.name + ".dvc")
