"""`forge runs report` rendered by a real browser with no network: a screenshot for the record.

Three tiny quickstart runs (different learning rates) are started with `forge runs start` in a
temporary project; once they end, `forge runs report` writes the page and headless Chromium
(Debian's `chromium` package) renders it from a file with networking switched off
(`--proxy-server` to a closed port, so a page that fetched anything would show it missing). The
screenshot is checked for drawn content (not a blank page) and saved as
benchmarks/results/runs_report.png, with the page itself beside it.

    python benchmarks/report_screenshot.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
TINY = ["+recipe=quickstart", "data.n_train=512", "data.n_val=64", "data.n_test=64", "data.batch_size=32", "model.d_model=32",
        "model.d_ff=64", "model.n_layers=1", "trainer.max_steps=300", "trainer.val_every_n_steps=50", "trainer.log_every_n_steps=10",
        "logger=csv"]


def forge(*args: str, cwd: Path) -> str:
    return subprocess.run([sys.executable, "-m", "forge", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def main() -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("headless Chromium is needed: sudo apt-get install chromium")
    project = Path(tempfile.mkdtemp(prefix="forge-report-"))
    try:
        runs = [forge("runs", "start", *TINY, f"optim.lr={lr}", f"cache_dir={project / 'cache'}", cwd=project).splitlines()[1]
                for lr in (3e-4, 1e-3, 3e-3)]
        for run in runs:
            while not (project / "outputs" / "runs" / run / "exit.json").exists():
                time.sleep(0.5)
        page = project / "report.html"
        forge("runs", "report", *runs, "-o", str(page), cwd=project)
        shot = project / "report.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--proxy-server=127.0.0.1:9",
                        "--window-size=900,1500", f"--screenshot={shot}", page.as_uri()], check=True, capture_output=True, timeout=120)
        colours = _distinct_colours(shot.read_bytes())
        assert colours > 8, f"the screenshot looks blank ({colours} colours)"
        shutil.copy(shot, HERE / "results" / "runs_report.png")
        shutil.copy(page, HERE / "results" / "runs_report.html")
        print(json.dumps({"runs": runs, "screenshot": "benchmarks/results/runs_report.png", "distinct_colours": colours}))
    finally:
        shutil.rmtree(project, ignore_errors=True)


def _distinct_colours(png: bytes) -> int:
    """Colours in an 8-bit RGB(A) PNG without filters undone exactly: a rough count is enough to
    tell a drawn page from a blank one."""
    data, pos = b"", 8
    while pos < len(png):
        length = int.from_bytes(png[pos : pos + 4], "big")
        kind = png[pos + 4 : pos + 8]
        if kind == b"IDAT":
            data += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(data)
    return len({raw[i : i + 3] for i in range(0, min(len(raw), 3_000_000), 3)})


if __name__ == "__main__":
    main()
