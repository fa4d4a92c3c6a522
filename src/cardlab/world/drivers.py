"""``oracle/true_drivers.json``: which raw observables carry causal signal for default and churn, and how much.

Which observable measures which trait is fixed by construction (population.py, ecommerce.py, card.py); the
*strength* of each is measured on the written world (first shard) as |Spearman| between the observable —
for behavioural tables a per-customer aggregate over the customer's history — and the outcome's latent index:
``default_logit`` (the customer's distress log-odds, interactions included) for default, the churn index
(behaviour.churn_index) for churn. Sources are named ``<table>.<column>``, like the feature dictionary's
``source`` field, so the explanation stage can grade attributions source by source.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from cardlab.config import SimulateParams
from cardlab.world.behaviour import DUE_DAY, churn_index
from cardlab.world.ecommerce import CASH_LIKE

# profile columns (raw ``customers``) that drive default: measurements of the risk or borrowing factors, or
# causes of the risk factor (tier, age), or parts of the non-additive terms (thin file x channel)
DEFAULT_PROFILE = (
    "bureau_score",
    "bureau_card_utilisation",
    "bureau_revolving_fen",
    "thin_file",
    "acquisition_channel",
    "city_tier",
    "age",
    "income_band",
    "occupation",
    "education",
    "purchase_power",
)
CHURN_PROFILE = ("membership_level", "paid_member", "purchase_power")
PROXIES = {
    "device_price_band": "purchase_power (observable), no path to any outcome",
}

Aggregate = Callable[[dict[str, pl.DataFrame]], pl.DataFrame]


def _mean(table: str, expr: pl.Expr) -> Aggregate:
    """Per customer: the mean of ``expr`` over the customer's rows of ``table``."""
    return lambda t: t[table].group_by("customer_id").agg(expr.cast(pl.Float64).mean().alias("value"))


def _per_month(table: str) -> Aggregate:
    """Per customer: rows of ``table`` per month since sign-up (0 for customers without a row)."""

    def agg(t: dict[str, pl.DataFrame]) -> pl.DataFrame:
        months = t["customers"].select("customer_id", "_live_months")
        counts = t[table].group_by("customer_id").len()
        return months.join(counts, on="customer_id", how="left").select(
            "customer_id", (pl.col("len").fill_null(0) / pl.col("_live_months")).alias("value")
        )

    return agg


def _late_payment(t: dict[str, pl.DataFrame]) -> pl.DataFrame:
    paid = t["statements"].filter(pl.col("payments") > 0)
    return _mean("statements", pl.col("payment_date").dt.day() > DUE_DAY)({"statements": paid})


# behavioural sources and how each is aggregated per customer
DEFAULT_BEHAVIOUR: dict[str, Aggregate] = {
    "bnpl_monthly.overdue_days": _mean("bnpl_monthly", pl.col("overdue_days")),
    "bnpl_monthly.days_late": _mean("bnpl_monthly", pl.col("days_late") > 0),
    "bnpl_monthly.paid_fen": _mean("bnpl_monthly", pl.col("paid_fen") < pl.col("due_fen")),
    "orders.late_night": _mean("orders", pl.col("late_night")),
    "orders.category": _mean("orders", pl.col("category").is_in(CASH_LIKE)),
    "orders.cancelled": _mean("orders", pl.col("cancelled")),
    "sessions_monthly.credit_page_visits": _mean("sessions_monthly", pl.col("credit_page_visits")),
    "profile_changes.kind": _per_month("profile_changes"),
    "platform_scores.platform_credit_score": _mean("platform_scores", pl.col("platform_credit_score")),
    "statements.dpd": _mean("statements", pl.col("dpd")),
    "statements.payment_date": _late_payment,
    "statements.cash_advance": _mean("statements", pl.col("cash_advance") > 0),
    "statements.closing_balance": _mean(
        "statements", pl.col("closing_balance") / pl.col("credit_limit").clip(lower_bound=1)
    ),
}
CHURN_BEHAVIOUR: dict[str, Aggregate] = {
    "statements.purchases": _mean("statements", pl.col("purchases") > 0),
    "statements.rewards_redeemed": _mean("statements", pl.col("rewards_redeemed") > 0),
    "sessions_monthly.app_sessions": _mean("sessions_monthly", pl.col("app_sessions")),
    "sessions_monthly.card_page_visits": _mean("sessions_monthly", pl.col("card_page_visits")),
    "orders.order_date": _per_month("orders"),
}


def _rank(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(float)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    ok = ~np.isnan(x)
    if ok.sum() < 10 or np.ptp(x[ok]) == 0:
        return 0.0
    return float(abs(np.corrcoef(_rank(x[ok]), _rank(y[ok]))[0, 1]))


def _numeric(s: pl.Series) -> np.ndarray:
    if s.dtype == pl.Utf8:
        return s.cast(pl.Categorical).to_physical().cast(pl.Float64).to_numpy()
    return s.cast(pl.Float64).to_numpy()


def _read(root: Path, kind: str, table: str) -> pl.DataFrame:
    return pl.read_parquet(root / kind / table / "part-00000.parquet")


def true_drivers(root: Path, params: SimulateParams) -> dict:
    """Build the true-drivers document from the world written under ``root`` (uses the first shard)."""
    root = Path(root)
    tables = {
        t: _read(root, "raw", t)
        for t in (
            "orders",
            "bnpl_monthly",
            "sessions_monthly",
            "profile_changes",
            "platform_scores",
            "statements",
        )
    }
    traits = _read(root, "oracle", "traits")
    traits = traits.with_columns(
        pl.Series("churn_index", churn_index(*(traits[c].to_numpy() for c in CHURN_INDEX_TRAITS)))
    )
    end = params.start_month.year * 12 + params.start_month.month + params.size.months
    cust = _read(root, "raw", "customers").with_columns(
        (end - (pl.col("signup_date").dt.year() * 12 + pl.col("signup_date").dt.month()))
        .clip(lower_bound=1)
        .cast(pl.Float64)
        .alias("_live_months")
    )
    tables["customers"] = cust
    df = cust.join(traits, on="customer_id")

    def profile(cols: tuple[str, ...], target: str) -> dict[str, dict]:
        out = {}
        for c in cols:
            x = _numeric(df[c])
            # categorical columns: use the target mean per category as the score (eta-like)
            if df[c].dtype in (pl.Utf8, pl.Boolean):
                means = df.group_by(c).agg(pl.col(target).mean().alias("_m"))
                x = df.select(c).join(means, on=c, how="left")["_m"].to_numpy()
            out[c] = {"trait": target, "strength": round(_spearman(x, df[target].to_numpy()), 4)}
        return out

    def behaviour(sources: dict[str, Aggregate], target: str) -> dict[str, dict]:
        out = {}
        for name, agg in sources.items():
            j = agg(tables).join(traits.select("customer_id", target), on="customer_id")
            strength = _spearman(j["value"].cast(pl.Float64).to_numpy(), j[target].to_numpy())
            out[name] = {"trait": target, "strength": round(strength, 4), "customers": j.height}
        return out

    decoys = [f"decoy_{k}" for k in range(1, params.n_decoys + 1)]
    return {
        "default": {
            "target": "default_logit",
            "customers": profile(DEFAULT_PROFILE, "default_logit"),
            "behaviour": behaviour(DEFAULT_BEHAVIOUR, "default_logit"),
        },
        "churn": {
            "target": "churn_index",
            "customers": profile(CHURN_PROFILE, "churn_index"),
            "behaviour": behaviour(CHURN_BEHAVIOUR, "churn_index"),
        },
        "proxies": {
            c: {
                "note": note,
                "strength_vs_default": round(_spearman(_numeric(df[c]), df["default_logit"].to_numpy()), 4),
            }
            for c, note in PROXIES.items()
        },
        "decoys": {
            c: {
                "strength_vs_default": round(_spearman(df[c].to_numpy(), df["default_logit"].to_numpy()), 4),
                "strength_vs_churn": round(_spearman(df[c].to_numpy(), df["churn_index"].to_numpy()), 4),
            }
            for c in decoys
        },
        "note": "strength = |Spearman| between the raw observable (behaviour: per-customer aggregate over its "
        "history) and the outcome's latent index (first shard); decoys have no causal path, proxies are "
        "correlated with a driver but not causal. Sources are <table>.<column> (customers: the column).",
    }


CHURN_INDEX_TRAITS = ("churn_propensity", "engagement", "reward_sensitivity")
