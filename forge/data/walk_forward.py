"""Walk-forward folds: train on the past, validate on the block that follows.

The rows in time order are cut into folds+1 consecutive blocks (the first holds the remainder,
as scikit-learn's TimeSeriesSplit does); fold k validates on block k+1 and trains on the rows
more than `gap` earlier than that block's first row, the latest `max_train` of them when given
(a sliding window; an expanding one otherwise). With a group per row (a session, a task), the
rows of a group that also has a row in the validation block are dropped from training, so no
group is on both sides: the time-ordered group split scikit-learn lacks (TimeSeriesSplit has no
groups, GroupKFold no order). Without a time column a row's time is its position, so the gap
counts rows.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from forge.config.errors import ConfigError


def walk_forward(
    n: int, folds: int, gap: int = 0, max_train: Optional[int] = None,
    time: Optional[np.ndarray] = None, groups: Optional[np.ndarray] = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, validation rows) of each fold, as indices into the n rows, each in time
    order. ConfigError when a fold would have no validation or no training row."""
    when = np.arange(n) if time is None else np.asarray(time).reshape(-1)
    order = np.argsort(when, kind="stable")
    size = n // (folds + 1)
    if size == 0:
        raise ConfigError(f"cv.folds={folds}: walk-forward cuts the rows into cv.folds+1 blocks and there are only {n} "
                          "train + val rows; use fewer folds")
    first = n - folds * size
    out = []
    for k in range(folds):
        start = first + k * size
        val = order[start : start + size]
        train = order[:start][when[order[:start]] < when[val[0]] - gap]
        if max_train is not None:
            train = train[len(train) - min(max_train, len(train)) :]
        if groups is not None:
            train = train[~np.isin(groups[train], groups[val])]
        if len(train) == 0:
            raise ConfigError(f"cv.gap={gap}: fold {k} of walk-forward has no training row (the {start} rows before its "
                              f"block, less the gap{' and the rows of groups in its block' if groups is not None else ''}); "
                              "use a smaller cv.gap or fewer cv.folds")
        out.append((train, val))
    return out
