"""Realism report: each anchor of the world with its value, accepted band, pass flag and source.

:func:`realism_report` reads only the written world (raw tables, plus pd_true for the oracle AUC), so it can
be re-run on any output folder.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import cast

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
    book, rolls, invites, joins = [], [], [], []
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
        book.append(_book_part(st, _part(root, "raw", "cards", part), start))
        rolls.append(_roll_part(st, start))
        invites.append(
            _part(root, "raw", "invitations", part)
            .group_by(_month_index(pl.col("invite_date"), start).alias("m"))
            .len()
        )
        joins.append(
            _part(root, "raw", "customers", part)
            .group_by(_month_index(pl.col("signup_date"), start).alias("m"))
            .len()
        )
    rep: dict[str, dict] = {}

    # ---- credit risk ------------------------------------------------------------------------------------
    lab = pl.concat(labels)
    bad_rate = float(cast(float, lab["bad"].mean())) if len(lab) else float("nan")
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

    # ---- the book: losses, delinquency, economics, growth -----------------------------------------------
    rep.update(_book_anchors(_sum_by_month(book), params))
    rep.update(_roll_anchors(_sum_by(rolls, ["b", "nb"])))
    rep.update(_growth_anchors(_sum_by_month(invites), _sum_by_month(joins), params))
    return rep


def _sum_by(frames: list[pl.DataFrame], keys: list[str]) -> pl.DataFrame:
    return pl.concat(frames).group_by(keys).agg(pl.exclude(keys).sum()).sort(keys)


def _sum_by_month(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return _sum_by(frames, ["m"])


# delinquency buckets at a statement: 0 current, 1: 1-29, 2: 30-59, 3: 60-89, 4: 90+ DPD
def _bucket(dpd: pl.Expr) -> pl.Expr:
    return (
        pl.when(dpd == 0)
        .then(0)
        .when(dpd < 30)
        .then(1)
        .when(dpd < 60)
        .then(2)
        .when(dpd < 90)
        .then(3)
        .otherwise(4)
    )


def _book_part(st: pl.DataFrame, cards: pl.DataFrame, start: date) -> pl.DataFrame:
    """Per statement month: balances, the bank's revenue (interest and fees billed to accounts that are current
    at the statement — delinquent accounts are on non-accrual —, purchases for interchange and rewards),
    delinquency by bucket and the balances written off (closing balance of the charge-off statement)."""
    st = st.with_columns(_month_index(pl.col("statement_month"), start).alias("m"))
    co = cards.filter(pl.col("close_reason") == "charge_off").select("card_id")
    written = (
        st.join(co, on="card_id")
        .sort("card_id", "m")
        .group_by("card_id")
        .agg(pl.col("m").last(), pl.col("closing_balance").last().alias("charge_off"))
        .group_by("m")
        .agg(pl.col("charge_off").sum())
    )
    current = pl.col("dpd") == 0
    b = _bucket(pl.col("dpd"))
    agg = st.group_by("m").agg(
        pl.len().alias("accounts"),
        pl.col("closing_balance").sum().alias("balance"),
        pl.col("closing_balance").filter(pl.col("dpd") >= 30).sum().alias("balance_30p"),
        pl.col("closing_balance").filter(pl.col("dpd") >= 60).sum().alias("balance_60p"),
        (pl.col("interest") + pl.col("fees")).filter(current).sum().alias("interest_fees"),
        pl.col("purchases").sum().alias("purchases"),
        *[(b == k).sum().alias(f"bucket_{k}") for k in (1, 2, 3, 4)],
    )
    return agg.join(written, on="m", how="left").with_columns(pl.col("charge_off").fill_null(0))


def _roll_part(st: pl.DataFrame, start: date) -> pl.DataFrame:
    """Counts of consecutive statement pairs of a card by bucket at t (``b``) and at t + 1 (``nb``)."""
    s = st.select("card_id", "dpd", _month_index(pl.col("statement_month"), start).alias("m")).sort(
        "card_id", "m"
    )
    s = s.with_columns(
        pl.col("dpd").shift(-1).over("card_id").alias("nd"), pl.col("m").shift(-1).over("card_id").alias("nm")
    ).filter(pl.col("nm") == pl.col("m") + 1)
    return s.group_by(_bucket(pl.col("dpd")).alias("b"), _bucket(pl.col("nd")).alias("nb")).agg(
        pl.len().alias("n")
    )


FED_CO = (
    "Federal Reserve, Charge-Off Rate on Credit Card Loans, All Commercial Banks (FRED CORCCACBS, annualised): "
    "about 3-5.5 % outside recessions since 1985 (3.0-3.8 % in 2015-19), 7.8 % in 2002 and ~10 % in 2009-10"
)
ROA_SRC = (
    "Federal Reserve, Report to the Congress on the Profitability of Credit Card Operations of Depository "
    "Institutions: pre-tax ROA of large credit card banks 4.36 % (2015), 4.05 % (2016); R.K. Hammer industry "
    "series 1.5 % (2009 trough) to 5.0 % (1987 peak), with revenue ~17.9 %, operating expense ~6.9 %, charge-offs "
    "~4 % of receivables (2019)"
)
PHILLY = (
    "Federal Reserve Bank of Philadelphia, Large Bank Consumer Credit Card Balances (FR Y-14M): 30+ DPD 2.0-3.6 % "
    "and 60+ DPD 1.1-2.6 % of balances, 2012-2025 (FRED RCCCBBALDPD30P / RCCCBBALDPD60P)"
)


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def _book_anchors(t: pl.DataFrame, params: SimulateParams) -> dict:
    """Net charge-offs, return on receivables and delinquency of the legacy book in normal months (the year
    before the macro shock) and under the shock (from CHARGE_OFF_CYCLES months after it begins, when the
    charge-offs of the accounts it pushed into distress arrive)."""
    from cardlab.world.behaviour import CHARGE_OFF_CYCLES

    eco, s = params.economics, params.shock_month
    normal = t.filter((pl.col("m") >= s - 12) & (pl.col("m") < s))
    stressed = t.filter(pl.col("m") >= s + CHARGE_OFF_CYCLES)

    def rates(d: pl.DataFrame) -> dict[str, float]:
        bal = float(d["balance"].sum())
        if bal <= 0:
            return {k: float("nan") for k in ("nco", "roa", "dq30", "dq60")}
        purch = float(d["purchases"].sum())
        revenue = float(d["interest_fees"].sum()) + eco.interchange_rate * purch
        # the bank funds its own reward points; the platform funds its bonus points on platform spend
        costs = eco.reward_rate * purch + (eco.funding_rate_annual + eco.operating_cost_rate) / 12 * bal
        loss = float(d["charge_off"].sum())
        return {
            "nco": 12 * loss / bal,
            "roa": 12 * (revenue - costs - loss) / bal,
            "dq30": float(d["balance_30p"].sum()) / bal,
            "dq60": float(d["balance_60p"].sum()) / bal,
        }

    n, x = rates(normal), rates(stressed)
    accounts = float(normal["accounts"].sum()) or float("nan")
    shares = [_ratio(float(normal[f"bucket_{k}"].sum()), accounts) for k in (1, 2, 3)]
    return {
        "net_charge_off_rate_normal": _anchor(n["nco"], 0.02, 0.06, FED_CO + "; gross here (no recoveries)"),
        "net_charge_off_shock_ratio": _anchor(
            _ratio(x["nco"], n["nco"]),
            1.3,
            3.0,
            FED_CO + " (recessions raise it 1.5-2.5x)",
            shocked=round(x["nco"], 4),
        ),
        "return_on_receivables_normal": _anchor(
            n["roa"], 0.015, 0.06, ROA_SRC, operating_cost_rate=eco.operating_cost_rate
        ),
        "return_on_receivables_shock_drop": _anchor(
            n["roa"] - x["roa"],
            0.005,
            0.08,
            ROA_SRC + "; the shock must visibly hurt",
            shocked=round(x["roa"], 4),
        ),
        "delinquent_30p_balance_share": _anchor(n["dq30"], 0.02, 0.04, PHILLY),
        "delinquent_60p_over_30p_balance": _anchor(_ratio(n["dq60"], n["dq30"]), 0.55, 0.8, PHILLY),
        "delinquency_funnel_1_29_over_30_59": _anchor(
            _ratio(shares[0], shares[1]),
            1.05,
            10.0,
            "Accounts roll one bucket a month, some cure on the way: "
            "1-29 > 30-59 > 60-89 DPD (" + PHILLY + ")",
            shares=[round(v, 5) for v in shares],
        ),
        "delinquency_funnel_30_59_over_60_89": _anchor(
            _ratio(shares[1], shares[2]), 1.05, 10.0, "1-29 > 30-59 > 60-89 DPD (" + PHILLY + ")"
        ),
    }


def _roll_anchors(r: pl.DataFrame) -> dict:
    """Monthly cure and roll rates between delinquency buckets (all statement pairs)."""
    n = {(b, nb): v for b, nb, v in r.iter_rows()}
    tot = {b: sum(v for (bb, _), v in n.items() if bb == b) for b in range(5)}

    def rate(b: int, nb: int) -> float:
        return n.get((b, nb), 0) / tot[b] if tot.get(b) else float("nan")

    src = (
        "Card roll-rate (flow) analysis: most early delinquencies cure, later buckets roll on; consistent with "
        "60+ DPD being ~70 % of 30+ DPD balances (" + PHILLY + ")"
    )
    return {
        "roll_current_to_1_29": _anchor(rate(0, 1), 0.01, 0.05, src),
        "cure_rate_1_29": _anchor(rate(1, 0), 0.45, 0.85, src),
        "roll_rate_30_59_to_60_89": _anchor(rate(2, 3), 0.3, 0.8, src),
        "roll_rate_60_89_to_90p": _anchor(rate(3, 4), 0.3, 0.85, src),
    }


def _growth_anchors(invites: pl.DataFrame, joins: pl.DataFrame, params: SimulateParams) -> dict:
    """The platform keeps growing: new users every month (more in festival months), so the invitation funnel
    does not dry up by exhaustion."""
    M = params.size.months
    inv = dict(zip(invites["m"].to_list(), invites["len"].to_list(), strict=True))
    first = sum(inv.get(m, 0) for m in range(3, 15))
    last = sum(inv.get(m, 0) for m in range(M - 13, M - 1))
    new = dict(zip(joins["m"].to_list(), joins["len"].to_list(), strict=True))
    src = "An open e-commerce platform keeps acquiring users (monthly active users grow, with festival peaks)"
    return {
        "invitations_last_over_first_year": _anchor(last / first if first else float("nan"), 0.7, 1.6, src),
        "new_users_per_month_min": _anchor(min(new.get(m, 0) for m in range(M)), 1, float("inf"), src),
    }


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
