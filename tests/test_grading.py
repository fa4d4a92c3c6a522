"""Grading machinery (modeling/grading.py): the weighted AUC against sklearn, the customer-clustered bootstrap,
the cross-fitted observable ceiling on a world whose best-from-features score is known, and the bar verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from cardlab.config import CeilingParams, GradingParams, parse_params
from cardlab.modeling import grading as G


def test_weighted_auc_matches_sklearn_with_ties_and_weights():
    rng = np.random.default_rng(0)
    y = (rng.random(3000) < 0.1).astype(float)
    score = np.round(rng.random(3000) + 0.5 * y, 2)  # coarse: many ties
    w = rng.integers(0, 4, 3000).astype(float)
    assert G.WeightedAUC(y, score)() == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert G.WeightedAUC(y, score)(w) == pytest.approx(roc_auc_score(y, score, sample_weight=w), abs=1e-12)


def test_soft_label_auc_is_the_auc_of_the_expanded_population():
    # a row with probability p counts as p of an event and 1 - p of a non-event: sklearn on the doubled rows
    rng = np.random.default_rng(1)
    p = rng.beta(1, 8, 2000)
    score = p + 0.05 * rng.standard_normal(2000)
    y2 = np.r_[np.ones(2000), np.zeros(2000)]
    expected = roc_auc_score(y2, np.r_[score, score], sample_weight=np.r_[p, 1 - p])
    assert G.WeightedAUC(p, score)() == pytest.approx(expected, abs=1e-12)
    # and it is what realised labels drawn from p average to (Monte Carlo, 200 draws)
    draws = [roc_auc_score(rng.random(2000) < p, score) for _ in range(200)]
    assert G.WeightedAUC(p, score)() == pytest.approx(np.mean(draws), abs=0.004)


def test_cluster_bootstrap_keeps_customers_together_and_widens_the_interval():
    rng = np.random.default_rng(2)
    customers = np.repeat(np.arange(300), 20)  # 20 rows per customer, identical outcome within a customer
    x = np.repeat(rng.standard_normal(300), 20)
    boot = G.ClusterBootstrap(customers, n_boot=300, seed=5)
    for w in boot.weights():
        per_customer = pd.Series(w).groupby(customers).nunique()
        assert (per_customer == 1).all()
        assert w.sum() == len(customers)
        break
    lo, hi = boot.bounds(boot.replicates(lambda w: w @ x / w.sum()))
    rows = G.ClusterBootstrap(np.arange(len(x)), n_boot=300, seed=5)
    rlo, rhi = rows.bounds(rows.replicates(lambda w: w @ x / w.sum()))
    # the row bootstrap treats 20 copies as 20 observations: its interval is ~sqrt(20) = 4.5x too narrow
    assert (hi[0] - lo[0]) > 3.0 * (rhi[0] - rlo[0])
    # the clustered interval matches the analytic standard error of a mean of 300 independent values
    se = x[::20].std(ddof=1) / np.sqrt(300)
    assert (hi[0] - lo[0]) == pytest.approx(2 * 1.96 * se, rel=0.2)
    again = G.ClusterBootstrap(customers, n_boot=300, seed=5)
    assert np.array_equal(again.bounds(again.replicates(lambda w: w @ x / w.sum()))[0], lo)


def test_index_replicates_draw_the_same_customers_as_weights():
    customers = np.array([1, 1, 2, 3, 3, 3])
    boot = G.ClusterBootstrap(customers, n_boot=5, seed=3)
    for w, idx in zip(boot.weights(), boot.indices(), strict=True):
        assert np.array_equal(np.bincount(idx, minlength=6), w.astype(int))


def test_weighted_lift_matches_the_plain_definition():
    rng = np.random.default_rng(4)
    y = (rng.random(1000) < 0.08).astype(float)
    s = rng.random(1000) + y
    top = np.argsort(-s, kind="mergesort")[:100]
    assert G.weighted_lift(y, s, 0.1) == pytest.approx(y[top].mean() / y.mean())


def _latent_world(n_customers: int, seed: int = 0):
    """Oracle p = expit(-2 + x + z) with z latent; the features are x plus noise columns and a customer-coded
    column. The best score from the features is E[p | x], computed by quadrature over z ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    rows = 3
    cust = np.repeat(np.arange(n_customers), rows)
    x = rng.standard_normal(len(cust))
    z = np.repeat(rng.standard_normal(n_customers), rows)
    p = expit(-2.0 + x + z)
    noise = rng.standard_normal((len(cust), 3))
    X = np.column_stack([x, noise, cust % 997])  # the last column identifies customers (a memorisation trap)
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    best = (expit(-2.0 + x[:, None] + nodes[None, :]) * weights).sum(axis=1) / weights.sum()
    return X, p, cust, best


def test_ceiling_reaches_the_best_score_the_features_allow_and_stays_below_the_oracle():
    X, p, cust, best = _latent_world(4000)
    predict = cust % 2 == 0
    fit = G.cross_fit_ceiling(
        X, p, cust, predict, CeilingParams(num_boost_round=200), objective="binary:logistic", seed=1
    )
    c = fit.full[predict]
    ceiling, bayes_x, oracle = (G.WeightedAUC(p[predict], s)() for s in (c, best[predict], p[predict]))
    assert ceiling == pytest.approx(bayes_x, abs=0.005)  # what the features allow
    assert ceiling < oracle - 0.02  # the latent z is information the features lack
    assert np.isnan(fit.full[~predict]).all()
    # the learning curve (one customer fold) rises towards the full fit on the same rows
    rows, curve = fit.curve(predict)
    assert 0.2 * predict.sum() < rows.sum() < 0.5 * predict.sum()
    lc = [G.WeightedAUC(p[rows], curve[f])() for f in (0.25, 0.5, 1.0)]
    assert lc[0] <= lc[2] + 1e-3 and abs(lc[2] - lc[1]) < 0.01


def test_ceiling_is_cross_fitted_by_customer():
    # a target that is pure customer identity: a learner that saw the customer would reproduce it
    rng = np.random.default_rng(7)
    cust = np.repeat(np.arange(2000), 4)
    target = np.repeat(rng.random(2000), 4)
    X = np.column_stack([cust.astype(float), rng.standard_normal(len(cust))])
    fit = G.cross_fit_ceiling(
        X,
        target,
        cust,
        np.ones(len(cust), bool),
        CeilingParams(folds=3, num_boost_round=100, max_depth=8, min_child_weight=0.0, fractions=[]),
        objective="reg:squarederror",
        seed=0,
    )
    assert abs(np.corrcoef(fit.full, target)[0, 1]) < 0.1
    folds = G.customer_folds(cust, 3, 0)
    assert (pd.Series(folds).groupby(cust).nunique() == 1).all()


def test_grade_auc_pairs_model_ceiling_and_oracle():
    X, p, cust, best = _latent_world(3000, seed=3)
    rng = np.random.default_rng(8)
    y = (rng.random(len(p)) < p).astype(float)
    model = best + 0.02 * rng.standard_normal(len(p))
    fit = G.CeilingFit({1.0: best, 0.5: best}, train_rows=len(best))
    out = G.grade_auc(y, model, fit, p, cust, GradingParams(bootstrap=100))
    assert out["oot_auc_ceiling"] == pytest.approx(roc_auc_score(y, best))
    assert out["oot_auc_ceiling_ratio"] == pytest.approx(roc_auc_score(y, model) / roc_auc_score(y, best))
    assert out["oot_auc_ceiling_ratio_lo"] < out["oot_auc_ceiling_ratio"] < out["oot_auc_ceiling_ratio_hi"]
    assert out["oot_auc_ceiling_convergence"] == 0.0
    # the paired ratio interval is much narrower than the intervals of the two AUCs it divides
    assert (out["oot_auc_ceiling_ratio_hi"] - out["oot_auc_ceiling_ratio_lo"]) < 0.5 * (
        out["oot_auc_ceiling_hi"] - out["oot_auc_ceiling_lo"]
    )


@pytest.mark.parametrize(
    ("lo", "hi", "verdict"),
    [
        (0.98, 0.99, "met"),
        (0.96, 0.969, "not met"),
        (0.96, 0.98, "inconclusive"),
        (None, None, "inconclusive"),
    ],
)
def test_bar_verdicts_follow_the_bounds(lo, hi, verdict):
    b = G.bar("x", 0.975, lo, hi, 0.97)
    assert b["verdict"] == verdict
    assert set(b) == {"name", "value", "lower", "upper", "threshold", "verdict"}


def test_flag_and_count_bars():
    assert G.flag_bar("decoys_below_drivers", True)["verdict"] == "met"
    assert G.flag_bar("decoys_below_drivers", False)["verdict"] == "not met"
    assert G.flag_bar("decoys_below_drivers", "not assessable")["verdict"] == "inconclusive"
    assert G.count_bar("screen_kept", 2, 10)["verdict"] == "not met"


def test_bar_thresholds_are_params():
    p = parse_params({"grading": {"bars": {"churn": {"qini_capture": 0.7}}}})
    assert p.grading.bars.churn.qini_capture == 0.7
    assert p.grading.bars.credit.oot_auc_ceiling_ratio == 0.97
    with pytest.raises(ValueError, match="grading.bars.churn.qini_captur"):
        parse_params({"grading": {"bars": {"churn": {"qini_captur": 0.7}}}})


def test_behavioural_features_by_source_or_family():
    assert G.is_behavioural({"source": "bnpl_monthly.overdue_days", "family": "x"})
    assert G.is_behavioural({"source": "sessions_monthly.app_sessions"})
    assert not G.is_behavioural({"source": "statements.dpd", "family": "bnpl"})
    assert G.is_behavioural({"family": "platform_orders"})
    assert not G.is_behavioural({"family": "profile", "source": "bureau_score"})
