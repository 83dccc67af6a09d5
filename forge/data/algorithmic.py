"""Algorithmic tasks for causal and bidirectional models: sorting, multi-digit arithmetic and
modular arithmetic (the grokking benchmark).

A row is the problem followed by its answer and labels mark only the answer, so a causal model is
scored on generating the answer after the prompt and a bidirectional one on filling it in (its
loader hides the answer behind the `blank` token named in meta). Train, validation and test never
share a problem.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from forge.data.configs import ARITHMETIC_OPS, MAX_DIGITS, MODULAR_OPS
from forge.data.task import IGNORE, SplitArrays

# Up to this many possible problems, they are numbered and drawn without replacement; beyond it
# (no int64 numbering) random problems are drawn and duplicates dropped.
NUMBERED = 2**62
REJECTION_ROUNDS = 100
BLANK = "_"  # what a bidirectional model sees in place of the answer
META = {"blank": BLANK}


def check_sizes(n_train: int, n_val: int, n_test: int) -> dict[str, int]:
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    for name, n in sizes.items():
        if n < 1:
            raise ValueError(f"data.n_{name}={n}: every split needs at least one problem")
    return sizes


def check_space(sizes: dict[str, int], total: int, what: str, fix: str) -> None:
    if sum(sizes.values()) > total:
        raise ValueError(
            f"data: {sum(sizes.values())} problems requested but only {total} distinct {what} exist; "
            f"lower n_train/n_val/n_test or {fix}"
        )


def distinct_rows(n: int, draw: Callable[[int], np.ndarray], fix: str) -> np.ndarray:
    """n distinct rows from `draw(m) -> (m, width)`, for problem spaces too large to number."""
    extra = n // 8 + 16  # duplicates are rare in a large space: draw a few more than needed
    rows = draw(n + extra)
    for _ in range(REJECTION_ROUNDS):
        rows = rows[first_occurrences(rows)]
        if len(rows) >= n:
            return rows[:n]
        rows = np.concatenate([rows, draw(n - len(rows) + extra)])
    raise ValueError(f"data: fewer than {n} distinct problems found; lower n_train/n_val/n_test or {fix}")


def first_occurrences(rows: np.ndarray) -> np.ndarray:
    """Indices of the rows not repeating an earlier row, in order."""
    seen: dict[bytes, int] = {}
    return np.array([i for i, row in enumerate(rows) if seen.setdefault(row.tobytes(), i) == i], dtype=np.int64)


def split_rows(rows: np.ndarray, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    ends = np.cumsum(list(sizes.values()))
    return dict(zip(sizes, np.split(rows, ends[:-1])))


def answer_labels(tokens: np.ndarray, answer_len: int) -> np.ndarray:
    labels = np.full_like(tokens, IGNORE)
    labels[:, -answer_len:] = tokens[:, -answer_len:]
    return labels


def column(n: int, token: int) -> np.ndarray:
    return np.full((n, 1), token, dtype=np.int64)


def digits(x: np.ndarray, width: int) -> np.ndarray:
    """Most-significant-first decimal digits of each number, zero-padded to `width`."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (x[:, None] // powers) % 10


class Sorting:
    """Sort `length` numbers from 0..max_value: "5 3 9 =" -> "3 5 9", each number one token."""

    meta = META

    def __init__(
        self, length: int, max_value: int, n_train: int, n_val: int, n_test: int, seed: int
    ) -> None:
        if length < 2:
            raise ValueError(f"data.length={length}: sorting needs at least 2 numbers")
        if max_value < 1:
            raise ValueError(f"data.max_value={max_value}: numbers need at least two values (max_value >= 1)")
        self.length, self.values, self.seed = length, max_value + 1, seed
        self.sizes = check_sizes(n_train, n_val, n_test)
        self.vocab = [str(v) for v in range(self.values)] + ["=", BLANK]
        what = f"sequences of {length} numbers in 0..{max_value}"
        check_space(self.sizes, self.values**length, what, "raise length or max_value")

    def build(self) -> dict[str, SplitArrays]:
        rng = np.random.default_rng(self.seed)
        problems = self._problems(rng, sum(self.sizes.values()))
        return {split: self._encode(rows) for split, rows in split_rows(problems, self.sizes).items()}

    def _problems(self, rng: np.random.Generator, n: int) -> np.ndarray:
        total = self.values**self.length
        if total > NUMBERED:
            return distinct_rows(
                n, lambda m: rng.integers(0, self.values, (m, self.length)), "raise length or max_value"
            )
        codes = rng.choice(total, n, replace=False)
        powers = self.values ** np.arange(self.length - 1, -1, -1, dtype=np.int64)
        return (codes[:, None] // powers) % self.values

    def _encode(self, problems: np.ndarray) -> SplitArrays:
        equals = column(len(problems), self.vocab.index("="))
        tokens = np.concatenate([problems, equals, np.sort(problems, axis=1)], axis=1)
        return SplitArrays(inputs=tokens, labels=answer_labels(tokens, self.length))


class Arithmetic:
    """a op b with `digits`-digit operands for op in add, sub (a >= b, so no sign) and mul.

    As in Addition, a op b and b op a count as one problem, so the splits share neither order;
    `lsb_first` writes operands and answer least-significant digit first (the easy order for a
    causal model).
    """

    vocab = list("0123456789") + list(ARITHMETIC_OPS.values()) + ["=", BLANK]
    meta = META

    def __init__(
        self, op: str, digits: int, lsb_first: bool, n_train: int, n_val: int, n_test: int, seed: int
    ) -> None:
        if op not in ARITHMETIC_OPS:
            raise ValueError(f"data.op={op}: use one of {', '.join(ARITHMETIC_OPS)}")
        if not 1 <= digits <= MAX_DIGITS:
            raise ValueError(f"data.digits={digits}: use 1 to {MAX_DIGITS} digits per operand")
        self.op, self.digits, self.lsb_first, self.seed = op, digits, lsb_first, seed
        self.sizes = check_sizes(n_train, n_val, n_test)
        self.answer_len = {"add": digits + 1, "sub": digits, "mul": 2 * digits}[op]
        check_space(self.sizes, self._pairs(), f"{digits}-digit operand pairs", "raise digits")

    def _pairs(self) -> int:
        """Unordered operand pairs, counted once whatever their order."""
        high = 10**self.digits
        return high * (high + 1) // 2

    def build(self) -> dict[str, SplitArrays]:
        rng = np.random.default_rng(self.seed)
        small, large = unordered_pair(rng.choice(self._pairs(), sum(self.sizes.values()), replace=False))
        if self.op == "sub":
            pairs = np.stack([large, small], axis=1)
        else:
            swap = rng.random(len(small)) < 0.5
            pairs = np.stack([np.where(swap, large, small), np.where(swap, small, large)], axis=1)
        return {split: self._encode(rows) for split, rows in split_rows(pairs, self.sizes).items()}

    def _encode(self, pairs: np.ndarray) -> SplitArrays:
        a, b = pairs[:, 0], pairs[:, 1]
        result = {"add": a + b, "sub": a - b, "mul": a * b}[self.op]
        a, b, answer = digits(a, self.digits), digits(b, self.digits), digits(result, self.answer_len)
        if self.lsb_first:
            a, b, answer = a[:, ::-1], b[:, ::-1], answer[:, ::-1]
        op = column(len(pairs), self.vocab.index(ARITHMETIC_OPS[self.op]))
        equals = column(len(pairs), self.vocab.index("="))
        tokens = np.concatenate([a, op, b, equals, answer], axis=1)
        return SplitArrays(inputs=tokens, labels=answer_labels(tokens, self.answer_len))


def unordered_pair(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode c = b(b+1)/2 + a into the pair a <= b (the triangular numbering of pairs)."""
    b = ((np.sqrt(8 * codes.astype(np.float64) + 1) - 1) // 2).astype(np.int64)
    b -= b * (b + 1) // 2 > codes  # float rounding can overshoot or undershoot by one
    b += (b + 1) * (b + 2) // 2 <= codes
    return codes - b * (b + 1) // 2, b


class Modular:
    """x op y mod p over every pair (x, y): the grokking benchmark of Power et al. (2022).

    Rows are "x op y =" then the answer, each number one token. A train_fraction of all pairs is
    trained on and the rest held out. The task is to generalise from a fraction of a finite table
    to the rest of it, so no third set of problems exists: test is the held-out pairs, the same as
    val (division skips y = 0 and needs a prime p).
    """

    meta = META

    def __init__(self, p: int, op: str, train_fraction: float, seed: int) -> None:
        if op not in MODULAR_OPS:
            raise ValueError(f"data.op={op}: use one of {', '.join(MODULAR_OPS)}")
        if p < 2 or (op == "div" and not is_prime(p)):
            raise ValueError(f"data.p={p}: the modulus must be at least 2, and prime for op=div (e.g. 97)")
        self.p, self.op, self.seed = p, op, seed
        self.n_train = round(train_fraction * self._count())
        if not 0 < self.n_train < self._count():
            raise ValueError(
                f"data.train_fraction={train_fraction}: leaves train or val empty; use a value strictly between 0 and 1"
            )
        self.vocab = [str(v) for v in range(p)] + list(MODULAR_OPS.values()) + ["=", BLANK]

    def _count(self) -> int:
        return self.p * (self.p - 1 if self.op == "div" else self.p)

    def build(self) -> dict[str, SplitArrays]:
        x, y = np.divmod(np.arange(self.p * self.p), self.p)
        if self.op == "div":
            x, y = x[y > 0], y[y > 0]
        order = np.random.default_rng(self.seed).permutation(len(x))
        train, val = order[: self.n_train], order[self.n_train :]
        held_out = self._encode(x[val], y[val])
        return {"train": self._encode(x[train], y[train]), "val": held_out, "test": held_out}

    def _encode(self, x: np.ndarray, y: np.ndarray) -> SplitArrays:
        p = self.p
        if self.op == "div":
            inverse = np.array([0] + [pow(v, -1, p) for v in range(1, p)], dtype=np.int64)
            result = x * inverse[y] % p
        else:
            result = {"add": x + y, "sub": x - y, "mul": x * y}[self.op] % p
        op, equals = self.vocab.index(MODULAR_OPS[self.op]), self.vocab.index("=")
        tokens = np.stack([x, np.full_like(x, op), y, np.full_like(x, equals), result], axis=1)
        return SplitArrays(inputs=tokens, labels=answer_labels(tokens, 1))


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))
