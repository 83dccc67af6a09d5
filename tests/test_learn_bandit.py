"""The prompt bandit, the model router and the reward watch, each in a seeded simulation."""

from __future__ import annotations

import pickle
import random
import statistics

import pytest

from forge.errors import ForgeError
from forge.learn import blob
from forge.learn.bandit import PromptBandit
from forge.learn.drift import RewardWatch, compare_versions
from forge.learn.router import Router

ARMS = {"terse": 0.2, "plain": 0.35, "steps": 0.5, "examples": 0.65, "tests-first": 0.8}
MODELS = [("small", 0.1), ("mid", 1.0), ("large", 5.0)]
MODEL_P = {"small": 0.3, "mid": 0.6, "large": 0.85}  # the cap (1.5) leaves "mid" the best affordable


@pytest.mark.parametrize("policy", ["thompson", "ucb", "epsilon_greedy"])
def test_bandit_settles_on_the_best_prompt(policy):
    bandit, rng, picks = PromptBandit(policy, epsilon=0.1, seed=7), random.Random(7), []
    for _ in range(3000):
        variant = bandit.select("coder", list(ARMS))
        bandit.update("coder", variant, float(rng.random() < ARMS[variant]))
        picks.append(variant)
    assert picks[2000:].count("tests-first") / 1000 >= 0.9  # epsilon-greedy's ceiling is 1 - 0.1 * 4/5 = 0.92


def test_bandit_tries_a_new_variant_and_keeps_roles_apart():
    bandit = PromptBandit("ucb", seed=1)
    for _ in range(20):
        bandit.update("coder", "a", 1.0)
    assert bandit.select("coder", ["a", "b"]) == "b"
    assert bandit.select("fixer", ["a", "b"]) == "a"  # fixer has no history: each variant in turn


def _route(router, rng, runs):
    names = []
    for _ in range(runs):
        name = router.select()
        router.update(name, float(rng.random() < MODEL_P[name]))
        names.append(name)
    return names


@pytest.mark.parametrize("policy", ["thompson", "ucb", "epsilon_greedy"])
def test_router_holds_the_cap_and_beats_the_best_affordable_model(policy):
    router, costs = Router(MODELS, cost_cap=1.5, window=500, policy=policy, seed=3), dict(MODELS)
    names = _route(router, random.Random(3), 5000)
    spent = [costs[n] for n in names]
    window = sum(spent[:500])
    worst = window
    for i in range(500, len(spent)):
        window += spent[i] - spent[i - 500]
        worst = max(worst, window)
    assert worst / 500 <= 1.5 + 1e-9
    reward = statistics.fmean(MODEL_P[n] for n in names)
    assert reward >= 0.95 * MODEL_P["mid"]
    assert 0 < names.count("large") < names.count("mid")  # the savings buy some runs of the dear model


def test_router_max_cost_and_no_cap():
    router = Router(MODELS, policy="ucb", seed=0)
    assert {router.select(max_cost=1.0) for _ in range(10)} <= {"small", "mid"}
    names = _route(router, random.Random(0), 600)
    assert names[-200:].count("large") >= 180  # no cap: the best model
    with pytest.raises(ForgeError, match="max_cost=0.05: no router model costs that little"):
        router.select(max_cost=0.05)


def _stream(seed, before, after, n_before, n_after):
    rng = random.Random(seed)
    return [float(rng.random() < before) for _ in range(n_before)] + [float(rng.random() < after) for _ in range(n_after)]


def _first_alarm(watch, stream, start=0):
    alarms = [i for i, r in enumerate(stream) if watch.update("agent@v1", r) and i >= start]
    return alarms[0] if alarms else None


@pytest.mark.parametrize("detector, max_median, max_false", [("page_hinkley", 150, 0.02), ("adwin", 170, 0.02)])
def test_watch_detects_a_fifth_drop_and_rarely_cries_wolf(detector, max_median, max_false):
    delays = []
    for seed in range(200):
        first = _first_alarm(RewardWatch(detector), _stream(seed, 0.6, 0.48, 200, 600), start=200)
        delays.append(first - 200 if first is not None else 10**6)
    false = sum(_first_alarm(RewardWatch(detector), _stream(10**6 + s, 0.6, 0.6, 200, 0)) is not None for s in range(200))
    assert statistics.median(delays) <= max_median
    assert false / 200 <= max_false


@pytest.mark.parametrize("detector", ["page_hinkley", "adwin"])
def test_watch_ignores_a_rise(detector):
    watch = RewardWatch(detector)
    assert not any(watch.update("agent@v2", r) for r in _stream(5, 0.3, 0.9, 300, 300))
    assert watch.count("agent@v2") == 600
    assert watch.mean("agent@v2") == pytest.approx(0.6, abs=0.05)
    assert watch.mean("other") is None and watch.count("other") == 0


def test_compare_versions():
    rng = random.Random(0)
    old = [float(rng.random() < 0.6) for _ in range(300)]
    worse = compare_versions([float(rng.random() < 0.45) for _ in range(200)], old, alpha=0.01)
    assert worse.dropped and worse.p < 0.01 and worse.means[0] < worse.means[1]
    better = compare_versions([float(rng.random() < 0.7) for _ in range(200)], old, alpha=0.01)
    assert not better.dropped and better.p > 0.5
    assert compare_versions([1.0] * 5, [1.0] * 5) == (False, 1.0, (1.0, 1.0))


def _bandit_steps(bandit, rng, n):
    out = []
    for _ in range(n):
        variant = bandit.select("coder", list(ARMS))
        bandit.update("coder", variant, rng.random() * ARMS[variant] * 1.25)  # fractional rewards
        out.append(variant)
    return out


@pytest.mark.parametrize("policy", ["thompson", "ucb", "epsilon_greedy"])
def test_state_survives_a_restart_pull_for_pull(policy):
    whole, rng = PromptBandit(policy, seed=11), random.Random(1)
    expected = _bandit_steps(whole, rng, 600)
    part, rng = PromptBandit(policy, seed=11), random.Random(1)
    got = _bandit_steps(part, rng, 300)
    got += _bandit_steps(PromptBandit.loads(part.dumps()), rng, 300)
    assert got == expected

    uninterrupted = _route(Router(MODELS, 1.5, 100, policy, seed=2), random.Random(2), 400)
    router, rng = Router(MODELS, 1.5, 100, policy, seed=2), random.Random(2)
    resumed = _route(router, rng, 250) + _route(Router.loads(router.dumps()), rng, 150)
    assert resumed == uninterrupted


@pytest.mark.parametrize("detector", ["page_hinkley", "adwin"])
def test_watch_survives_a_restart(detector):
    stream = _stream(3, 0.6, 0.3, 150, 150)
    whole = RewardWatch(detector)
    expected = [whole.update("k", r) for r in stream]
    part = RewardWatch(detector)
    got = [part.update("k", r) for r in stream[:170]]
    part = RewardWatch.loads(part.dumps())
    got += [part.update("k", r) for r in stream[170:]]
    assert got == expected and any(got)
    assert part.mean("k") == whole.mean("k") and part.count("k") == 300


def test_a_doctored_or_foreign_blob_is_refused():
    class Boom:
        def __reduce__(self):
            return (print, ("ran",))

    evil = pickle.dumps({"kind": PromptBandit.KIND, "format": blob.FORMAT, "state": Boom()})
    with pytest.raises(ForgeError, match="the saved prompt bandit state cannot be read .*builtins.print is not part"):
        PromptBandit.loads(evil)
    with pytest.raises(ForgeError, match="the saved state is a reward watch, not a model router"):
        Router.loads(RewardWatch().dumps())
    with pytest.raises(ForgeError, match="cannot be read"):
        RewardWatch.loads(b"not a blob")


@pytest.mark.parametrize("make, message", [
    (lambda: PromptBandit("greedy"), "bandit policy 'greedy': choose one of epsilon_greedy, ucb, thompson"),
    (lambda: PromptBandit("epsilon_greedy", epsilon=1.5), "bandit epsilon=1.5: must be in"),
    (lambda: PromptBandit().update("coder", "a", 1.5), r"reward 1.5 for prompt variant 'a' of role 'coder': rewards must be numbers in \[0, 1\]"),
    (lambda: PromptBandit().update("coder", "a", float("nan")), "rewards must be numbers in"),
    (lambda: PromptBandit().select("coder", []), "prompt variants of role 'coder': give one or more distinct"),
    (lambda: PromptBandit().select("coder", ["a", "a"]), "give one or more distinct"),
    (lambda: Router([]), "router models"),
    (lambda: Router([("a", 1.0), ("a", 2.0)]), "each with its own non-empty name"),
    (lambda: Router([("a", -1.0)]), "cannot be negative"),
    (lambda: Router(MODELS, cost_cap=0.05), r"cost_cap=0.05: below the cheapest model's cost \(0.1\)"),
    (lambda: Router(MODELS, window=0), "router window=0: a number of runs, at least 1"),
    (lambda: Router(MODELS).update("huge", 1.0), "router model 'huge': not one of small, mid, large"),
    (lambda: Router(MODELS).update("mid", -0.1), "reward -0.1 for router model 'mid'"),
    (lambda: RewardWatch("cusum"), "drift detector 'cusum': choose one of page_hinkley, adwin"),
    (lambda: RewardWatch("adwin", delta=1.0), "adwin delta=1.0: must be a confidence in"),
    (lambda: RewardWatch("page_hinkley", delta=0), "page_hinkley delta=0: must be a positive magnitude"),
    (lambda: compare_versions([], [1.0]), "both versions need rewards"),
    (lambda: compare_versions([1.0], [1.0], alpha=1), "alpha=1: a significance level"),
])
def test_bad_settings_are_one_line_errors(make, message):
    with pytest.raises(ForgeError, match=message) as e:
        make()
    assert "\n" not in str(e.value)
