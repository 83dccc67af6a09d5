"""The command table: every entry resolves and stays light, unknown words are refused, and
anything that is not a command word still reaches the Hydra run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import forge.cli
from conftest import forge_env, run_forge
from forge.cli import COMMANDS, FLAG_COMMANDS, RUN, Command, is_hydra_argument, load

TARGETS = {**{name: c.target for name, c in {**COMMANDS, **FLAG_COMMANDS}.items()}, "(run)": RUN}
HEAVY = ("torch", "lightning", "transformers")
CALLS: list[list[str]] = []


def record(argv: list[str]) -> None:
    """Stands in for a command's module in test_a_new_command_is_one_table_entry."""
    CALLS.append(argv)


@pytest.mark.parametrize("name", TARGETS)
def test_every_entry_resolves_to_a_callable(name: str) -> None:
    assert callable(load(TARGETS[name]))


def test_command_words_cannot_be_mistaken_for_overrides() -> None:
    for word in COMMANDS:
        assert not is_hydra_argument(word) and word.replace("-", "_").isidentifier(), word
    for flag in FLAG_COMMANDS:
        assert flag.startswith("--"), flag
    for arg in ("stage=train", "+recipe=quickstart", "~logger", "-m", "--cfg", "--hydra-help", "hydra/launcher=joblib"):
        assert is_hydra_argument(arg), arg


def _heavy_after(code: str, cwd: Path) -> str:
    code += f"\nprint('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=forge_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_importing_every_entry_imports_no_torch(tmp_path: Path) -> None:
    code = "import sys\nfrom forge.cli import COMMANDS, FLAG_COMMANDS, RUN, load\n" \
           "for c in [*COMMANDS.values(), *FLAG_COMMANDS.values()]:\n    load(c.target)\nload(RUN)\n"
    assert "HEAVY []" in _heavy_after(code, tmp_path)


@pytest.mark.parametrize(
    "args",
    [*([name, "--help"] for name in COMMANDS), ["--params", "missing.yaml", "--run-dir", "out"], ["valdate"]],
)
def test_light_paths_of_every_entry_import_no_torch(args: list[str], tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from forge.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
    )
    assert "HEAVY []" in _heavy_after(code, tmp_path)


def test_help_lists_every_command_with_its_summary(tmp_path: Path) -> None:
    out = run_forge("--help", cwd=tmp_path).stdout
    for name, command in {**COMMANDS, **FLAG_COMMANDS}.items():
        assert f"forge {name} {command.usage}" in out and command.summary in out
    for word in ("forge -m", "resume=RUN_DIR", "--cfg job", "--hydra-help", "recipe: ", "quickstart"):
        assert word in out


def test_command_help(tmp_path: Path) -> None:
    out = run_forge("validate", "--help", cwd=tmp_path).stdout
    assert out.startswith("Usage: forge validate [overrides]") and "run nothing" in out


@pytest.mark.parametrize(
    "word, expected",
    [
        ("valdate", "Did you mean 'validate'?"),
        ("quickstart", "To run a recipe: forge +recipe=quickstart."),
        ("frobnicate", "Commands: validate, dvc-yaml, runs, compare, models, learn;"),
    ],
)
def test_an_unknown_word_is_refused_with_the_commands(word: str, expected: str, tmp_path: Path) -> None:
    proc = run_forge(word, "trainer.max_steps=5", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"forge: error: '{word}' is not a forge command.") and expected in proc.stderr


def test_a_new_command_is_one_table_entry(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(forge.cli.COMMANDS, "hello", Command(f"{__name__}:record", "NAME", "say hello"))
    forge.cli.main(["hello", "world", "x=1"])
    assert CALLS[-1] == ["world", "x=1"]
    forge.cli.main(["--help"])
    assert "forge hello NAME" in capsys.readouterr().out


def test_validate_and_cfg_job_still_work(tmp_path: Path) -> None:
    out = run_forge("validate", "+recipe=quickstart", "trainer.max_steps=7", cwd=tmp_path).stdout
    assert "forge: config is valid" in out and "max_steps=7" in out
    out = run_forge("--cfg", "job", "+recipe=quickstart", "trainer.max_steps=7", cwd=tmp_path).stdout
    assert "max_steps: 7" in out


def test_a_malformed_sweep_is_one_line(tmp_path: Path) -> None:
    proc = run_forge("-m", "+recipe=quickstart", "optim.lr=[1,", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "forge: error: no viable alternative at input '[1,'"


def test_every_point_of_a_sweep_is_checked_before_it_starts(tmp_path: Path) -> None:
    proc = run_forge("-m", "+recipe=quickstart", "optim.lr=1e-3,abc", "seed=0,1", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "optim.lr" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "multirun").exists()
