"""Generated Python function tasks with hidden unit tests, in HumanEval's problem format.

HumanEval is too hard for a small model to show progress on (SmolLM2-135M solves 0-4%), so a
learning loop needs tasks it partly solves. Each template (reverse the words, sum the multiples
of k, nth term of a Fibonacci-like sequence, ...) has a difficulty (1-3) and parameters (the
function's and arguments' names, constants, the inputs of its tests), so one template gives many
distinct tasks. The expected outputs are computed by running the template's own solution, and
the docstring shows the first case (one: a longer docstring the model restates costs tokens), the test checks all.

Train and held-out tasks are disjoint by template: every 4th template in `TEMPLATES` (indices
3, 7, 11, ...) is held out, so a gain on held-out tasks is a skill, not a memorised answer.
Everything is a function of the seed: the same seed gives the same tasks, byte for byte.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Any, Callable

SPLITS = ("train", "heldout")
HELDOUT_EVERY = 4  # template i is held out when i % 4 == 3
WORDS = ("apple", "river", "stone", "cloud", "tiger", "lemon", "music", "paper", "green", "house", "light", "ocean",
         "bread", "chair", "dream", "eagle", "flame", "grape", "honey", "jelly", "kite", "moon", "night", "olive")


@dataclass(frozen=True)
class Spec:
    """One task before formatting: a function `entry(args) -> returns` that does `doc`."""

    entry: str
    args: str  # "numbers: list[int], k: int"
    returns: str
    doc: str
    body: str  # the canonical solution, indented by 4 spaces
    cases: list[tuple[Any, ...]]  # argument tuples; the first `shown` appear in the docstring
    shown: int = 1


@dataclass(frozen=True)
class Template:
    name: str
    difficulty: int
    make: Callable[[random.Random], Spec]


TEMPLATES: list[Template] = []


def template(name: str, difficulty: int) -> Callable[[Callable[[random.Random], Spec]], Callable[[random.Random], Spec]]:
    def register(make: Callable[[random.Random], Spec]) -> Callable[[random.Random], Spec]:
        TEMPLATES.append(Template(name, difficulty, make))
        return make

    return register


def _ints(rng: random.Random, n: int, lo: int = -9, hi: int = 20) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(n)]


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.sample(WORDS, n))


def _lists(rng: random.Random, sizes: tuple[int, ...] = (5, 6, 4, 7, 3), lo: int = -9, hi: int = 20) -> list[tuple[Any, ...]]:
    return [(_ints(rng, n, lo, hi),) for n in sizes]


@template("sum_multiples", 1)
def _sum_multiples(rng: random.Random) -> Spec:
    k = rng.choice((2, 3, 4, 5))
    entry = "sum_of_evens" if k == 2 else rng.choice((f"sum_multiples_of_{k}", f"total_divisible_by_{k}"))
    arg = rng.choice(("numbers", "values", "nums"))
    return Spec(entry, f"{arg}: list[int]", "int", f"Return the sum of the numbers in {arg} that are divisible by {k}.",
                f"    return sum(x for x in {arg} if x % {k} == 0)\n", [*_lists(rng, (6, 5, 7, 4)), ([],), ([k, 2 * k, 1],)])


@template("count_chars", 1)
def _count_chars(rng: random.Random) -> Spec:
    chars = "aeiou" if rng.random() < 0.5 else "".join(sorted(rng.sample(string.ascii_lowercase, 3)))
    entry = "count_vowels" if chars == "aeiou" else rng.choice(("count_letters", "count_chars", "count_matches"))
    arg = rng.choice(("text", "s", "word"))
    return Spec(entry, f"{arg}: str", "int", f"Return how many characters of {arg} are one of the letters {chars!r}.",
                f"    return sum(1 for c in {arg} if c in {chars!r})\n",
                [(_sentence(rng, rng.randint(1, 3)),) for _ in range(5)] + [("",), (chars * 2,)])


@template("reverse_words", 1)
def _reverse_words(rng: random.Random) -> Spec:
    sep = rng.choice((" ", ",", "-", ";", "/"))
    entry = rng.choice(("reverse_words", "flip_words", "reverse_word_order"))
    arg = rng.choice(("sentence", "text", "s"))
    return Spec(entry, f"{arg}: str", "str", f"Return {arg} with the order of its words reversed; words are separated by {sep!r}.",
                f"    return {sep!r}.join({arg}.split({sep!r})[::-1])\n",
                [(sep.join(rng.sample(WORDS, n)),) for n in (3, 2, 4, 1, 5)])


@template("clamp_values", 1)
def _clamp(rng: random.Random) -> Spec:
    lo = rng.randint(-5, 3)
    hi = lo + rng.randint(3, 12)
    entry = rng.choice(("clamp_values", "clamp_all", "limit_values"))
    arg = rng.choice(("numbers", "values", "data"))
    return Spec(entry, f"{arg}: list[int]", "list[int]",
                f"Return a new list where every number of {arg} below {lo} becomes {lo} and every number above {hi} becomes {hi}.",
                f"    return [min(max(x, {lo}), {hi}) for x in {arg}]\n", [*_lists(rng, (5, 6, 4), lo - 8, hi + 8), ([],)])


@template("running_max", 2)
def _running(rng: random.Random) -> Spec:
    kind = rng.choice(("max", "min", "sum"))
    entry = rng.choice((f"running_{kind}", f"prefix_{kind}", f"cumulative_{kind}"))
    arg = rng.choice(("numbers", "values", "xs"))
    body = {"max": "        best = x if not out else max(out[-1], x)\n", "min": "        best = x if not out else min(out[-1], x)\n",
            "sum": "        best = x if not out else out[-1] + x\n"}[kind]
    what = {"max": "largest", "min": "smallest", "sum": "sum"}[kind]
    doc = (f"Return a list whose i-th element is the {what} of {arg}[0], ..., {arg}[i]." if kind != "sum" else
           f"Return a list whose i-th element is the sum of {arg}[0], ..., {arg}[i].")
    return Spec(entry, f"{arg}: list[int]", "list[int]", doc, f"    out = []\n    for x in {arg}:\n{body}        out.append(best)\n    return out\n",
                [*_lists(rng, (5, 6, 7)), ([],), ([4],)])


@template("dedupe", 2)
def _dedupe(rng: random.Random) -> Spec:
    entry = rng.choice(("dedupe", "remove_duplicates", "unique_in_order"))
    arg = rng.choice(("items", "values", "numbers"))
    cases = [(_ints(rng, n, 0, rng.randint(3, 6)),) for n in (7, 6, 8, 5)] + [([],), ([2, 2, 2],)]
    return Spec(entry, f"{arg}: list[int]", "list[int]",
                f"Return the elements of {arg} without duplicates, keeping the first occurrence of each, in their original order.",
                f"    seen = set()\n    out = []\n    for x in {arg}:\n        if x not in seen:\n            seen.add(x)\n            out.append(x)\n"
                "    return out\n", cases)


@template("fibonacci", 2)
def _fibonacci(rng: random.Random) -> Spec:
    a, b = rng.choice(((0, 1), (1, 1), (2, 1), (1, 3), (2, 2), (3, 1)))
    entry = "fibonacci" if (a, b) == (0, 1) else rng.choice(("sequence_term", "nth_term", "fib_like"))
    return Spec(entry, "n: int", "int",
                f"Return the n-th term of the sequence that starts {a}, {b} (terms 0 and 1) where each later term is the sum of the two before it.",
                f"    a, b = {a}, {b}\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
                [(rng.randint(4, 9),), (rng.randint(2, 3),), (0,), (1,), (rng.randint(10, 20),)])


@template("is_palindrome", 1)
def _palindrome(rng: random.Random) -> Spec:
    fold = rng.random() < 0.5
    entry = rng.choice(("is_palindrome", "reads_same_backwards", "palindrome_check"))
    arg = rng.choice(("text", "s", "word"))
    norm = f"{arg}.lower()" if fold else arg
    doc = f"Return True if {arg} reads the same forwards and backwards" + (", ignoring upper/lower case" if fold else "") + ", else False."
    words = ["level", "Noon" if fold else "noon", rng.choice(WORDS), "abca", "", "Racecar" if fold else "racecar", "ab"]
    return Spec(entry, f"{arg}: str", "bool", doc, f"    t = {norm}\n    return t == t[::-1]\n", [(w,) for w in words])


@template("rotate_list", 2)
def _rotate(rng: random.Random) -> Spec:
    k, left = rng.randint(1, 4), rng.random() < 0.5
    side = "left" if left else "right"
    entry = rng.choice((f"rotate_{side}", f"rotate_{side}_by_{k}", f"shift_{side}"))
    arg = rng.choice(("items", "values", "xs"))
    body = (f"    if not {arg}:\n        return []\n    k = {k} % len({arg})\n" +
            (f"    return {arg}[k:] + {arg}[:k]\n" if left else f"    return {arg}[-k:] + {arg}[:-k] if k else list({arg})\n"))
    return Spec(entry, f"{arg}: list[int]", "list[int]",
                f"Return {arg} rotated {side} by {k} positions (wrapping around; a list shorter than {k + 1} rotates by {k} modulo its length).",
                body, [*_lists(rng, (6, 5, 7, 2, 3), 0, 9), ([],)])


@template("digit_sum", 1)
def _digits(rng: random.Random) -> Spec:
    kind = rng.choice(("sum", "product", "even"))
    entry = {"sum": rng.choice(("digit_sum", "sum_of_digits")), "product": rng.choice(("digit_product", "product_of_digits")),
             "even": rng.choice(("count_even_digits", "even_digit_count"))}[kind]
    doc = {"sum": "Return the sum of the decimal digits of the non-negative integer n.",
           "product": "Return the product of the decimal digits of the non-negative integer n.",
           "even": "Return how many decimal digits of the non-negative integer n are even."}[kind]
    body = {"sum": "    return sum(int(d) for d in str(n))\n",
            "product": "    out = 1\n    for d in str(n):\n        out *= int(d)\n    return out\n",
            "even": "    return sum(1 for d in str(n) if int(d) % 2 == 0)\n"}[kind]
    return Spec(entry, "n: int", "int", doc, body, [(rng.randint(100, 99999),) for _ in range(4)] + [(0,), (7,)])


@template("count_greater", 1)
def _count_greater(rng: random.Random) -> Spec:
    t = rng.randint(0, 10)
    entry = rng.choice((f"count_above_{t}", "count_greater", "count_large"))
    arg = rng.choice(("numbers", "values", "scores"))
    return Spec(entry, f"{arg}: list[int]", "int", f"Return how many numbers in {arg} are greater than {t}.",
                f"    return sum(1 for x in {arg} if x > {t})\n", [*_lists(rng, (6, 5, 7, 4)), ([],), ([t],)])


@template("longest_word", 2)
def _longest_word(rng: random.Random) -> Spec:
    longest = rng.random() < 0.5
    what = "longest" if longest else "shortest"
    entry = rng.choice((f"{what}_word", f"find_{what}_word"))
    arg = rng.choice(("sentence", "text", "s"))
    pick = "max" if longest else "min"
    return Spec(entry, f"{arg}: str", "str",
                f"Return the {what} word of {arg} (words are separated by single spaces); on a tie, the first such word.",
                f"    return {pick}({arg}.split(' '), key=len)\n",
                [(_sentence(rng, n),) for n in (3, 4, 2, 5, 1)] + [("aa bb c dd",)])


@template("caesar", 2)
def _caesar(rng: random.Random) -> Spec:
    k = rng.randint(1, 25)
    entry = rng.choice(("caesar", "shift_letters", f"shift_by_{k}"))
    arg = rng.choice(("text", "s", "message"))
    return Spec(entry, f"{arg}: str", "str",
                f"Return {arg} with every lowercase letter shifted {k} places forward in the alphabet, wrapping from 'z' to 'a'; "
                "other characters stay as they are.",
                f"    return ''.join(chr((ord(c) - 97 + {k}) % 26 + 97) if 'a' <= c <= 'z' else c for c in {arg})\n",
                [(_sentence(rng, n),) for n in (1, 2, 3)] + [("xyz!",), ("",)])


@template("is_prime", 2)
def _is_prime(rng: random.Random) -> Spec:
    entry = rng.choice(("is_prime", "prime_check", "check_prime"))
    cases = [(rng.choice((2, 3, 5, 7, 11, 13, 29, 31, 97)),), (rng.randint(4, 60) * 2,), (1,), (0,), (rng.choice((9, 15, 21, 25, 49, 91)),),
             (rng.choice((17, 19, 23, 37, 41, 43)),)]
    return Spec(entry, "n: int", "bool", "Return True if n is a prime number, else False (0 and 1 are not prime).",
                "    if n < 2:\n        return False\n    for d in range(2, int(n ** 0.5) + 1):\n        if n % d == 0:\n            return False\n"
                "    return True\n", cases)


@template("pairwise_diffs", 2)
def _pairwise(rng: random.Random) -> Spec:
    entry = rng.choice(("differences", "pairwise_diffs", "consecutive_differences"))
    arg = rng.choice(("numbers", "values", "xs"))
    return Spec(entry, f"{arg}: list[int]", "list[int]",
                f"Return the list of differences {arg}[i + 1] - {arg}[i] between consecutive elements (one shorter than {arg}).",
                f"    return [{arg}[i + 1] - {arg}[i] for i in range(len({arg}) - 1)]\n", [*_lists(rng, (5, 4, 6)), ([3],), ([],)])


@template("factorial", 1)
def _factorial(rng: random.Random) -> Spec:
    kind = rng.choice(("factorial", "squares", "cubes", "odds"))
    entry = {"factorial": "factorial", "squares": "sum_of_squares", "cubes": "sum_of_cubes", "odds": "sum_of_odds"}[kind]
    doc = {"factorial": "Return n! = 1 * 2 * ... * n (1 when n is 0).", "squares": "Return 1**2 + 2**2 + ... + n**2 (0 when n is 0).",
           "cubes": "Return 1**3 + 2**3 + ... + n**3 (0 when n is 0).", "odds": "Return the sum of the odd numbers from 1 to n inclusive."}[kind]
    body = {"factorial": "    out = 1\n    for i in range(2, n + 1):\n        out *= i\n    return out\n",
            "squares": "    return sum(i * i for i in range(1, n + 1))\n", "cubes": "    return sum(i ** 3 for i in range(1, n + 1))\n",
            "odds": "    return sum(i for i in range(1, n + 1) if i % 2 == 1)\n"}[kind]
    return Spec(entry, "n: int", "int", doc, body, [(rng.randint(3, 6),), (rng.randint(7, 12),), (0,), (1,), (rng.randint(13, 20),)])


@template("run_length", 3)
def _run_length(rng: random.Random) -> Spec:
    count_first = rng.random() < 0.5
    entry = rng.choice(("run_length_encode", "compress_runs", "encode_runs"))
    arg = rng.choice(("text", "s", "data"))
    example = "'3a2b'" if count_first else "'a3b2'"
    piece = "str(n) + c" if count_first else "c + str(n)"
    cases = ["".join(rng.choice("abc") * rng.randint(1, 4) for _ in range(rng.randint(2, 5))) for _ in range(4)] + ["", "z"]
    return Spec(entry, f"{arg}: str", "str",
                f"Run-length encode {arg}: each run of equal characters becomes " + ("its length then the character" if count_first else
                "the character then its length") + f", e.g. 'aaabb' becomes {example}.",
                f"    out = []\n    i = 0\n    while i < len({arg}):\n        c, n = {arg}[i], 1\n        while i + n < len({arg}) and {arg}[i + n] == c:\n"
                f"            n += 1\n        out.append({piece})\n        i += n\n    return ''.join(out)\n", [(c,) for c in cases])


@template("second_largest", 3)
def _second_largest(rng: random.Random) -> Spec:
    smallest = rng.random() < 0.5
    what = "second smallest" if smallest else "second largest"
    entry = rng.choice(("second_smallest", "runner_up_low")) if smallest else rng.choice(("second_largest", "runner_up"))
    arg = rng.choice(("numbers", "values", "xs"))
    order = "" if smallest else ", reverse=True"
    return Spec(entry, f"{arg}: list[int]", "int | None",
                f"Return the {what} distinct value in {arg}, or None if it has fewer than two distinct values.",
                f"    distinct = sorted(set({arg}){order})\n    return distinct[1] if len(distinct) > 1 else None\n",
                [*_lists(rng, (6, 5, 7), 0, 9), ([4, 4],), ([],), ([1, 2],)])


@template("chunk", 3)
def _chunk(rng: random.Random) -> Spec:
    k = rng.randint(2, 4)
    entry = rng.choice(("chunk", f"chunks_of_{k}", "split_into_groups"))
    arg = rng.choice(("items", "values", "xs"))
    return Spec(entry, f"{arg}: list[int]", "list[list[int]]",
                f"Split {arg} into consecutive groups of {k} elements, in order; the last group may be shorter.",
                f"    return [{arg}[i:i + {k}] for i in range(0, len({arg}), {k})]\n", [*_lists(rng, (7, 6, 5, 2), 0, 9), ([],)])


@template("alternate_case", 2)
def _alternate_case(rng: random.Random) -> Spec:
    upper_first = rng.random() < 0.5
    entry = rng.choice(("alternate_case", "zigzag_case", "alternating_caps"))
    arg = rng.choice(("text", "s", "word"))
    even, odd = ("upper", "lower") if upper_first else ("lower", "upper")
    return Spec(entry, f"{arg}: str", "str",
                f"Return {arg} with the characters at even indices (0, 2, ...) in {even} case and those at odd indices in {odd} case.",
                f"    return ''.join(c.{even}() if i % 2 == 0 else c.{odd}() for i, c in enumerate({arg}))\n",
                [(rng.choice(WORDS),), (_sentence(rng, 2),), ("",), ("AbCd",), (rng.choice(WORDS).upper(),)])


@template("gcd", 2)
def _gcd(rng: random.Random) -> Spec:
    lcm = rng.random() < 0.5
    entry = rng.choice(("lcm", "least_common_multiple")) if lcm else rng.choice(("gcd", "greatest_common_divisor"))
    doc = ("Return the least common multiple of the positive integers a and b." if lcm else
           "Return the greatest common divisor of the positive integers a and b.")
    gcd = "    x, y = a, b\n    while y:\n        x, y = y, x % y\n"
    body = gcd + ("    return a * b // x\n" if lcm else "    return x\n")
    cases = [(rng.randint(2, 12) * f, rng.randint(2, 12) * f) for f in (rng.randint(2, 9), rng.randint(2, 5), 1)] + [(7, 7), (1, 9)]
    return Spec(entry, "a: int, b: int", "int", doc, body, cases)


@template("first_index_above", 2)
def _first_above(rng: random.Random) -> Spec:
    t = rng.randint(3, 12)
    entry = rng.choice(("first_index_above", f"find_first_over_{t}", "index_of_first_large"))
    arg = rng.choice(("numbers", "values", "xs"))
    return Spec(entry, f"{arg}: list[int]", "int", f"Return the index of the first number in {arg} greater than {t}, or -1 if there is none.",
                f"    for i, x in enumerate({arg}):\n        if x > {t}:\n            return i\n    return -1\n",
                [*_lists(rng, (6, 5, 7)), ([t, t - 1],), ([],)])


@template("flatten", 2)
def _flatten(rng: random.Random) -> Spec:
    entry = rng.choice(("flatten", "flatten_once", "concat_lists"))
    arg = rng.choice(("lists", "groups", "rows"))
    cases = [([_ints(rng, rng.randint(0, 3), 0, 9) for _ in range(rng.randint(1, 4))],) for _ in range(4)] + [([],)]
    return Spec(entry, f"{arg}: list[list[int]]", "list[int]", f"Return one list with the elements of every list in {arg}, in order.",
                f"    return [x for row in {arg} for x in row]\n", cases)


@template("count_divisors", 2)
def _count_divisors(rng: random.Random) -> Spec:
    total = rng.random() < 0.5
    entry = rng.choice(("sum_of_divisors", "divisor_sum")) if total else rng.choice(("count_divisors", "number_of_divisors"))
    doc = ("Return the sum of the positive divisors of the positive integer n (n included)." if total else
           "Return how many positive divisors the positive integer n has (1 and n included).")
    pick = "d" if total else "1"
    return Spec(entry, "n: int", "int", doc, f"    return sum({pick} for d in range(1, n + 1) if n % d == 0)\n",
                [(rng.randint(6, 30),), (rng.randint(31, 100),), (1,), (rng.choice((7, 13, 17)),), (rng.choice((36, 48, 60, 64)),)])


@template("merge_sorted", 3)
def _merge_sorted(rng: random.Random) -> Spec:
    entry = rng.choice(("merge_sorted", "merge_two_sorted", "combine_sorted"))
    a, b = rng.choice((("a", "b"), ("left", "right"), ("xs", "ys")))
    cases = [(sorted(_ints(rng, rng.randint(0, 5), 0, 20)), sorted(_ints(rng, rng.randint(0, 5), 0, 20))) for _ in range(4)] + [([], [])]
    return Spec(entry, f"{a}: list[int], {b}: list[int]", "list[int]",
                f"Merge the two ascending lists {a} and {b} into one ascending list with all their elements, without calling sort or sorted.",
                f"    out, i, j = [], 0, 0\n    while i < len({a}) and j < len({b}):\n        if {a}[i] <= {b}[j]:\n            out.append({a}[i])\n"
                f"            i += 1\n        else:\n            out.append({b}[j])\n            j += 1\n    return out + {a}[i:] + {b}[j:]\n", cases)


@template("capitalize_words", 1)
def _capitalize(rng: random.Random) -> Spec:
    upper = rng.random() < 0.5
    entry = rng.choice(("capitalize_words", "title_case")) if upper else rng.choice(("shout", "to_upper"))
    arg = rng.choice(("sentence", "text", "s"))
    doc, body = ((f"Return {arg} with the first letter of every word in upper case (words are lowercase, separated by single spaces).",
                  f"    return ' '.join(w[:1].upper() + w[1:] for w in {arg}.split(' '))\n") if upper else
                 (f"Return {arg} with every letter in upper case.", f"    return {arg}.upper()\n"))
    return Spec(entry, f"{arg}: str", "str", doc, body, [(_sentence(rng, n),) for n in (2, 3, 1, 4)] + [("",)])


@template("remove_char", 1)
def _remove_char(rng: random.Random) -> Spec:
    c = rng.choice("aeiost ")
    entry = rng.choice(("remove_char", "strip_all", f"drop_{'spaces' if c == ' ' else c}"))
    arg = rng.choice(("text", "s", "word"))
    return Spec(entry, f"{arg}: str", "str", f"Return {arg} with every occurrence of the character {c!r} removed.",
                f"    return {arg}.replace({c!r}, '')\n", [(_sentence(rng, n),) for n in (2, 3, 1)] + [("",), (c * 3,)])


@template("longest_run", 3)
def _longest_run(rng: random.Random) -> Spec:
    rising = rng.random() < 0.5
    entry = rng.choice(("longest_increasing_run", "longest_rise")) if rising else rng.choice(("longest_run", "longest_streak"))
    arg = rng.choice(("numbers", "values", "xs"))
    doc = (f"Return the length of the longest block of consecutive elements of {arg} where each is greater than the one before (0 for an empty list)."
           if rising else f"Return the length of the longest block of consecutive equal elements of {arg} (0 for an empty list).")
    cmp = f"{arg}[i] > {arg}[i - 1]" if rising else f"{arg}[i] == {arg}[i - 1]"
    return Spec(entry, f"{arg}: list[int]", "int", doc,
                f"    if not {arg}:\n        return 0\n    best = cur = 1\n    for i in range(1, len({arg})):\n        cur = cur + 1 if {cmp} else 1\n"
                "        best = max(best, cur)\n    return best\n", [*_lists(rng, (8, 7, 9), 0, 4), ([],), ([5],)])


@template("collatz_steps", 3)
def _collatz(rng: random.Random) -> Spec:
    entry = rng.choice(("collatz_steps", "steps_to_one"))
    return Spec(entry, "n: int", "int",
                "Return how many steps the Collatz rule (n // 2 if n is even, else 3 * n + 1) takes to bring the positive integer n to 1.",
                "    steps = 0\n    while n != 1:\n        n = n // 2 if n % 2 == 0 else 3 * n + 1\n        steps += 1\n    return steps\n",
                [(rng.randint(5, 30),), (rng.randint(2, 4),), (1,), (rng.randint(31, 99),), (rng.choice((16, 32, 64)),)])


@template("reverse_number", 2)
def _reverse_number(rng: random.Random) -> Spec:
    entry = rng.choice(("reverse_number", "reverse_digits", "flip_digits"))
    return Spec(entry, "n: int", "int", "Return the non-negative integer n with its decimal digits in reverse order (leading zeros dropped).",
                "    return int(str(n)[::-1])\n", [(rng.randint(10, 99999),) for _ in range(3)] + [(0,), (1200,), (7,)])


@template("product_list", 1)
def _product(rng: random.Random) -> Spec:
    entry = rng.choice(("product", "multiply_all", "list_product"))
    arg = rng.choice(("numbers", "values", "factors"))
    return Spec(entry, f"{arg}: list[int]", "int", f"Return the product of all the numbers in {arg} (1 for an empty list).",
                f"    out = 1\n    for x in {arg}:\n        out *= x\n    return out\n", [*_lists(rng, (3, 4, 2), -5, 9), ([],), ([0, 5],)])


@template("count_words_starting", 2)
def _count_starting(rng: random.Random) -> Spec:
    c = rng.choice("abcdeghlmnoprst")
    entry = rng.choice((f"count_words_starting_with_{c}", "count_starting", "words_with_initial"))
    arg = rng.choice(("sentence", "text", "s"))
    return Spec(entry, f"{arg}: str", "int",
                f"Return how many words of {arg} (separated by single spaces) start with the letter {c!r}, in upper or lower case.",
                f"    return sum(1 for w in {arg}.split(' ') if w[:1].lower() == {c!r})\n",
                [(_sentence(rng, n),) for n in (4, 5, 3)] + [("",), (f"{c.upper()}x {c}y z",)])


def heldout(index: int) -> bool:
    return index % HELDOUT_EVERY == HELDOUT_EVERY - 1


def templates(split: str) -> list[Template]:
    """The templates of one split: every 4th one is held out, the rest train."""
    if split not in SPLITS:
        raise ValueError(f"code_tasks: unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return [t for i, t in enumerate(TEMPLATES) if heldout(i) == (split == "heldout")]


def _solution(spec: Spec) -> Callable[..., Any]:
    scope: dict[str, Any] = {}
    exec(f"def {spec.entry}({spec.args}) -> {spec.returns}:\n{spec.body}", scope)  # the template's own code, not a model's
    return scope[spec.entry]


def _call(entry: str, args: tuple[Any, ...]) -> str:
    return f"{entry}({', '.join(repr(a) for a in args)})"


def problem(tmpl: Template, n: int, spec: Spec) -> dict[str, Any]:
    """A Spec in HumanEval's format: prompt = signature + docstring with examples, tests = every case."""
    solve = _solution(spec)
    expected = [solve(*args) for args in spec.cases]
    examples = "".join(f"    >>> {_call(spec.entry, a)}\n    {r!r}\n" for a, r in list(zip(spec.cases, expected))[: spec.shown])
    prompt = f'def {spec.entry}({spec.args}) -> {spec.returns}:\n    """{spec.doc}\n\n{examples}    """\n'
    checks = "".join(f"    assert {_call('candidate', a)} == {r!r}\n" for a, r in zip(spec.cases, expected))
    return {"task_id": f"CodeTask/{tmpl.name}/{n}", "prompt": prompt, "canonical_solution": spec.body,
            "test": f"def check(candidate):\n{checks}", "entry_point": spec.entry, "difficulty": tmpl.difficulty, "template": tmpl.name}


def generate(split: str, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` distinct tasks of `split`, round-robin over its templates (so difficulties mix in
    every prefix); the n-th variant of a template is drawn from (seed, template, n) alone."""
    pool = templates(split)
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    variants = [0] * len(pool)
    for slot in range(count):
        i = slot % len(pool)
        for _ in range(100):
            n, spec = variants[i], pool[i].make(random.Random(f"{seed}/{pool[i].name}/{variants[i]}"))
            variants[i] += 1
            key = f"{spec.entry}({spec.args}):{spec.doc}:{spec.cases!r}"
            if key not in seen:
                break
        else:
            raise ValueError(f"code_tasks: template {pool[i].name} gives no new task after 100 draws; lower count")
        seen.add(key)
        out.append(problem(pool[i], n, spec))
    return out
