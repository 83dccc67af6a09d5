"""`forge compare`: exact numbers on hand-computed cases, the verdict's refusal below the minimum
detectable effect, simulated false-positive rate and power, and the command on two run folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from forge import compare
from forge.cli.compare import main
from forge.compare import A_BETTER, B_BETTER, NO_DIFFERENCE, compare_losses, compare_pass_fail
from forge.errors import ForgeError

SIMS = 1000  # null comparisons, and comparisons at the printed effect, per simulation


def outcomes(a_only: int, b_only: int, both: int, neither: int) -> tuple[list[bool], list[bool]]:
    a = [True] * a_only + [False] * b_only + [True] * both + [False] * neither
    b = [False] * a_only + [True] * b_only + [True] * both + [False] * neither
    return a, b


def test_pass_fail_exact_numbers_and_refusal_below_the_detectable_effect() -> None:
    # A alone passes 10 items, B alone 2, both 5, neither 33
    c = compare_pass_fail(*outcomes(10, 2, 5, 33))
    assert (c.n, c.a_wins, c.b_wins) == (50, 10, 2)
    assert (c.a_mean, c.b_mean, c.difference) == (0.30, 0.14, pytest.approx(-0.16))
    # exact McNemar: 2 * P(K <= 2), K ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert c.p_value == 158 / 4096 == stats.binomtest(2, 12, 0.5).pvalue
    assert compare.pass_fail_power(c.mde, 50, 12 / 50, 0.05) == pytest.approx(0.8, abs=1e-9)
    assert c.mde == pytest.approx(0.1942, abs=1e-4)
    # significant (p 0.039), but 16 points is below the 19.4 the test detects: no winner
    assert c.p_value < 0.05 and abs(c.difference) < c.mde
    assert c.verdict == NO_DIFFERENCE
    assert compare_pass_fail(*outcomes(14, 1, 5, 30)).verdict == A_BETTER
    assert compare_pass_fail(*outcomes(1, 14, 5, 30)).verdict == B_BETTER
    # 4 items to none looks like a 40-point lead, but p = 0.125 at 10 items: no winner
    small = compare_pass_fail(*outcomes(0, 4, 2, 4))
    assert (small.difference, small.p_value, small.verdict) == (0.4, 0.125, NO_DIFFERENCE)


def test_newcombe_interval_matches_the_textbook_example() -> None:
    # Fagerland, Lydersen & Laake, Statistical Analysis of Contingency Tables, ch. 8 (Cavo et al.
    # 2012): estimate -0.0621, 95% CI -0.1186 to -0.0046
    low, high = compare.newcombe_interval(59, 6, 16, 80, 0.05)
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)
    c = compare_pass_fail(*outcomes(16, 6, 59, 80))
    assert (round(c.difference, 4), round(c.ci_low, 4), round(c.ci_high, 4)) == (-0.0621, -0.1186, -0.0046)


def test_the_power_computation_rejects_exactly_where_binomtest_does() -> None:
    """pass_fail_power counts the outcomes the exact test rejects; at effect 1 every item is
    discordant in B's favour, so it is 1 exactly when binomtest rejects n out of n."""
    for m in range(1, 40):
        rejected = [k for k in range(m + 1) if stats.binomtest(k, m, 0.5).pvalue < 0.05]
        assert compare.pass_fail_power(1.0, m, 0.0, 0.05) == (1.0 if m in rejected else 0.0)
        c = stats.binom.ppf(0.025, m, 0.5) - 1
        assert rejected == [k for k in range(m + 1) if k <= c or k >= m - c]


def test_too_few_items_detect_nothing() -> None:
    c = compare_pass_fail(*outcomes(0, 5, 0, 0))  # 5 of 5 for B: p = 0.0625
    assert (c.mde, c.verdict, c.to_dict()["mde"]) == (math.inf, NO_DIFFERENCE, None)
    assert "none: 5 items are too few" in compare.format_table(c)


def test_losses_exact_numbers() -> None:
    a = np.zeros(8)
    b = np.arange(1.0, 9.0)  # B's loss higher on every item
    c = compare_losses(a, b)
    # 2^8 sign patterns enumerated exactly: only all-positive and all-negative are as extreme
    assert c.p_value == 2 / 256
    assert (c.difference, c.a_wins, c.b_wins, c.a_mean, c.b_mean) == (4.5, 8, 0, 0.0, 4.5)
    assert c.mde == pytest.approx(compare.loss_mde(np.std(b, ddof=1), 8, 0.05))
    assert c.ci_low < 4.5 < c.ci_high
    assert c.verdict == A_BETTER  # lower loss is better
    assert compare_losses(b, a).verdict == B_BETTER
    tie = compare_losses([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert (tie.difference, tie.ci_low, tie.ci_high, tie.p_value, tie.verdict) == (0.0, 0.0, 0.0, 1.0, NO_DIFFERENCE)


def test_losses_refuse_a_winner_below_the_detectable_effect() -> None:
    rng = np.random.default_rng(0)
    a = rng.gamma(2.0, 1.0, 100)
    b = a + rng.normal(-0.1, 0.5, 100)
    c = compare_losses(a, b)
    assert c.p_value < 0.01 and abs(c.difference) < c.mde
    assert c.verdict == NO_DIFFERENCE
    assert "p < 0.05, but the difference is below the detectable" in compare.format_table(c)


def test_unpaired_input_is_refused() -> None:
    with pytest.raises(ValueError, match="A has 3, B has 4"):
        compare_pass_fail([True] * 3, [True] * 4)
    with pytest.raises(ValueError, match="A has 2, B has 1"):
        compare_losses([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        compare_losses([1.0, math.nan], [1.0, 2.0])


# Simulations. The exact McNemar test is conservative: with a discrete statistic its size is below
# alpha (3.5% at 164 items of which a quarter discordant, computed exactly by pass_fail_power at
# effect 0), so its false-positive rate is held to that exact size, and below 6%. The permutation
# test on losses is exact: 5% +- 1%. At the printed effect the power is 0.8 by construction; a
# simulation of 1,000 comparisons measures it to within 3 standard errors (+-0.038).

HUMANEVAL, DISCORDANT = 164, 0.25


def pass_fail_draws(effect: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """SIMS comparisons of HUMANEVAL items: a quarter of items discordant, B ahead by `effect`."""
    p = [(DISCORDANT - effect) / 2, (DISCORDANT + effect) / 2, 0.25, 1 - DISCORDANT - 0.25]
    kind = rng.choice(4, size=(SIMS, HUMANEVAL), p=p)  # A only, B only, both, neither
    return (kind == 0) | (kind == 2), (kind == 1) | (kind == 2)


def test_pass_fail_false_positive_rate_over_1000_null_comparisons() -> None:
    results = [compare_pass_fail(a, b) for a, b in zip(*pass_fail_draws(0.0, np.random.default_rng(0)))]
    fpr = np.mean([r.p_value < 0.05 for r in results])
    size = compare.pass_fail_power(0.0, HUMANEVAL, DISCORDANT, 0.05)
    assert size < 0.05
    assert abs(fpr - size) <= 3 * math.sqrt(size * (1 - size) / SIMS) and fpr <= 0.06
    assert np.mean([r.verdict != NO_DIFFERENCE for r in results]) <= fpr


def test_pass_fail_power_at_the_printed_effect() -> None:
    printed = compare_pass_fail(*outcomes(20, 21, 41, 82))  # 41 of 164 discordant
    assert compare.pass_fail_power(printed.mde, HUMANEVAL, DISCORDANT, 0.05) == pytest.approx(0.8, abs=1e-9)
    results = [compare_pass_fail(a, b) for a, b in zip(*pass_fail_draws(printed.mde, np.random.default_rng(1)))]
    power = np.mean([r.p_value < 0.05 for r in results])
    assert abs(power - 0.8) <= 3 * math.sqrt(0.8 * 0.2 / SIMS)
    # the verdict also asks for the observed difference to reach the MDE: about half the time here
    assert 0.4 <= np.mean([r.verdict == B_BETTER for r in results]) <= 0.6


def test_losses_false_positive_rate_over_1000_null_comparisons() -> None:
    rng = np.random.default_rng(2)
    item = rng.gamma(2.0, 1.0, (SIMS, 50))  # how hard each item is; both models' noise is skewed
    d = (item + rng.gamma(1.0, 0.5, item.shape)) - (item + rng.gamma(1.0, 0.5, item.shape))
    p = compare.sign_flip_p(d, 999, seed=0)
    assert 0.04 <= np.mean(p < 0.05) <= 0.06
    mde = compare.loss_mde(d.std(axis=1, ddof=1), 50, 0.05)
    assert np.mean((p < 0.05) & (np.abs(d.mean(axis=1)) >= mde)) <= np.mean(p < 0.05)


def test_losses_power_at_the_printed_effect() -> None:
    rng = np.random.default_rng(3)
    a = rng.gamma(2.0, 1.0, 50)
    b = a + rng.normal(0.0, 1.0, 50)
    printed = compare_losses(a, b)
    sd = float(np.std(b - a, ddof=1))
    d = -printed.mde + sd * rng.standard_normal((SIMS, 50))  # B lower by the printed effect
    p = compare.sign_flip_p(d, 999, seed=1)
    assert abs(np.mean(p < 0.05) - 0.8) <= 3 * math.sqrt(0.8 * 0.2 / SIMS)


def run_dir(root: Path, name: str, passed: dict[str, bool], prompt: str = "completion", extra: str = "") -> Path:
    run = root / name
    (run / "humaneval").mkdir(parents=True)
    lines = [json.dumps({"task_id": t, "sample": 0, "completion": "", "passed": p, "status": "passed" if p else "failed"})
             for t, p in passed.items()]
    (run / "humaneval" / f"fine-tuned.{prompt}.jsonl").write_text("\n".join(lines) + "\n" + extra)
    return run


def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    a, b = outcomes(10, 2, 5, 33)
    ids = [f"HumanEval/{i}" for i in range(50)]
    # a second sample of A's, all failed, must not count: the per-item outcome is the first sample
    second = "".join(json.dumps({"task_id": t, "sample": 1, "passed": False}) + "\n" for t in ids)
    return run_dir(tmp_path, "a", dict(zip(ids, a)), extra=second), run_dir(tmp_path, "b", dict(reversed(list(zip(ids, b)))))


def test_the_command_prints_the_comparison(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, b = two_runs(tmp_path)
    main([str(a), str(b)])
    assert capsys.readouterr().out == (
        f"A                       {a}/humaneval/fine-tuned.completion.jsonl\n"
        f"B                       {b}/humaneval/fine-tuned.completion.jsonl\n"
        "items                   50\n"
        "pass rate               A 30.0%   B 14.0%\n"
        "difference B - A        -16.0 points   95% CI [-29.4, -2.3]\n"
        "items only A passed     10\n"
        "items only B passed     2\n"
        "exact McNemar p         0.0386\n"
        "detectable (80% power)  19.4 points\n"
        "verdict                 no detectable difference (p < 0.05, but the difference is below the detectable 19.4 points)\n"
    )
    main([str(b), str(a), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["a"] == f"{b}/humaneval/fine-tuned.completion.jsonl"
    assert {k: out[k] for k in ("kind", "test", "n", "a_wins", "b_wins", "p_value", "verdict")} == {
        "kind": "pass/fail", "test": "exact McNemar", "n": 50, "a_wins": 2, "b_wins": 10,
        "p_value": 158 / 4096, "verdict": NO_DIFFERENCE}
    assert out["difference"] == pytest.approx(0.16) and out["mde"] == pytest.approx(0.1942, abs=1e-4)


def test_the_command_refuses_runs_it_cannot_pair(tmp_path: Path) -> None:
    a, b = two_runs(tmp_path)
    other = run_dir(tmp_path, "other", {"HumanEval/0": True, "HumanEval/99": False})
    with pytest.raises(ForgeError, match=r"not scored on the same items: 49 \(HumanEval/1, HumanEval/10, HumanEval/11, …\) "
                                         r"only in .*a, 1 \(HumanEval/99\) only in .*other; .*eval.humaneval.limit"):
        main([str(a), str(other)])
    (tmp_path / "untested").mkdir()
    with pytest.raises(ForgeError, match=r"has no per-item outcomes \(no humaneval/fine-tuned\.\*\.jsonl\): .*eval=humaneval"):
        main([str(a), str(tmp_path / "untested")])
    with pytest.raises(ForgeError, match="no run directory"):
        main([str(a), str(tmp_path / "missing")])
    with pytest.raises(ForgeError, match="no per-item outcomes for the chat prompt"):
        main([str(a), str(b), "--prompt", "chat"])
    both = run_dir(tmp_path, "both", {"HumanEval/0": True}, prompt="chat")
    (both / "humaneval" / "fine-tuned.completion.jsonl").write_text("")
    with pytest.raises(ForgeError, match="prompts chat, completion: choose one with --prompt"):
        main([str(a), str(both)])


def loss_run(root: Path, name: str, losses: list[float], fingerprint: str = "fp") -> Path:
    run = root / name
    (run / "heldout").mkdir(parents=True)
    (run / "data").mkdir()
    (run / "data" / "meta.json").write_text(json.dumps({"fingerprint": fingerprint}))
    rows = [{"item": i, "loss": x, "tokens": 10} for i, x in enumerate(losses)] + [{"item": len(losses), "loss": None, "tokens": 0}]
    (run / "heldout" / "fine-tuned.test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_the_command_compares_per_row_losses(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(2.0, 0.3, 40)
    b = a - 0.25 + rng.normal(0, 0.1, 40)  # B lower on the same rows
    main([str(loss_run(tmp_path, "a", list(a))), str(loss_run(tmp_path, "b", list(b))), "--metric", "loss", "--json"])
    out = json.loads(capsys.readouterr().out)
    expected = compare_losses(a, b).to_dict()  # rows without a scored token are left out
    assert {k: out[k] for k in expected} == expected and out["verdict"] == "B better" and out["n"] == 40
    with pytest.raises(ForgeError, match=r"not scored on the same items: .*per-row losses pair only on the same rows"):
        main([str(tmp_path / "a"), str(loss_run(tmp_path, "c", list(b), fingerprint="other")), "--metric", "loss"])
    with pytest.raises(ForgeError, match=r"has no per-row held-out losses \(no heldout/base.test.jsonl\): evaluate it again "
                                         r"\(stage=evaluate eval.compare_base=true\)"):
        main([str(tmp_path / "a"), str(tmp_path / "b"), "--metric", "loss", "--model", "base"])
