"""Cross-validation: K folds are K models on disjoint held-out parts, summarized with a mean and a
95% interval; stratified folds keep the label mix; finished folds are not run again on resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from safetensors.torch import load_file as load_tensors
from scipy.stats import t

from conftest import run_forge, run_in_process, tiny
from forge.data.folds import fold_of_each
from forge.run_state import read_state


def test_three_fold_cv_reports_mean_and_interval_of_three_models_and_resumes(tmp_path: Path, cache: Path) -> None:
    run = tmp_path / "run"
    args = [*tiny(cache), "trainer.max_steps=10", "cv.folds=3"]
    run_in_process(*args, run_dir=run)
    summary = json.loads((run / "cv.json").read_text())
    loss = summary["metrics"]["test/loss"]
    values = [json.loads((run / f"fold_{k}" / "metrics.json").read_text())["test/loss"] for k in range(3)]
    assert loss["values"] == values
    mean, std = np.mean(values), np.std(values, ddof=1)
    half = t.ppf(0.975, 2) * std / math.sqrt(3)
    assert loss["mean"] == pytest.approx(mean) and loss["std"] == pytest.approx(std)
    assert loss["ci95"] == pytest.approx([mean - half, mean + half])

    held_out = [load_file(str(run / f"fold_{k}" / "data" / "val.safetensors"))["inputs"] for k in range(3)]
    rows = [{r.tobytes() for r in part} for part in held_out]
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])
    assert sum(len(r) for r in rows) == 512 + 64  # train + val of the prepared data, dealt into 3 parts
    weights = [load_tensors(str(next((run / f"fold_{k}" / "model").glob("*.safetensors")))) for k in range(3)]
    name = next(iter(weights[0]))
    assert not any(np.array_equal(weights[i][name].numpy(), weights[j][name].numpy()) for i, j in ((0, 1), (0, 2), (1, 2)))

    assert read_state(run)["stages_done"] == ["fold_0", "fold_1", "fold_2"]
    assert [read_state(run / f"fold_{k}")["status"] for k in range(3)] == ["finished"] * 3
    fold_1 = json.loads((run / "fold_1" / "run.json").read_text())
    fold_1["status"] = "running"  # as if fold 1 had been killed before it finished
    (run / "fold_1" / "run.json").write_text(json.dumps(fold_1))
    assert read_state(run / "fold_1")["status"] == "died"
    proc = run_forge(*args, f"hydra.run.dir={run}", f"resume={run}", cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert "fold 0 of 3 already finished" in log and "fold 2 of 3 already finished" in log
    assert "fold 1 of 3" in log and "(resumed)" in log
    assert json.loads((run / "cv.json").read_text())["metrics"]["test/loss"]["values"] == values
    assert read_state(run / "fold_1")["status"] == read_state(run)["status"] == "finished"


def test_folds_are_stratified_when_every_label_has_enough_examples() -> None:
    labels = np.full((30, 4), -100)
    labels[:, 3] = np.repeat([0, 1, 2], 10)  # three classes of ten
    fold, stratified = fold_of_each(labels, 5, stratify=True, seed=0)
    assert stratified
    for k in range(5):
        assert sorted(labels[fold == k, 3].tolist()) == [0, 0, 1, 1, 2, 2]
    unique = np.arange(30).reshape(30, 1)  # every label once: nothing to stratify on
    fold, stratified = fold_of_each(unique, 5, stratify=True, seed=0)
    assert not stratified and np.bincount(fold).tolist() == [6] * 5


def test_bad_fold_settings_are_refused(tmp_path: Path) -> None:
    proc = run_forge("validate", "cv.folds=1", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "cv.folds=1" in proc.stderr
    proc = run_forge("validate", "cv.folds=3", "cv.fold=3", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "cv.fold=3" in proc.stderr
