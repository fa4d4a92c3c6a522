"""Tests of cardlab.modeling.uplift.

References are independent: causalml's Qini/AUUC implementation (same data, same normalisation), the known
effect of a synthetic randomised experiment, and targeting problems whose answer is worked out by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cardlab.modeling import uplift as U


def _experiment(n: int, seed: int, share_treated: float = 0.5):
    """Randomised retention experiment with a known heterogeneous effect on the retained probability."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    tau = 0.25 * np.tanh(x[:, 0]) + 0.10 * (x[:, 1] > 0)
    p0 = 1.0 / (1.0 + np.exp(-(0.3 * x[:, 2] + 0.3 * x[:, 3])))
    p1 = np.clip(p0 + tau, 0.0, 1.0)
    tau = p1 - p0  # exact effect after clipping
    e = np.full(n, share_treated)
    w = (rng.random(n) < e).astype(int)
    y = (rng.random(n) < np.where(w == 1, p1, p0)).astype(int)
    return x, y, w, e, tau


# ----------------------------------------------------------------------------- agreement with causalml
@pytest.mark.parametrize("normalize", [True, False])
def test_qini_and_auuc_match_causalml(normalize):
    metrics = pytest.importorskip("causalml.metrics")
    x, y, w, _, tau = _experiment(4000, seed=1)
    # no ties: causalml sorts with an unstable sort
    score = tau + np.random.default_rng(2).normal(scale=0.05, size=len(tau))
    df = pd.DataFrame({"y": y, "w": w, "model": score})
    assert U.qini_score(y, w, score, normalize) == pytest.approx(
        float(metrics.qini_score(df, normalize=normalize)["model"]), rel=1e-10
    )
    assert U.auuc_score(y, w, score, normalize) == pytest.approx(
        float(metrics.auuc_score(df, normalize=normalize)["model"]), rel=1e-10
    )
    ref_curve = metrics.get_qini(df, normalize=normalize)["model"].to_numpy()
    np.testing.assert_allclose(U.qini_curve(y, w, score, normalize), ref_curve, rtol=1e-10, atol=1e-10)


def test_true_gain_matches_causalml_with_known_tau():
    metrics = pytest.importorskip("causalml.metrics")
    _, _, w, _, tau = _experiment(3000, seed=3)
    score = np.random.default_rng(4).normal(size=len(tau)) + 5 * tau
    df = pd.DataFrame({"w": w, "tau": tau, "model": score})
    ref = metrics.get_cumgain(df, treatment_effect_col="tau")["model"].to_numpy()
    np.testing.assert_allclose(U.true_gain_curve(tau, score), ref, rtol=1e-10, atol=1e-10)


def test_qini_capture_bounds():
    _, _, _, _, tau = _experiment(5000, seed=5)
    assert U.qini_capture(tau, tau) == pytest.approx(1.0)
    assert U.qini_capture(tau, -tau) < 0
    noise = np.random.default_rng(6).normal(size=len(tau))
    assert abs(U.qini_capture(tau, noise)) < 0.1


# ----------------------------------------------------------------------------------------- learners
@pytest.fixture(scope="module")
def fitted():
    x, y, w, e, tau = _experiment(6000, seed=7)
    xt, _, _, _, tau_t = _experiment(2000, seed=8)
    cfg = U.XGBConfig(num_boost_round=100, max_depth=2, learning_rate=0.08, min_child_weight=30)
    preds = {name: U.make_learner(name, cfg).fit(x, y, w, e).predict(xt) for name in U.LEARNERS}
    return preds, tau_t


@pytest.mark.parametrize("name", sorted(U.LEARNERS))
def test_learner_recovers_known_effect(fitted, name):
    preds, tau = fitted
    tau_hat = preds[name]
    spread = float(np.std(tau))
    # the estimate must beat the best constant (PEHE of the true ATE = spread) clearly ...
    assert U.pehe(tau_hat, tau) < 0.7 * spread
    # ... get the average effect right within a third of the spread ...
    assert abs(tau_hat.mean() - tau.mean()) < spread / 3
    # ... and rank people by their effect far better than random
    assert U.qini_capture(tau, tau_hat) > 0.7


def test_model_selection_scores_prefer_truth():
    x, y, w, e, tau = _experiment(6000, seed=9)
    cfg = U.XGBConfig(num_boost_round=80)
    mu0, mu1, m = U.cross_fit_outcomes(x, y, w, cfg, n_folds=3, with_m=True)
    phi = U.dr_pseudo_outcome(x, y, w, e, nuisance=(mu0, mu1))
    assert abs(phi.mean() - tau.mean()) < 0.03  # the AIPW ATE is consistent
    bad = -tau
    assert U.dr_score(tau, phi) < U.dr_score(bad, phi)
    assert U.r_loss(tau, y, w, e, m) < U.r_loss(bad, y, w, e, m)


def test_input_errors_name_the_problem():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="binary"):
        U.TLearner().fit(x, [0, 1, 0, 1], [0, 2, 0, 1])
    with pytest.raises(ValueError, match="unknown uplift learner"):
        U.make_learner("s_learner")
    with pytest.raises(ValueError, match="NaN"):
        U.qini_score([0, 1], [0, 1], [np.nan, 1.0])


# --------------------------------------------------------------------------------- targeting rules
def test_targeting_rules_on_hand_worked_case():
    # five accounts; capacity 2; offer cost 1 (money units)
    churn_risk = np.array([0.9, 0.8, 0.3, 0.2, 0.1])
    value = np.array([10.0, 100.0, 50.0, 40.0, 5.0])
    tau = np.array([-0.1, 0.05, 0.4, 0.3, 0.2])  # the riskiest is a sleeping dog
    rules = {"risk": churn_risk, "value_at_risk": churn_risk * value, "uplift": tau}
    table = U.targeting_value(tau, value, rules, k=2, cost=1.0).set_index("rule")
    # risk contacts 0 and 1: -0.1*10 + 0.05*100 - 2 = 2
    assert table.loc["risk", "incremental_value"] == pytest.approx(2.0)
    # value at risk contacts 1 (80) and 2 (15): 5 + 20 - 2 = 23
    assert table.loc["value_at_risk", "incremental_value"] == pytest.approx(23.0)
    # uplift contacts 2 and 3: 20 + 12 - 2 = 30 = the oracle (tau*value: 20, 12, 5, 1, -1)
    assert table.loc["uplift", "incremental_value"] == pytest.approx(30.0)
    assert table.loc["oracle", "incremental_value"] == pytest.approx(30.0)
    assert table.loc["uplift", "share_of_oracle"] == pytest.approx(1.0)
    assert table.loc["risk", "incremental_retained"] == pytest.approx(-0.05)


def test_uplift_at_top_share():
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    w = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    score = np.arange(8, 0, -1)
    # top half: rows 0-3, treated {0, 2} mean 1, control {1, 3} mean 0.5
    assert U.uplift_at(y, w, score, 0.5) == pytest.approx(0.5)
