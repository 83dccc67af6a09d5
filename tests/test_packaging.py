"""A non-editable install carries the configs and recipes and works from any folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO, forge_env


def test_installed_copy_composes_recipes_from_another_folder(tmp_path: Path) -> None:
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(REPO)],
        capture_output=True, text=True, env=forge_env(),
    )
    assert build.returncode == 0, build.stderr
    assert (target / "forge" / "conf" / "recipe" / "quickstart.yaml").is_file()
    env = forge_env()
    env["PYTHONPATH"] = str(target)
    code = "import forge, sys; from forge.cli import main; print('FROM', forge.__file__); main(['validate', '+recipe=quickstart', 'trainer=ddp_cpu'])"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"FROM {target}" in proc.stdout and "config is valid" in proc.stdout
