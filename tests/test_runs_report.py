"""`forge runs report`: one HTML page that needs no network: runs, overlaid curves as embedded
PNGs, metrics side by side."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from conftest import run_forge


def fake_run(root: Path, name: str, losses: list[float], exact: float) -> Path:
    run = root / name
    (run / "csv").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "finished", "stages_done": ["prepare", "train"], "stage": None,
                                              "started": f"2026-11-30T10:00:0{len(name)}+00:00", "ended": None, "pid": 1, "host": "h"}))
    (run / "metrics.json").write_text(json.dumps({"test/exact_match": exact}))
    (run / "command.txt").write_text("forge +recipe=quickstart\n")
    (run / "csv" / "metrics.csv").write_text("epoch,step,train/loss\r\n" + "".join(f"0,{10 * i},{v}\r\n" for i, v in enumerate(losses)))
    return run


def test_the_report_is_one_self_contained_page(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    fake_run(root, "a", [2.0, 1.5, 1.0], 0.5)
    fake_run(root, "bb", [2.2, 1.2, 0.8, 0.6], 0.75)
    proc = run_forge("runs", "report", "--root", str(root), "-o", str(tmp_path / "report.html"), cwd=tmp_path)
    assert proc.stdout.strip() == f"{tmp_path / 'report.html'}: 2 run(s)"
    page = (tmp_path / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page, "nothing to fetch: it renders offline"
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert [name for name, _ in images] == ["train/loss"] and base64.b64decode(images[0][1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "<td>test/exact_match</td><td>0.75</td><td>0.5</td>" in page, "metrics side by side, newest run first"
    missing = run_forge("runs", "report", "--root", str(tmp_path / "none"), cwd=tmp_path, check=False)
    assert missing.returncode == 1 and missing.stderr.strip() == f"forge: error: runs report: no runs under {tmp_path / 'none'}"
