"""K-fold cross-validation splits of a prepared dataset.

The train and val splits are pooled and dealt into K folds; fold k validates on part k and
trains on the rest, and test stays untouched. A task without a third set of problems (its test
split is its val split, e.g. `data=modular`) gets the fold's held-out part as test too.
Stratified when the labels allow it: every example's scored tokens form its class, and every
class has at least K members (a classification-like task, such as x·y mod p); otherwise the
examples are dealt at random.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from forge.data.prepare import load_meta
from forge.errors import ForgeError
from forge.atomic import atomic_dir, write_json

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


def split_fold(data_dir: Path, folds: int, fold: int, stratify: bool, seed: int) -> dict[str, Any]:
    """Rewrite the prepared data in `data_dir` as fold `fold` of `folds` (once: a folder that
    already holds this fold is left alone). The split files are replaced, never edited, so the
    shared dataset cache they were linked from stays whole."""
    from safetensors.numpy import load_file, save_file

    meta = load_meta(data_dir)
    wanted = {"folds": folds, "fold": fold, "seed": seed, "stratify": stratify}
    if {k: meta.get("cv", {}).get(k) for k in wanted} == wanted:
        return meta["cv"]
    files = {s: data_dir / f"{s}.safetensors" for s in ("train", "val", "test")}
    if not all(f.exists() for f in files.values()):
        raise ForgeError(f"cv.folds: {data_dir} has no train/val/test split files; cross-validation needs one of forge's "
                         "token datasets (data=addition, modular, sudoku, ...), not a streamed one")
    train, val, test = (load_file(str(files[s])) for s in ("train", "val", "test"))
    same_test = val.keys() == test.keys() and all(np.array_equal(val[k], test[k]) for k in val)
    pool = {k: np.concatenate([train[k], val[k]]) for k in train}
    if len(pool["labels"]) < folds:
        raise ForgeError(f"cv.folds={folds}: only {len(pool['labels'])} train + val examples; use fewer folds")
    assignment, stratified = fold_of_each(pool["labels"], folds, stratify, seed)
    held_out = assignment == fold
    parts = {"train": {k: v[~held_out] for k, v in pool.items()}, "val": {k: v[held_out] for k, v in pool.items()}}
    parts["test"] = parts["val"] if same_test else test
    cv = {**wanted, "stratified": stratified, "test_is_val": same_test}
    with atomic_dir(data_dir) as tmp:
        for split, columns in parts.items():
            save_file({k: np.ascontiguousarray(v) for k, v in columns.items()}, str(tmp / f"{split}.safetensors"))
        for extra in data_dir.iterdir():
            if extra.name != "meta.json" and extra.name not in {f.name for f in files.values()}:
                (tmp / extra.name).write_bytes(extra.read_bytes())
        write_json(tmp / "meta.json", {**meta, "sizes": {s: int(len(c["labels"])) for s, c in parts.items()}, "cv": cv})
    log.info("cv: fold %d of %d (%s): %d train, %d val examples", fold, folds,
             "stratified by label" if stratified else "not stratified", int((~held_out).sum()), int(held_out.sum()))
    return cv
