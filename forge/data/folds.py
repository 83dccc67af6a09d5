"""Cross-validation splits of a prepared dataset: k-fold or walk-forward.

The train and val splits are pooled (train rows first, then val) and test stays untouched. A task
without a third set of problems (its test split is its val split, e.g. `data=modular`) gets the
fold's held-out part as test too.

K-fold deals the pool into K folds; fold k validates on part k and trains on the rest.
Stratified when the labels allow it: every example's scored tokens form its class, and every
class has at least K members (a classification-like task, such as x·y mod p); otherwise the
examples are dealt at random.

Walk-forward (forge.data.walk_forward) orders the pool by a per-row time column when the data
has one (else keeps the pool's order) and groups rows by a per-row group column when it has one
(else every row is its own group). None of forge's built-in datasets has a time column; ARC's
`task` column is a group (its augmented copies of one task). SFT and agent-run data are packed,
several records to a row, so their rows carry neither a record's time nor its session: they are
split in row order, one group per row.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np

from forge.atomic import atomic_dir, write_json
from forge.config.errors import ConfigError
from forge.data.prepare import load_meta
from forge.data.walk_forward import walk_forward
from forge.errors import ForgeError

log = logging.getLogger(__name__)


def fold_of_each(labels: np.ndarray, folds: int, stratify: bool, seed: int) -> tuple[np.ndarray, bool]:
    """(the fold of every row, whether the deal was stratified)."""
    rng = np.random.default_rng(seed)
    _, classes, counts = np.unique(labels, axis=0, return_inverse=True, return_counts=True)  # unscored: IGNORE
    classes = classes.reshape(-1)
    fold = np.empty(len(labels), dtype=np.int64)
    if stratify and counts.min() >= folds:
        offset = 0
        for c in range(len(counts)):  # round-robin within each class, carried across classes
            rows = rng.permutation(np.flatnonzero(classes == c))
            fold[rows] = (offset + np.arange(len(rows))) % folds
            offset += len(rows)
        return fold, True
    fold[rng.permutation(len(labels))] = np.arange(len(labels)) % folds
    return fold, False


def split_fold(
    data_dir: Path, folds: int, fold: int, stratify: Optional[bool], seed: int, scheme: str = "kfold", gap: int = 0,
    max_train: Optional[int] = None, time_column: Optional[str] = None, group_column: Optional[str] = None,
) -> dict[str, Any]:
    """Rewrite the prepared data in `data_dir` as fold `fold` of `folds` (once: a folder that
    already holds this fold is left alone). The split files are replaced, never edited, so the
    shared dataset cache they were linked from stays whole. `stratify` None: by label when the
    labels allow it (k-fold)."""
    from safetensors.numpy import load_file, save_file

    meta = load_meta(data_dir)
    if scheme == "kfold":
        wanted: dict[str, Any] = {"folds": folds, "fold": fold, "seed": seed, "stratify": stratify is not False}
    else:
        wanted = {"scheme": scheme, "folds": folds, "fold": fold, "gap": gap, "max_train": max_train,
                  "time_column": time_column, "group_column": group_column}
    held = meta.get("cv", {})
    if {k: held.get(k) for k in wanted} == wanted:
        return held
    if held and "walk_forward" in (scheme, held.get("scheme")):
        raise ConfigError(f"cv: {data_dir} already holds fold {held.get('fold')} of another split, which left rows out or "
                          "reordered them; remove that folder to prepare the data again")
    files = {s: data_dir / f"{s}.safetensors" for s in ("train", "val", "test")}
    if not all(f.exists() for f in files.values()):
        raise ForgeError(f"cv.folds: {data_dir} has no train/val/test split files; cross-validation needs one of forge's "
                         "token datasets (data=addition, modular, sudoku, ...), not a streamed one")
    train, val, test = (load_file(str(files[s])) for s in ("train", "val", "test"))
    same_test = val.keys() == test.keys() and all(np.array_equal(val[k], test[k]) for k in val)
    pool = {k: np.concatenate([train[k], val[k]]) for k in train}
    if scheme == "kfold":
        if len(pool["labels"]) < folds:
            raise ForgeError(f"cv.folds={folds}: only {len(pool['labels'])} train + val examples; use fewer folds")
        assignment, stratified = fold_of_each(pool["labels"], folds, wanted["stratify"], seed)
        held_out = assignment == fold
        rows = {"train": np.flatnonzero(~held_out), "val": np.flatnonzero(held_out)}
        cv = {**wanted, "stratified": stratified, "test_is_val": same_test}
        log.info("cv: fold %d of %d (%s): %d train, %d val examples", fold, folds,
                 "stratified by label" if stratified else "not stratified", len(rows["train"]), len(rows["val"]))
    else:
        time = _column(pool, time_column, "time", "cv.time_column")
        groups = _column(pool, group_column, "group", "cv.group_column")
        train_rows, val_rows = walk_forward(len(pool["labels"]), folds, gap, max_train, time, groups)[fold]
        rows = {"train": train_rows, "val": val_rows}
        left_out = len(pool["labels"]) - (folds - fold) * len(val_rows) - len(train_rows)  # of the rows before the block
        cv = {**wanted, "time": time is not None, "groups": groups is not None, "left_out": left_out, "test_is_val": same_test}
        log.info("cv: walk-forward fold %d of %d: %d train, %d val rows (%d earlier rows left out by cv.gap=%d%s%s)", fold, folds,
                 len(train_rows), len(val_rows), left_out, gap, f", cv.max_train={max_train}" if max_train else "",
                 ", and as rows of groups in the block" if groups is not None else "")
    parts = {split: {k: v[idx] for k, v in pool.items()} for split, idx in rows.items()}
    parts["test"] = parts["val"] if same_test else test
    with atomic_dir(data_dir) as tmp:
        for split, columns in parts.items():
            save_file({k: np.ascontiguousarray(v) for k, v in columns.items()}, str(tmp / f"{split}.safetensors"))
        for extra in data_dir.iterdir():
            if extra.name != "meta.json" and extra.name not in {f.name for f in files.values()}:
                (tmp / extra.name).write_bytes(extra.read_bytes())
        write_json(tmp / "meta.json", {**meta, "sizes": {s: int(len(c["labels"])) for s, c in parts.items()}, "cv": cv})
    return cv


def _column(pool: dict[str, np.ndarray], name: Optional[str], default: str, key: str) -> Optional[np.ndarray]:
    """The per-row column `name`; None as the name: the column `default` when the data has one."""
    if name is None:
        column = pool.get(default)
        return column if column is not None and column.ndim == 1 else None
    column = pool.get(name)
    if column is None or column.ndim != 1:
        per_row = sorted(k for k, v in pool.items() if v.ndim == 1)
        raise ConfigError(f"{key}={name}: the prepared data has no per-row column {name} (it has: {', '.join(per_row) or 'none'}); "
                          f"name one of those, or null for {default!r} when present")
    return column
