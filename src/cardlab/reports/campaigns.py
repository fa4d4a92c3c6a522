"""Evaluation of the retention campaigns that carry a random holdout.

For every ``campaign_month`` m of ``raw/retention_offers`` the randomised comparison is arm ``random``
(offer sent at random) against arm ``control`` (held out at random); the ``targeted`` arm is chosen by the
platform's rule and is not used for causal estimates (it enters only the sample-ratio check).

- **Outcome** (observable churn, the churn task's label adapted to a campaign): ``churn = 1`` when, without
  being 30+ DPD first, the card is closed voluntarily in months m+1 .. m+H (``H = churn_horizon_months``, the
  offer's effect window) or goes silent - no purchases or cash advances in each of the
  ``churn_silent_months`` statement months m+H .. m+H+S-1 (a voluntary closure inside them counts as silent).
  ``retained = 1 - churn``.
- **ATE** = retained rate (random) - retained rate (control) = churn reduction; positive means the offer
  retains (the oracle's sign: ``tau = p_churn_y0 - p_churn_y1``). Welch standard error, normal interval at
  ``ci_level``.
- **SRM**: chi-square goodness of fit of the arm counts (control, random, targeted) against the design shares.
- **CUPED**: the same difference on ``Y - theta (X - mean X)`` with X = the card's purchases over the
  ``cuped_pre_months`` statement months before the campaign month (yuan), theta pooled over both arms.
- **Incremental ROI** = (incremental retained accounts x value of a retained account - offer cost) / offer
  cost; incremental retained accounts = ATE x accounts offered in the random arm, value = mean monthly
  margin of the control arm over the pre-period x ``retained_value_months``, cost = ``offer_cost_yuan`` per
  offer. Computed on the randomised comparison, never on responders.
- **Truth** (evaluation only, from the sealed oracle): mean ``tau`` over the treated rows of the random arm;
  the oracle's factual churn events also grade the observable outcome (sensitivity / specificity).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl
from scipy import stats

from cardlab.config import ReportParams
from cardlab.reports.tables import World, month_index, read_table

KEYS = ("customer_id", "card_id", "campaign_month")


def churn_outcomes(world: World, offers: pl.DataFrame, horizon: int, silent: int) -> pl.DataFrame:
    """Attach ``churn`` (0/1 float) to each offer row (see the module docstring for the definition)."""
    cards = world.cards.select("card_id", "close_month", "close_reason")
    keys = offers.select("card_id", "campaign_month").unique()
    st = world.statements.select("card_id", "month", "transacted", "dpd")
    gap = month_index(pl.col("month")) - month_index(pl.col("campaign_month"))
    window = (
        keys.join(st, on="card_id", how="inner")
        .with_columns(gap.alias("gap"))
        .filter((pl.col("gap") >= 1) & (pl.col("gap") <= horizon + silent - 1))
        .group_by("card_id", "campaign_month")
        .agg(
            pl.col("gap").filter(pl.col("dpd") >= 30).min().alias("first_dq_gap"),
            pl.col("gap")
            .filter(pl.col("transacted") & (pl.col("gap") >= horizon))
            .min()
            .alias("first_txn_late"),
        )
    )
    o = offers.join(cards, on="card_id", how="left").join(
        window, on=["card_id", "campaign_month"], how="left"
    )
    close_gap = month_index(pl.col("close_month")) - month_index(pl.col("campaign_month"))
    voluntary = (pl.col("close_reason") == "voluntary").fill_null(False)
    closed_in_window = voluntary & (close_gap >= 1) & (close_gap <= horizon)
    # silent: no transaction in gaps horizon .. horizon+silent-1 (a voluntary close there ends the statements)
    silent_run = pl.col("first_txn_late").is_null() & (
        pl.col("close_month").is_null() | voluntary | (close_gap > horizon + silent - 1)
    )
    # a closed card has no later statements, so any 30+ DPD in the window came before the churn: not churn
    no_dq = pl.col("first_dq_gap").is_null()
    churn = ((closed_in_window.fill_null(False) | silent_run.fill_null(False)) & no_dq).fill_null(False)
    return o.with_columns(churn.cast(pl.Float64).alias("churn")).drop(
        "close_month", "close_reason", "first_dq_gap", "first_txn_late"
    )


def pre_period(world: World, offers: pl.DataFrame, months: int, margin: pl.DataFrame) -> pl.DataFrame:
    """Attach pre-period spend (yuan) and mean monthly margin (yuan) over the ``months`` before the campaign."""
    keys = offers.select("card_id", "campaign_month").unique()
    st = margin.select("card_id", "month", "purchases", "margin")
    j = keys.join(st, on="card_id", how="inner")
    gap = month_index(pl.col("campaign_month")) - month_index(pl.col("month"))
    agg = (
        j.filter((gap >= 1) & (gap <= months))
        .group_by("card_id", "campaign_month")
        .agg(
            (pl.col("purchases").sum() / 100.0).alias("pre_spend_yuan"),
            (pl.col("margin").mean() / 100.0).alias("pre_margin_yuan"),
        )
    )
    return offers.join(agg, on=["card_id", "campaign_month"], how="left").with_columns(
        pl.col("pre_spend_yuan").fill_null(0.0), pl.col("pre_margin_yuan").fill_null(0.0)
    )


def _diff(y1: np.ndarray, y0: np.ndarray, z: float) -> tuple[float, float, float, float]:
    """Difference of means y1 - y0 with Welch standard error and normal interval."""
    d = float(y1.mean() - y0.mean())
    se = (
        math.sqrt(y1.var(ddof=1) / len(y1) + y0.var(ddof=1) / len(y0))
        if min(len(y1), len(y0)) > 1
        else float("nan")
    )
    return d, se, d - z * se, d + z * se


def srm_check(counts: dict[str, int], design: dict[str, float]) -> tuple[float, float]:
    """Chi-square goodness of fit of arm counts against design shares; returns (chi2, p-value)."""
    arms = [a for a in design if design[a] > 0]
    obs = np.array([counts.get(a, 0) for a in arms], dtype=float)
    exp = np.array([design[a] for a in arms]) / sum(design[a] for a in arms) * obs.sum()
    if obs.sum() == 0 or len(arms) < 2:
        return float("nan"), float("nan")
    chi2, p = stats.chisquare(obs, exp)
    return float(chi2), float(p)


def evaluate_campaign(
    df: pl.DataFrame, params: ReportParams, design: dict[str, float], arm_counts: dict[str, int]
) -> dict[str, object]:
    """Estimates for one campaign month; ``df`` holds its control and random rows with ``churn``."""
    z = float(stats.norm.ppf(0.5 + params.ci_level / 2))
    ctl = df.filter(pl.col("arm") == "control")
    rnd = df.filter(pl.col("arm") == "random")
    n0, n1 = ctl.height, rnd.height
    out: dict[str, object] = {"n_control": n0, "n_random": n1, "n_targeted": arm_counts.get("targeted", 0)}
    chi2, p = srm_check(arm_counts, design)
    total = sum(arm_counts.values())
    out.update(
        design_control_share=design.get("control", float("nan")),
        observed_control_share=arm_counts.get("control", 0) / total if total else float("nan"),
        srm_chi2=chi2,
        srm_p=p,
        srm_flag=bool(p < params.srm_alpha),
    )
    if n0 < 2 or n1 < 2:
        return out
    # retained = 1 - churn; ATE on retention = churn(control) - churn(random)
    r0, r1 = 1.0 - ctl["churn"].to_numpy(), 1.0 - rnd["churn"].to_numpy()
    ate, se, lo, hi = _diff(r1, r0, z)
    out.update(
        churn_rate_control=float(1 - r0.mean()),
        churn_rate_random=float(1 - r1.mean()),
        ate=ate,
        ate_se=se,
        ate_ci_lo=lo,
        ate_ci_hi=hi,
    )
    # CUPED with pre-period spend as the covariate
    x = df["pre_spend_yuan"].to_numpy()
    y = 1.0 - df["churn"].to_numpy()
    vx = x.var(ddof=1)
    theta = float(np.cov(x, y, ddof=1)[0, 1] / vx) if vx > 0 else 0.0
    y_adj = y - theta * (x - x.mean())
    is_rnd = (df["arm"] == "random").to_numpy()
    c_ate, c_se, c_lo, c_hi = _diff(y_adj[is_rnd], y_adj[~is_rnd], z)
    vy = y.var(ddof=1)
    out.update(
        cuped_theta=theta,
        cuped_ate=c_ate,
        cuped_se=c_se,
        cuped_ci_lo=c_lo,
        cuped_ci_hi=c_hi,
        cuped_variance_reduction=float(1 - y_adj.var(ddof=1) / vy) if vy > 0 else 0.0,
    )
    # incremental ROI over the offers sent in the random arm (every random-arm account is offered)
    n_offered = int(rnd["treated"].cast(pl.Int64).sum())
    cost = n_offered * params.offer_cost_yuan
    value = float(cast(float, ctl["pre_margin_yuan"].mean())) * params.retained_value_months
    incr_retained = ate * n1
    incr_margin = incr_retained * value

    def roi(effect: float) -> float:
        return (effect * n1 * value - cost) / cost if cost > 0 else float("nan")

    lo_roi, hi_roi = sorted((roi(lo), roi(hi)))
    out.update(
        n_offered=n_offered,
        offer_cost_yuan=cost,
        value_per_retained_yuan=value,
        incremental_retained=incr_retained,
        incremental_margin_yuan=incr_margin,
        incremental_roi=roi(ate),
        incremental_roi_ci_lo=lo_roi,
        incremental_roi_ci_hi=hi_roi,
    )
    return out


def load_truth(oracle: Path) -> pl.DataFrame | None:
    return read_table(Path(oracle), "retention_truth", required=False)


def design_shares(params: ReportParams, control_share: float) -> dict[str, float]:
    """Designed arm shares among eligible accounts (params override, else the world's design)."""
    if params.design_arm_shares is not None:
        return dict(params.design_arm_shares.items())
    rest = (1.0 - control_share) / 2
    return {"control": control_share, "random": rest, "targeted": rest}


def evaluate_campaigns(
    world: World, params: ReportParams, oracle: Path, statement_rows: pl.DataFrame, design: dict[str, float]
) -> tuple[pl.DataFrame, dict[str, float]]:
    """One row per campaign month with a random holdout (estimates, SRM, CUPED, ROI, oracle truth), and
    diagnostics of the observable outcome against the oracle's factual churn events."""
    offers = world.retention_offers
    if offers is None or offers.height == 0:
        return pl.DataFrame(), {}
    offers = offers.with_columns(pl.col("campaign_month").dt.month_start())
    if "treated" not in offers.columns:
        offers = offers.with_columns((pl.col("arm") != "control").alias("treated"))
    # only campaigns whose outcome window (effect months + silent run) is fully observed
    last_idx = pl.select(month_index(pl.lit(world.last_month))).item()
    span = params.churn_horizon_months + params.churn_silent_months - 1
    offers = offers.filter(month_index(pl.col("campaign_month")) + span <= last_idx)
    counts = offers.group_by("campaign_month", "arm").agg(pl.len().alias("n"))
    exp = offers.filter(pl.col("arm").is_in(["control", "random"]))
    exp = churn_outcomes(world, exp, params.churn_horizon_months, params.churn_silent_months)
    exp = pre_period(world, exp, params.cuped_pre_months, statement_rows)
    truth = load_truth(oracle)
    has_truth = truth is not None and "tau" in truth.columns
    if (
        has_truth and truth is not None
    ):  # (has_truth implies truth is not None; the check narrows it for mypy)
        truth = truth.with_columns(pl.col("campaign_month").dt.month_start())
        keys = [k for k in KEYS if k in truth.columns and k in exp.columns]
        tcols = [c for c in ("tau", "y0", "y1") if c in truth.columns]
        exp = exp.join(truth.select(*keys, *tcols).unique(subset=keys), on=keys, how="left")
    rows = []
    for month in sorted(exp["campaign_month"].unique().to_list()):
        df = exp.filter(pl.col("campaign_month") == month)
        arm_counts = {
            r["arm"]: int(r["n"])
            for r in counts.filter(pl.col("campaign_month") == month).iter_rows(named=True)
        }
        r: dict[str, Any] = {"campaign_month": month, **evaluate_campaign(df, params, design, arm_counts)}
        if has_truth:
            treated = df.filter((pl.col("arm") == "random") & pl.col("treated") & pl.col("tau").is_not_null())
            t = float(cast(float, treated["tau"].mean())) if treated.height else float("nan")
            r["true_tau_treated"] = t
            if "ate_ci_lo" in r and not math.isnan(t):
                r["covered"] = bool(r["ate_ci_lo"] <= t <= r["ate_ci_hi"])
                r["cuped_covered"] = bool(r["cuped_ci_lo"] <= t <= r["cuped_ci_hi"])
                if r.get("offer_cost_yuan"):
                    cost = r["offer_cost_yuan"]
                    r["true_incremental_roi"] = (
                        t * r["n_random"] * r["value_per_retained_yuan"] - cost
                    ) / cost
        rows.append(r)
    diag: dict[str, float] = {}
    if has_truth and {"y0", "y1"} <= set(exp.columns):
        factual = exp.filter(pl.col("y0").is_not_null()).with_columns(
            pl.when(pl.col("arm") == "random").then(pl.col("y1")).otherwise(pl.col("y0")).alias("_y")
        )
        if factual.height:
            pos = factual.filter(pl.col("_y"))
            neg = factual.filter(~pl.col("_y"))
            if pos.height:
                diag["campaign_outcome_sensitivity"] = round(float(cast(float, pos["churn"].mean())), 6)
            if neg.height:
                diag["campaign_outcome_specificity"] = round(float(1 - cast(float, neg["churn"].mean())), 6)
    table = pl.DataFrame(rows, infer_schema_length=None).sort("campaign_month") if rows else pl.DataFrame()
    return table, diag


def summarise(campaigns: pl.DataFrame, params: ReportParams) -> dict[str, float]:
    """Flat headline figures over campaigns: pooled (inverse-variance) ATE, coverage, SRM flags, ROI."""
    if campaigns.height == 0 or "ate" not in campaigns.columns:
        return {"campaigns_evaluated": 0.0}
    c = campaigns.filter(pl.col("ate").is_not_null() & (pl.col("ate_se") > 0))
    out: dict[str, float] = {"campaigns_evaluated": float(c.height)}
    if c.height == 0:
        return out
    z = float(stats.norm.ppf(0.5 + params.ci_level / 2))
    w = 1.0 / c["ate_se"].to_numpy() ** 2
    pooled = float((w * c["ate"].to_numpy()).sum() / w.sum())
    pse = float(1 / math.sqrt(w.sum()))
    out.update(
        campaign_ate_pooled=pooled,
        campaign_ate_pooled_ci_lo=pooled - z * pse,
        campaign_ate_pooled_ci_hi=pooled + z * pse,
        campaign_srm_flags=float(c["srm_flag"].sum()),
        campaign_cuped_variance_reduction_mean=float(cast(float, c["cuped_variance_reduction"].mean())),
    )
    if "offer_cost_yuan" in c.columns:
        cost = float(c["offer_cost_yuan"].sum())
        margin = float(c["incremental_margin_yuan"].sum())
        out["campaign_incremental_roi_total"] = (margin - cost) / cost if cost > 0 else float("nan")
    if "covered" in c.columns:
        out["campaign_ci_coverage"] = float(cast(float, c["covered"].mean()))
        out["campaign_cuped_ci_coverage"] = float(cast(float, c["cuped_covered"].mean()))
        tw = c["n_random"].to_numpy().astype(float)
        out["campaign_true_tau_mean"] = float((c["true_tau_treated"].to_numpy() * tw).sum() / tw.sum())
        if "true_incremental_roi" in c.columns:
            true_margin = float((c["true_tau_treated"] * c["n_random"] * c["value_per_retained_yuan"]).sum())
            cost = float(c["offer_cost_yuan"].sum())
            out["campaign_true_incremental_roi_total"] = (
                (true_margin - cost) / cost if cost > 0 else float("nan")
            )
    return {k: round(v, 6) for k, v in out.items()}
