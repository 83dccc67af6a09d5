"""Associative recall at a chosen sequence length: probes of what a sequence model can look up.

Both modes hide `n_keys` key-value pairs (distinct keys) in a context and end with "Q key value",
where the value of the queried key is the one labelled token:
- kv: the pairs packed together (the classic key-value retrieval), left-padded with PAD to
  `length` so a sweep over n_keys keeps one sequence length;
- needle: the pairs scattered at random positions in `length` tokens of random filler (needle in
  a haystack; n_keys = 1 is the classic single needle, more are distractors).
Keys, values and filler are disjoint token sets, so only the query's key locates the answer. As
in forge.data.algorithmic, a bidirectional model's loader hides the answer behind `blank`.
"""

from __future__ import annotations

import numpy as np

from forge.data.algorithmic import BLANK, META, answer_labels, check_sizes, distinct_rows, split_rows
from forge.data.configs import MODES
from forge.data.task import SplitArrays

SYMBOLS = 64  # distinct keys, values and filler tokens
QUERY_LEN = 3  # "Q", key, value
VOCAB = ["PAD", "Q"] + [f"{kind}{i}" for kind in "kvf" for i in range(SYMBOLS)] + [BLANK]
PAD, QUERY, KEY, VALUE, FILLER = 0, 1, 2, 2 + SYMBOLS, 2 + 2 * SYMBOLS


class Recall:
    """Key-value or needle retrieval with `n_keys` pairs in `length` tokens (see module doc)."""

    vocab = VOCAB
    meta = META

    def __init__(
        self, mode: str, length: int, n_keys: int, n_train: int, n_val: int, n_test: int, seed: int
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"data.mode={mode}: use one of {', '.join(MODES)}")
        if not 1 <= n_keys <= SYMBOLS:
            raise ValueError(f"data.n_keys={n_keys}: use 1 to {SYMBOLS} pairs (there are {SYMBOLS} distinct keys)")
        if length < 2 * n_keys + QUERY_LEN:
            raise ValueError(
                f"data.length={length}: {n_keys} pairs and the query need {2 * n_keys + QUERY_LEN} tokens; "
                "raise length or lower n_keys"
            )
        self.mode, self.length, self.n_keys, self.seed = mode, length, n_keys, seed
        self.sizes = check_sizes(n_train, n_val, n_test)

    def build(self) -> dict[str, SplitArrays]:
        rng = np.random.default_rng(self.seed)
        rows = distinct_rows(sum(self.sizes.values()), lambda m: self._draw(rng, m), "raise n_keys or length")
        parts = split_rows(rows, self.sizes)
        return {split: SplitArrays(inputs=part, labels=answer_labels(part, 1)) for split, part in parts.items()}

    def _draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        keys = KEY + np.argsort(rng.random((n, SYMBOLS)), axis=1)[:, : self.n_keys]
        values = VALUE + rng.integers(0, SYMBOLS, (n, self.n_keys))
        context = self._packed(keys, values) if self.mode == "kv" else self._scattered(rng, keys, values)
        asked = rng.integers(0, self.n_keys, n)[:, None]
        key, value = np.take_along_axis(keys, asked, 1), np.take_along_axis(values, asked, 1)
        return np.concatenate([context, np.full_like(key, QUERY), key, value], axis=1)

    def _packed(self, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        pairs = np.stack([keys, values], axis=2).reshape(len(keys), -1)
        pad = np.full((len(keys), self.length - QUERY_LEN - pairs.shape[1]), PAD)
        return np.concatenate([pad, pairs], axis=1)

    def _scattered(self, rng: np.random.Generator, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Filler with the pairs at random places: choose n_keys of the slots, a pair filling two."""
        n, size = len(keys), self.length - QUERY_LEN
        context = FILLER + rng.integers(0, SYMBOLS, (n, size))
        slots = np.sort([rng.choice(size - self.n_keys, self.n_keys, replace=False) for _ in range(n)], axis=1)
        starts = slots + np.arange(self.n_keys)  # each earlier pair shifts the later ones by a token
        np.put_along_axis(context, starts, keys, 1)
        np.put_along_axis(context, starts + 1, values, 1)
        return context
