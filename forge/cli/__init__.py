"""The `forge` command: a table of commands, and the Hydra run for everything else.

How an argument list is read, in this order:

1. `-h`/`--help`: after a command word, that command's usage; anywhere else, the overview
   (`forge.cli.help`), which lists this table and the config groups.
2. A command word first (`forge validate ...`): the entry of `COMMANDS`, given the rest.
3. `--params` anywhere: the DVC path, given every argument. It stays a flag because dvc.yaml
   calls `forge --params params.yaml --run-dir DIR stage=NAME`.
4. Anything else is a Hydra run (`forge.cli.run`), exactly as Hydra reads it.

A command word can never be mistaken for a Hydra argument: Hydra's arguments are overrides,
which contain `=` (`stage=train`, `+recipe=x`, `hydra/launcher=joblib`) or start with `+` or `~`,
and flags, which start with `-` (`-m`, `--cfg job`, `--hydra-help`); a flag's value (`job`) is
never first. So a first argument that is none of these is a command word, and an unknown one is
refused with the list of commands instead of reaching Hydra.

Each entry names its function as "module:function" and a one-line summary, so `forge --help`
reads the table without importing any command, and a command imports only its own module when
it runs. Adding a command (`forge runs`, `forge models`, `forge learn`, `forge compare`) is one
entry here plus one module `forge/cli/NAME.py` with `main(argv: list[str]) -> None`.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Callable, NamedTuple, Optional, Sequence

from forge.config.errors import ConfigError, suggest
from forge.errors import ForgeError


class Command(NamedTuple):
    target: str  # "module:function", imported only when the command runs
    usage: str  # its arguments, for --help
    summary: str  # one line, for --help


COMMANDS: dict[str, Command] = {
    "validate": Command("forge.cli.validate:main", "[overrides]", "compose and check the config, run nothing"),
    "dvc-yaml": Command("forge.cli.dvc_yaml:main", "", "print dvc.yaml as the stages declare it (forge dvc-yaml > dvc.yaml)"),
    "runs": Command("forge.cli.runs:main", "start|status|ls|stop|metrics ...", "start runs detached, see, list and stop them, read their curves"),
    "compare": Command("forge.cli.compare:main", "RUN_A RUN_B [--model M] [--json] ...",
                       "compare two runs item by item: paired test, interval, minimum detectable effect, verdict"),
    "models": Command("forge.cli.models:main", "register|ls|versions|test|deploy|rollback|serve ...",
                      "register a run's model as a version (GTO+DVC), test it, deploy and roll back stages, serve them"),
    "learn": Command("forge.cli.learn:main", "record|status|history|step|watch ... [key=value]",
                     "the learning loop: record agent runs, see the store and the audit log, run the loop"),
}
# Commands spelled as a flag, recognised anywhere in the arguments and given all of them.
FLAG_COMMANDS: dict[str, Command] = {
    "--params": Command("forge.cli.params:main", "params.yaml --run-dir DIR stage=NAME", "one stage from a resolved config (DVC)"),
}
RUN = "forge.cli.run:main"  # the fall-through: a Hydra run; its usage lines are in forge.cli.help
HELP_FLAGS = ("-h", "--help")
HYDRA_PREFIXES = ("-", "+", "~")  # a flag; an override that adds or deletes a key


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if any(a in HELP_FLAGS for a in argv):
            _help(argv)
        else:
            target, args = _command(argv)
            load(target)(args)
    except ForgeError as e:
        exit_with(e)


def load(target: str) -> Callable[[list[str]], None]:
    """The function of a "module:function" target, importing its module now."""
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def exit_with(error: ForgeError) -> None:
    """One line on stderr; exit 2 for a bad config, 1 for a failure while running.
    HYDRA_FULL_ERROR=1 raises instead, for the full traceback."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    print(f"forge: error: {error}", file=sys.stderr)
    sys.exit(2 if isinstance(error, ConfigError) else 1)


def is_hydra_argument(arg: str) -> bool:
    return "=" in arg or arg.startswith(HYDRA_PREFIXES)


def _command(argv: list[str]) -> tuple[str, list[str]]:
    """The target to call and its arguments."""
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]].target, argv[1:]
    for flag, command in FLAG_COMMANDS.items():
        if flag in argv:
            return command.target, argv
    if argv and not is_hydra_argument(argv[0]):
        raise _unknown(argv[0])
    return RUN, argv


def _unknown(word: str) -> ConfigError:
    from forge.config.compose import group_options

    recipes = group_options("recipe", [])
    hint = f" To run a recipe: forge +recipe={word}." if word in recipes else suggest(word, COMMANDS)
    return ConfigError(
        f"'{word}' is not a forge command.{hint} Commands: {', '.join(COMMANDS)}; "
        "anything else is a run, whose arguments are overrides (KEY=VALUE, GROUP=OPTION, +recipe=NAME) "
        "or flags (-m, --cfg job); see forge --help."
    )


def _help(argv: list[str]) -> None:
    from forge.cli.help import print_command_help, print_help

    if argv[0] in COMMANDS:
        command = COMMANDS[argv[0]]
        print_command_help(f"{argv[0]} {command.usage}", command.summary)
    else:
        table = [(f"{name} {c.usage}", c.summary) for name, c in {**COMMANDS, **FLAG_COMMANDS}.items()]
        print_help(table, [a for a in argv if a not in HELP_FLAGS])
