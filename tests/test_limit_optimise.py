"""The portfolio optimiser (multiple-choice knapsack) of the limit task, on synthetic instances."""

from __future__ import annotations

import numpy as np
import pytest

from cardlab.config import Params
from cardlab.modeling.optimise import InfeasibleError, _check, _lagrangian, brute_force_mckp, solve_mckp
from cardlab.tasks.limit import optimise, profit_and_loss

LINES = np.array([2_000.0, 5_000.0, 10_000.0, 20_000.0, 30_000.0, 50_000.0])


def _potential(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """True potential outcomes of a small synthetic book: spend saturates in the line, revolvers borrow a
    share of it, PD rises with the line for high-MPB borrowers (the world's qualitative shape)."""
    cap = np.exp(rng.normal(np.log(2_000), 0.6, n))[:, None]
    mpb = 0.65 * rng.random(n)[:, None]
    revolver = (rng.random(n) < 0.5)[:, None]
    risk = rng.normal(-3.2, 0.8, n)[:, None]
    lines = np.tile(LINES, (n, 1))
    spend = 12 * cap * (1 - np.exp(-lines / (3 * cap)))
    revolve = np.where(revolver, mpb * lines * 0.6, 0.0)
    pd_ = 1 / (1 + np.exp(-risk)) * (lines / (4 * cap)) ** (0.5 * mpb)
    return {"lines": lines, "spend": spend, "revolve": revolve, "pd": np.clip(pd_, 0, 1)}


@pytest.mark.parametrize("seed", range(40))
def test_solver_equals_brute_force_on_small_instances(seed):
    rng = np.random.default_rng(seed)
    n, k = 6, 4
    value = rng.normal(size=(n, k))
    weights = rng.uniform(0, 1, size=(2, n, k))
    capacity = np.array([2.5, 3.0])
    allowed = rng.random((n, k)) < 0.8
    allowed[:, 0] = True
    best_c, best = brute_force_mckp(value, weights, capacity, allowed)
    if best_c is None:
        with pytest.raises(InfeasibleError):
            solve_mckp(value, weights, capacity, allowed)
        return
    res = solve_mckp(value, weights, capacity, allowed)
    assert res.objective == pytest.approx(best, abs=1e-9)
    assert np.all(res.usage <= capacity + 1e-9)
    assert allowed[np.arange(n), res.choice].all()
    assert res.bound >= best - 1e-9  # a valid upper bound


def test_optimiser_on_oracle_responses_is_the_oracle_policy():
    """Fed the true potential outcomes, the portfolio optimiser returns the brute-force optimum."""
    params = Params()
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        pot = _potential(rng, 6)
        profit, loss = profit_and_loss(pot["spend"], pot["revolve"], pot["pd"], pot["lines"], params)
        allowed = np.ones_like(profit, bool)
        allowed[:, 4:] = False  # keep the brute force small: 4 options
        allowed[0, 1:] = False  # an account in arrears: no increase over its 2,000 yuan line
        legacy = np.full(6, 2)
        legacy[0] = 0
        budget = float(pot["lines"][np.arange(6), legacy].sum())
        cap = float(loss[np.arange(6), legacy].sum())
        res = optimise(profit, loss, pot["lines"], allowed, budget, cap, start=legacy)
        weights = np.stack([pot["lines"], loss])
        best_c, best = brute_force_mckp(profit, weights, np.array([budget, cap]), allowed)
        assert res.objective == pytest.approx(best, rel=1e-9, abs=1e-9)
        assert np.all(pot["lines"][np.arange(6), res.choice] <= pot["lines"][np.arange(6), best_c].max())
        assert res.choice[0] == 0


def test_every_constraint_holds_at_scale():
    rng = np.random.default_rng(7)
    n = 3_000
    pot = _potential(rng, n)
    profit, loss = profit_and_loss(pot["spend"], pot["revolve"], pot["pd"], pot["lines"], Params())
    allowed = np.ones_like(profit, bool)
    arrears = rng.random(n) < 0.05
    current = rng.integers(0, 6, n)
    allowed &= ~(arrears[:, None] & (np.arange(6)[None, :] > current[:, None]))
    legacy = np.where(arrears, current, rng.integers(0, 6, n))
    rows = np.arange(n)
    for share_b, share_l in ((1.0, 1.0), (0.7, 1.0), (1.2, 0.6), (0.8, 0.8)):
        budget = share_b * pot["lines"][rows, legacy].sum()
        cap = share_l * loss[rows, legacy].sum()
        res = optimise(profit, loss, pot["lines"], allowed, budget, cap)
        chosen = pot["lines"][rows, res.choice]
        assert chosen.sum() <= budget * (1 + 1e-9)
        assert loss[rows, res.choice].sum() <= cap * (1 + 1e-9)
        assert allowed[rows, res.choice].all()
        assert not np.any(arrears & (res.choice > current))
        assert res.gap < 1e-3, res.gap  # proven near-optimal


def test_lagrangian_bound_is_an_upper_bound_and_gap_small():
    rng = np.random.default_rng(3)
    n, k = 5_000, 6
    value = rng.normal(size=(n, k)) + np.arange(k) * 0.3
    weights = np.stack(
        [np.tile(np.arange(1.0, k + 1), (n, 1)), rng.uniform(0, 1, (n, k)) * np.arange(1, k + 1)]
    )
    capacity = np.array([3.0 * n, 1.2 * n])
    lag = _lagrangian(*_check(value, weights, capacity, None))
    assert np.all(lag.usage <= capacity * (1 + 1e-12))
    assert lag.bound >= lag.objective
    assert lag.gap < 1e-3


def test_infeasible_budget_is_reported():
    value = np.zeros((3, 2))
    weights = np.ones((1, 3, 2))
    with pytest.raises(InfeasibleError, match="cheapest"):
        solve_mckp(value, weights, np.array([2.0]))


def test_unconstrained_optimum_when_budgets_are_slack():
    rng = np.random.default_rng(0)
    value = rng.normal(size=(50, 4))
    res = solve_mckp(value, np.zeros((1, 50, 4)), np.array([1.0]))
    assert (res.choice == value.argmax(axis=1)).all()
    assert res.gap == 0.0
