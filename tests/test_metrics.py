"""Tests of cardlab.modeling.metrics.

Reference values come from independent implementations (scikit-learn, scipy, optbinning), from the oracle of a
simulation (the true PD), or from public anchors (score scaling: 50:1 odds = 600 points, PDO 20) — never from
the code under test itself.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from cardlab.modeling import metrics as M


def _sim(n: int = 20_000, seed: int = 0, noise: float = 0.0):
    """Logistic world: true PD known; returns (y, pd_true, pd_noisy, x)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    logit = -2.8 + x @ np.array([0.9, -0.6, 0.4])
    pd_true = 1.0 / (1.0 + np.exp(-logit))
    y = (rng.random(n) < pd_true).astype(np.int8)
    pd_noisy = 1.0 / (1.0 + np.exp(-(logit + noise * rng.normal(size=n))))
    return y, pd_true, pd_noisy, x


# ------------------------------------------------------------------------------------- discrimination


def test_auc_gini_match_sklearn_including_ties():
    y, pt, _, _ = _sim()
    for p in (pt, np.round(pt, 2)):  # rounding creates heavy ties
        ref = roc_auc_score(y, p)
        assert M.auc(y, p) == pytest.approx(ref, abs=1e-12)
        assert M.gini(y, p) == pytest.approx(2 * ref - 1, abs=1e-12)


def test_auc_direction_and_extremes():
    y = np.array([0, 0, 1, 1])
    assert M.auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert M.auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert M.auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5
    with pytest.raises(ValueError):
        M.auc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        M.auc([0, 2, 1], [0.1, 0.2, 0.3])


def test_ks_matches_scipy_and_optbinning():
    from optbinning import OptimalBinning

    y, pt, _, _ = _sim(seed=1)
    assert M.ks(y, pt) == pytest.approx(stats.ks_2samp(pt[y == 1], pt[y == 0]).statistic, abs=1e-12)

    # On a discretised score (20 levels), KS equals optbinning's binning-table KS when every distinct value is
    # its own bin.
    p = np.digitize(pt, np.quantile(pt, np.linspace(0.05, 0.95, 19))).astype(np.float64)
    vals = np.unique(p)
    splits = (vals[:-1] + vals[1:]) / 2.0
    ob = OptimalBinning(
        name="score",
        dtype="numerical",
        user_splits=splits,
        user_splits_fixed=[True] * splits.size,
        min_prebin_size=1e-6,
        monotonic_trend=None,
    )
    ob.fit(p, y)
    bt = ob.binning_table
    bt.build()
    assert len(ob.splits) == splits.size  # no bin was merged
    assert M.ks(y, p) == pytest.approx(bt.ks, abs=1e-9)


def test_pr_auc_matches_sklearn_average_precision():
    y, pt, _, _ = _sim(seed=2)
    for p in (pt, np.round(pt, 2)):
        assert M.pr_auc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)


def test_lift_and_recall_at():
    y, pt, _, _ = _sim(seed=3)
    r10 = M.recall_at(y, pt, 0.1)
    l10 = M.lift_at(y, pt, 0.1)
    # lift at share s = recall at s / s when s·n is an integer
    assert l10 == pytest.approx(r10 / 0.1, rel=1e-12)
    assert M.recall_at(y, pt, 1.0) == 1.0
    assert M.lift_at(y, pt, 1.0) == pytest.approx(1.0)
    # a random score captures about `share` of bads; the true PD clearly more
    rnd = np.random.default_rng(9).random(y.size)
    assert abs(M.recall_at(y, rnd, 0.1) - 0.1) < 0.03
    assert r10 > 0.2
    # hand example: riskiest 2 of 4 rows hold both bads
    assert M.recall_at([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2], 0.5) == 1.0
    assert M.lift_at([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2], 0.5) == 2.0


def test_auc_bootstrap_ci_covers_and_is_seeded():
    y, pt, _, _ = _sim(n=5_000, seed=4)
    lo, hi = M.auc_bootstrap_ci(y, pt, n_boot=300, seed=7)
    assert lo < M.auc(y, pt) < hi
    assert (lo, hi) == M.auc_bootstrap_ci(y, pt, n_boot=300, seed=7)
    assert (lo, hi) != M.auc_bootstrap_ci(y, pt, n_boot=300, seed=8)
    # width close to the DeLong normal-approximation width (independent variance estimate)
    se = _delong_se(y, pt)
    assert (hi - lo) == pytest.approx(2 * 1.959964 * se, rel=0.2)


def _delong_se(y, p):
    """Textbook O(m·n) DeLong standard error of one AUC (structural components), independent of M."""
    pos, neg = p[y == 1], p[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return math.sqrt(v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size)


def test_delong_matches_bootstrap_and_textbook():
    rng = np.random.default_rng(5)
    y, pt, _, _ = _sim(n=3_000, seed=5)
    logit = np.log(pt / (1 - pt))
    p1 = logit + 0.6 * rng.normal(size=y.size)
    p2 = logit + 1.0 * rng.normal(size=y.size)
    d = M.delong_test(y, p1, p2)
    assert d["auc1"] == pytest.approx(roc_auc_score(y, p1), abs=1e-12)
    assert d["auc2"] == pytest.approx(roc_auc_score(y, p2), abs=1e-12)
    assert d["diff"] == pytest.approx(d["auc1"] - d["auc2"])

    # paired stratified bootstrap of the AUC difference: SE and two-sided p-value agree with DeLong
    ib, ig = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    diffs = []
    for _ in range(400):
        idx = np.r_[rng.choice(ib, ib.size), rng.choice(ig, ig.size)]
        diffs.append(roc_auc_score(y[idx], p1[idx]) - roc_auc_score(y[idx], p2[idx]))
    se_boot = np.std(diffs, ddof=1)
    se_delong = abs(d["diff"] / d["z"])
    assert se_delong == pytest.approx(se_boot, rel=0.2)
    p_boot = 2 * stats.norm.sf(abs(d["diff"]) / se_boot)
    assert abs(math.log10(d["p_value"]) - math.log10(p_boot)) < 1.0

    # identical scores: no difference
    same = M.delong_test(y, p1, p1)
    assert same["diff"] == 0.0 and same["p_value"] == 1.0

    # single-model variance equals the textbook DeLong variance
    d0 = M.delong_test(y, p1, np.zeros_like(p1))  # constant score: AUC 0.5, zero variance
    assert abs(d0["diff"] / d0["z"]) == pytest.approx(_delong_se(y, p1), rel=1e-9)


# ------------------------------------------------------------------------------------------ stability


def _scorecard_monitoring(seed: int = 0):
    from optbinning import BinningProcess, Scorecard
    from optbinning.scorecard import ScorecardMonitoring
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    n = 4_000
    cols = ["a", "b", "c"]
    xe = pd.DataFrame(rng.normal(size=(n, 3)), columns=cols)
    xa = pd.DataFrame(rng.normal(loc=[0.3, 0.0, -0.2], scale=[1.0, 1.3, 1.0], size=(n, 3)), columns=cols)

    def label(x):
        logit = -2 + x.to_numpy() @ np.array([0.8, -0.5, 0.3])
        return (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(int)

    ye, ya = label(xe), label(xa)
    sc = Scorecard(binning_process=BinningProcess(cols), estimator=LogisticRegression())
    sc.fit(xe, ye)
    mon = ScorecardMonitoring(scorecard=sc, psi_method="quantile", psi_n_bins=10, psi_min_bin_size=0.05)
    mon.fit(xa, ya, xe, ye)
    return sc, mon, xe, xa


@pytest.mark.filterwarnings("ignore:The current default behavior:FutureWarning")  # sklearn, inside optbinning
def test_psi_matches_optbinning_scorecard_monitoring():
    sc, mon, xe, xa = _scorecard_monitoring()
    se, sa = sc.score(xe), sc.score(xa)
    ref_total = float(mon.psi_table().loc["Totals", "PSI"])
    # same split points → same PSI (optbinning uses no floor; all bins are populated here)
    assert M.psi(se, sa, bins=mon._splits, eps=1e-300) == pytest.approx(ref_total, rel=1e-9)
    # our own quantile bins on the expected sample give nearly the same answer
    assert M.psi(se, sa, bins=10) == pytest.approx(ref_total, rel=0.25, abs=0.01)
    tab = M.psi_table(se, sa, bins=mon._splits)
    ref = mon.psi_table().drop(index="Totals")
    np.testing.assert_array_equal(tab["n_expected"].to_numpy(), ref["Count E"].to_numpy(dtype=np.int64))
    np.testing.assert_array_equal(tab["n_actual"].to_numpy(), ref["Count A"].to_numpy(dtype=np.int64))


@pytest.mark.filterwarnings("ignore:The current default behavior:FutureWarning")  # sklearn, inside optbinning
def test_csi_matches_optbinning_variable_psi():
    sc, mon, xe, xa = _scorecard_monitoring()
    var = mon.psi_variable_table(style="summary").set_index("Variable")["PSI"]
    for c in ["a", "b", "c"]:
        splits = sc.binning_process_.get_binned_variable(c).splits
        assert M.csi(xe[c].to_numpy(), xa[c].to_numpy(), bins=splits, eps=1e-300) == pytest.approx(
            float(var[c]), rel=1e-9, abs=1e-12
        )
    # the shifted features are flagged, the unshifted one is not
    assert M.csi(xe["a"], xa["a"]) > 0.05
    assert M.csi(xe["c"], xa["c"]) > 0.02


def test_psi_behaviour():
    rng = np.random.default_rng(11)
    e = rng.normal(size=50_000)
    assert M.psi(e, rng.normal(size=50_000)) < 0.01  # same distribution
    assert M.psi(e, rng.normal(0.5, 1, size=50_000)) > 0.2  # half-sigma shift
    # PSI of quantile bins against itself is exactly 0; missing values get their own bin
    assert M.psi(e, e) == 0.0
    a = e.copy()
    a[:5_000] = np.nan
    t = M.psi_table(e, a)
    assert t["bin"].iloc[-1] == "missing" and t["n_actual"].iloc[-1] == 5_000
    # categorical CSI
    assert M.csi(np.array(["a", "b"] * 50), np.array(["a", "b"] * 50)) == 0.0
    assert M.csi(np.array(["a", "b"] * 50), np.array(["a"] * 90 + ["b"] * 10)) > 0.3


def test_psi_by_period():
    rng = np.random.default_rng(12)
    e = rng.normal(size=10_000)
    a = np.r_[rng.normal(size=5_000), rng.normal(1.0, 1, size=5_000)]
    per = np.array(["2024-01"] * 5_000 + ["2024-02"] * 5_000)
    t = M.psi_by_period(e, a, per)
    assert list(t["period"]) == ["2024-01", "2024-02"]
    assert t["psi"].iloc[0] < 0.02 < 0.25 < t["psi"].iloc[1]


def test_iv_matches_optbinning_binning_table():
    from optbinning import OptimalBinning

    y, _, _, x = _sim(seed=6)
    ob = OptimalBinning(name="x0", dtype="numerical", max_n_bins=8)
    ob.fit(x[:, 0], y)
    bt = ob.binning_table
    bt.build()
    idx = ob.transform(x[:, 0], metric="indices")
    assert M.iv(idx, y) == pytest.approx(bt.iv, rel=1e-9)
    # WoE = ln(%good / %bad) (positive = safer), the same convention as optbinning's binning table
    w = M.woe_table(idx, y)
    ref_woe = bt.build().drop(index="Totals")["WoE"].to_numpy(dtype=np.float64)[: len(w)]
    np.testing.assert_allclose(w.sort_values("bin")["woe"].to_numpy(), ref_woe, atol=1e-9)
    # an irrelevant characteristic has ~zero IV
    noise_bins = np.random.default_rng(0).integers(0, 5, size=y.size)
    assert M.iv(noise_bins, y) < 0.01


# ----------------------------------------------------------------------------------------- calibration


def test_brier_matches_sklearn():
    y, pt, _, _ = _sim(seed=7)
    assert M.brier(y, pt) == pytest.approx(brier_score_loss(y, pt), abs=1e-15)


def test_hosmer_lemeshow_calibrated_vs_miscalibrated():
    y, pt, _, _ = _sim(n=20_000, seed=8)
    _, p_ok = M.hosmer_lemeshow(y, pt)
    assert p_ok > 0.01  # true PD: calibrated by construction of the world
    stat_bad, p_bad = M.hosmer_lemeshow(y, np.clip(pt * 1.6, 0, 0.999))
    assert p_bad < 1e-6
    logit = np.log(pt / (1 - pt))
    _, p_flat = M.hosmer_lemeshow(y, 1 / (1 + np.exp(-0.5 * logit - 0.5 * logit.mean())))  # under-confident
    assert p_flat < 1e-6
    # under H0 the p-value is ~uniform: over repeated worlds, not concentrated near 0
    ps = [M.hosmer_lemeshow(*_sim(n=4_000, seed=100 + k)[:2])[1] for k in range(30)]
    assert np.mean(np.array(ps) < 0.05) < 0.25


def test_reliability_curve_true_pd_on_diagonal():
    y, pt, _, _ = _sim(n=50_000, seed=9)
    rc = M.reliability_curve(y, pt, n_bins=10)
    assert {"mean_pred", "obs_rate", "n"} <= set(rc.columns)
    assert rc["n"].sum() == y.size
    se = np.sqrt(rc["mean_pred"] * (1 - rc["mean_pred"]) / rc["n"])
    assert np.all(np.abs(rc["obs_rate"] - rc["mean_pred"]) < 4 * se)
    assert rc["mean_pred"].is_monotonic_increasing


def test_jeffreys_test():
    # closed form against scipy's beta: one-sided p = Beta(d+.5, n-d+.5).cdf(PD)
    assert M.jeffreys_test(5, 100, 0.03) == pytest.approx(stats.beta.cdf(0.03, 5.5, 95.5))
    # observed DR well above PD → small p (PD underestimated); DR at/below PD → large p
    assert M.jeffreys_test(30, 1000, 0.01) < 1e-6
    assert M.jeffreys_test(10, 1000, 0.01) == pytest.approx(0.5, abs=0.1)
    assert M.jeffreys_test(2, 1000, 0.01) > 0.99
    # monotone: more defaults → smaller p; higher PD → larger p
    ps = [M.jeffreys_test(d, 500, 0.02) for d in range(0, 30, 3)]
    assert all(a > b for a, b in zip(ps, ps[1:], strict=False))
    assert M.jeffreys_test(10, 500, 0.01) < M.jeffreys_test(10, 500, 0.03)
    # zero defaults is well defined (Jeffreys prior), vectorised input
    assert 0.0 < M.jeffreys_test(0, 50, 0.001) < 1.0
    v = M.jeffreys_test(np.array([0, 5]), np.array([100, 100]), np.array([0.01, 0.01]))
    assert v.shape == (2,) and v[1] < v[0]
    # size of the test: under a true PD, rejection rate at 5% is about 5%
    rng = np.random.default_rng(0)
    d = rng.binomial(2_000, 0.02, size=4_000)
    rate = np.mean(M.jeffreys_test(d, np.full(d.size, 2_000), np.full(d.size, 0.02)) < 0.05)
    assert 0.02 < rate < 0.08
    with pytest.raises(ValueError):
        M.jeffreys_test(5, 4, 0.1)


# ---------------------------------------------------------------------------------------- rank ordering


def test_gains_table():
    y, pt, _, _ = _sim(seed=10)
    g = M.gains_table(y, pt, n_bins=10)
    for c in ["n", "bads", "bad_rate", "odds_good_bad", "cum_capture", "lift"]:
        assert c in g.columns
    assert g["n"].sum() == y.size and g["bads"].sum() == y.sum()
    assert (g["n"] == y.size // 10).all()
    assert g["cum_capture"].iloc[-1] == pytest.approx(1.0)
    # decile 1 is the riskiest: its bad rate and the top-10% recall agree with independent computations
    top = np.argsort(-pt, kind="mergesort")[: y.size // 10]
    assert g["bad_rate"].iloc[0] == pytest.approx(y[top].mean())
    assert g["cum_capture"].iloc[0] == pytest.approx(M.recall_at(y, pt, 0.1))
    assert g["lift"].iloc[0] == pytest.approx(y[top].mean() / y.mean())
    assert g["odds_good_bad"].iloc[0] == pytest.approx((1 - y[top].mean()) / y[top].mean())
    # for the true PD the bad rate falls decile by decile (allow sampling noise in the tail)
    assert g["bad_rate"].iloc[0] > g["bad_rate"].iloc[4] > g["bad_rate"].iloc[9]
    assert g["p_min"].iloc[0] >= g["p_max"].iloc[1]


# ----------------------------------------------------------------------------------------- score scaling


def test_score_scaling_anchor_and_pdo():
    pd_anchor = 1 / 51  # good:bad odds 50:1
    assert M.pd_to_score(pd_anchor) == pytest.approx(600.0, abs=1e-9)
    assert M.pd_to_score(1 / 101) == pytest.approx(620.0, abs=1e-9)  # odds 100:1 → +20
    assert M.pd_to_score(1 / 26) == pytest.approx(580.0, abs=1e-9)  # odds 25:1 → −20
    assert M.pd_to_score(0.5) == pytest.approx(600 - 20 * math.log2(50), abs=1e-9)
    # higher score = lower risk
    s = M.pd_to_score(np.array([0.01, 0.05, 0.2]))
    assert np.all(np.diff(s) < 0)
    # custom scaling
    assert M.pd_to_score(1 / 21, base_points=500, base_odds=20, pdo=50) == pytest.approx(500.0)
    assert M.pd_to_score(1 / 41, base_points=500, base_odds=20, pdo=50) == pytest.approx(550.0)


def test_score_scaling_round_trip():
    q = np.geomspace(1e-5, 0.99, 500)
    np.testing.assert_allclose(M.score_to_pd(M.pd_to_score(q)), q, rtol=1e-10)
    s = np.linspace(300, 900, 301)
    np.testing.assert_allclose(M.pd_to_score(M.score_to_pd(s)), s, rtol=1e-12)
    assert M.score_to_pd(600.0) == pytest.approx(1 / 51)
    assert isinstance(M.pd_to_score(0.1), float) and isinstance(M.score_to_pd(600), float)
    assert np.isfinite(M.pd_to_score(np.array([0.0, 1.0]))).all()


def test_master_scale():
    _, pt, _, _ = _sim(seed=13)
    grades, scale = M.master_scale(pt, 7)
    assert grades.min() >= 1 and grades.max() <= 7
    assert list(scale["grade"]) == list(range(1, 8))
    # geometric bands: constant ratio upper/lower; contiguous
    ratio = scale["pd_upper"] / scale["pd_lower"]
    assert np.allclose(ratio, ratio.iloc[0])
    assert np.allclose(scale["pd_upper"].iloc[:-1].to_numpy(), scale["pd_lower"].iloc[1:].to_numpy())
    # grade 1 = lowest PD: mean PD rises with grade, scores fall
    mp = scale["mean_pd"].dropna()
    assert mp.is_monotonic_increasing
    assert (scale["score_upper"] > scale["score_lower"]).all()
    assert scale["n"].sum() == pt.size
    # each PD inside its band (outer grades open-ended)
    inner = (grades > 1) & (grades < 7)
    lo = scale["pd_lower"].to_numpy()[grades - 1]
    hi = scale["pd_upper"].to_numpy()[grades - 1]
    assert np.all((pt[inner] > lo[inner]) & (pt[inner] <= hi[inner]))
    # assign_grades reproduces the grades and works on new data
    np.testing.assert_array_equal(M.assign_grades(pt, scale), grades)
    assert M.assign_grades(np.array([1e-9, 0.9999]), scale).tolist() == [1, 7]
