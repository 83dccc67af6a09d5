"""The model registry: a run's exported model becomes a version `NAME@vX.Y.Z`, and a stage
(prod, staging) points at one version at a time, with every move kept.

Built on parts users already have, not a database of its own. The model files are tracked by DVC
as a copy under `models/NAME/` (the run folder is ignored by Git and may be a pipeline output,
which DVC refuses to `add` a second time; one stable path per name means each version is a commit
changing `models/NAME.dvc`, so `git checkout NAME@v0.0.1 && dvc checkout` restores it). Next to it,
`models/NAME.json` records what the version came from (run, metrics, config, data fingerprint): a
committed file rather than a tag message, so the version's provenance is checked out, diffed and
read with the files it describes. Versions and stage assignments are GTO Git tags (`NAME@v0.0.2`,
`NAME#prod#3`); `artifacts.yaml` annotates NAME as a model at its path for `gto describe`.

A kill at any point leaves the registry before or after a move, never between: registering does
the file work (copy, `dvc add`, metadata, commit) first and creates the version tag last, so a
commit without its tag is no version and the next registration reuses its number; a stage move
is one tag. Reading the order of moves comes from the tags' counters, not their times (GTO's own
reading ties moves made within the same second).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator, Optional

import yaml

from forge import atomic
from forge.dvc_add import dvc_add
from forge.errors import ForgeError
from forge.run_dir import read_json
from forge.run_state import read_state

MODELS_DIR = "models"
ARTIFACTS_FILE = "artifacts.yaml"
NAME = re.compile(r"^[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?$")
SPEC = re.compile(r"^(?P<name>[^@]+)@(?P<version>v\d+\.\d+\.\d+)$")


class Repo:
    """The Git repository (GTO's tags) and the DVC project (the files) a registry lives in."""

    def __init__(self, cwd: Path = Path(".")) -> None:
        top = _git(["rev-parse", "--show-toplevel"], Path(cwd), check=False)
        if top is None:
            raise ForgeError(f"models: {Path(cwd).resolve()} is not in a Git repository; run `git init && dvc init` there first")
        self.git = Path(top)
        self.dvc = next((d for d in [Path(cwd).resolve(), *Path(cwd).resolve().parents] if (d / ".dvc").is_dir()), None)
        if self.dvc is None or not self.dvc.is_relative_to(self.git):
            raise ForgeError(f"models: {self.git} has no DVC repository; run `dvc init` in it (a new project: `git init && dvc init`)")

    def files(self, name: str) -> Path:
        return self.dvc / MODELS_DIR / name

    def meta_file(self, name: str) -> Path:
        return self.dvc / MODELS_DIR / f"{name}.json"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One registry change at a time: two registrations must not take the same number."""
        git_dir = Path(_git(["rev-parse", "--absolute-git-dir"], self.git) or self.git / ".git")
        with open(git_dir / "forge-models.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield


def register(run: Path, name: str, cwd: Path = Path(".")) -> str:
    """Register the run's `model/` as the next version of NAME; returns `NAME@vX.Y.Z`."""
    repo = Repo(cwd)
    check_name(name)
    record = read_state(run)
    if record is None:
        raise ForgeError(f"models register: {run} is not a forge run (no run.json); give a run directory (forge runs ls lists them)")
    status = record.get("status")
    if status == "running":
        raise ForgeError(f"models register: run {run} is still running; register it once it has finished (forge runs status {run})")
    if status != "finished":
        raise ForgeError(f"models register: run {run} is {status}, not finished; only a finished run's model can be registered")
    model = run / "model"
    if not model.is_dir():
        raise ForgeError(f"models register: run {run} has no exported model ({model} is missing); run its export stage first (stage=export hydra.run.dir={run})")
    with repo.lock():
        version = _next_version(repo, name)
        where = run.resolve()  # inside the project: relative, so it reads the same in every clone
        meta = {"name": name, "version": version, "run": str(where.relative_to(repo.git) if where.is_relative_to(repo.git) else where), **provenance(run),
                "files": sorted(str(p.relative_to(model)) for p in model.rglob("*") if p.is_file())}
        paths = _store(repo, name, model, meta)
        _git(["add", "--", *paths], repo.git)
        _git(["commit", "--allow-empty", "-q", "-m", f"Register model {name} {version} from run {run.name}", "--", *paths], repo.git)
        commit = _git(["rev-parse", "HEAD"], repo.git)
        _gto("register", repo.git, name=name, ref=commit, version=version,
             message=f"Register {name} {version} from run {run.name} (provenance in {MODELS_DIR}/{name}.json)")
    return f"{name}@{version}"


def provenance(run: Path) -> dict[str, Any]:
    """What a version carries from its run: metrics, config, data fingerprint (None when absent)."""
    metrics = read_json(run / "metrics.json") or {}
    data = read_json(run / "data" / "meta.json") or {}
    config = run / "config.yaml"
    return {
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        "config": yaml.safe_load(config.read_text(encoding="utf-8")) if config.exists() else None,
        "data_fingerprint": data.get("fingerprint"),
        "training_data": {"files": data.get("inputs", []), "examples": data.get("splits", {}).get("train", {}).get("examples")},
    }


def deploy(spec: str, stage: str, cwd: Path = Path(".")) -> tuple[Optional[str], str]:
    """Assign NAME@vX.Y.Z to the stage; returns (the version the stage had, the version it has)."""
    repo = Repo(cwd)
    name, version = parse_spec(spec)
    with repo.lock():
        check_version(repo, name, version)
        before = current(repo, name, stage)
        if before != version:
            _gto("assign", repo.git, name=name, stage=stage, version=version, force=True,
                 message=f"Deploy {name} {version} to {stage}" + (f" (was {before})" if before else ""))
    return before, version


def rollback(name: str, stage: str, to: Optional[str] = None, cwd: Path = Path(".")) -> tuple[str, str]:
    """Put the stage back on the version assigned before the current one (or on `to`), as a new
    assignment, so the history shows both moves; returns (from, to)."""
    repo = Repo(cwd)
    with repo.lock():
        now, to = rollback_target(repo, name, stage, to)
        _gto("assign", repo.git, name=name, stage=stage, version=to, force=True, message=f"Roll back {stage} of {name} from {now} to {to}")
    return now, to


def rollback_target(repo: Repo, name: str, stage: str, to: Optional[str] = None) -> tuple[str, str]:
    """The stage's current version and the one a rollback puts it on (`to`, or the one before)."""
    check_name_known(repo, name)
    moves = [m["version"] for m in history(repo, name) if m["stage"] == stage]
    if not moves or moves[-1] is None:
        raise ForgeError(f"models rollback: {name} is not deployed to {stage!r}; deploy a version first (forge models deploy {name}@vX.Y.Z --stage {stage})")
    now = moves[-1]
    if to is None:
        to = next((v for v in reversed(moves) if v not in (now, None)), None)
        if to is None:
            raise ForgeError(f"models rollback: {stage!r} of {name} has had no version before {now}; give one with --to vX.Y.Z")
    check_version(repo, name, to)
    if to == now:
        raise ForgeError(f"models rollback: {name} {to} is already in {stage!r}; give another version with --to")
    return now, to


def used_data(repo: Repo, name: str) -> list[dict[str, Any]]:
    """The training data of every version that has been deployed to a stage (deploying marks a
    version's data as used): each file with its SHA-256 and the first version that used it, so a
    later round of training can leave out what a served model already learned from."""
    deployed = {m["version"] for m in history(repo, name) if m["version"]}
    seen: dict[str, dict[str, Any]] = {}
    for v in versions(repo, name):
        if v["version"] in deployed:
            for f in (v["training_data"] or {}).get("files", []):
                seen.setdefault(f["sha256"], {**f, "version": v["version"]})
    return list(seen.values())


def names(repo: Repo) -> list[str]:
    return sorted({e["artifact"] for e in _events(repo) if e["event"] == "registration"})


def versions(repo: Repo, name: str) -> list[dict[str, Any]]:
    """Every registered version, oldest first: its commit, time, provenance and current stages."""
    check_name_known(repo, name)
    stages = assigned(repo, name)
    gone = {e["version"] for e in _events(repo, name) if e["event"] == "deregistration"}
    out = []
    for e in sorted(_events(repo, name), key=lambda e: _semver(e["version"] or "")):
        if e["event"] != "registration" or e["version"] in gone:
            continue
        meta = _meta_at(repo, name, e["commit"])
        out.append({"version": e["version"], "commit": e["commit"], "registered": e["timestamp"].isoformat(),
                    "run": meta.get("run"), "metrics": meta.get("metrics", {}), "data_fingerprint": meta.get("data_fingerprint"),
                    "training_data": meta.get("training_data"),
                    "config": meta.get("config"), "stages": sorted(s for s, v in stages.items() if v == e["version"])})
    return out


def history(repo: Repo, name: str) -> list[dict[str, Any]]:
    """Every stage move of NAME in the order made: assignments, and unassignments (version None)."""
    moves = [e for e in _events(repo, name) if e["event"] in ("assignment", "unassignment")]
    moves.sort(key=lambda e: (e["timestamp"], _counter(e["ref"])))
    return [{"time": e["timestamp"].isoformat(), "stage": e["stage"], "version": e["version"] if e["event"] == "assignment" else None,
             "tag": e["ref"], "message": (e["message"] or "").strip()} for e in moves]


def assigned(repo: Repo, name: str) -> dict[str, str]:
    """Each stage's current version."""
    stages: dict[str, Optional[str]] = {}
    for move in history(repo, name):
        stages[move["stage"]] = move["version"]
    return {s: v for s, v in stages.items() if v is not None}


def current(repo: Repo, name: str, stage: str) -> Optional[str]:
    return assigned(repo, name).get(stage)


def parse_spec(spec: str) -> tuple[str, str]:
    match = SPEC.match(spec)
    if match is None:
        raise ForgeError(f"models: {spec!r} is not NAME@vX.Y.Z (e.g. coder@v0.0.1); forge models versions NAME lists them")
    return match["name"], match["version"]


def check_name(name: str) -> None:
    if not NAME.match(name) or len(name) < 2:
        raise ForgeError(f"models: --name {name!r} is not a model name: lower-case letters, digits, '-' and '_', starting and ending with a letter or digit")


def _store(repo: Repo, name: str, model: Path, meta: dict[str, Any]) -> list[str]:
    """The version's files in the working tree, ready to commit; returns their Git paths."""
    files = repo.files(name)
    with atomic.atomic_dir(files) as tmp:
        shutil.copytree(model, tmp, dirs_exist_ok=True)
    dvc_add(repo.dvc, files, "models register")
    atomic.write_json(repo.meta_file(name), meta)
    _annotate(repo, name)
    paths = [files.with_suffix(".dvc"), files.parent / ".gitignore", repo.meta_file(name), repo.git / ARTIFACTS_FILE]
    return [str(p.relative_to(repo.git)) for p in paths]


def _annotate(repo: Repo, name: str) -> None:
    """NAME as a model at its path in GTO's artifacts.yaml (written atomically, unlike GTO's own)."""
    index = repo.git / ARTIFACTS_FILE
    artifacts = (yaml.safe_load(index.read_text(encoding="utf-8")) if index.exists() else None) or {}
    entry = {"type": "model", "path": str(repo.files(name).relative_to(repo.git)), "description": f"forge model {name} (DVC-tracked)"}
    if artifacts.get(name) != entry:
        artifacts[name] = entry
        atomic.write_text(index, yaml.safe_dump(artifacts, sort_keys=True))


def _next_version(repo: Repo, name: str) -> str:
    taken = [e["version"] for e in _events(repo, name) if e["event"] in ("registration", "deregistration")]
    if not taken:
        return "v0.0.1"
    major, minor, patch = max(_semver(v) for v in taken)
    return f"v{major}.{minor}.{patch + 1}"


def check_name_known(repo: Repo, name: str) -> None:
    if name not in names(repo):
        known = ", ".join(names(repo)) or "none yet"
        raise ForgeError(f"models: no model named {name!r} (registered: {known}); forge models register RUN --name {name} creates it")


def check_version(repo: Repo, name: str, version: str) -> None:
    check_name_known(repo, name)
    registered = [v["version"] for v in versions(repo, name)]
    if version not in registered:
        raise ForgeError(f"models: {name} has no version {version} (versions: {', '.join(registered)}); forge models versions {name} lists them")


def _events(repo: Repo, name: Optional[str] = None) -> list[dict[str, Any]]:
    from gto import api

    return [dict(e) for e in _call(api.history, str(repo.git), name)]


def _gto(action: str, git: Path, **kwargs: Any) -> None:
    from gto import api

    _call(getattr(api, action), str(git), **kwargs)


def _call(function: Any, *args: Any, **kwargs: Any) -> Any:
    from gto.exceptions import GTOException

    try:
        return function(*args, **kwargs)
    except GTOException as e:
        raise ForgeError(f"models: {e}") from e


def _meta_at(repo: Repo, name: str, commit: str) -> dict[str, Any]:
    text = _git(["show", f"{commit}:{repo.meta_file(name).relative_to(repo.git)}"], repo.git, check=False)
    return json.loads(text) if text else {}


def _semver(version: str) -> tuple[int, int, int]:
    match = re.match(r"^v(\d+)\.(\d+)\.(\d+)$", version)
    return (int(match[1]), int(match[2]), int(match[3])) if match else (-1, -1, -1)


def _counter(tag: str) -> int:
    """GTO numbers an artifact's stage tags in order: NAME#prod#3 is the third move."""
    head, _, count = tag.rpartition("#")
    return int(count) if head and count.isdigit() else 0


def _git(args: list[str], cwd: Path, check: bool = True) -> Optional[str]:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise ForgeError("models: git is not installed; install Git, then `git init && dvc init` in the project") from e
    if done.returncode != 0:
        if not check:
            return None
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise ForgeError(f"models: git {args[0]} failed: {lines[-1] if lines else f'exit code {done.returncode}'}")
    return done.stdout.strip()
