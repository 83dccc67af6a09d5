"""Multirun: every point runs, a failed point is recorded and does not stop the others."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from conftest import run_forge, tiny


def test_two_point_sweep_writes_its_summary(tmp_path: Path, cache: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_forge("-m", *tiny(cache), "trainer.max_steps=5,10", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    rows = json.loads((sweep / "summary.json").read_text())
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert [r["steps"] for r in rows] == [5, 10]
    assert ["trainer.max_steps=5" in r["overrides"] for r in rows] == [True, False]
    assert all(0 <= r["test/exact_match"] <= 1 for r in rows)
    with open(sweep / "summary.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert "forge sweep" in proc.stdout


def test_a_failed_point_does_not_stop_the_sweep(tmp_path: Path, cache: Path) -> None:
    sweep = tmp_path / "sweep"
    # 32 is not divisible by 3 heads: that point fails when the model is built.
    proc = run_forge("-m", *tiny(cache), "trainer.max_steps=5", "model.n_heads=3,4", f"hydra.sweep.dir={sweep}",
                     cwd=tmp_path, check=False)
    assert proc.returncode == 1
    rows = json.loads((sweep / "summary.json").read_text())
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert "divisible" in rows[0]["error"]
    assert "1 sweep point(s) failed" in proc.stderr
