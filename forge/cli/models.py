"""`forge models`: register a run's exported model as a version, list versions and their stages,
assign a version to a stage, and roll a stage back (forge.registry: GTO tags, DVC-tracked files)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from forge.errors import ForgeError

ACTIONS = ("register", "ls", "versions", "test", "deploy", "rollback", "serve")
SHOWN_METRICS = 4  # metrics per version in the tables (--json has all)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ACTIONS:
        raise ForgeError(f"models: give an action: {', '.join(ACTIONS)} (forge models ACTION --help)")
    {"register": _register, "ls": _ls, "versions": _versions, "test": _test, "deploy": _deploy, "rollback": _rollback,
     "serve": _serve}[argv[0]](argv[1:])


def _parser(action: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"forge models {action}")


def _register(argv: list[str]) -> None:
    from forge.registry import register

    parser = _parser("register")
    parser.add_argument("run", help="a run directory, or a run's name (forge runs ls)")
    parser.add_argument("--name", required=True, help="the model's name: versions are NAME@vX.Y.Z")
    args = parser.parse_args(argv)
    spec = register(_run(args.run), args.name)
    print(spec)
    print(f"registered: share it with `git push --tags && dvc push`; deploy with `forge models deploy {spec} --stage prod`")


def _run(name: str) -> Path:
    """A run given as a path, or by name under the project's run folders."""
    path = Path(name)
    if path.is_dir() or len(path.parts) > 1:
        return path
    from forge.runs.listing import default_roots, resolve

    return resolve(name, default_roots())


def _ls(argv: list[str]) -> None:
    from forge.registry import Repo, assigned, names, versions
    from forge.serving import status

    parser = _parser("ls")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    repo = Repo()
    rows = []
    for name in names(repo):
        found = versions(repo, name)
        latest = found[-1] if found else {}
        servers = [{k: r[k] for k in ("stage", "version", "url", "model", "pid", "alive")} for r in status(repo, name)]
        rows.append({"name": name, "latest": latest.get("version"), "versions": len(found), "stages": assigned(repo, name),
                     "metrics": latest.get("metrics", {}), "servers": servers})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("no models registered; forge models register RUN --name NAME")
        return
    print(f"{'name':<20} {'latest':<10} {'versions':>8}  {'stages':<24} metrics of latest")
    for r in rows:
        stages = ", ".join(f"{s}={v}" for s, v in sorted(r["stages"].items())) or "-"
        print(f"{r['name']:<20} {r['latest']:<10} {r['versions']:>8}  {stages:<24} {_metrics(r['metrics'])}")
        for server in r["servers"]:
            state = "up" if server["alive"] else "down (forge models serve NAME --stage STAGE starts it)"
            print(f"{'':<20} {server['stage']} server {server['url']} model {server['model']!r} {server['version']}: {state}")


def _versions(argv: list[str]) -> None:
    from forge.registry import Repo, history, used_data, versions

    parser = _parser("versions")
    parser.add_argument("name")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    repo = Repo()
    found, moves = versions(repo, args.name), history(repo, args.name)
    if args.json:
        print(json.dumps({"name": args.name, "versions": found, "history": moves, "used_data": used_data(repo, args.name)}, indent=2))
        return
    print(f"{'version':<10} {'registered':<26} {'stages':<14} {'data':<14} metrics")
    for v in found:
        print(f"{v['version']:<10} {v['registered']:<26} {', '.join(v['stages']) or '-':<14} "
              f"{(v['data_fingerprint'] or '-')[:12]:<14} {_metrics(v['metrics'])}")
        print(f"{'':<10} run {v['run']}")
    print("history:" if moves else "history: no stage assigned yet")
    for m in moves:
        print(f"  {m['time']}  {m['stage']:<10} {m['version'] or '(unassigned)':<10} {m['tag']}")


def _serving_options(parser: argparse.ArgumentParser, moves: bool = True) -> None:
    from forge.serving import HOST, PORT

    if moves:
        parser.add_argument("--no-serve", action="store_true", help="only assign the stage; start no server")
        parser.add_argument("--ollama", action="store_true", help="also build the Ollama model NAME:STAGE from the version's GGUF")
    parser.add_argument("--host", default=HOST, help=f"the server's address (default {HOST}, loopback)")
    parser.add_argument("--port", type=int, help=f"the server's port (default: the stage server's port, else {PORT})")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the server's first answer")


def _deploy(argv: list[str]) -> None:
    from forge import registry, serving

    parser = _parser("deploy")
    parser.add_argument("spec", metavar="NAME@vX.Y.Z")
    parser.add_argument("--stage", required=True, help="the stage to assign, e.g. prod")
    _serving_options(parser)
    args = parser.parse_args(argv)
    name = args.spec.split("@")[0]
    if args.no_serve:
        before, version = registry.deploy(args.spec, args.stage)
        served = None
    else:
        before, version, served = serving.deploy(args.spec, args.stage, args.host, args.port, args.timeout, args.ollama)
    if before == version:
        print(f"{name} {version} is already in {args.stage}; the stage did not move")
    else:
        print(f"{name} {version} -> {args.stage}" + (f" (was {before}; forge models rollback {name} --stage {args.stage} undoes it)" if before else ""))
    data = next(v for v in registry.versions(registry.Repo(), name) if v["version"] == version)["training_data"] or {}
    if data.get("files"):
        print(f"its training data is marked used: {len(data['files'])} file(s), {data.get('examples')} examples "
              f"(forge models versions {name} --json lists them under used_data)")
    _print_served(served)


def _rollback(argv: list[str]) -> None:
    from forge import registry, serving

    parser = _parser("rollback")
    parser.add_argument("name")
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--to", metavar="vX.Y.Z", help="the version to go back to (default: the one assigned before the current)")
    _serving_options(parser)
    args = parser.parse_args(argv)
    if args.no_serve:
        before, after = registry.rollback(args.name, args.stage, args.to)
        served = None
    else:
        before, after, served = serving.rollback(args.name, args.stage, args.to, args.host, args.port, args.timeout, args.ollama)
    print(f"{args.name} {args.stage}: {before} -> {after}")
    _print_served(served)


def _serve(argv: list[str]) -> None:
    """Start (again) the server of a stage's current version, or stop it."""
    from forge import serving

    parser = _parser("serve")
    parser.add_argument("name")
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--stop", action="store_true", help="stop the stage's server")
    _serving_options(parser, moves=False)
    args = parser.parse_args(argv)
    if args.stop:
        stopped = serving.shutdown(args.name, args.stage)
        print(f"stopped the server of {args.name} {args.stage} ({stopped['version']}, {stopped['url']})" if stopped
              else f"no server of {args.name} {args.stage} is running")
        return
    _print_served(serving.serve(args.name, args.stage, args.host, args.port, args.timeout))


def _print_served(served: Optional[dict[str, Any]]) -> None:
    if served:
        print(f"serving {served['version']} at {served['url']} as model {served['model']!r} (pid {served['pid']}); "
              f"it answered a chat request: {served['reply']!r}")


def _metrics(metrics: dict[str, Any]) -> str:
    shown = sorted(metrics.items())[:SHOWN_METRICS]
    more = len(metrics) - len(shown)
    return "  ".join(f"{k}={v:.4g}" for k, v in shown) + (f"  (+{more})" if more > 0 else "") if metrics else "-"


def _test(argv: list[str]) -> None:
    """A version against another (or its own base model) on the same held-out items (forge.gate)."""
    from forge import registry
    from forge.compare import format_table
    from forge.gate import test_version

    parser = _parser("test")
    parser.add_argument("spec", help="NAME@vX.Y.Z")
    parser.add_argument("--against", default="base", help="NAME@vX.Y.Z, or base: the model it was fine-tuned from (default)")
    parser.add_argument("--alpha", type=float, default=0.05, help="the paired tests' level (default 0.05)")
    parser.add_argument("--margin", type=float, default=0.0, help="the least gain that recommends deploying (default 0)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 0 < args.alpha < 1:
        parser.error(f"--alpha must be between 0 and 1, not {args.alpha:g}")
    if args.margin < 0:
        parser.error(f"--margin must be 0 or more, not {args.margin:g}")
    verdict = test_version(registry.Repo(), args.spec, args.against, args.alpha, args.margin)
    if args.json:
        print(json.dumps(verdict.to_dict(), indent=2))
        return
    shown = verdict.to_dict()
    print(f"held-out loss: {args.spec} {verdict.loss}, {args.against} {verdict.against_loss}")
    print(f"held-out perplexity: {args.spec} {_number(shown['test/perplexity'])}, {args.against} {_number(shown['against/test/perplexity'])}")
    for key, c in verdict.comparisons.items():
        print(f"\n{key}{' (decides)' if key == verdict.decided_by else ''}:")
        print(format_table(c, (args.against, args.spec)))
    print(verdict.recommendation)


def _number(value: Optional[float]) -> str:
    return f"{value:.4g}" if value is not None else "-"
