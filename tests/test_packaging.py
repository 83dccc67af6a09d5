"""A non-editable install carries every subpackage, the configs and recipes, and trains from
any folder. It is installed without dependencies into a folder put on PYTHONPATH, so the
already installed torch, Lightning and the rest are reused and the test stays fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, forge_env, tiny


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(REPO)],
        capture_output=True, text=True, env=forge_env(),
    )
    assert build.returncode == 0, build.stderr
    return target


def _forge(installed: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`forge ARGS` run from the installed copy, which says where it was imported from."""
    env = forge_env()
    env["PYTHONPATH"] = str(installed)
    code = f"import forge; print('FROM', forge.__file__); from forge.cli import main; main({args!r})"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_installed_copy_holds_every_package_and_config(installed: Path) -> None:
    packages = {p.parent.relative_to(REPO).as_posix() for p in (REPO / "forge").rglob("__init__.py")}
    missing = [p for p in packages if not (installed / p / "__init__.py").is_file()]
    assert not missing, f"subpackages left out of the install: {missing}"
    shipped = {p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml")}
    shipped |= {f"recipe/{p.name}" for p in (REPO / "recipes").glob("*.yaml")}
    assert shipped and all((installed / "forge" / "conf" / name).is_file() for name in shipped)


def test_installed_copy_composes_recipes_from_another_folder(installed: Path, tmp_path: Path) -> None:
    proc = _forge(installed, ["validate", "+recipe=quickstart", "trainer=ddp_cpu"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"FROM {installed}" in proc.stdout and "config is valid" in proc.stdout


def test_installed_copy_trains_from_another_folder(installed: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _forge(installed, [*tiny(tmp_path / "cache"), f"hydra.run.dir={run}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"FROM {installed}" in proc.stdout
    assert json.loads((run / "train.json").read_text())["steps"] == 20
    assert json.loads((run / "metrics.json").read_text())["test/examples"] == 64
    assert (run / "model" / "model.safetensors").is_file()
