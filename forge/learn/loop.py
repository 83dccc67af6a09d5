"""One pass of the learning loop (`forge learn step`; `forge learn watch` repeats it).

Each threshold is checked in turn, and each action it takes is written to the audit log with
its reason:

1. watch: the deployed version's rewards against the previous version's (the share of runs kept
   on it), and a drift detector on its reward stream; a significant drop or a detected drift
   rolls the stage back (`forge models rollback`); and a watch on the features of the runs
   recorded since the last pass (forge.learn.inputs), which reports a change of the incoming work;
2. export: enough good runs not exported yet become a DVC-tracked agent_runs file;
3. train: enough exported examples no deployed version used (or a time / reward trigger) start a
   run of the configured recipe on them (`forge runs start`); with `update: incremental`, the
   run continues the deployed adapter on one file of the new examples and a rehearsal share of
   earlier ones;
4. register: the finished run's model becomes the candidate version (`forge models register`);
5. gate and deploy: the candidate against the deployed version (or the base model) on held-out
   items (forge.gate); deployed only when better (`forge models deploy`), and its examples are
   marked used. An incremental candidate must also not be worse than the deployed version on
   earlier rounds' examples (forge.learn.retention).

The loop's own state (the run in training, the candidate, what is deployed and what was before)
is a JSON blob in the store. Every action either is idempotent or first looks at what a killed
predecessor left, so a step killed at any point leaves the store, the registry and the served
model consistent, and the next step finishes or undoes the action: a rollback or deploy killed
before its tag is checked and done again; one killed after its tag is adopted from the registry;
a registration is found by its run; an export file the store never recorded is removed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf

from forge import registry, serving
from forge.compare import A_BETTER
from forge.errors import ForgeError
from forge.gate import test_version
from forge.learn import export
from forge.learn.config import incremental, start_from
from forge.learn.drift import RewardWatch, compare_versions
from forge.learn.inputs import STATE as INPUTS
from forge.learn.inputs import InputWatch
from forge.learn.records import now
from forge.learn.store import Export, Store
from forge.run_dir import read_json
from forge.runs.launch import LAUNCH_FILE, RUNS_DIR
from forge.runs.listing import describe

STATE = "loop"
WATCH = "watch"


class Loop:
    def __init__(self, cfg: DictConfig, store: Store, project: Path = Path(".")) -> None:
        self.cfg, self.store, self.project = cfg, store, project.resolve()
        self.name, self.stage = cfg.deploy.model, cfg.deploy.stage
        self.previous_stage = f"{self.stage}-previous"  # a server only (no registry stage): the watched share's version

    def endpoints(self) -> list[dict[str, str]]:
        """The deployed version's server, then (while a new version is watched) the previous one's;
        before the loop's first pass, the version the registry has in the stage."""
        repo, out = self._repo(), []
        deployed = self.state()["deployed"]
        if deployed is None:
            current = registry.current(repo, self.name, self.stage) if self.name in registry.names(repo) else None
            deployed = {"version": current, "previous": None}
        for stage, version in ((self.stage, deployed["version"]), (self.previous_stage, deployed.get("previous"))):
            record = serving.Stage(repo, self.name, stage).record() if version else None
            if record and record["alive"] and record["version"] == version:
                out.append({"version": version, "url": record["url"]})
        return out

    def step(self) -> list[str]:
        """One pass; the actions taken, as their audit-log lines."""
        taken = []
        for action in (self._reconcile, self._watch, self._inputs, self._export, self._train, self._register, self._gate):
            line = action()
            if line:
                taken.append(line)
        return taken

    # --- state ---

    def state(self) -> dict[str, Any]:
        blob = self.store.get_state(STATE)
        return json.loads(blob) if blob else {"training": None, "candidate": None, "deployed": None, "used_exports": [], "tried_exports": []}

    def _save(self, state: dict[str, Any], action: str, status: str, reason: str, details: Optional[dict[str, Any]] = None,
              also: Optional[Callable[[], Any]] = None) -> str:
        """The new state, the audit entry and any other store change, in one transaction."""
        with self.store.transaction():
            if also is not None:
                also()
            self.store.put_state(STATE, json.dumps(state, sort_keys=True).encode())
            self.store.log(action, status, reason, details)
        return f"{action} {status}: {reason}"

    def _repo(self) -> registry.Repo:
        return registry.Repo(self.project)

    # --- 0. what a killed step left ---

    def _reconcile(self) -> Optional[str]:
        """Adopt what the registry says is deployed: a stage move made after the step that asked
        for it was killed, or a version deployed by hand before the loop ran."""
        state = self.state()
        deployed = state["deployed"]
        try:
            repo = self._repo()
            current = registry.current(repo, self.name, self.stage) if self.name in registry.names(repo) else None
        except ForgeError:
            return None
        if current is None or (deployed is not None and current == deployed["version"]):
            return None
        if deployed is None:
            state["deployed"] = {"version": current, "previous": None, "since": now()}
            return self._save(state, "reconcile", "done", f"{self.name} {current} is in {self.stage}: the loop starts from it")
        if state["candidate"] and state["candidate"]["version"] == current:
            return None  # a deploy the gate step finishes
        rolled_back = current == deployed.get("previous")
        state["deployed"] = {"version": current, "previous": None if rolled_back else deployed["version"], "since": now()}
        return self._save(state, "reconcile", "done", f"the registry has {self.name} {current} in {self.stage}; the loop follows it")

    # --- 1. watch and roll back ---

    def _watch(self) -> Optional[str]:
        state = self.state()
        deployed = state["deployed"]
        if not self.cfg.watch.enabled or deployed is None or not deployed.get("previous"):
            return None
        version, previous, since = deployed["version"], deployed["previous"], deployed["since"]
        new = self.store.runs(model=self.name, version=version, since=since, heldout=False)
        old = self.store.runs(model=self.name, version=previous, since=since, heldout=False)
        blob = self.store.get_state(WATCH)
        watch = RewardWatch.loads(blob) if blob else RewardWatch(self.cfg.watch.detector, self.cfg.watch.delta)
        key = f"{self.name}@{version}"
        seen = watch.count(key)
        drifted = any([watch.update(key, r.reward) for r in new[seen:]])
        self.store.put_state(WATCH, watch.dumps())
        reason = None
        if drifted:
            reason = f"drift in {key}'s reward ({self.cfg.watch.detector}; mean {watch.mean(key):.3f} over {watch.count(key)} runs)"
        elif len(new) >= self.cfg.watch.min_runs and len(old) >= self.cfg.watch.min_runs:
            test = compare_versions([r.reward for r in new], [r.reward for r in old], self.cfg.watch.alpha)
            if test.dropped:
                reason = (f"{version}'s reward {test.means[0]:.3f} is below {previous}'s {test.means[1]:.3f} over the same window "
                          f"({len(new)} and {len(old)} runs, one-sided p={test.p:.3g} < {self.cfg.watch.alpha:g})")
        if reason is None:
            return None
        before, after, _ = serving.rollback(self.name, self.stage, to=previous, port=self.cfg.deploy.port, cwd=self.project)
        serving.shutdown(self.name, self.previous_stage, cwd=self.project)
        state["deployed"] = {"version": after, "previous": None, "since": now()}
        return self._save(state, "rollback", "done", f"{self.name} {self.stage}: {before} -> {after}: {reason}",
                          {"from": before, "to": after})

    def _inputs(self) -> Optional[str]:
        """The input watch over the runs recorded since its last pass, in time order (held-out runs
        are the loop's evaluation, and runs dated before the last one watched are back-filled
        history: neither is incoming work); a change is logged, nothing else is done. One
        transaction, so two passes at once never watch a run twice."""
        cfg = self.cfg.watch.inputs
        if not cfg.enabled:
            return None
        with self.store.transaction():
            watch = InputWatch.restore(self.store.get_state(INPUTS), cfg.window, cfg.alpha)
            since = watch.last[0] if watch.last else None
            new = [r for r in self.store.runs(since=since, heldout=False) if watch.last is None or (r.time, r.id) > watch.last]
            if not new:
                return None
            shifts = [shift for run in new for shift in watch.update(run)]
            self.store.put_state(INPUTS, watch.dumps())
            lines = []
            for shift in shifts:
                reason = shift.reason()
                self.store.log("inputs", "changed", reason, shift._asdict())
                lines.append(f"inputs changed: {reason}")
        return "\n".join(lines) or None

    # --- 2. export ---

    def _export(self) -> Optional[str]:
        cfg = self.cfg.export
        folder = self.project / cfg.dir
        known = {Path(e.path).name for e in self.store.exports()}
        for orphan in export.orphans(folder, known):  # written by a step killed before the store recorded it
            orphan.unlink()
            orphan.with_name(orphan.name + ".dvc").unlink(missing_ok=True)
        if not cfg.enabled:
            return None
        good = self.store.runs(exported=False, heldout=False, min_reward=cfg.min_reward)
        if len(good) < cfg.min_runs:
            return None
        held = self.store.runs(heldout=True)
        evaluation = {r.task for r in held} | {r.task_id for r in held if r.task_id}
        chosen = export.select(good, evaluation, self.store.runs(exported=True))
        if len(chosen.runs) < cfg.min_runs:
            return None
        path, digest = export.write(chosen.runs, folder, self._dvc_project())
        record = Export(path=str(path.relative_to(self.project)), sha256=digest, count=len(chosen.runs))
        left_out = ", ".join(f"{n} {k}" for k, n in sorted(chosen.left_out.items())) or "none"
        state = self.state()
        return self._save(state, "export", "done", f"{len(chosen.runs)} runs with reward >= {cfg.min_reward:g} to {record.path} "
                          f"(left out: {left_out})", {"export": record.id, "runs": len(chosen.runs), "left_out": dict(chosen.left_out)},
                          also=lambda: self.store.mark_exported([r.id for r in chosen.runs], record))

    def _dvc_project(self) -> Optional[Path]:
        return next((d for d in [self.project, *self.project.parents] if (d / ".dvc").is_dir()), None)

    # --- 3. train ---

    def _train(self) -> Optional[str]:
        state = self.state()
        training = state["training"]
        if training is not None and training["run"] is None:  # a start killed before the loop recorded its run
            found = self._started(training)
            if found is None:
                state["training"] = None
                state["tried_exports"] = [e for e in state.get("tried_exports", []) if e not in training["exports"]]
                return self._save(state, "train", "undone", "a start was interrupted before its run began; the next pass starts it again")
            training["run"] = str(found)
            return self._save(state, "train", "started", f"run {found.name} (its start was interrupted after the run began)",
                              {"run": str(found)})
        if not self.cfg.train.enabled or training or state["candidate"]:
            return None
        fresh = [e for e in self.store.exports() if e.id not in state["used_exports"]]
        examples = sum(e.count for e in fresh if e.id not in state.get("tried_exports", []))  # new since the last attempt
        trigger = self._trigger(state)
        if not fresh or (examples < self.cfg.train.min_examples and trigger is None):
            return None
        why = trigger or f"{examples} new examples >= {self.cfg.train.min_examples}"
        state["tried_exports"] = [e.id for e in fresh]
        sources, rehearsal = self._training_data(fresh, state)
        state["training"] = {"run": None, "exports": [e.id for e in fresh], "sources": sources, "started": now(), **rehearsal}
        self.store.put_state(STATE, json.dumps(state, sort_keys=True).encode())  # the intent first: a kill now is found above
        started = self._start_run(sources)
        state["training"]["run"] = str(self.project / started["run_dir"])  # the project's: the loop may run from elsewhere
        return self._save(state, "train", "started", f"run {started['run']} on {len(fresh)} export(s) ({why}){_rehearsed(rehearsal)}",
                          {"run": state["training"]["run"], "estimate": started.get("estimate_text"), **rehearsal})

    def _started(self, training: dict[str, Any]) -> Optional[Path]:
        """The run an interrupted start began: launched with these data sources, after the intent."""
        root = self.project / RUNS_DIR
        wanted = f"data.sources={training['sources']}"
        for run in sorted(root.iterdir(), reverse=True) if root.is_dir() else []:
            launch = read_json(run / LAUNCH_FILE) or {}
            if wanted in launch.get("argv", []) and _time(launch.get("started")) >= _time(training["started"]).replace(microsecond=0):
                return run
        return None

    def _trigger(self, state: dict[str, Any]) -> Optional[str]:
        """A time- or reward-based reason to train before the examples threshold."""
        deployed, cfg = state["deployed"], self.cfg.retrain
        if deployed is None:
            return None
        since = _time(deployed["since"])
        if cfg.after_days is not None and datetime.now(timezone.utc) - since >= timedelta(days=cfg.after_days):
            return f"{cfg.after_days:g} days since {deployed['version']} was deployed"
        if cfg.reward_drop is not None:
            rewards = [r.reward for r in self.store.runs(model=self.name, version=deployed["version"], heldout=False)]
            n = self.cfg.watch.min_runs
            if len(rewards) >= 2 * n:
                first, last = sum(rewards[:n]) / n, sum(rewards[-n:]) / n
                if first > 0 and (first - last) / first > cfg.reward_drop:
                    return f"{deployed['version']}'s mean reward fell from {first:.3f} to {last:.3f} (more than {cfg.reward_drop:.0%})"
        return None

    def _sources(self, exports: list[Export]) -> str:
        weights = OmegaConf.to_container(self.cfg.reward_weights)
        return _override([{"format": "agent_runs", "path": str(self.project / e.path), "reward_weights": weights} for e in exports])

    def _start_run(self, sources: str) -> dict[str, Any]:
        recipe = [f"+recipe={self.cfg.train.recipe}"] if self.cfg.train.recipe else []
        argv = [sys.executable, "-m", "forge", "runs", "start", "--yes", "--json", *recipe, *self.cfg.train.overrides,
                f"data.sources={sources}", *self._start_from()]
        done = subprocess.run(argv, cwd=self.project, capture_output=True, text=True)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise ForgeError(f"learn train: forge runs start failed: {lines[-1] if lines else f'exit code {done.returncode}'}")
        return json.loads(done.stdout)

    def _start_from(self) -> list[str]:
        """`train.start_from: deployed` (or `update: incremental`): continue the deployed version's
        adapter (its files out of DVC); the first round, with nothing deployed, starts from the base.
        The run is a new one, so its optimizer and learning-rate schedule start afresh: an
        incremental round warms the rate up again over `incremental.rewarm_steps` when set."""
        deployed = self.state()["deployed"]
        if start_from(self.cfg) != "deployed" or deployed is None:
            return []
        adapter = serving.checkout(self._repo(), self.name, deployed["version"]) / "adapter"
        if not (adapter / "adapter_config.json").is_file():
            asked = "update=incremental" if self.cfg.train.start_from is None else "train.start_from=deployed"
            raise ForgeError(f"learn train: {asked}, but {self.name}@{deployed['version']} has no adapter to continue; "
                             "export adapters (export.outputs with adapter) or use update=retrain with train.start_from=base")
        rewarm = self.cfg.incremental.rewarm_steps if incremental(self.cfg) else None
        return [f"peft.init_from={_override(str(adapter))}", *([f"optim.warmup_steps={rewarm}"] if rewarm is not None else [])]

    def _training_data(self, fresh: list[Export], state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The round's data sources and, for an incremental round, what it rehearses: one file of
        the new examples plus `incremental.rehearsal` x as many drawn from the exports earlier
        deployed rounds used, recorded in the state and the audit log."""
        if not incremental(self.cfg):
            return self._sources(fresh), {}
        inc = self.cfg.incremental
        new = export.read(self.project / e.path for e in fresh)
        mix = export.rehearsal_mix(new, self._earlier(state), inc.rehearsal, inc.seed)
        path = export.write_round(mix, self.project / self.cfg.export.dir, self._dvc_project())
        weights = OmegaConf.to_container(self.cfg.reward_weights)
        sources = _override([{"format": "agent_runs", "path": str(path), "reward_weights": weights}])
        return sources, {"rehearsal": {"file": str(path.relative_to(self.project)), "new": len(new), "drawn": len(mix.drawn),
                                       "pool": mix.pool, "share": inc.rehearsal, "seed": inc.seed, "ids": mix.drawn}}

    def _earlier(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """The examples of the exports that deployed versions were trained on."""
        used = set(state["used_exports"])
        return export.read(self.project / e.path for e in self.store.exports() if e.id in used)

    # --- 4. register the finished run ---

    def _register(self) -> Optional[str]:
        state = self.state()
        training = state["training"]
        if training is None:
            return None
        run = Path(training["run"])
        info = describe(run)
        status = info["status"]
        if status in ("running", "starting"):
            return None
        state["training"] = None
        if status != "finished":
            error = (info.get("error") or "no error recorded").splitlines()[0]
            return self._save(state, "train", "failed", f"run {run.name} ended {status}: {error}", {"run": str(run)})
        repo = self._repo()
        where = str(run.resolve().relative_to(repo.git)) if run.resolve().is_relative_to(repo.git) else str(run.resolve())
        known = registry.names(repo)
        found = next((v["version"] for v in registry.versions(repo, self.name) if v["run"] == where), None) if self.name in known else None
        spec = f"{self.name}@{found}" if found else registry.register(run, self.name, self.project)
        state["candidate"] = {"version": spec.split("@")[1], "run": str(run), "exports": training["exports"]}
        return self._save(state, "register", "done", f"run {run.name} is {spec}", {"version": spec})

    # --- 5. gate and deploy ---

    def _gate(self) -> Optional[str]:
        state = self.state()
        candidate = state["candidate"]
        if candidate is None:
            return None
        spec, repo = f"{self.name}@{candidate['version']}", self._repo()
        if registry.current(repo, self.name, self.stage) == candidate["version"]:
            return self._deployed(state, spec, "its deploy was made by a step that did not finish")
        deployed = state["deployed"]
        against = f"{self.name}@{deployed['version']}" if deployed else "base"
        reason = "the gate is off"
        if self.cfg.gate.enabled:
            try:
                verdict = test_version(repo, spec, against, self.cfg.gate.alpha, self.cfg.gate.margin)
            except ForgeError as e:  # e.g. no per-item outcomes the two share
                state["candidate"] = None
                return self._save(state, "gate", "rejected", f"{spec} cannot be compared with {against}: {e}")
            if not verdict.deploy:
                state["candidate"] = None
                return self._save(state, "gate", "rejected", verdict.recommendation, verdict.to_dict())
            self.store.log("gate", "passed", verdict.recommendation, verdict.to_dict())
            reason = verdict.recommendation
        if not self.cfg.deploy.enabled:
            return None
        forgot = self._forgets(state, spec)
        if forgot is not None:
            state["candidate"] = None
            return self._save(state, "gate", "rejected", *forgot)
        try:
            serving.deploy(spec, self.stage, port=self.cfg.deploy.port, cwd=self.project)
        except ForgeError as e:  # the server did not answer: the stage kept its version
            state["candidate"] = None
            return self._save(state, "deploy", "failed", f"{spec}: {e}")
        if deployed and self.cfg.watch.enabled and self.cfg.watch.previous_share > 0:  # both measured in the same window
            serving.move(repo, self.name, self.previous_stage, deployed["version"], serving.HOST, self.cfg.deploy.port + 1, 600.0, False)
        return self._deployed(state, spec, reason)

    def _forgets(self, state: dict[str, Any], spec: str) -> Optional[tuple[str, dict[str, Any]]]:
        """An incremental candidate against the deployed version on earlier rounds' examples (up
        to `incremental.earlier_examples`, drawn seeded): the reason and details to reject it when
        it is worse there by the gate's test (or cannot be scored), else None."""
        deployed, inc = state["deployed"], self.cfg.incremental
        if not incremental(self.cfg) or deployed is None or inc.earlier_examples == 0:
            return None
        examples = export.draw(self._earlier(state), inc.earlier_examples, f"{inc.seed}:earlier")
        if not examples:
            return None
        from forge.learn.retention import compare_on_earlier  # loads models: only an incremental gate needs it

        against, repo = f"{self.name}@{deployed['version']}", self._repo()
        try:
            found = next((v for v in registry.versions(repo, self.name) if v["version"] == deployed["version"]), None)
            if found is None:
                raise ForgeError(f"{against} is not a registered version")
            c = compare_on_earlier(examples, repo.git / found["run"], Path(state["candidate"]["run"]),
                                   OmegaConf.to_container(self.cfg.reward_weights), self.cfg.gate.alpha)
        except ForgeError as e:
            return f"{spec} cannot be checked against {against} on the earlier tasks: {e}", {}
        scores = (f"loss {c.b_mean:.4g} vs {c.a_mean:.4g} on {c.n} earlier examples, p={c.p_value:.3g}, "
                  f"minimum detectable effect {c.mde:.3g}")
        details = {"candidate": spec, "against": against, "earlier_examples": len(examples), "comparison": c.to_dict()}
        if c.verdict == A_BETTER:
            return (f"do not deploy: {spec} is worse than {against} on the earlier tasks ({scores}); {against} stays in {self.stage}",
                    details)
        self.store.log("gate", "passed", f"{spec} is not worse than {against} on the earlier tasks ({scores})", details)
        return None

    def _deployed(self, state: dict[str, Any], spec: str, reason: str) -> str:
        candidate, deployed = state["candidate"], state["deployed"]
        version = candidate["version"]
        state["deployed"] = {"version": version, "previous": deployed["version"] if deployed else None, "since": now()}
        state["used_exports"] = sorted(set(state["used_exports"]) | set(candidate["exports"]))
        state["candidate"] = None
        return self._save(state, "deploy", "done", f"{spec} -> {self.stage}: {reason}", {"version": spec},
                          also=lambda: self.store.mark_used(candidate["exports"], version))


def _override(value: Any) -> str:
    """`value` in Hydra's override grammar (bare keys, quoted strings), which JSON is not."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_override(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_override(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _rehearsed(rehearsal: dict[str, Any]) -> str:
    r = rehearsal.get("rehearsal")
    return f"; rehearsing {r['drawn']} of {r['pool']} earlier examples with {r['new']} new in {r['file']}" if r else ""


def _time(text: Optional[str]) -> datetime:
    """An ISO time as a UTC datetime (the store's and the run records' forms differ); None: the epoch."""
    if not text:
        return datetime.fromtimestamp(0, timezone.utc)
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
