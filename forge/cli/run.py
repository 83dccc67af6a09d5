"""The fall-through of the command table: a Hydra run (`forge [overrides]`, `-m`, `--cfg job`, ...).

Every point is composed and validated before Hydra starts, so a bad value fails in a second;
torch, Lightning and transformers are imported by the stages only. Hydra's parser is the one
`@hydra.main` itself uses, so forge reads the arguments exactly as Hydra will.
"""

from __future__ import annotations

import itertools
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import hydra
from omegaconf import DictConfig, OmegaConf

from forge.cli import exit_with
from forge.config.compose import CONFIG_MODULE, CONFIG_NAME, Origin, compose
from forge.config.errors import ConfigError
from forge.config.validate import validate
from forge.errors import ForgeError

MAX_CHECKED_SWEEP_POINTS = 256
NO_PRECHECK_FLAGS = {"--hydra-help", "--info", "--shell-completion", "-sc"}


def main(argv: list[str]) -> None:
    from hydra._internal.utils import get_args_parser

    from forge import redact

    args = get_args_parser().parse_args(argv)
    secrets = redact.Redactor([])
    if not (NO_PRECHECK_FLAGS & set(argv)) and not (args.config_path or args.config_name):
        points = _precheck(args.overrides, multirun=args.multirun)
        # Hydra logs the overrides of each point it launches, before a run masks its own output.
        secrets = redact.Redactor.of_run({"points": [OmegaConf.to_container(c, resolve=True) for c in points]})
        resume = _resume_dir(args.overrides)
        if resume is not None and not args.multirun and not any(o.startswith("hydra.run.dir=") for o in args.overrides):
            # Continue in the run's own directory, so its checkpoints and logs stay one run.
            argv = argv + [f"hydra.run.dir={resume}"]
    with _argv(argv), redact.active(secrets):
        _hydra_main()


@contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    """@hydra.main reads sys.argv, and so does the run directory's command.txt."""
    saved = sys.argv
    sys.argv = [saved[0] if saved and saved[0] else "forge", *argv]
    try:
        yield
    finally:
        sys.argv = saved


def _precheck(overrides: list[str], multirun: bool) -> list[DictConfig]:
    """Compose and validate every point before Hydra starts; the validated configs."""
    checked = []
    for point in _points(overrides, multirun)[:MAX_CHECKED_SWEEP_POINTS]:
        cfg, origin = compose(point)
        cfg = validate(cfg, origin.where)
        checked.append(cfg)
        if multirun and cfg.trainer.strategy in ("ddp", "fsdp"):
            raise ConfigError(
                f"trainer.strategy={cfg.trainer.strategy} relaunches forge once per process and cannot run "
                "inside a multirun (-m): run the points one by one, or sweep with a launcher that starts "
                "each point as its own job (hydra/launcher=submitit_slurm)."
            )
    return checked


def _points(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists of the points a run will have: one, or a sweep's grid. A search
    (hparams_search, or any interval sweep) draws its values: its fixed part is checked."""
    search = any(o.startswith("hparams_search=") and o != "hparams_search=null" for o in overrides)
    if not (multirun or search):
        return [overrides]
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:  # the first line names the bad input; the rest is a link
        raise ConfigError(str(e).splitlines()[0]) from None
    if search or any(o.is_sweep_override() and not o.is_discrete_sweep() for o in parsed):
        return [[o.input_line for o in parsed if not o.is_sweep_override()]]
    axes: dict[str, list[str]] = {}  # a key given twice keeps its last value, as Hydra's sweeper does
    for o in parsed:
        key = o.get_key_element()
        axes[key] = [f"{key}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() else [o.input_line]
    return [list(point) for point in itertools.product(*axes.values())]


def _resume_dir(overrides: list[str]) -> Optional[str]:
    for ov in overrides:
        if ov.startswith("resume=") and ov != "resume=null":
            return ov.split("=", 1)[1]
    return None


@hydra.main(version_base=None, config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAME)
def _hydra_main(cfg: DictConfig) -> Optional[float]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from forge.redact import Redactor
    from forge.run_dir import mask_yaml_files
    from forge.runner import run

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    cfg = validate(cfg, Origin(overrides=list(hc.overrides.task)).where)
    secrets = Redactor.of_run(cfg)
    if hc.output_subdir:  # Hydra has recorded the command line and config there: no secrets in it
        mask_yaml_files(run_dir / hc.output_subdir, secrets)
    if hc.mode == RunMode.MULTIRUN:  # and the sweep's multirun.yaml at its root
        mask_yaml_files(Path(hc.sweep.dir), secrets)
    if hc.mode == RunMode.MULTIRUN:
        from forge.sweep import run_point

        return run_point(cfg, run_dir, Path(hc.sweep.dir))
    try:
        return run(cfg, run_dir).objective
    except ForgeError as e:  # Hydra would print a traceback: report it the forge way
        exit_with(e)
        return None
