"""Multi-digit addition: "123+456=" -> "579", written least-significant digit first by default.

With `lsb_first` the operands and the sum are all reversed ("321+654=975"): each sum digit then
depends on the operand digits at the same offset and the carry just produced, which a causal
model learns in about a thousand steps; most-significant-first takes many times longer.
"""

from __future__ import annotations

import numpy as np

from forge.data.task import IGNORE, SplitArrays

VOCAB = list("0123456789+=_")


class Addition:
    """Problems a+b with `digits`-digit operands, split so no pair (in either order) is shared."""

    vocab = VOCAB
    meta = {"blank": "_"}  # hides the sum from bidirectional models

    def __init__(
        self, digits: int, lsb_first: bool, n_train: int, n_val: int, n_test: int, seed: int
    ) -> None:
        self.digits, self.lsb_first = digits, lsb_first
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.seed = seed
        total_pairs = (10**digits) * (10**digits + 1) // 2
        if sum(self.sizes.values()) > total_pairs:
            raise ValueError(
                f"data: {sum(self.sizes.values())} problems requested but only {total_pairs} distinct "
                f"{digits}-digit additions exist; lower n_train/n_val/n_test or raise digits"
            )

    def build(self) -> dict[str, SplitArrays]:
        rng = np.random.default_rng(self.seed)
        pairs = self._unique_pairs(rng, sum(self.sizes.values()))
        swap = rng.random(len(pairs)) < 0.5
        pairs[swap] = pairs[swap][:, ::-1]
        out, start = {}, 0
        for split, n in self.sizes.items():
            out[split] = self._encode(pairs[start : start + n])
            start += n
        return out

    def _unique_pairs(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n distinct unordered pairs, in random order."""
        high = 10**self.digits
        seen: dict[tuple[int, int], None] = {}
        while len(seen) < n:
            batch = np.sort(rng.integers(0, high, size=(2 * n, 2)), axis=1)
            for a, b in batch.tolist():
                seen.setdefault((a, b))
                if len(seen) == n:
                    break
        return np.array(list(seen), dtype=np.int64)

    def _encode(self, pairs: np.ndarray) -> SplitArrays:
        d = self.digits
        a, b = pairs[:, 0], pairs[:, 1]
        a, b, answer = _digits(a, d), _digits(b, d), _digits(a + b, d + 1)
        if self.lsb_first:
            a, b, answer = a[:, ::-1], b[:, ::-1], answer[:, ::-1]
        plus = np.full((len(pairs), 1), VOCAB.index("+"))
        equals = np.full((len(pairs), 1), VOCAB.index("="))
        tokens = np.concatenate([a, plus, b, equals, answer], axis=1)
        labels = np.full_like(tokens, IGNORE)
        labels[:, -(d + 1) :] = tokens[:, -(d + 1) :]
        return SplitArrays(inputs=tokens, labels=labels)


def _digits(x: np.ndarray, width: int) -> np.ndarray:
    """Most-significant-first decimal digits of each number, zero-padded to `width`."""
    powers = 10 ** np.arange(width - 1, -1, -1)
    return (x[:, None] // powers) % 10
