"""Multirun: every point runs, a failed point is recorded and does not stop the others."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from conftest import run_forge, tiny
from forge.run_state import read_state


def test_two_point_sweep_writes_its_summary(tmp_path: Path, cache: Path) -> None:
    sweep = tmp_path / "sweep"
    password = "pw-" + "".join(reversed("sweep-secret-9f3a"))  # a credential given on the command line
    proc = run_forge("-m", *tiny(cache), "trainer.max_steps=5,10", f"+export.ollama.db_password={password}",
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    leaked = [f.relative_to(sweep) for f in sweep.rglob("*") if f.is_file() and password.encode() in f.read_bytes()]
    assert leaked == [] and password not in proc.stdout + proc.stderr, "multirun.yaml and every point are masked"
    rows = json.loads((sweep / "summary.json").read_text())
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert [read_state(sweep / str(job))["status"] for job in (0, 1)] == ["finished", "finished"]
    assert [r["steps"] for r in rows] == [5, 10]
    assert ["trainer.max_steps=5" in r["overrides"] for r in rows] == [True, False]
    assert all(0 <= r["test/exact_match"] <= 1 for r in rows)
    with open(sweep / "summary.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert "forge sweep" in proc.stdout


def test_a_failed_point_does_not_stop_the_sweep(tmp_path: Path, cache: Path) -> None:
    sweep = tmp_path / "sweep"
    # A learning rate of 1e9 is valid config, but its loss is NaN at the first step.
    proc = run_forge("-m", *tiny(cache), "trainer.max_steps=5", "optim.lr=1e9,3e-3", f"hydra.sweep.dir={sweep}",
                     cwd=tmp_path, check=False)
    assert proc.returncode == 1
    rows = json.loads((sweep / "summary.json").read_text())
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert "training loss is nan at step 1" in rows[0]["error"]
    state = read_state(sweep / "0")
    assert state["status"] == "failed" and state["error"] == rows[0]["error"]
    assert "1 sweep point(s) failed" in proc.stderr


def _tiny_without(cache: Path, *keys: str) -> list[str]:
    return [a for a in tiny(cache) if a.split("=", 1)[0] not in keys]


def test_optuna_search_reports_its_best_trial_and_survives_a_failed_trial(tmp_path: Path, cache: Path) -> None:
    sweep = tmp_path / "sweep"
    # n_heads=3 does not divide the width: whichever trial draws it is refused by validation in its job.
    proc = run_forge(*_tiny_without(cache, "trainer.max_steps"), "trainer.max_steps=10", "hparams_search=optuna",
                     "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.sampler.seed=2",
                     "model.n_heads=choice(3, 4)", "optim.weight_decay=0.01", "optim.lr=tag(log, interval(1e-3, 1e-2))",
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path, check=False)
    rows = json.loads((sweep / "summary.json").read_text())
    assert sorted(r["status"] for r in rows) == ["failed", "ok"], proc.stdout
    ok = next(r for r in rows if r["status"] == "ok")
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert ok["objective"] == ok["final_val_loss"] == results["best_value"]
    assert ok["optuna"] == "best" and "model.n_heads=4" in ok["overrides"]
    assert f"optuna best trial: job {ok['job']}" in proc.stdout


def test_nsga2_search_reports_the_pareto_front(tmp_path: Path, cache: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_forge(*_tiny_without(cache, "model.d_model", "model.n_layers", "trainer.max_steps"), "trainer.max_steps=10",
                     "hparams_search=nsga2", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "model.d_model=choice(16, 32)",
                     "model.n_layers=1", "optim.lr=0.003", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    rows = json.loads((sweep / "summary.json").read_text())
    assert [r["status"] for r in rows] == ["ok", "ok"]
    for r in rows:
        assert r["objective"] == [r["best_val_exact_match"], r["parameters"]]
    front = [r for r in rows if r.get("optuna") == "pareto"]
    solutions = yaml.safe_load((sweep / "optimization_results.yaml").read_text())["solutions"]
    assert len(front) == len(solutions) >= 1
    for r in front:  # nothing on the front is beaten on both objectives by another trial
        acc, size = r["objective"]
        assert not any(o["objective"][0] >= acc and o["objective"][1] <= size and o["objective"] != r["objective"] for o in rows)
    assert "Pareto front" in proc.stdout


def test_submitit_local_launcher_runs_each_point_as_a_job(tmp_path: Path, cache: Path) -> None:
    sweep = tmp_path / "sweep"
    run_forge("-m", "hydra/launcher=submitit_local", *tiny(cache), "trainer.max_steps=5,10", f"hydra.sweep.dir={sweep}",
              cwd=tmp_path)
    rows = json.loads((sweep / "summary.json").read_text())
    assert [(r["status"], r["steps"]) for r in rows] == [("ok", 5), ("ok", 10)]
    assert (sweep / ".submitit").is_dir()
