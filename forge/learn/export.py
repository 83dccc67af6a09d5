"""Turning recorded runs into training data: the good runs not exported yet, each once, never an
evaluation task, never one holding a secret, written as agent_runs JSONL (the SFT format forge
trains on) and tracked by DVC.

An incremental round trains on one file of its own: its new examples plus a seeded draw of
earlier rounds' (rehearsal), so that the run is an ordinary forge run on one data source.

An export's file is named by the runs it holds, so an export repeated after a kill writes the
same file; a file no store record points to (the kill came between the file and the store's
commit) is an orphan the next step removes.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Protocol

from forge import atomic, secrets
from forge.dvc_add import dvc_add
from forge.errors import ForgeError


class RunLike(Protocol):
    id: str
    task: str
    task_id: Optional[str]
    response: Optional[str]
    messages: Optional[list[dict[str, Any]]]
    signals: dict[str, Any]
    reward: float


@dataclass
class Selection:
    runs: list[Any] = field(default_factory=list)
    left_out: Counter[str] = field(default_factory=Counter)


def select(candidates: Iterable[RunLike], evaluation: set[str], exported: Iterable[RunLike] = ()) -> Selection:
    """The runs to export: one per distinct (task, answer), counting those `exported` before,
    none whose task (or task id) is an evaluation task, none with a secret in its text
    (detect-secrets' patterns, forge.secrets)."""
    out = Selection()
    seen = {_key(_text(run)) for run in exported}
    for run in candidates:
        if run.task in evaluation or (run.task_id is not None and run.task_id in evaluation):
            out.left_out["evaluation_tasks"] += 1
            continue
        text = _text(run)
        key = _key(text)
        if key in seen:
            out.left_out["duplicates"] += 1
            continue
        if secrets.find(text):
            out.left_out["secrets"] += 1
            continue
        seen.add(key)
        out.runs.append(run)
    return out


def _text(run: RunLike) -> str:
    return json.dumps([run.task, run.response, run.messages], sort_keys=True)


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def record(run: RunLike) -> dict[str, Any]:
    """The run as an agent_runs record (forge.data.sft.formats): what training reads."""
    out: dict[str, Any] = {"id": run.id, "task": run.task}
    if run.messages:
        out["messages"] = run.messages
    else:
        out["response"] = run.response
    out["signals"] = run.signals
    return out


def file_name(runs: list[RunLike]) -> str:
    digest = hashlib.sha256("\n".join(sorted(r.id for r in runs)).encode()).hexdigest()
    return f"export-{digest[:16]}.jsonl"


def write(runs: list[RunLike], folder: Path, dvc_project: Optional[Path]) -> tuple[Path, str]:
    """The export file (written atomically, then `dvc add`ed when the project is a DVC one);
    returns its path and SHA-256."""
    path = folder / file_name(runs)
    text = "".join(json.dumps(record(r), ensure_ascii=False) + "\n" for r in runs)
    atomic.write_text(path, text)
    if dvc_project is not None:
        dvc_add(dvc_project, path, "learn export")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def orphans(folder: Path, known: set[str]) -> list[Path]:
    """Export files the store does not know: left by a step killed before its commit."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("export-*.jsonl") if p.name not in known)


@dataclass
class Mix:
    records: list[dict[str, Any]]  # the new examples, then the earlier ones drawn
    drawn: list[str]  # the ids of the earlier examples drawn, in draw order
    pool: int  # how many earlier examples there were to draw from


def read(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The agent_runs records of export files, each id once, in file order."""
    out, seen = [], set()
    for path in paths:
        if not path.is_file():
            raise ForgeError(f"learn: the export {path} is missing; restore it with `dvc pull {path}`")
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                if rec["id"] not in seen:
                    seen.add(rec["id"])
                    out.append(rec)
    return out


def draw(pool: list[dict[str, Any]], count: int, seed: str) -> list[dict[str, Any]]:
    """`count` records of `pool` (at most all), chosen by `seed` whatever order the pool came in."""
    ordered = sorted(pool, key=lambda r: r["id"])
    return random.Random(seed).sample(ordered, min(count, len(ordered)))


def rehearsal_mix(new: list[dict[str, Any]], earlier: list[dict[str, Any]], share: float, seed: int) -> Mix:
    """The new examples plus round(share x their number) earlier ones (half up), drawn from
    `earlier` (less any the round holds already) with a seed of `seed` and the round's own
    examples, so each round draws its own sample and a repeated round the same one."""
    ids = {r["id"] for r in new}
    pool = [r for r in earlier if r["id"] not in ids]
    digest = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()
    drawn = draw(pool, int(share * len(new) + 0.5), f"{seed}:{digest}")
    return Mix(records=[*new, *drawn], drawn=[r["id"] for r in drawn], pool=len(pool))


def write_round(mix: Mix, folder: Path, dvc_project: Optional[Path]) -> Path:
    """The round's training file, `round-<digest>.jsonl` (named by its records, so a repeated
    round writes the same file), written atomically and `dvc add`ed like an export."""
    digest = hashlib.sha256("\n".join(r["id"] for r in mix.records).encode()).hexdigest()
    path = folder / f"round-{digest[:16]}.jsonl"
    atomic.write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in mix.records))
    if dvc_project is not None:
        dvc_add(dvc_project, path, "learn round")
    return path
