"""Serving a stage: the version a stage points at, answered by a local OpenAI-compatible server
on loopback and, where Ollama is installed, by an Ollama model built from its GGUF.

The server is `transformers serve` (transformers' own OpenAI-compatible server:
`/v1/chat/completions`, `/health`), pinned to the version's merged model. Each stage of a model has
one server, recorded in `.forge/serve/NAME-STAGE.json` (pid, address, version) next to the folder
`NAME-STAGE` it loads, a link to that version's files checked out of DVC. Clients ask for model
`NAME-STAGE`, a name that stays put across deploys and rollbacks.

A move (deploy, rollback) starts the new version's server and checks it with a real chat request
before the stage's tag moves: a version that cannot answer is never assigned, and the server it
would have replaced is started again. The old server is stopped first, since the port is the
stage's stable address and two copies of a model would double the memory, so the stage does not
answer for the seconds a load takes.

Ollama gets the merged GGUF (`ollama create NAME:vX.Y.Z` from the exported Modelfile, then
`ollama cp` to `NAME:STAGE`), not an `ADAPTER` line over a base model: Ollama 0.34.1 removed
creating models from LoRA adapters (serving ones built earlier still works).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Optional

from forge import atomic, registry
from forge.errors import ForgeError

SERVE_DIR = Path(".forge") / "serve"
HOST, PORT = "127.0.0.1", 8000
PROBE = [{"role": "user", "content": "Say hello."}]
PROBE_TOKENS = 8
STOP_GRACE = 10.0


class Stage:
    """One stage of one model as served here: its folder, record, log and lock."""

    def __init__(self, repo: registry.Repo, name: str, stage: str) -> None:
        self.repo, self.name, self.stage = repo, name, stage
        self.root = repo.dvc / SERVE_DIR
        self.model_id = f"{name}-{stage}"

    @property
    def record_file(self) -> Path:
        return self.root / f"{self.model_id}.json"

    @property
    def log_file(self) -> Path:
        return self.root / f"{self.model_id}.log"

    @property
    def link(self) -> Path:
        return self.root / self.model_id

    def record(self) -> Optional[dict[str, Any]]:
        """The server last started for this stage, with `alive` telling whether it still runs."""
        try:
            record = json.loads(self.record_file.read_text())
        except (OSError, ValueError):
            return None
        record["alive"] = _is_server(record.get("pid"), self.model_id)
        return record

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One move of this stage's server at a time."""
        self.root.mkdir(parents=True, exist_ok=True)
        ignore = self.root.parent / ".gitignore"
        if not ignore.exists():  # the served copies and logs are local state, not the project's
            atomic.write_text(ignore, "*\n")
        with open(self.root / f"{self.model_id}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield


def deploy(spec: str, stage: str, host: str = HOST, port: Optional[int] = None, timeout: float = 600.0,
           ollama: bool = False, cwd: Path = Path(".")) -> tuple[Optional[str], str, dict[str, Any]]:
    """Serve NAME@vX.Y.Z for the stage, then assign it; returns (the stage's version before, the
    version now, the server's record with its first reply)."""
    repo = registry.Repo(cwd)
    name, version = registry.parse_spec(spec)
    registry.check_version(repo, name, version)
    served = move(repo, name, stage, version, host, port, timeout, ollama)
    before, after = registry.deploy(spec, stage, cwd)
    return before, after, served


def rollback(name: str, stage: str, to: Optional[str] = None, host: str = HOST, port: Optional[int] = None, timeout: float = 600.0,
             ollama: bool = False, cwd: Path = Path(".")) -> tuple[str, str, dict[str, Any]]:
    """Serve the version a rollback goes to, then move the stage back; returns (from, to, record)."""
    repo = registry.Repo(cwd)
    _, target = registry.rollback_target(repo, name, stage, to)
    served = move(repo, name, stage, target, host, port, timeout, ollama)
    before, after = registry.rollback(name, stage, target, cwd)
    return before, after, served


def serve(name: str, stage: str, host: str = HOST, port: Optional[int] = None, timeout: float = 600.0,
          cwd: Path = Path(".")) -> dict[str, Any]:
    """(Re)start the server of the version the stage has now, e.g. after a reboot."""
    repo = registry.Repo(cwd)
    registry.check_name_known(repo, name)
    version = registry.current(repo, name, stage)
    if version is None:
        raise ForgeError(f"models serve: {name} has no version in {stage!r}; deploy one first (forge models deploy {name}@vX.Y.Z --stage {stage})")
    return move(repo, name, stage, version, host, port, timeout, ollama=False)


def shutdown(name: str, stage: str, cwd: Path = Path(".")) -> Optional[dict[str, Any]]:
    """Stop the stage's server; returns its record when one was running."""
    place = Stage(registry.Repo(cwd), name, stage)
    with place.lock():
        record = stop(place)
    return record if record and record["alive"] else None


def status(repo: registry.Repo, name: str) -> list[dict[str, Any]]:
    """The servers started for the model's stages, each with `alive`."""
    root = repo.dvc / SERVE_DIR
    found = []
    for file in sorted(root.glob(f"{name}-*.json")) if root.is_dir() else []:
        record = Stage(repo, name, file.stem.removeprefix(f"{name}-")).record()
        if record and record.get("name") == name:
            found.append(record)
    return found


def move(repo: registry.Repo, name: str, stage: str, version: str, host: str, port: Optional[int], timeout: float,
         ollama: bool) -> dict[str, Any]:
    """Make the stage's server (and Ollama model) answer with `version`, or leave it as it was."""
    spec = f"{name}@{version}"
    place = Stage(repo, name, stage)
    with place.lock():
        files = checkout(repo, name, version)
        model = servable(files, spec)
        if ollama:
            ollama_create(files, name, version, stage)
        previous = stop(place)
        if port is None:
            port = previous["port"] if previous else PORT
        try:
            return start(place, version, model, host, port, timeout)
        except BaseException:
            if previous and previous["alive"]:  # the stage keeps answering with what it had
                with contextlib.suppress(ForgeError):
                    start(place, previous["version"], place.root / previous["path"], previous["host"], previous["port"], timeout)
            raise


def checkout(repo: registry.Repo, name: str, version: str) -> Path:
    """The version's files as registered, out of DVC at the version's commit (its cache, or the
    remote when the cache lacks them); kept under `.forge/serve/NAME/VERSION` for the next move."""
    from dvc.api import DVCFileSystem

    folder = repo.dvc / SERVE_DIR / name / version
    if folder.is_dir():
        return folder
    found = next(v for v in registry.versions(repo, name) if v["version"] == version)
    path = str(repo.files(name).relative_to(repo.dvc))
    try:
        with atomic.atomic_dir(folder) as tmp:
            DVCFileSystem(str(repo.dvc), rev=found["commit"]).get(path, str(tmp / "files"), recursive=True)
            for entry in (tmp / "files").iterdir():
                entry.rename(tmp / entry.name)
            (tmp / "files").rmdir()
    except ForgeError:
        raise
    except Exception as e:  # DVC raises many kinds: a missing cache entry, no remote, a bad .dvc file
        raise ForgeError(f"models: cannot check out {name} {version} from DVC ({type(e).__name__}: {e}); `dvc pull` fetches it from the remote") from e
    return folder


def servable(files: Path, spec: str) -> Path:
    """The Hugging Face model folder to serve: the version's merged model (or a full model)."""
    for folder in (files / "merged", files):
        if (folder / "config.json").is_file():
            return folder
    held = ", ".join(sorted(p.name for p in files.iterdir())) or "nothing"
    raise ForgeError(f"models deploy: {spec} has no merged model to serve (it holds {held}); export with "
                     f"export.outputs=[adapter,merged] before registering, or deploy with --no-serve to only assign the stage")


def start(stage: Stage, version: str, model: Path, host: str, port: int, timeout: float) -> dict[str, Any]:
    """Start the stage's server on `model` and wait until it answers a chat request."""
    _check_serving_installed()
    tmp_link = stage.link.with_name(f".{stage.link.name}.new")
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(os.path.relpath(model, stage.root))
    os.replace(tmp_link, stage.link)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1", "TRANSFORMERS_VERBOSITY": "error"}
    argv = [sys.executable, "-m", "transformers.cli.transformers", "serve", stage.model_id, "--host", host, "--port", str(port),
            "--log-level", "warning"]
    with open(stage.log_file, "ab") as log:
        proc = subprocess.Popen(argv, cwd=stage.root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    record = {"name": stage.name, "stage": stage.stage, "version": version, "model": stage.model_id, "path": os.path.relpath(model, stage.root),
              "pid": proc.pid,
              "url": f"http://{host}:{port}/v1", "host": host, "port": port, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic.write_json(stage.record_file, record)  # before the wait: a kill now still leaves its pid to stop
    try:
        record["reply"] = _answer(record, proc, timeout, stage.log_file)
    except BaseException:
        _stop_pid(proc.pid, proc)
        raise
    return record


def stop(stage: Stage) -> Optional[dict[str, Any]]:
    """Stop the stage's server if one runs; returns its record."""
    record = stage.record()
    if record and record["alive"]:
        _stop_pid(record["pid"])
    return record


def chat(url: str, messages: list[dict[str, str]], max_tokens: int, timeout: float = 60.0) -> str:
    """One chat completion from an OpenAI-compatible server; returns the reply's text."""
    body = json.dumps({"messages": messages, "max_tokens": max_tokens}).encode()
    request = urllib.request.Request(f"{url}/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    content = answer["choices"][0]["message"]["content"]
    if not isinstance(content, str):
        raise ValueError(f"the reply has no text: {answer}")
    return content


def ollama_create(files: Path, name: str, version: str, stage: str) -> str:
    """Build `NAME:VERSION` in Ollama from the version's GGUF and point `NAME:STAGE` at it."""
    modelfile = files / "gguf" / "Modelfile"
    if shutil.which("ollama") is None:
        raise ForgeError("models deploy: --ollama needs the `ollama` command, which is not installed; install Ollama (ollama.com) or deploy without --ollama")
    if not modelfile.is_file():
        raise ForgeError(f"models deploy: {name}@{version} has no GGUF export (gguf/Modelfile); export with export.outputs=[...,gguf] before registering")
    tag, moved = f"{name}:{version}", f"{name}:{stage}"
    for argv in (["ollama", "create", tag, "-f", "Modelfile"], ["ollama", "cp", tag, moved]):
        done = subprocess.run(argv, cwd=modelfile.parent, capture_output=True, text=True)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise ForgeError(f"models deploy: `{' '.join(argv)}` failed: {lines[-1] if lines else f'exit code {done.returncode}'}")
    return moved


def _answer(record: dict[str, Any], proc: subprocess.Popen, timeout: float, log: Path) -> str:
    """Wait for the server's health, then ask it one chat request; a one-line error otherwise."""
    deadline = time.monotonic() + timeout
    health = record["url"].removesuffix("/v1") + "/health"
    while True:
        if proc.poll() is not None:
            raise ForgeError(f"models: the server for {record['model']} exited (code {proc.returncode}) before answering: {_last_line(log)}; full log in {log}")
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise ForgeError(f"models: the server for {record['model']} did not answer within {timeout:.0f} s; see {log} (--timeout waits longer)")
        time.sleep(0.25)
    try:
        return chat(record["url"], PROBE, PROBE_TOKENS, timeout=max(deadline - time.monotonic(), 30.0))
    except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError) as e:
        raise ForgeError(f"models: the server for {record['model']} is up but failed a chat request ({e}); see {log}") from e


def _check_serving_installed() -> None:
    from importlib.util import find_spec

    missing = [m for m in ("fastapi", "uvicorn", "openai") if find_spec(m) is None]
    if missing:
        raise ForgeError(f"models: serving needs transformers' server ({', '.join(missing)} missing); pip install 'forge[serve]', "
                         "or deploy with --no-serve to only assign the stage")


def _is_server(pid: Any, model_id: str) -> bool:
    """Whether `pid` is still this stage's server (not a later process that reused the number)."""
    if not isinstance(pid, int):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"serve" in cmdline and model_id.encode() in cmdline


def _stop_pid(pid: int, proc: Optional[subprocess.Popen] = None) -> None:
    """SIGTERM the server's process group, SIGKILL it after a grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while not _gone(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        time.sleep(0.1)
    if proc is not None:
        proc.poll()


def _gone(pid: int) -> bool:
    """Whether the process has exited (reaping it when it is this process's child)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "no output"
