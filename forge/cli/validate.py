"""`forge validate [overrides]`: compose and check the config exactly as a run would, run nothing.

Hydra and the schemas only: no torch, so a mistake is found in well under a second."""

from __future__ import annotations

from forge.config.compose import compose
from forge.config.validate import validate


def main(argv: list[str]) -> None:
    cfg, origin = compose(argv)
    cfg = validate(cfg, origin.where)
    from forge.summary import print_config_summary

    print_config_summary(cfg)
