"""Keep the console to forge's own lines: drop, by exact message, the third-party notices that say
nothing about the run (Lightning's advertising tips and accelerator inventory, gguf's file
listing, deprecations inside libraries that the user cannot fix), and the info lines of distributed
worker processes, which repeat rank 0's.

Only records below WARNING are dropped and only on the console: every other warning stays visible,
and the run directory's forge.log keeps every line. Imports nothing heavy, so the logging config
can build the filter before torch or Lightning are loaded.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

# Logger name -> messages (regexes, matched at the start) that are notices, not news about the run.
LIBRARY_NOTICES: dict[str, tuple[str, ...]] = {
    # rank_zero_info logs through whichever of these two names Lightning imported last
    **dict.fromkeys(
        ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"),
        (
            r"💡 Tip: ",  # "try installing litlogger / litmodels"
            r"(GPU|TPU|HPU|IPU) available: ",  # forge's "model:" line says what the run uses
        ),
    ),
    "lightning.fabric.utilities.distributed": (r"Initializing distributed: GLOBAL_RANK: ",),
    "lightning.pytorch.accelerators.cuda": (r"LOCAL_RANK: \d+ - CUDA_VISIBLE_DEVICES: ",),
    # forge's "export: gguf ... reloads" line reports the file once it is checked
    "gguf.gguf_writer": (r"gguf: This GGUF file is for ", r"Writing the following files:", r".*: n_tensors = "),
}
_NOTICES = {name: re.compile("|".join(patterns)) for name, patterns in LIBRARY_NOTICES.items()}

# (module regex, message regex, category): one library calling another's deprecated API.
LIBRARY_WARNINGS: tuple[tuple[str, str, type[Warning]], ...] = (
    (r"lightning\.pytorch\.utilities\._pytree", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    # peft asks every model it wraps for this property
    (r"transformers\.modeling_utils", r"`is_gradient_checkpointing` is deprecated", FutureWarning),
)

# The environment variables Lightning reads a process's rank from, in its order.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def process_rank() -> int:
    """This process's rank, from the environment (set before any forge code runs in a worker)."""
    for key in RANK_VARIABLES:
        if key in os.environ:
            return int(os.environ[key])
    return 0


class ConsoleFilter(logging.Filter):
    """For console handlers: pass every warning, and info lines except library notices and the
    repeats of distributed worker processes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if process_rank() != 0:
            return False
        notice = _NOTICES.get(record.name)
        return notice is None or notice.match(record.getMessage()) is None


def silence_library_warnings() -> None:
    """Ignore exactly the LIBRARY_WARNINGS; every other warning keeps Python's default action."""
    for module, message, category in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def console_filter() -> ConsoleFilter:
    """The logging config's console filter (conf/hydra/job_logging/forge.yaml), built once per
    job, which is also the first moment of a run: silence the library warnings here too."""
    silence_library_warnings()
    return ConsoleFilter()


def quiet_console() -> None:
    """The same for a run whose logging forge's config did not set up (`forge --params`, a test):
    filter the root logger's console handlers and silence the library warnings."""
    for handler in logging.getLogger().handlers:
        console = isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
        if console and not any(isinstance(f, ConsoleFilter) for f in handler.filters):
            handler.addFilter(ConsoleFilter())
    silence_library_warnings()
