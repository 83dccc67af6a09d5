"""The `forge` command: compose and check the config (Hydra only), then run the stages.

Everything here stays light: torch, Lightning and transformers are imported by the stages, so
`forge --help`, `forge --cfg job` and `forge validate` answer in well under a second.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import hydra
from omegaconf import DictConfig, OmegaConf

from forge.config.compose import CONFIG_MODULE, CONFIG_NAME, compose
from forge.config.errors import ConfigError
from forge.config.validate import validate
from forge.errors import ForgeError

MAX_CHECKED_SWEEP_POINTS = 256
_NO_PRECHECK_FLAGS = {"--hydra-help", "--info", "--shell-completion", "-sc"}
USAGE = """\
forge: train, compress, evaluate and export models from composable YAML recipes.

Usage:
  forge [+recipe=NAME] [GROUP=OPTION ...] [KEY=VALUE ...]   run every stage
  forge -m [GROUP=A,B ...] [KEY=1,2 ...]                     sweep (Hydra multirun)
  forge stage=NAME ...                                       run one stage
  forge resume=RUN_DIR <same overrides>                      continue a killed run exactly
  forge validate [overrides]                                 compose and check, run nothing
  forge --params params.yaml --run-dir DIR stage=NAME        one stage from a resolved config (DVC)
  forge --cfg job [overrides]                                print the composed config
  forge --hydra-help                                         Hydra's own flags
"""
HELP_FOOTER = """\
Add your own recipe folder with hydra.searchpath=[file://PATH] (recipes go in PATH/recipe/NAME.yaml).
Set HYDRA_FULL_ERROR=1 for a full Python traceback on errors."""


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if "-h" in argv or "--help" in argv:
            _help([a for a in argv if a not in ("-h", "--help")])
        elif argv[:1] == ["validate"]:
            _validate(argv[1:])
        elif "--params" in argv:
            _run_params_file(argv)
        else:
            _run_hydra(argv)
    except ForgeError as e:
        _exit_with(e)


def _exit_with(error: ForgeError) -> None:
    """One line on stderr; exit 2 for a bad config, 1 for a failure while running."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    print(f"forge: error: {error}", file=sys.stderr)
    sys.exit(2 if isinstance(error, ConfigError) else 1)


def _help(overrides: list[str]) -> None:
    """Groups and their options straight from the config folders (Hydra's own listing
    composes the config once per option and takes seconds)."""
    from forge.config.compose import config_dirs, group_options

    groups = sorted({p.name for d in config_dirs(overrides) if d.is_dir() for p in d.iterdir()
                     if p.is_dir() and p.name not in ("hydra", "__pycache__")})
    listing = "\n".join(f"  {g}: {', '.join(group_options(g, overrides))}" for g in groups)
    print(f"{USAGE}\nConfig groups (choose with GROUP=OPTION; recipes with +recipe=NAME):\n{listing}\n\n{HELP_FOOTER}")


def _validate(overrides: list[str]) -> None:
    cfg, origin = compose(overrides)
    cfg = validate(cfg, origin.where)
    from forge.summary import print_config_summary

    print_config_summary(cfg)


def _run_hydra(argv: list[str]) -> None:
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(argv)
    if not (_NO_PRECHECK_FLAGS & set(argv)) and not (args.config_path or args.config_name):
        _precheck(args.overrides, multirun=args.multirun)
        resume = _resume_dir(args.overrides)
        if resume is not None and not args.multirun and not any(o.startswith("hydra.run.dir=") for o in args.overrides):
            # Continue in the run's own directory, so its checkpoints and logs stay one run.
            argv = argv + [f"hydra.run.dir={resume}"]
    sys.argv = [sys.argv[0] or "forge"] + argv
    _hydra_main()
    from forge.sweep import SweepSummary  # a multirun (-m, or a hparams_search config) counted its failures

    if SweepSummary.failed:
        print(f"forge: error: {SweepSummary.failed} sweep point(s) failed; see the summary above", file=sys.stderr)
        sys.exit(1)


def _precheck(overrides: list[str], multirun: bool) -> None:
    """Compose and validate every point before Hydra starts, so a bad value fails in a second."""
    points = [overrides]
    search = any(o.startswith("hparams_search=") and o != "hparams_search=null" for o in overrides)
    if multirun or search:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(overrides)
        if search:  # Optuna draws the swept values (interval, choice): check the fixed part
            points = [[o.input_line for o in parsed if not o.is_sweep_override()]]
        else:
            points = [p for batch in BasicSweeper.split_arguments(parsed, None) for p in batch]
    for point in points[:MAX_CHECKED_SWEEP_POINTS]:
        cfg, origin = compose(point)
        cfg = validate(cfg, origin.where)
        if multirun and cfg.trainer.strategy in ("ddp", "fsdp"):
            raise ConfigError(
                f"trainer.strategy={cfg.trainer.strategy} relaunches forge once per process and cannot run "
                "inside a multirun (-m): run the points one by one, or sweep with a launcher that starts "
                "each point as its own job (hydra/launcher=submitit_slurm)."
            )


def _resume_dir(overrides: list[str]) -> Optional[str]:
    for ov in overrides:
        if ov.startswith("resume=") and ov != "resume=null":
            return ov.split("=", 1)[1]
    return None


@hydra.main(version_base=None, config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAME)
def _hydra_main(cfg: DictConfig) -> Optional[float]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from forge.runner import run

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    cfg = _checked(cfg, list(hc.overrides.task))
    if hc.mode == RunMode.MULTIRUN:
        from forge.sweep import run_point

        return run_point(cfg, run_dir, Path(hc.sweep.dir))
    try:
        return run(cfg, run_dir).objective
    except ForgeError as e:  # Hydra would print a traceback: report it the forge way
        _exit_with(e)
        return None


def _checked(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    from forge.config.compose import Origin

    return validate(cfg, Origin(overrides=overrides).where)


def _run_params_file(argv: list[str]) -> None:
    """`forge --params params.yaml --run-dir DIR [key=value ...]`: one resolved config, no Hydra.

    This is how dvc.yaml runs each stage: DVC composes params.yaml, forge runs from it.
    """
    from forge.config.errors import yaml_line
    from forge.runner import run

    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params, run_dir, overrides = _split_params_args(argv)
    try:
        cfg = OmegaConf.load(params)
    except Exception as e:  # a YAML or IO error with its position
        raise ConfigError(f"cannot read {params}: {e}") from None
    cfg.merge_with_dotlist(overrides)

    def where(key: str) -> str:
        line = yaml_line(Path(params), key.split("."))
        return f" ({params}:{line})" if line else ""

    run(validate(cfg, where), Path(run_dir), record=False)


def _split_params_args(argv: list[str]) -> tuple[str, str, list[str]]:
    params, run_dir, rest = None, None, []
    it = iter(argv)
    for arg in it:
        if arg == "--params":
            params = next(it, None)
        elif arg == "--run-dir":
            run_dir = next(it, None)
        else:
            rest.append(arg)
    if not params or not run_dir:
        raise ConfigError("--params needs a file and --run-dir a folder: forge --params params.yaml --run-dir DIR stage=NAME")
    return params, run_dir, rest
