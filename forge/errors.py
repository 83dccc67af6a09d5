"""Errors a user can cause at run time; the CLI prints their message, not a traceback."""


class ForgeError(Exception):
    """A run-time problem the user can act on (the message says what to do)."""


class NonFiniteLossError(ForgeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""
