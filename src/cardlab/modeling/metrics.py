"""Credit-risk metric functions: discrimination, calibration, stability, score scaling.

Conventions used throughout (state them once, rely on them everywhere):

* ``y`` is a binary outcome array with 1 = bad (default / event) and 0 = good.
* ``p`` is a *risk* score: a higher value means a higher probability of being bad (a PD in [0, 1] for the
  calibration metrics; any monotone risk score for the rank metrics AUC/KS/Gini/gains).
* Credit *points* (see :func:`pd_to_score`) run the other way: a higher score means lower risk.

All functions are pure: numpy-compatible arrays in, python floats / tuples / ``pandas.DataFrame`` out, no I/O,
no global random state (randomised functions take an explicit ``seed``).
"""

from __future__ import annotations

import math
from typing import SupportsInt, cast

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "auc",
    "ks",
    "gini",
    "brier",
    "auc_bootstrap_ci",
    "delong_test",
    "psi",
    "csi",
    "psi_table",
    "psi_by_period",
    "bin_edges",
    "iv",
    "woe_table",
    "gains_table",
    "hosmer_lemeshow",
    "jeffreys_test",
    "reliability_curve",
    "pr_auc",
    "lift_at",
    "recall_at",
    "pd_to_score",
    "score_to_pd",
    "master_scale",
    "assign_grades",
]

PSI_EPS = 1e-6


# ----------------------------------------------------------------------------------------------- helpers


def _check_yp(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1:
        raise ValueError("y and p must be one-dimensional")
    if y.shape[0] != p.shape[0]:
        raise ValueError(f"y and p have different lengths ({y.shape[0]} != {p.shape[0]})")
    if y.shape[0] == 0:
        raise ValueError("empty input")
    if not np.all(np.isfinite(p)):
        raise ValueError("p contains NaN or infinite values")
    yb = y.astype(np.float64)
    if not np.all((yb == 0) | (yb == 1)):
        raise ValueError("y must be binary 0/1 (1 = bad)")
    return yb.astype(np.int8), p


def _check_both_classes(y: np.ndarray) -> tuple[int, int]:
    n_bad = int(y.sum())
    n_good = int(y.shape[0] - n_bad)
    if n_bad == 0 or n_good == 0:
        raise ValueError("y must contain both bads (1) and goods (0)")
    return n_bad, n_good


def _midrank(x: np.ndarray) -> np.ndarray:
    """Mid-ranks (1-based, ties averaged) — same as ``scipy.stats.rankdata(method='average')``."""
    return stats.rankdata(x, method="average")


# ----------------------------------------------------------------------------------------- discrimination


def auc(y, p) -> float:
    """Area under the ROC curve, P(p_bad > p_good) + 0.5 P(tie).

    Direction: higher ``p`` = riskier; 0.5 = random, 1.0 = perfect rank ordering of bads above goods.
    Unitless, in [0, 1]. Computed exactly via the Mann–Whitney U statistic (ties get half credit).
    """
    y, p = _check_yp(y, p)
    n_bad, n_good = _check_both_classes(y)
    r = _midrank(p)
    u = r[y == 1].sum() - n_bad * (n_bad + 1) / 2.0
    return float(u / (n_bad * n_good))


def gini(y, p) -> float:
    """Gini coefficient (accuracy ratio) = 2·AUC − 1. Higher ``p`` = riskier; in [−1, 1], 0 = random."""
    return float(2.0 * auc(y, p) - 1.0)


def ks(y, p) -> float:
    """Kolmogorov–Smirnov statistic: max over thresholds t of |F_bad(t) − F_good(t)|.

    F_bad / F_good are the empirical CDFs of the score among bads / goods. Unitless, in [0, 1]; higher = better
    separation. Ties are handled by evaluating the CDFs only at distinct score values (so tied rows never
    straddle a threshold) — identical to ``scipy.stats.ks_2samp(p[y==1], p[y==0]).statistic``.
    """
    y, p = _check_yp(y, p)
    n_bad, n_good = _check_both_classes(y)
    values, inv = np.unique(p, return_inverse=True)
    bad_per_value = np.bincount(inv, weights=y.astype(np.float64), minlength=values.size)
    all_per_value = np.bincount(inv, minlength=values.size).astype(np.float64)
    cdf_bad = np.cumsum(bad_per_value) / n_bad
    cdf_good = np.cumsum(all_per_value - bad_per_value) / n_good
    return float(np.max(np.abs(cdf_bad - cdf_good)))


def pr_auc(y, p) -> float:
    """Area under the precision–recall curve as *average precision* (bads are the positive class).

    AP = Σ_k (R_k − R_{k−1}) · P_k over distinct thresholds, descending in ``p`` (the step-wise definition used by
    ``sklearn.metrics.average_precision_score``; no interpolation). In [0, 1]; the random baseline is the bad rate.
    """
    y, p = _check_yp(y, p)
    n_bad, _ = _check_both_classes(y)
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order].astype(np.float64)
    # last index of each run of tied scores
    distinct = np.r_[np.nonzero(np.diff(ps))[0], ps.size - 1]
    tp = np.cumsum(ys)[distinct]
    n_sel = distinct + 1.0
    precision = tp / n_sel
    recall = tp / n_bad
    d_recall = np.diff(np.r_[0.0, recall])
    return float(np.sum(d_recall * precision))


def _top_share_mask(p: np.ndarray, share: float) -> np.ndarray:
    if not 0.0 < share <= 1.0:
        raise ValueError("share must be in (0, 1]")
    n = p.shape[0]
    k = max(1, int(math.ceil(share * n - 1e-9)))
    order = np.argsort(-p, kind="mergesort")  # riskiest first, stable for ties
    mask = np.zeros(n, dtype=bool)
    mask[order[:k]] = True
    return mask


def lift_at(y, p, share: float) -> float:
    """Lift in the riskiest ``share`` of the population: bad rate in the top ceil(share·n) rows by ``p``
    divided by the overall bad rate. Unitless ratio; 1.0 = no better than random, higher = better.
    Ties at the cut are broken by original row order (stable)."""
    y, p = _check_yp(y, p)
    n_bad, _ = _check_both_classes(y)
    mask = _top_share_mask(p, share)
    return float(y[mask].mean() / (n_bad / y.shape[0]))


def recall_at(y, p, share: float) -> float:
    """Recall (capture rate) in the riskiest ``share``: fraction of all bads found in the top ceil(share·n)
    rows by ``p``. In [0, 1]; random = ``share``."""
    y, p = _check_yp(y, p)
    n_bad, _ = _check_both_classes(y)
    mask = _top_share_mask(p, share)
    return float(y[mask].sum() / n_bad)


def auc_bootstrap_ci(y, p, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap confidence interval for the AUC, (lo, hi) at level 1 − ``alpha``.

    Stratified: bads and goods are resampled separately (with replacement) so every replicate keeps the observed
    class counts. Uses ``numpy.random.default_rng(seed)`` only — identical seeds give identical intervals.
    """
    y, p = _check_yp(y, p)
    n_bad, n_good = _check_both_classes(y)
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    rng = np.random.default_rng(seed)
    p_bad, p_good = p[y == 1], p[y == 0]
    aucs = np.empty(n_boot)
    for b in range(n_boot):
        sb = p_bad[rng.integers(0, n_bad, n_bad)]
        sg = p_good[rng.integers(0, n_good, n_good)]
        r = _midrank(np.concatenate([sb, sg]))
        u = r[:n_bad].sum() - n_bad * (n_bad + 1) / 2.0
        aucs[b] = u / (n_bad * n_good)
    lo, hi = np.quantile(aucs, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def delong_test(y, p1, p2) -> dict[str, float]:
    """DeLong test for two correlated AUCs on the same rows (fast algorithm of Sun & Xu, 2014).

    Returns ``dict(auc1, auc2, diff=auc1-auc2, z, p_value)``; ``p_value`` is two-sided under H0: AUC1 = AUC2,
    from the normal approximation with the DeLong (1988) covariance of the two U-statistics.
    """
    y, p1 = _check_yp(y, p1)
    _, p2 = _check_yp(y, p2)
    m, n = _check_both_classes(y)  # m bads (positives), n goods
    order = np.argsort(-y, kind="mergesort")  # bads first
    preds = np.vstack([p1, p2])[:, order]
    k = preds.shape[0]
    tx = np.empty((k, m))
    ty = np.empty((k, n))
    tz = np.empty((k, m + n))
    for r in range(k):
        tx[r] = _midrank(preds[r, :m])
        ty[r] = _midrank(preds[r, m:])
        tz[r] = _midrank(preds[r])
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v01 = (tz[:, :m] - tx) / n
    v10 = 1.0 - (tz[:, m:] - ty) / m
    sx = np.atleast_2d(np.cov(v01))
    sy = np.atleast_2d(np.cov(v10))
    cov = sx / m + sy / n
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if var > 0.0:
        z = diff / math.sqrt(var)
    elif diff == 0.0:
        z = 0.0
    else:
        z = math.copysign(math.inf, diff)
    p_value = float(2.0 * stats.norm.sf(abs(z)))
    return {"auc1": float(aucs[0]), "auc2": float(aucs[1]), "diff": diff, "z": float(z), "p_value": p_value}


# ------------------------------------------------------------------------------------------- calibration


def brier(y, p) -> float:
    """Brier score: mean squared error of the PD, mean((p − y)²). In [0, 1]; lower = better."""
    y, p = _check_yp(y, p)
    return float(np.mean((p - y) ** 2))


def _equal_count_groups(p: np.ndarray, groups: int) -> np.ndarray:
    """Group index 0..groups-1 for rows sorted by p ascending, equal counts (stable for ties)."""
    n = p.shape[0]
    order = np.argsort(p, kind="mergesort")
    g = np.empty(n, dtype=np.int64)
    g[order] = (np.arange(n) * groups) // n
    return g


def hosmer_lemeshow(y, p, groups: int = 10) -> tuple[float, float]:
    """Hosmer–Lemeshow goodness-of-fit test of a PD, ``(stat, p_value)``.

    Rows are split into ``groups`` equal-count groups by predicted PD; stat = Σ_g (O_g − E_g)² / (E_g (1 − E_g/n_g))
    with O = observed bads and E = Σ PD in the group; p-value from χ² with ``groups − 2`` degrees of freedom.
    A small p-value means the PD is miscalibrated.
    """
    y, p = _check_yp(y, p)
    if groups < 3:
        raise ValueError("groups must be >= 3")
    g = _equal_count_groups(p, groups)
    n_g = np.bincount(g, minlength=groups).astype(np.float64)
    o_g = np.bincount(g, weights=y.astype(np.float64), minlength=groups)
    e_g = np.bincount(g, weights=p, minlength=groups)
    keep = n_g > 0
    n_g, o_g, e_g = n_g[keep], o_g[keep], e_g[keep]
    denom = e_g * (1.0 - e_g / n_g)
    denom = np.maximum(denom, 1e-12)
    stat = float(np.sum((o_g - e_g) ** 2 / denom))
    dof = max(int(keep.sum()) - 2, 1)
    return stat, float(stats.chi2.sf(stat, dof))


def jeffreys_test(n_defaults, n, pd_grade):
    """Jeffreys test of a grade PD (EBA/ECB IRB back-testing style), one-sided.

    p-value = CDF of Beta(d + 0.5, n − d + 0.5) at ``pd_grade``: the posterior probability (Jeffreys prior) that the
    true default rate is ≤ the assigned PD. A *small* p-value (e.g. < 0.05) means the observed default rate is
    significantly above the PD, i.e. the grade PD is underestimated. Accepts scalars (returns a float) or
    arrays (returns an ndarray).
    """
    d = np.asarray(n_defaults, dtype=np.float64)
    nn = np.asarray(n, dtype=np.float64)
    q = np.asarray(pd_grade, dtype=np.float64)
    if np.any(d < 0) or np.any(d > nn):
        raise ValueError("need 0 <= n_defaults <= n")
    if np.any((q < 0) | (q > 1)):
        raise ValueError("pd_grade must be in [0, 1]")
    out = stats.beta.cdf(q, d + 0.5, nn - d + 0.5)
    if np.ndim(out) == 0:
        return float(out)
    return np.asarray(out, dtype=np.float64)


def reliability_curve(y, p, n_bins: int = 10, strategy: str = "quantile") -> pd.DataFrame:
    """Reliability (calibration) curve: one row per bin of predicted PD.

    Columns: ``bin`` (1 = lowest PD), ``mean_pred`` (mean PD), ``obs_rate`` (observed bad rate), ``n`` (rows).
    ``strategy='quantile'`` makes equal-count bins by rank; ``'uniform'`` makes equal-width bins on [0, 1].
    A well-calibrated PD has obs_rate ≈ mean_pred. Empty bins are dropped.
    """
    y, p = _check_yp(y, p)
    if strategy == "quantile":
        g = _equal_count_groups(p, n_bins)
    elif strategy == "uniform":
        g = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    else:
        raise ValueError("strategy must be 'quantile' or 'uniform'")
    n_g = np.bincount(g, minlength=n_bins)
    s_p = np.bincount(g, weights=p, minlength=n_bins)
    s_y = np.bincount(g, weights=y.astype(np.float64), minlength=n_bins)
    keep = n_g > 0
    return pd.DataFrame(
        {
            "bin": np.arange(1, n_bins + 1)[keep],
            "mean_pred": s_p[keep] / n_g[keep],
            "obs_rate": s_y[keep] / n_g[keep],
            "n": n_g[keep].astype(np.int64),
        }
    )


# ---------------------------------------------------------------------------------------- rank ordering


def gains_table(y, p, n_bins: int = 10) -> pd.DataFrame:
    """Gains table by equal-count bins of predicted risk, *descending* (bin 1 = riskiest tenth for n_bins=10).

    Columns: ``bin``, ``n``, ``bads``, ``goods``, ``bad_rate``, ``p_min``/``p_max``/``p_mean`` (score range),
    ``odds_good_bad`` (goods:bads, inf when a bin has no bads), ``cum_n_share`` (share of population up to this
    bin), ``cum_bads``, ``cum_capture`` (share of all bads captured so far), ``cum_bad_rate``, ``lift``
    (bin bad rate / overall bad rate) and ``cum_lift`` (cum_bad_rate / overall bad rate).
    Ties at bin boundaries are broken by original row order (stable sort), so the table is deterministic.
    """
    y, p = _check_yp(y, p)
    n_bad, _ = _check_both_classes(y)
    n = y.shape[0]
    g = _equal_count_groups(-p, n_bins)  # group 0 = highest p
    yf = y.astype(np.float64)
    cnt = np.bincount(g, minlength=n_bins).astype(np.int64)
    bads = np.bincount(g, weights=yf, minlength=n_bins).astype(np.int64)
    keep = cnt > 0
    p_min = np.full(n_bins, np.nan)
    p_max = np.full(n_bins, np.nan)
    for b in range(n_bins):
        if cnt[b]:
            pb = p[g == b]
            p_min[b], p_max[b] = pb.min(), pb.max()
    p_mean = np.bincount(g, weights=p, minlength=n_bins) / np.maximum(cnt, 1)
    df = pd.DataFrame(
        {
            "bin": np.arange(1, n_bins + 1),
            "n": cnt,
            "bads": bads,
            "goods": cnt - bads,
            "p_min": p_min,
            "p_max": p_max,
            "p_mean": p_mean,
        }
    )[keep].reset_index(drop=True)
    overall = n_bad / n
    df["bad_rate"] = df["bads"] / df["n"]
    with np.errstate(divide="ignore"):
        df["odds_good_bad"] = np.where(
            df["bads"] > 0, df["goods"] / df["bads"].where(df["bads"] > 0, 1), np.inf
        )
    df["cum_n"] = df["n"].cumsum()
    df["cum_n_share"] = df["cum_n"] / n
    df["cum_bads"] = df["bads"].cumsum()
    df["cum_capture"] = df["cum_bads"] / n_bad
    df["cum_bad_rate"] = df["cum_bads"] / df["cum_n"]
    df["lift"] = df["bad_rate"] / overall
    df["cum_lift"] = df["cum_bad_rate"] / overall
    cols = [
        "bin",
        "n",
        "bads",
        "goods",
        "bad_rate",
        "odds_good_bad",
        "p_min",
        "p_max",
        "p_mean",
        "cum_n",
        "cum_n_share",
        "cum_bads",
        "cum_capture",
        "cum_bad_rate",
        "lift",
        "cum_lift",
    ]
    return df[cols]


# ---------------------------------------------------------------------------------- stability (PSI/CSI)


def bin_edges(expected, bins: int = 10) -> np.ndarray:
    """Interior split points of ``bins`` quantile bins of the finite values of ``expected``.

    Bins are right-closed, (s_{i−1}, s_i], with −inf/+inf outer edges (the ``np.digitize(x, s, right=True)``
    convention also used by optbinning). Duplicate quantiles (heavy ties) are collapsed, so fewer bins can result.
    """
    x = np.asarray(expected, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("expected has no finite values")
    if bins < 1:
        raise ValueError("bins must be >= 1")
    q = np.quantile(x, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    q = np.unique(q)
    # a split at the maximum would create an always-empty last bin
    return q[q < x.max()]


def _resolve_splits(expected: np.ndarray, bins) -> np.ndarray:
    if np.isscalar(bins):
        # np.isscalar narrows to numpy's scalar union (str, bytes, ...), which int() is not typed to accept
        return bin_edges(expected, int(cast(SupportsInt, bins)))
    s = np.asarray(bins, dtype=np.float64)
    if s.ndim != 1 or np.any(np.diff(s) <= 0):
        raise ValueError("explicit bins must be a strictly increasing 1-d array of interior split points")
    return s


def _bin_counts(x: np.ndarray, splits: np.ndarray) -> np.ndarray:
    """Counts per bin: len(splits)+1 right-closed numeric bins, then one 'missing' bin (NaN)."""
    x = np.asarray(x, dtype=np.float64)
    miss = np.isnan(x)
    idx = np.digitize(x[~miss], splits, right=True)
    c = np.bincount(idx, minlength=splits.size + 1).astype(np.int64)
    return np.r_[c, int(miss.sum())]


def psi_table(expected, actual, bins=10, eps: float = PSI_EPS) -> pd.DataFrame:
    """Per-bin Population Stability Index table of ``actual`` against ``expected``.

    ``bins`` is either a number of quantile bins computed on ``expected`` (see :func:`bin_edges`) or an explicit
    increasing array of interior split points. NaNs form an extra 'missing' bin (dropped when empty in both).
    Columns: ``bin``, ``lower``, ``upper`` (bin is (lower, upper]), ``n_expected``, ``n_actual``, ``pct_expected``,
    ``pct_actual``, ``psi`` = (a − e)·ln(a/e) with shares floored at ``eps``. The total is :func:`psi`.
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.size == 0 or a.size == 0:
        raise ValueError("expected and actual must be non-empty")
    splits = _resolve_splits(e, bins)
    ce, ca = _bin_counts(e, splits), _bin_counts(a, splits)
    lower = np.r_[-np.inf, splits, np.nan]
    upper = np.r_[splits, np.inf, np.nan]
    labels = [f"({lo:.6g}, {hi:.6g}]" for lo, hi in zip(lower[:-1], upper[:-1], strict=True)] + ["missing"]
    keep = np.ones(ce.size, dtype=bool)
    if ce[-1] == 0 and ca[-1] == 0:
        keep[-1] = False
    pe = ce / ce.sum()
    pa = ca / ca.sum()
    pe_c = np.maximum(pe, eps)
    pa_c = np.maximum(pa, eps)
    contrib = (pa_c - pe_c) * np.log(pa_c / pe_c)
    df = pd.DataFrame(
        {
            "bin": labels,
            "lower": lower,
            "upper": upper,
            "n_expected": ce,
            "n_actual": ca,
            "pct_expected": pe,
            "pct_actual": pa,
            "psi": contrib,
        }
    )
    return df[keep].reset_index(drop=True)


def psi(expected_scores, actual_scores, bins=10, eps: float = PSI_EPS) -> float:
    """Population Stability Index of ``actual_scores`` against ``expected_scores`` (e.g. train → OOT).

    PSI = Σ_bins (a_i − e_i)·ln(a_i/e_i) over the shares of each population per bin, with ``bins`` quantile bins
    from the *expected* sample (or explicit split points), right-closed, shares floored at ``eps``.
    Unitless, ≥ 0; rule of thumb: < 0.1 stable, 0.1–0.25 monitor, > 0.25 significant shift.
    """
    return float(psi_table(expected_scores, actual_scores, bins=bins, eps=eps)["psi"].sum())


def csi(expected_feature, actual_feature, bins=10, eps: float = PSI_EPS) -> float:
    """Characteristic Stability Index: the PSI of one input feature (train → later sample).

    Numeric features use quantile bins on the expected sample (or explicit split points); NaN is its own bin.
    Non-numeric (categorical) features use one bin per category observed in either sample.
    Same scale and thresholds as :func:`psi`.
    """
    e = np.asarray(expected_feature)
    a = np.asarray(actual_feature)
    if e.dtype.kind in "biuf" and a.dtype.kind in "biuf":
        return psi(e.astype(np.float64), a.astype(np.float64), bins=bins, eps=eps)
    se = pd.Series(e, dtype="object").fillna("__missing__").astype(str)
    sa = pd.Series(a, dtype="object").fillna("__missing__").astype(str)
    cats = sorted(set(se.unique()) | set(sa.unique()))
    pe = se.value_counts().reindex(cats, fill_value=0).to_numpy() / len(se)
    pa = sa.value_counts().reindex(cats, fill_value=0).to_numpy() / len(sa)
    pe, pa = np.maximum(pe, eps), np.maximum(pa, eps)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def psi_by_period(expected_scores, actual_scores, periods, bins=10, eps: float = PSI_EPS) -> pd.DataFrame:
    """PSI of each period's slice of ``actual_scores`` against one fixed ``expected_scores`` reference
    (bins fixed once on the reference). Returns DataFrame(period, n, psi) sorted by period."""
    e = np.asarray(expected_scores, dtype=np.float64)
    a = np.asarray(actual_scores, dtype=np.float64)
    per = pd.Series(np.asarray(periods))
    if per.shape[0] != a.shape[0]:
        raise ValueError("periods and actual_scores have different lengths")
    splits = _resolve_splits(e, bins)
    rows = []
    for key in sorted(per.unique()):
        m = (per == key).to_numpy()
        rows.append({"period": key, "n": int(m.sum()), "psi": psi(e, a[m], bins=splits, eps=eps)})
    return pd.DataFrame(rows, columns=["period", "n", "psi"])


# ------------------------------------------------------------------------------------------ WoE and IV


def woe_table(x_binned, y, eps: float = 0.5) -> pd.DataFrame:
    """Weight-of-evidence table of an already-binned characteristic.

    One row per distinct bin value (NaN → 'missing'); columns ``bin``, ``n``, ``bads``, ``goods``, ``pct_bads``,
    ``pct_goods``, ``woe`` = ln(pct_goods / pct_bads) (positive = safer than average), ``iv`` =
    (pct_goods − pct_bads)·woe. Bins with zero bads or zero goods get ``eps`` pseudo-counts (Laplace-style) so
    WoE stays finite; with no empty cells the result is the textbook one (and equals optbinning's IV).
    """
    yv = np.asarray(y).astype(np.float64)
    if not np.all((yv == 0) | (yv == 1)):
        raise ValueError("y must be binary 0/1 (1 = bad)")
    xs = pd.Series(np.asarray(x_binned, dtype=object)).where(lambda s: s.notna(), "missing")
    df = pd.DataFrame({"bin": xs.to_numpy(), "y": yv})
    g = df.groupby("bin", sort=True, observed=True)["y"].agg(["size", "sum"])
    bads = g["sum"].to_numpy(dtype=np.float64)
    n = g["size"].to_numpy(dtype=np.float64)
    goods = n - bads
    tb, tg = bads.sum(), goods.sum()
    if tb == 0 or tg == 0:
        raise ValueError("y must contain both bads (1) and goods (0)")
    zero = (bads == 0) | (goods == 0)
    b_adj = np.where(zero, bads + eps, bads)
    g_adj = np.where(zero, goods + eps, goods)
    pb = b_adj / tb
    pg = g_adj / tg
    woe = np.log(pg / pb)
    return pd.DataFrame(
        {
            "bin": g.index.to_numpy(),
            "n": n.astype(np.int64),
            "bads": bads.astype(np.int64),
            "goods": goods.astype(np.int64),
            "pct_bads": bads / tb,
            "pct_goods": goods / tg,
            "woe": woe,
            "iv": (pg - pb) * woe,
        }
    )


def iv(x_binned, y, eps: float = 0.5) -> float:
    """Information Value of a binned characteristic: Σ (pct_goods − pct_bads)·ln(pct_goods/pct_bads).

    Unitless, ≥ 0; rule of thumb: < 0.02 useless, 0.02–0.1 weak, 0.1–0.3 medium, > 0.3 strong (> 0.5 suspicious).
    See :func:`woe_table` for the empty-cell treatment.
    """
    return float(woe_table(x_binned, y, eps=eps)["iv"].sum())


# ------------------------------------------------------------------------------------------ score scaling


def _factor_offset(base_points: float, base_odds: float, pdo: float) -> tuple[float, float]:
    if base_odds <= 0 or pdo <= 0:
        raise ValueError("base_odds and pdo must be positive")
    factor = pdo / math.log(2.0)
    offset = base_points - factor * math.log(base_odds)
    return factor, offset


def pd_to_score(
    pd_, base_points: float = 600.0, base_odds: float = 50.0, pdo: float = 20.0, eps: float = 1e-12
):
    """Convert a PD into scorecard points: score = offset + factor·ln(odds), odds = good:bad = (1 − pd)/pd.

    **A higher score means lower risk.** Anchor: odds of ``base_odds``:1 (pd = 1/(1+base_odds)) score exactly
    ``base_points``; every doubling of the good:bad odds adds ``pdo`` points (factor = pdo/ln 2).
    PDs are clipped to [eps, 1 − eps] so 0 and 1 map to large finite scores. Scalar in → float out, array in →
    ndarray out.
    """
    factor, offset = _factor_offset(base_points, base_odds, pdo)
    q = np.clip(np.asarray(pd_, dtype=np.float64), eps, 1.0 - eps)
    s = offset + factor * (np.log1p(-q) - np.log(q))
    return float(s) if np.ndim(s) == 0 else s


def score_to_pd(score, base_points: float = 600.0, base_odds: float = 50.0, pdo: float = 20.0):
    """Inverse of :func:`pd_to_score`: pd = 1 / (1 + odds), odds = exp((score − offset)/factor).
    Higher score → lower PD. Scalar in → float out, array in → ndarray out."""
    factor, offset = _factor_offset(base_points, base_odds, pdo)
    s = np.asarray(score, dtype=np.float64)
    q = 1.0 / (1.0 + np.exp((s - offset) / factor))  # expit(-log_odds)
    return float(q) if np.ndim(q) == 0 else q


def master_scale(
    pd_,
    n_grades: int = 10,
    *,
    pd_floor: float | None = None,
    pd_cap: float | None = None,
    base_points: float = 600.0,
    base_odds: float = 50.0,
    pdo: float = 20.0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Rating master scale with geometric PD bands; grade 1 = lowest PD (best), grade ``n_grades`` = highest.

    Band edges are ``numpy.geomspace(pd_floor, pd_cap, n_grades + 1)`` (defaults: the 0.5th and 99.5th percentiles
    of ``pd_``, floored at 1e-5), so each grade spans the same PD *ratio*; the outer grades are open-ended
    (everything below/above the floor/cap falls in grade 1 / n). Bands are right-closed.

    Returns ``(grades, scale)``: the int grade of each input PD, and a DataFrame with one row per grade:
    ``grade``, ``pd_lower``, ``pd_upper`` (band edges), ``pd_mid`` (geometric midpoint), ``score_upper`` /
    ``score_lower`` (the band edges in points, see :func:`pd_to_score`), ``n``, ``share``, ``mean_pd`` (mean
    input PD in the grade, NaN if empty). ``mean_pd`` is the natural grade PD for back-testing.
    """
    q = np.asarray(pd_, dtype=np.float64)
    if q.ndim != 1 or q.size == 0 or not np.all(np.isfinite(q)):
        raise ValueError("pd_ must be a non-empty finite 1-d array")
    if n_grades < 2:
        raise ValueError("n_grades must be >= 2")
    lo = pd_floor if pd_floor is not None else max(float(np.quantile(q, 0.005)), 1e-5)
    hi = pd_cap if pd_cap is not None else float(np.quantile(q, 0.995))
    hi = min(hi, 1.0)
    if not 0.0 < lo < hi:
        lo, hi = max(float(q.min()), 1e-5), max(float(q.max()), 2e-5)
        if not lo < hi:
            hi = lo * 10.0
    edges = np.geomspace(lo, hi, n_grades + 1)
    scale = pd.DataFrame(
        {
            "grade": np.arange(1, n_grades + 1, dtype=np.int64),
            "pd_lower": edges[:-1],
            "pd_upper": edges[1:],
        }
    )
    scale["pd_mid"] = np.sqrt(scale["pd_lower"] * scale["pd_upper"])
    scale["score_upper"] = pd_to_score(scale["pd_lower"].to_numpy(), base_points, base_odds, pdo)
    scale["score_lower"] = pd_to_score(scale["pd_upper"].to_numpy(), base_points, base_odds, pdo)
    grades = assign_grades(q, scale)
    cnt = np.bincount(grades - 1, minlength=n_grades)
    s_pd = np.bincount(grades - 1, weights=q, minlength=n_grades)
    scale["n"] = cnt.astype(np.int64)
    scale["share"] = cnt / q.size
    with np.errstate(invalid="ignore", divide="ignore"):
        scale["mean_pd"] = np.where(cnt > 0, s_pd / np.maximum(cnt, 1), np.nan)
    return grades, scale


def assign_grades(pd_, scale: pd.DataFrame) -> np.ndarray:
    """Grade (1-based int array) of each PD on an existing master ``scale`` (from :func:`master_scale`).
    Interior edges are the ``pd_upper`` of grades 1..n−1; outer grades are open-ended; bands right-closed."""
    q = np.asarray(pd_, dtype=np.float64)
    interior = scale["pd_upper"].to_numpy(dtype=np.float64)[:-1]
    return (np.digitize(q, interior, right=True) + 1).astype(np.int64)
