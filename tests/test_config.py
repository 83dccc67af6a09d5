"""Composition, schemas and the error messages a user sees (no heavy imports on this path)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, forge_env, run_forge
from forge.config.compose import compose, group_options
from forge.config.errors import ConfigError
from forge.config.validate import validate

RECIPES = sorted(p.stem for p in (REPO / "recipes").glob("*.yaml"))
TRAINERS = group_options("trainer", [])


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("trainer", TRAINERS)
def test_every_recipe_composes_with_every_trainer(recipe: str, trainer: str) -> None:
    cfg, origin = compose([f"+recipe={recipe}", f"trainer={trainer}"])
    cfg = validate(cfg, origin.where)
    assert cfg.trainer.max_steps > 0
    assert isinstance(cfg.optim.lr, float)


def test_trainer_targets_cover_the_hardware() -> None:
    assert set(TRAINERS) >= {"cpu", "gpu", "ddp", "ddp_cpu", "fsdp"}
    cfg, _ = compose(["trainer=ddp_cpu"])
    assert (cfg.trainer.devices, cfg.trainer.strategy, cfg.trainer.process_group_backend) == (2, "ddp", "gloo")


def test_default_is_the_quickstart_recipe() -> None:
    assert compose([])[0] == compose(["+recipe=quickstart"])[0]


def test_params_yaml_is_the_composed_quickstart() -> None:
    """Regenerate with: forge --cfg job --resolve +recipe=quickstart > params.yaml"""
    from omegaconf import OmegaConf

    cfg, _ = compose(["+recipe=quickstart"])
    assert OmegaConf.load(REPO / "params.yaml") == cfg


def test_overrides_are_typed() -> None:
    cfg, origin = compose(["optim.lr=1e-2", "trainer.max_steps=7"])
    cfg = validate(cfg, origin.where)
    assert cfg.optim.lr == 0.01 and cfg.trainer.max_steps == 7


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["optim.lr=abc"], ["optim.lr", "could not be converted to Float", "command line"]),
        (["optim.lrr=1"], ["optim.lrr: no such key", "Did you mean 'lr'"]),
        (["+optim.lrr=1"], ["optim.lrr: no such key", "Did you mean 'lr'"]),
        (["trainer=gpux"], ["trainer=gpux", "Did you mean 'gpu'", "cpu, ddp, ddp_cpu, fsdp, gpu"]),
        (["+recipe=quickstar"], ["recipe=quickstar: no such recipe", "Did you mean 'quickstart'"]),
        (["stage=trian"], ["stage=trian", "Did you mean 'train'"]),
    ],
)
def test_bad_input_is_one_short_message(overrides: list[str], expected: list[str], tmp_path: Path) -> None:
    proc = run_forge("validate", *overrides, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for text in expected:
        assert text in proc.stderr


def test_recipe_errors_name_the_file_and_line(tmp_path: Path) -> None:
    recipes = tmp_path / "mine" / "recipe"
    recipes.mkdir(parents=True)
    (recipes / "typo.yaml").write_text("# @package _global_\noptim:\n  lr: 0.1\n  wieght_decay: 0.1\n")
    (recipes / "broken.yaml").write_text("# @package _global_\noptim:\n  lr: [0.1,\n")
    search = f"hydra.searchpath=[file://{tmp_path / 'mine'}]"

    with pytest.raises(ConfigError, match=r"optim.wieght_decay: no such key .*typo.yaml:4\).*weight_decay"):
        cfg, origin = compose([search, "+recipe=typo"])
        validate(cfg, origin.where)
    with pytest.raises(ConfigError, match=r"YAML error in .*broken.yaml:4"):
        compose([search, "+recipe=broken"])


def test_user_recipe_folder_on_the_search_path(tmp_path: Path) -> None:
    recipes = tmp_path / "mine" / "recipe"
    recipes.mkdir(parents=True)
    (recipes / "longer.yaml").write_text("# @package _global_\ntrainer:\n  max_steps: 3000\n")
    cfg, _ = compose([f"hydra.searchpath=[file://{tmp_path / 'mine'}]", "+recipe=longer"])
    assert cfg.trainer.max_steps == 3000


def test_targets_outside_the_allowed_modules_are_refused() -> None:
    cfg, origin = compose(["model._target_=os.system"])
    with pytest.raises(ConfigError, match="not allowed"):
        validate(cfg, origin.where)


HEAVY = ("torch", "lightning", "transformers")


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"], ["validate", "+recipe=quickstart"]])
def test_light_commands_do_not_import_torch(args: list[str], tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from forge.cli import main\n"
        f"sys.argv = ['forge', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=forge_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


def test_help_lists_groups_and_recipes(tmp_path: Path) -> None:
    out = run_forge("--help", cwd=tmp_path).stdout
    for word in ("model:", "trainer:", "recipe:", "quickstart", "ddp_cpu", "logger:"):
        assert word in out


def test_params_file_errors_name_the_file_and_line(tmp_path: Path) -> None:
    text = (REPO / "params.yaml").read_text().replace("  weight_decay:", "  wieght_decay:")
    (tmp_path / "params.yaml").write_text(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "wieght_decay" in l)
    proc = run_forge("--params", "params.yaml", "--run-dir", "out", "stage=prepare", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"optim.wieght_decay: no such key in optim (params.yaml:{line})" in proc.stderr
    proc = run_forge("--params", "missing.yaml", "--run-dir", "out", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "cannot read missing.yaml" in proc.stderr


@pytest.mark.parametrize(
    "override, rule",
    [
        ("data.batch_size=0", "data.batch_size=0: must be >= 1"),
        ("trainer.devices=-3", "trainer.devices=-3: must be a count >= 1, -1 (all), auto, or a list of device indices"),
        ("optim.lr=-1", "optim.lr=-1.0: must be > 0"),
        ("trainer.max_steps=-5", "trainer.max_steps=-5: must be >= 1"),
        ("model.n_heads=3", "model.n_heads=3: must divide d_model=128"),
        ("data.n_val=0", "data.n_val=0: must be >= 1"),
    ],
)
def test_out_of_range_values_are_one_line_errors(override: str, rule: str, tmp_path: Path) -> None:
    proc = run_forge("validate", "+recipe=quickstart", override, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"forge: error: {rule} (command line: '{override}')."]


def test_a_run_rejects_out_of_range_values_before_any_work(tmp_path: Path) -> None:
    proc = run_forge("+recipe=quickstart", "data.batch_size=0", f"cache_dir={tmp_path / 'cache'}", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["forge: error: data.batch_size=0: must be >= 1 (command line: 'data.batch_size=0')."]
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["eval.batch_size=0"], "eval.batch_size=0: must be >= 1"),
        (["model.dropout=1.0"], "model.dropout=1.0: must be in [0, 1)"),
        (["optim.betas=[0.9,1.0]"], "optim.betas.1=1.0: must be in [0, 1)"),
        (["optim.weight_decay=-0.1"], "optim.weight_decay=-0.1: must be >= 0"),
        (["trainer.val_every_n_steps=0"], "trainer.val_every_n_steps=0: must be >= 1"),
        (["trainer.checkpoint_every_n_steps=0"], "trainer.checkpoint_every_n_steps=0: must be >= 1"),
        (["trainer.log_every_n_steps=-1"], "trainer.log_every_n_steps=-1: must be >= 1"),
        (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0: must be >= 1"),
        (["trainer.devices=0"], "trainer.devices=0: must be a count"),
        (["trainer.num_nodes=0"], "trainer.num_nodes=0: must be >= 1"),
        (["model.n_layers=0"], "model.n_layers=0: must be >= 1"),
        (["model.init=smal"], "model.init=smal: not a valid choice (command line: 'model.init=smal'). Did you mean 'small'?"),
        (["data=modular", "data.train_fraction=1.0"], "data.train_fraction=1.0: must be strictly between 0 and 1"),
        (["data=arithmetic", "data.digits=10"], "data.digits=10: must be in [1, 9]"),
        (["data=sudoku", "data.levels=[easy,hardest]"], "data.levels.1=hardest: not a valid choice"),
        (["data=maze", "data.size=8"], "data.size=8: must be odd"),
        (["+recipe=coder_lora", "data.val_fraction=0.5", "data.test_fraction=0.5"], "data.test_fraction=0.5: must leave rows to train on"),
        (["compressor=rtn", "compressor.bits=9"], "compressor.bits=9: must be in [1, 8]"),
        (["compressor=vptq", "compressor.outlier_fraction=1.5"], "compressor.outlier_fraction=1.5: must be in [0, 1)"),
        (["compressor=bitnet", "compressor.packing=3bit"], "compressor.packing=3bit: not a valid choice"),
        (["optim/grokfast=ema", "optim.grokfast.window=0"], "optim.grokfast.window=0: must be >= 1"),
        (["data=sudoku", "curriculum=difficulty", "curriculum.levels.1.lr=0"], "curriculum.levels.1.lr=0.0: must be > 0"),
        (["data=sudoku", "curriculum=difficulty", "curriculum.replay=1.0"], "curriculum.replay=1.0: must be in [0, 1)"),
        (["+recipe=cogment_agent_forge", "curriculum.stages.0.steps=0"], "curriculum.stages.0.steps=0: must be >= 1"),
        (["+recipe=coder_lora", "peft.r=0"], "peft.r=0: must be >= 1"),
        (["+recipe=coder_lora", "eval.humaneval.batch_size=0"], "eval.humaneval.batch_size=0: must be >= 1"),
        (["+recipe=coder_lora", "eval.humaneval.k=[1,10]"], "eval.humaneval.k=[1, 10]: pass@k needs samples >= k"),
        (["+recipe=coder_lora", "export.outputs=[merged,ggml]"], "export.outputs.1=ggml: not a valid choice"),
        (["+recipe=coder_lora", "data=agent_traces", "data.sources.0.path=logs", "data.sources.0.kinds=[answer,reasoning_actoin]"],
         "data.sources.0.kinds.1=reasoning_actoin: not a valid choice (command line: 'data.sources.0.kinds=[answer,reasoning_actoin]'). "
         "Did you mean 'reasoning_action'?"),
        (["+recipe=coder_lora", "data=sft_jsonl", "data.sources.0.path=a.jsonl", "+data.sources.0.kinds=[answer]"],
         "data.sources.0.kinds=['answer']: applies to format claude_code only, this source is format messages; remove it"),
        (["+recipe=coder_lora", "data=agent_traces", "data.sources.0.path=logs", "+data.sources.0.prompt=hi", "+data.sources.0.prompt_file=p.txt"],
         "data.sources.0.prompt_file=p.txt: give the prompt once"),
        (["+recipe=coder_lora", "data=sft_jsonl", "data.sources.0.path=a.jsonl", "data.sources.0.format=agent_runs", "+data.sources.0.min_reward=1"],
         "data.sources.0.min_reward=1.0: needs reward_weights"),
    ],
)
def test_range_checks_name_the_key_the_value_and_the_rule(overrides: list[str], message: str) -> None:
    """Each case is a valid combination but for the one value out of range."""
    recipe = [] if overrides[0].startswith("+recipe=") else ["+recipe=quickstart"]
    cfg, origin = compose([*recipe, *overrides])
    with pytest.raises(ConfigError) as e:
        validate(cfg, origin.where)
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("devices", ["1", "-1", "auto", "[0,1]", "'0,1'"])
def test_every_devices_form_lightning_takes_validates(devices: str) -> None:
    cfg, origin = compose(["+recipe=quickstart", f"trainer.devices={devices}"])
    assert validate(cfg, origin.where).trainer.devices is not None
