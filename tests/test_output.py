"""What a run prints: forge's own lines and every real warning, not third-party notices."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import pytest

from conftest import run_forge, tiny
from forge.train.quiet import RANK_VARIABLES, ConsoleFilter, quiet_console, silence_library_warnings

NOISE = ("Tip:", "litlogger", "litmodels", "GPU available:", "TPU available:", "LeafSpec", "is deprecated")


def test_a_run_prints_its_own_lines_and_no_library_notices(tmp_path: Path, cache: Path) -> None:
    run = tmp_path / "run"
    proc = run_forge(*tiny(cache), f"hydra.run.dir={run}", cwd=tmp_path)
    printed = proc.stdout + proc.stderr
    assert [n for n in NOISE if n in printed] == []
    for line in ("== prepare", "== train", "step 20/20", "`Trainer.fit` stopped: `max_steps=20` reached.",
                 "== evaluate", "test/exact_match", "best.ckpt"):
        assert line in proc.stdout
    assert "GPU available: False, used: False" in (run / "forge.log").read_text(), "forge.log keeps every line"


def _printed(records: list[tuple[str, int, str]]) -> list[str]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ConsoleFilter())
    for name, level, msg in records:
        handler.handle(logging.makeLogRecord({"name": name, "levelno": level, "levelname": logging.getLevelName(level), "msg": msg}))
    return stream.getvalue().splitlines()


RANK_ZERO = "lightning.pytorch.utilities.rank_zero"
RECORDS = [
    (RANK_ZERO, logging.INFO, "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]"),
    ("lightning.fabric.utilities.rank_zero", logging.INFO, "GPU available: False, used: False"),
    ("lightning.fabric.utilities.distributed", logging.INFO, "Initializing distributed: GLOBAL_RANK: 0, MEMBER: 1/2"),
    (RANK_ZERO, logging.INFO, "`Trainer.fit` stopped: `max_steps=20` reached."),
    (RANK_ZERO, logging.WARNING, "GPU available but not used. You can set it by doing `Trainer(accelerator='gpu')`."),
    ("forge", logging.INFO, "== train"),
    ("forge.data.prepare", logging.WARNING, "data: 2 malformed records set aside"),
]


def test_console_drops_notices_and_worker_repeats_but_never_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in RANK_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    assert _printed(RECORDS) == [
        "`Trainer.fit` stopped: `max_steps=20` reached.",
        "GPU available but not used. You can set it by doing `Trainer(accelerator='gpu')`.",
        "== train",
        "data: 2 malformed records set aside",
    ]
    monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP worker: rank 0 already said it
    assert _printed(RECORDS) == [
        "GPU available but not used. You can set it by doing `Trainer(accelerator='gpu')`.",
        "data: 2 malformed records set aside",
    ]


def test_only_the_named_library_deprecations_are_silenced() -> None:
    from lightning.pytorch.utilities._pytree import _tree_flatten

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _tree_flatten(1)  # Lightning builds a deprecated torch LeafSpec
        assert any("LeafSpec" in str(w.message) for w in seen), "the deprecation is gone: drop its filter"
        seen.clear()
        silence_library_warnings()
        _tree_flatten(1)
        warnings.warn_explicit("loss is nan at step 3", UserWarning, "forge/train/fit.py", 1, module="forge.train.fit")
        warnings.warn_explicit("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, "forge/x.py", 1, module="forge.x")
        warnings.warn_explicit("another deprecation", FutureWarning, "_pytree.py", 1, module="lightning.pytorch.utilities._pytree")
    assert [(w.category, str(w.message)) for w in seen] == [
        (UserWarning, "loss is nan at step 3"),
        (FutureWarning, "`isinstance(treespec, LeafSpec)` is deprecated"),
        (FutureWarning, "another deprecation"),
    ]


def test_quiet_console_filters_the_console_once_and_never_the_log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    console, log_file = logging.StreamHandler(io.StringIO()), logging.FileHandler(tmp_path / "forge.log")
    monkeypatch.setattr(logging.getLogger(), "handlers", [console, log_file])
    with warnings.catch_warnings():
        quiet_console()
        quiet_console()
    log_file.close()
    assert [type(f) for f in console.filters] == [ConsoleFilter] and log_file.filters == []
