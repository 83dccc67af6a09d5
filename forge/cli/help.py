"""`forge --help`: the run, the command table and the config groups, read from the folders
(Hydra's own listing composes the config once per option and takes seconds)."""

from __future__ import annotations

from forge.config.compose import config_dirs, group_options

INTRO = "forge: train, compress, evaluate and export models from composable YAML recipes."
RUN_USAGE = [
    ("[+recipe=NAME] [GROUP=OPTION ...] [KEY=VALUE ...]", "run every stage"),
    ("-m [GROUP=A,B ...] [KEY=1,2 ...]", "sweep (Hydra multirun)"),
    ("stage=NAME ...", "run one stage"),
    ("resume=RUN_DIR <same overrides>", "continue a killed run exactly"),
    ("init_from=RUN_DIR [callbacks=[default,ewc]]", "a new task from an earlier run's weights"),
    ("--cfg job [overrides]", "print the composed config"),
    ("--hydra-help", "Hydra's own flags"),
]
FOOTER = """\
Add your own recipe folder with hydra.searchpath=[file://PATH] (recipes go in PATH/recipe/NAME.yaml).
Set HYDRA_FULL_ERROR=1 for a full Python traceback on errors."""
WIDTH = 56


def print_help(commands: list[tuple[str, str]], overrides: list[str]) -> None:
    """`commands`: (name and arguments, summary) of each entry of the command table."""
    groups = sorted({p.name for d in config_dirs(overrides) if d.is_dir() for p in d.iterdir()
                     if p.is_dir() and p.name not in ("hydra", "__pycache__")})
    listing = "\n".join(f"  {g}: {', '.join(group_options(g, overrides))}" for g in groups)
    print(f"{INTRO}\n\nUsage:\n{_lines(RUN_USAGE)}\n\nCommands (forge COMMAND --help):\n{_lines(commands)}\n\n"
          f"Config groups (choose with GROUP=OPTION; recipes with +recipe=NAME):\n{listing}\n\n{FOOTER}")


def print_command_help(usage: str, summary: str) -> None:
    print(f"Usage: forge {usage}\n\n{summary[0].upper()}{summary[1:]}.")


def _lines(rows: list[tuple[str, str]]) -> str:
    return "\n".join(f"  {('forge ' + usage).ljust(WIDTH)}  {summary}" for usage, summary in rows)
