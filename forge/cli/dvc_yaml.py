"""`forge dvc-yaml`: print the dvc.yaml that the stage declarations imply."""

from __future__ import annotations

from forge.config.errors import ConfigError


def main(argv: list[str]) -> None:
    if argv:
        raise ConfigError(f"forge dvc-yaml takes no arguments (got {' '.join(argv)}); write it with: forge dvc-yaml > dvc.yaml")
    from forge.pipeline import dvc_yaml

    print(dvc_yaml(), end="")
