"""`forge --params params.yaml --run-dir DIR [key=value ...]`: one resolved config, no Hydra.

This is how dvc.yaml runs each stage: DVC composes params.yaml, forge runs from it."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

from forge.config.errors import ConfigError, yaml_line
from forge.config.validate import validate
from forge.train.quiet import quiet_console


def main(argv: list[str]) -> None:
    params, run_dir, overrides = _split(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet_console()  # the library notices forge's logging config filters on a Hydra run
    try:
        cfg = OmegaConf.load(params)
    except Exception as e:  # a YAML or IO error with its position
        raise ConfigError(f"cannot read {params}: {e}") from None
    cfg.merge_with_dotlist(overrides)

    def where(key: str) -> str:
        line = yaml_line(Path(params), key.split("."))
        return f" ({params}:{line})" if line else ""

    cfg = validate(cfg, where)
    from forge.runner import run  # the stages: torch and Lightning, only once the config is good

    run(cfg, Path(run_dir), record=False)


def _split(argv: list[str]) -> tuple[str, str, list[str]]:
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
