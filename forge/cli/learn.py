"""`forge learn`: record agent runs, see the store, read the audit log.

Every subcommand takes the loop's settings as `key=value` after it (`forge learn status
store.url=sqlite:///x.db`), over `learn.yaml` in the current directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from forge.config.errors import ConfigError
from forge.errors import ForgeError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from forge.learn.learner import Learner
    from forge.learn.store import Store


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in SUBCOMMANDS:
        given = f"'{argv[0]}' is not a subcommand; " if argv else ""
        raise ConfigError(f"learn: {given}give one of {', '.join(SUBCOMMANDS)} (forge learn SUBCOMMAND --help)")
    SUBCOMMANDS[argv[0]](argv[1:])


def settings(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The parsed options and the `key=value` settings overrides; anything else is refused."""
    args, rest = parser.parse_known_args(argv)
    stray = [a for a in rest if "=" not in a or a.startswith("-")]
    if stray:
        raise ConfigError(f"{parser.prog}: unexpected argument {stray[0]!r}; settings go as key=value (see {parser.prog} --help)")
    return args, rest


def config(overrides: list[str]) -> "DictConfig":
    from forge.learn.config import load

    return load(Path("."), overrides)


def open_store(cfg: "DictConfig") -> "Store":
    from forge.learn.store import Store

    return Store.open(cfg.store.url, Path("."))


def _record(argv: list[str]) -> None:
    from omegaconf import OmegaConf

    from forge.learn.records import parse

    parser = argparse.ArgumentParser(prog="forge learn record", usage="forge learn record FILE|- [--json] [key=value ...]",
                                     description="Store agent runs from JSONL (agent_runs records with role and model): "
                                                 "every line is checked first, then all are stored or none.")
    parser.add_argument("file", help="a JSONL file, or - for standard input")
    parser.add_argument("--json", action="store_true", help="print the ids and the mean reward as JSON")
    args, overrides = settings(parser, argv)
    cfg = config(overrides)
    weights = OmegaConf.to_container(cfg.reward_weights)
    name = "standard input" if args.file == "-" else args.file
    if args.file == "-":
        lines = sys.stdin.read().splitlines()
    else:
        try:
            lines = Path(args.file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ForgeError(f"learn record: cannot read {args.file} ({e.__class__.__name__}: {e}); give a JSONL file or -") from None
    runs, lines_of = [], {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"line {number} of {name}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ForgeError(f"{where}: not JSON ({e.msg}, column {e.colno}); nothing was recorded") from None
        run = parse(record, weights, where)
        if run.id in lines_of:
            raise ForgeError(f"{where}: id {run.id!r} is also on line {lines_of[run.id]}; give each run its own id; nothing was recorded")
        lines_of[run.id] = number
        runs.append(run)
    from forge.learn.learner import Learner

    with Learner(Path("."), overrides) as learner:
        ids, store = learner.add(runs), learner.store
    mean = sum(r.reward for r in runs) / len(runs) if runs else None
    if args.json:
        print(json.dumps({"recorded": len(ids), "mean_reward": mean, "ids": ids, "store": store.url}))
    elif runs:
        print(f"recorded {len(ids)} run{'s' if len(ids) != 1 else ''} in {store.url}, mean reward {mean:.4g}")
    else:
        print(f"no runs in {name}; nothing recorded")


def _status(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="forge learn status", usage="forge learn status [--json] [key=value ...]",
                                     description="Runs per role, model, version and prompt variant: mean reward, pass rate, "
                                                 "cost, how many are exported and used by a deployed version; "
                                                 "and the input watch's windows.")
    parser.add_argument("--json", action="store_true")
    args, overrides = settings(parser, argv)
    cfg = config(overrides)
    with open_store(cfg) as store:
        stats = store.stats()
        total, exported, used = store.count(), store.count(exported=True), store.count(used=True)
        inputs = _input_watch(cfg, store)
    if args.json:
        print(json.dumps({"store": store.url, "runs": total, "exported": exported, "used": used,
                          "groups": [asdict(s) for s in stats], "inputs": inputs}, indent=2))
        return
    print(f"{total} runs in {store.url}: {exported} exported, {used} used by a deployed version")
    if stats:
        header = ("role", "model", "version", "prompt", "runs", "reward", "pass", "cost", "exported", "used")
        rows = [(s.role, s.model, s.version or "-", s.prompt_variant or "-", str(s.runs), f"{s.mean_reward:.3f}",
                 "-" if s.pass_rate is None else f"{s.pass_rate:.0%}", "-" if s.cost is None else f"{s.cost:.4g}",
                 str(s.exported), str(s.used)) for s in stats]
        _table(header, rows)
    if not inputs["enabled"]:
        print("input watch: off (watch.inputs.enabled=false)")
        return
    print(f"input watch: {inputs['runs']} runs watched by the loop's passes (window {inputs['window']}, alpha {inputs['alpha']:g})")
    for feature, line in inputs["features"].items():
        print(f"  {feature}: {line}")


def _input_watch(cfg: "DictConfig", store: "Store") -> dict:
    """The input watch's settings and windows, as the loop last saved them."""
    from forge.learn.inputs import STATE, InputWatch

    chosen = cfg.watch.inputs
    watch = InputWatch.restore(store.get_state(STATE), chosen.window, chosen.alpha)
    return {"enabled": chosen.enabled, "window": watch.window, "alpha": watch.alpha, "runs": watch.seen,
            "features": watch.summary()}


def _history(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="forge learn history", usage="forge learn history [--limit N] [--action A] [--json] [key=value ...]",
                                     description="The audit log of the loop's actions, newest first, each with its reason.")
    parser.add_argument("--limit", type=int, default=20, help="show this many entries (default 20)")
    parser.add_argument("--action", help="only this action (export, train, gate, deploy, rollback, inputs ...)")
    parser.add_argument("--json", action="store_true")
    args, overrides = settings(parser, argv)
    if args.limit < 1:
        raise ConfigError(f"forge learn history: --limit {args.limit}: give at least 1")
    with open_store(config(overrides)) as store:
        entries = store.actions(limit=args.limit, action=args.action)
    if args.json:
        print(json.dumps([asdict(a) for a in entries], indent=2))
        return
    if not entries:
        print(f"no actions in {store.url} yet")
        return
    _table(("time", "action", "status", "reason"), [(a.time[:19].replace("T", " "), a.action, a.status, a.reason) for a in entries])


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _step(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="forge learn step", usage="forge learn step [key=value ...]",
                                     description="One pass of the loop: watch and roll back, export, train, register, gate, deploy; "
                                                 "each action is logged with its reason (forge learn history).")
    _, overrides = settings(parser, argv)
    from forge.learn.learner import Learner

    with Learner(Path("."), overrides) as learner:
        taken = learner.step()
        print("\n".join(taken) if taken else f"nothing to do: {_waiting(learner)}")


def _watch(argv: list[str]) -> None:
    import signal
    import time

    parser = argparse.ArgumentParser(prog="forge learn watch", usage="forge learn watch [--steps N] [key=value ...]",
                                     description="A pass of the loop every interval_s seconds until stopped (Ctrl-C, SIGTERM).")
    parser.add_argument("--steps", type=int, help="stop after this many passes")
    args, overrides = settings(parser, argv)
    from forge.learn.learner import Learner

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    with Learner(Path("."), overrides) as learner:
        done = 0
        try:
            while not stopping and (args.steps is None or done < args.steps):
                for line in learner.step():
                    print(line, flush=True)
                done += 1
                deadline = time.monotonic() + learner.cfg.interval_s
                while not stopping and (args.steps is None or done < args.steps) and time.monotonic() < deadline:
                    time.sleep(min(1.0, deadline - time.monotonic()))
        except KeyboardInterrupt:
            pass
    print(f"stopped after {done} pass{'es' if done != 1 else ''}")


def _waiting(learner: "Learner") -> str:
    """What the loop waits for, in numbers."""
    from forge.learn.loop import Loop

    cfg, store = learner.cfg, learner.store
    state = Loop(cfg, store, learner.project).state()
    if state["training"]:
        return f"run {Path(state['training']['run']).name} is training"
    good = store.count(exported=False, heldout=False, min_reward=cfg.export.min_reward)
    fresh = sum(e.count for e in store.exports() if e.id not in state["used_exports"])
    return (f"{good} good runs not exported (export at {cfg.export.min_runs}), {fresh} exported examples not used "
            f"(train at {cfg.train.min_examples})")


SUBCOMMANDS: dict[str, Callable[[list[str]], None]] = {"record": _record, "status": _status, "history": _history, "step": _step,
                                                        "watch": _watch}
