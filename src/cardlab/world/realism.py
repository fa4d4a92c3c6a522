"""Realism report: each anchor of the world with its value, accepted band, pass flag and source.

:func:`realism_report` reads only the written world (raw tables, plus pd_true for the oracle AUC), so it can
be re-run on any output folder.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from cardlab.config import SimulateParams


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    pos = label.sum()
    neg = len(label) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    # average ranks for ties
    _, inv, cnt = np.unique(score, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = sums[inv] / cnt[inv]
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _anchor(value: float, lo: float, hi: float, source: str, **extra) -> dict:
    ok = bool(np.isfinite(value) and lo <= value <= hi)
    return {"value": round(float(value), 4), "band": [lo, hi], "pass": ok, "source": source, **extra}


def _month_index(d: pl.Expr, start: date) -> pl.Expr:
    return (d.dt.year() - start.year) * 12 + d.dt.month() - start.month


def _parts(root: Path) -> list[str]:
    """Part-file names (one per shard); every raw/oracle table has the same parts."""
    return sorted(p.name for p in (root / "raw" / "customers").glob("part-*.parquet"))


def _part(root: Path, kind: str, table: str, part: str) -> pl.DataFrame:
    return pl.read_parquet(root / kind / table / part)


def _labels_part(apps: pl.DataFrame, st: pl.DataFrame, start: date, months: int) -> pl.DataFrame:
    apps = apps.filter(pl.col("approved")).with_columns(
        _month_index(pl.col("application_date"), start).alias("a")
    )
    apps = apps.filter(pl.col("a") + 12 <= months - 1)
    st = st.select("customer_id", "dpd", _month_index(pl.col("statement_month"), start).alias("t"))
    j = apps.select("customer_id", "a").join(st, on="customer_id", how="left")
    j = j.filter((pl.col("t") > pl.col("a")) & (pl.col("t") <= pl.col("a") + 12))
    bad = j.group_by("customer_id").agg((pl.col("dpd").max() >= 90).alias("bad"))
    return (
        apps.select("customer_id", "application_date")
        .join(bad, on="customer_id", how="left")
        .with_columns(pl.col("bad").fill_null(False))
    )


def booked_labels(root: Path, start: date, months: int) -> pl.DataFrame:
    """Booked applications with a full 12-statement window and their realised 90+DPD-in-12-months label."""
    root = Path(root)
    return pl.concat(
        [
            _labels_part(
                _part(root, "raw", "applications", p), _part(root, "raw", "statements", p), start, months
            )
            for p in _parts(root)
        ]
    )


def _lapses_and_silence(st: pl.DataFrame) -> tuple[int, int]:
    """Accounts that go silent (a month with spend followed by >= 6 months without) and accounts with a
    silent run of >= 18 months."""
    g = (
        st.sort("card_id", "statement_month")
        .group_by("card_id", maintain_order=True)
        .agg(pl.col("purchases"))
    )
    lapses = silent18 = 0
    for p in g["purchases"].to_list():
        a = np.asarray(p) > 0
        for i in range(1, len(a) - 5):
            if a[i - 1] and not a[i : i + 6].any():
                lapses += 1
                break
        run = best = 0
        for x in a:
            run = 0 if x else run + 1
            best = max(best, run)
        silent18 += best >= 18
    return lapses, silent18


def realism_report(root: str | Path, params: SimulateParams | None = None) -> dict:
    """Compute every realism anchor on the world written under ``root``, one shard at a time (memory is
    bounded by the shard size)."""
    root = Path(root)
    params = params or SimulateParams()
    start, months = params.start_month, params.size.months
    labels, mpb_rows = [], []
    bal = lim = zero = n_st = lapses = silent18 = closures = 0
    mix: dict[str, int] = {}
    by_month: dict[tuple[int, int], int] = {}
    mom = np.zeros(4)  # n, sum x, sum x^2, sum x^3 of log order amounts
    for part in _parts(root):
        st = _part(root, "raw", "statements", part)
        apps = _part(root, "raw", "applications", part)
        cust = _part(root, "raw", "customers", part).select("customer_id", "city_tier")
        pd = (
            _part(root, "oracle", "pd_true", part)
            .filter(pl.col("kind") == "application")
            .select("customer_id", "pd_12m")
        )
        labels.append(
            _labels_part(apps, st, start, months).join(cust, on="customer_id").join(pd, on="customer_id")
        )
        bal += int(st["closing_balance"].sum())
        lim += int(st["credit_limit"].sum())
        zero += int((st["closing_balance"] == 0).sum())
        n_st += len(st)
        for k, v in st.group_by("payment_type").len().iter_rows():
            mix[k] = mix.get(k, 0) + v
        la, s18 = _lapses_and_silence(st)
        lapses += la
        silent18 += s18
        closures += int((_part(root, "raw", "cards", part)["close_reason"] == "voluntary").sum())
        orders = _part(root, "raw", "orders", part).select("order_date", "amount_fen")
        for y, m, v in (
            orders.group_by(
                pl.col("order_date").dt.year().alias("y"), pl.col("order_date").dt.month().alias("m")
            )
            .agg(pl.col("amount_fen").sum())
            .iter_rows()
        ):
            by_month[(y, m)] = by_month.get((y, m), 0) + v
        la_ = np.log(orders["amount_fen"].to_numpy().astype(float))
        mom += [len(la_), la_.sum(), (la_**2).sum(), (la_**3).sum()]
        mpb_rows.append(_mpb_rows(_part(root, "raw", "limit_changes", part), apps, st, start))
    rep: dict[str, dict] = {}

    # ---- credit risk ------------------------------------------------------------------------------------
    lab = pl.concat(labels)
    bad_rate = float(lab["bad"].mean()) if len(lab) else float("nan")
    rep["bad_rate_12m_booked"] = _anchor(
        bad_rate,
        0.02,
        0.08,
        "Typical 12-month 90+DPD bad rates of Chinese "
        "card/consumer-credit portfolios (PBoC Payment System Reports; bank annual reports): 2-8 %",
        n=len(lab),
    )
    by_tier = lab.group_by("city_tier").agg(pl.col("bad").mean().alias("r")).sort("city_tier")
    tiers = dict(zip(by_tier["city_tier"].to_list(), by_tier["r"].to_list(), strict=True))
    t1, t5 = tiers.get(1, float("nan")), tiers.get(5, float("nan"))
    rep["bad_rate_tier5_over_tier1"] = _anchor(
        t5 / t1 if t1 else float("nan"),
        1.05,
        10.0,
        "Lower-tier cities carry higher credit risk (PBoC regional credit reports)",
        by_tier={str(k): round(v, 4) for k, v in tiers.items()},
    )
    auc = _auc(lab["pd_12m"].to_numpy(), lab["bad"].to_numpy()) if len(lab) else float("nan")
    rep["oracle_application_auc"] = _anchor(
        auc,
        0.78,
        0.88,
        "Bayes-optimal application scores on bureau+platform data "
        "typically reach AUC 0.78-0.88 (industry validation reports)",
    )

    # ---- statements -------------------------------------------------------------------------------------
    util = bal / max(lim, 1)
    zshare = zero / max(n_st, 1)
    rep["utilisation_aggregate"] = _anchor(
        util,
        0.35,
        0.40,
        "US/China card utilisation aggregates ~35-40 % "
        "(Fed G.19 revolving/limits; PBoC credit-card utilisation)",
        zero_share=round(zshare, 4),
    )
    rep["utilisation_zero_share"] = _anchor(
        zshare, 0.30, 0.70, "Zero-heavy: a large share of cards carry no balance"
    )
    mixd = {k: v / max(n_st, 1) for k, v in mix.items()}
    src = "CFPB Consumer Credit Card Market Report: ~40 % inactive/no balance, ~20 % transactors, ~30 % revolvers"
    rep["payment_mix_none_due"] = _anchor(mixd.get("none_due", 0), 0.32, 0.48, src)
    rep["payment_mix_full"] = _anchor(mixd.get("full", 0), 0.14, 0.28, src)
    rep["payment_mix_revolving"] = _anchor(
        mixd.get("minimum", 0) + mixd.get("partial", 0),
        0.22,
        0.38,
        src,
        detail={k: round(v, 4) for k, v in sorted(mixd.items())},
    )

    # ---- attrition: voluntary closures + accounts going silent (>= 6 months without spend) ---------------
    years = max(n_st / 12, 1e-9)
    rep["annual_voluntary_attrition"] = _anchor(
        (closures + lapses) / years,
        0.10,
        0.16,
        "Card attrition 10-16 %/year "
        "(industry benchmarks, e.g. J.D. Power / McKinsey card attrition studies)",
        closures_per_year=round(closures / years, 4),
        silent_per_year=round(lapses / years, 4),
    )
    rep["silent_accounts_18m"] = _anchor(
        silent18, 1, float("inf"), "Dormant cards stay open (silent >= 18 months)"
    )

    # ---- e-commerce -------------------------------------------------------------------------------------
    ratios = [
        by_month[(y, 11)] / by_month[(y, 10)]
        for (y, m) in sorted(by_month)
        if m == 11 and (y, 10) in by_month
    ]
    rep["singles_day_nov_over_oct"] = _anchor(
        min(ratios) if ratios else float("nan"),
        1.2,
        3.0,
        "Alibaba/JD 11.11 GMV: November far above October (company reports)",
    )
    n_o, s1, s2, s3 = mom
    mean = s1 / n_o
    var = s2 / n_o - mean**2
    skew = (s3 / n_o - 3 * mean * var - mean**3) / var**1.5
    rep["order_amount_log_skew"] = _anchor(
        skew, -0.5, 0.5, "E-commerce basket values are approximately log-normal"
    )

    # ---- Agarwal et al. (2018) marginal propensity to borrow -------------------------------------------
    rep.update(_mpb_slopes(pl.concat(mpb_rows)))
    return rep


def _mpb_rows(lc: pl.DataFrame, apps: pl.DataFrame, st: pl.DataFrame, start: date) -> pl.DataFrame:
    """Per test-cell review: mean revolving debt (opening balance - payments) in the 6 months before and in
    months 2..7 after the review, with the line change and the legacy score."""
    lc = lc.filter(pl.col("cell") == "test").join(
        apps.select("customer_id", "legacy_score"), on="customer_id"
    )
    lc = lc.with_columns(_month_index(pl.col("review_date"), start).alias("r"))
    s = st.select(
        "customer_id",
        (pl.col("opening_balance") - pl.col("payments")).clip(0).alias("rev"),
        _month_index(pl.col("statement_month"), start).alias("t"),
    )
    j = lc.select("customer_id", "r", "old_limit", "new_limit", "legacy_score").join(s, on="customer_id")
    j = j.filter((pl.col("t") > pl.col("r") - 6) & (pl.col("t") <= pl.col("r") + 7))
    return (
        j.group_by("customer_id", "r")
        .agg(
            pl.col("rev").filter(pl.col("t") > pl.col("r") + 1).mean().alias("post"),
            pl.col("rev").filter(pl.col("t") <= pl.col("r")).mean().alias("pre"),
            pl.col("old_limit").first(),
            pl.col("new_limit").first(),
            pl.col("legacy_score").first(),
        )
        .drop_nulls()
    )


def _mpb_slopes(agg: pl.DataFrame) -> dict:
    """Slope of the change in revolving debt on the randomised line change (test-cell reviews), for the
    riskiest and the safest legacy-score quintiles."""
    src = (
        "Agarwal, Chomsisengphet, Mahoney & Stroebel (2018, QJE): MPB out of extra limit ~0.6 for "
        "lowest-FICO, ~0 for highest-FICO"
    )
    if len(agg) < 50:
        return {
            "mpb_slope_riskiest": _anchor(float("nan"), 0.3, 0.9, src),
            "mpb_slope_safest": _anchor(float("nan"), -0.1, 0.15, src),
        }
    agg = agg.sort("customer_id", "r")
    q = np.quantile(agg["legacy_score"].to_numpy(), [0.2, 0.8])
    out = {}
    for name, mask, band in (
        ("riskiest", agg["legacy_score"] <= q[0], (0.3, 0.9)),
        ("safest", agg["legacy_score"] >= q[1], (-0.1, 0.15)),
    ):
        d = agg.filter(mask)
        x = (d["new_limit"] - d["old_limit"]).to_numpy().astype(float)
        y = (d["post"] - d["pre"]).to_numpy().astype(float)
        slope = float(np.polyfit(x, y, 1)[0]) if len(d) > 5 and x.std() > 0 else float("nan")
        out[f"mpb_slope_{name}"] = _anchor(slope, *band, src, n=len(d))
    return out
