"""`forge runs`: start runs detached, see their state, list them, stop them, read their curves."""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

from forge.errors import ForgeError

ACTIONS = ("start", "status", "ls", "stop", "metrics", "report")


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ACTIONS:
        raise ForgeError(f"runs: give an action: {', '.join(ACTIONS)} (forge runs ACTION --help)")
    action, rest = argv[0], argv[1:]
    if action == "metrics":  # RUN given by name or path, the rest as `forge.runs.metrics` reads it
        from forge.runs.listing import default_roots, resolve
        from forge.runs.metrics import main as metrics

        if rest and not rest[0].startswith("-") and not Path(rest[0]).is_dir():
            rest = [str(resolve(rest[0], default_roots())), *rest[1:]]
        metrics(rest)
        return
    {"start": _start, "status": _status, "ls": _ls, "stop": _stop, "report": _report}[action](rest)


def _start(argv: list[str]) -> None:
    """Validate here (a bad config is one line, nothing started), estimate, then start detached."""
    import sys

    from forge.cli.run import _precheck
    from forge.runs.estimate import estimate, text
    from forge.runs.launch import start, submit
    from forge.runs.listing import default_roots

    parser = argparse.ArgumentParser(prog="forge runs start",
                                     usage="forge runs start [--yes] [--json] [--price-per-hour P] [--max-hours H] OVERRIDES")
    parser.add_argument("--yes", action="store_true", help="start even when the estimate is over --max-hours")
    parser.add_argument("--price-per-hour", type=float, help="the machine's price, for the cost in the estimate")
    parser.add_argument("--max-hours", type=float, default=12.0, help="ask before starting a run estimated longer than this")
    parser.add_argument("--launcher", choices=("process", "slurm", "local"), default="process",
                        help="process: a detached process here; slurm: a SLURM job (submitit); local: submitit's local executor")
    parser.add_argument("--json", action="store_true", help="print the estimate and the run as one JSON object")
    args, overrides = parser.parse_known_args(argv)
    cfg = _precheck(overrides, multirun=False)[0]
    recipe = next((o.split("=", 1)[1] for o in overrides if o.startswith("+recipe=")), None)
    found = estimate(cfg, default_roots(), recipe, args.price_per_hour)
    if not args.json:
        print(text(found), flush=True)
    if found["seconds"] is not None and found["seconds"] > args.max_hours * 3600 and not args.yes:
        if not sys.stdin.isatty() or input(f"over --max-hours {args.max_hours:g}; start anyway? [y/N] ").strip().lower() != "y":
            raise ForgeError(f"runs start: the estimate is over --max-hours {args.max_hours:g}; add --yes to start it anyway")
    run = start(overrides) if args.launcher == "process" else submit(overrides, args.launcher)
    if args.json:
        print(json.dumps({"run": run.name, "run_dir": str(run), "estimate": found, "estimate_text": text(found)}, indent=2))
        return
    print(run.name)
    print(f"started in {run}: forge runs status {run.name}", flush=True)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"forge runs {prog}")
    parser.add_argument("--root", action="append", type=Path, help="where to look for runs (default: outputs, multirun, pipeline)")
    parser.add_argument("--json", action="store_true")
    return parser


def _roots(args: argparse.Namespace) -> list[Path]:
    from forge.runs.listing import default_roots

    return args.root or default_roots()


def _status(argv: list[str]) -> None:
    from forge.runs.listing import describe, resolve
    from forge.runs.progress import progress

    parser = _parser("status")
    parser.add_argument("run")
    parser.add_argument("--watch", type=float, nargs="?", const=2.0, help="refresh every N seconds until the run ends")
    args = parser.parse_args(argv)
    run = resolve(args.run, _roots(args))
    while True:
        info = progress(run, describe(run))
        print(json.dumps(info, indent=2) if args.json else _status_text(info), flush=True)
        if not args.watch or info["status"] not in ("running", "starting"):
            return
        time.sleep(args.watch)


def _status_text(info: dict) -> str:
    lines = [f"{info['run']}: {info['status']}" + (f" (exit code {info['exit_code']})" if info["exit_code"] is not None else "")]
    if info.get("stage"):
        lines.append(f"  stage      {info['stage']} (done: {', '.join(info['stages_done']) or 'none'})")
    if info.get("step") is not None:
        lines.append(f"  step       {info['step']}" + (f" / {info['total_steps']}" if info.get("total_steps") else ""))
    if "eta_seconds" in info:
        lines.append(f"  pace       {info['steps_per_second']} steps/s since the start; ETA {info['eta_seconds']} s")
    elif info.get("steps_per_second"):
        lines.append(f"  pace       {info['steps_per_second']} steps/s (the training loop)")
    if info.get("tokens_per_second") is not None:
        lines.append(f"  tokens/s   {info['tokens_per_second']:,.1f} ({info['tokens_per_second_from']})")
    if info.get("peak_rss_mb") is not None:
        cuda = f", {info['peak_cuda_mb']:,.0f} MiB on the GPU" if info.get("peak_cuda_mb") is not None else ""
        lines.append(f"  peak mem   {info['peak_rss_mb']:,.0f} MiB resident{cuda}")
    for name, value in sorted(info.get("last", {}).items()):
        lines.append(f"  {name:<24} {value:.6g}")
    for name, value in sorted(info["metrics"].items()):
        lines.append(f"  {name:<24} {value:.6g}")
    if info.get("error"):
        lines.append(f"  error      {info['error']}")
    return "\n".join(lines)


def _ls(argv: list[str]) -> None:
    """Run directories, and without --root also the DVC experiments of the project here."""
    from forge.runs.listing import list_runs, select, since

    parser = _parser("ls")
    parser.description = "Runs under the roots, newest first; in a DVC repository (and without --root) also its DVC experiments."
    parser.add_argument("--status", choices=("starting", "running", "finished", "failed", "stopped", "died"))
    parser.add_argument("--recipe")
    parser.add_argument("--since", help="45m, 2h, 3d or an ISO date")
    parser.add_argument("--where", action="append", help="a metric condition, e.g. 'test/exact_match>0.9' (repeatable)")
    parser.add_argument("--sort-by", help="a metric, highest first")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--offset", type=int, default=0)
    args = parser.parse_args(argv)
    rows = list_runs(_roots(args), None if args.root else Path.cwd())
    rows = select(rows, args.status, args.recipe, since(args.since) if args.since else None, args.where, args.sort_by)
    page = rows[args.offset : args.offset + args.limit]
    if args.json:
        print(json.dumps(page, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} runs" + (f" (showing {args.offset + 1}-{args.offset + len(page)})" if len(page) < len(rows) else ""))
    for column in ("run", "kind", "status", "stage", "recipe", "started", args.sort_by or "test metric"):
        table.add_column(column)
    for r in page:
        metric = args.sort_by or next((k for k in sorted(r["metrics"]) if k.startswith("test/")), None)
        value = r["metrics"].get(metric) if metric else None
        table.add_row(r["run"], r["kind"], r["status"], r["stage"] or ",".join(r["stages_done"][-1:]), r["recipe"] or "",
                      r["started"] or "", "" if value is None else f"{metric}={value:.4g}" if not args.sort_by else f"{value:.4g}")
    Console().print(table)


def _stop(argv: list[str]) -> None:
    from forge.runs.launch import LAUNCH_FILE
    from forge.runs.listing import describe, resolve

    parser = _parser("stop")
    parser.add_argument("run")
    parser.add_argument("--force", action="store_true", help="SIGKILL: no checkpoint, state 'died'")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for it to end")
    args = parser.parse_args(argv)
    run = resolve(args.run, _roots(args))
    info = describe(run)
    if info["status"] not in ("running", "starting"):
        raise ForgeError(f"runs stop: {run} is {info['status']}, not running")
    pid = info["pid"] if info["status"] == "running" else json.loads((run / LAUNCH_FILE).read_text()).get("pid")
    if not pid:
        raise ForgeError(f"runs stop: {run} has not started its process yet; try again in a second")
    try:
        os.kill(pid, signal.SIGKILL if args.force else signal.SIGTERM)
    except ProcessLookupError:
        raise ForgeError(f"runs stop: the process of {run} (pid {pid}) is gone; forge runs status {run.name}") from None
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        info = describe(run)
        if info["status"] not in ("running", "starting") and (info["exit_code"] is not None or not (run / LAUNCH_FILE).exists()):
            break
        time.sleep(0.2)
    print(f"{run}: {info['status']}" + (f" (exit code {info['exit_code']})" if info["exit_code"] is not None else ""))


def _report(argv: list[str]) -> None:
    """One self-contained HTML page (no network needed) of the runs given, or the newest ones."""
    from forge import atomic
    from forge.runs.listing import describe, find_runs, resolve, select
    from forge.runs.report import build

    parser = _parser("report")
    parser.add_argument("runs", nargs="*", help="runs by name or path (default: the --last newest)")
    parser.add_argument("-o", "--output", type=Path, default=Path("report.html"))
    parser.add_argument("--last", type=int, default=5)
    parser.add_argument("--model", action="append", default=[], help="a registered model whose versions and stages to show")
    args = parser.parse_args(argv)
    roots = _roots(args)
    runs = [resolve(r, roots) for r in args.runs] or [Path(r["run"]) for r in select([describe(r) for r in find_runs(roots)])[: args.last]]
    if not runs:
        raise ForgeError(f"runs report: no runs under {', '.join(str(r) for r in roots)}")
    models = []
    if args.model:
        from forge import registry

        repo = registry.Repo()
        models = [{"name": m, "versions": registry.versions(repo, m), "history": registry.history(repo, m)} for m in args.model]
    atomic.write_text(args.output, build(runs, models))
    print(f"{args.output}: {len(runs)} run(s)")
