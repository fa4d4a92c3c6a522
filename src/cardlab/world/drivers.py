"""``oracle/true_drivers.json``: which raw columns carry causal signal for default and churn, and how much.

The list is fixed by construction (population.py / traits.py say which observable measures which trait);
the strength is measured on the written world as |Spearman correlation| between the raw column and the
latent trait that drives the outcome (risk for default, churn propensity/engagement for churn).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from cardlab.config import SimulateParams

# raw customers column -> (role, trait it measures or depends on)
DEFAULT_DRIVERS = {
    "bureau_score": "risk",
    "platform_credit_score": "risk",
    "city_tier": "risk",
    "age": "risk",
    "income_band": "risk",
    "occupation": "risk",
    "education": "risk",
    "purchase_power": "risk",
    # measures the borrowing factor, which sets mpb (a larger line raises the default hazard through it) and is
    # correlated with risk; strength, like every default driver's, is measured against risk
    "bureau_card_utilisation": "risk",
}
CHURN_DRIVERS = {
    "membership_level": "engagement",
    "paid_member": "churn_propensity",
    "platform_tenure_months": "engagement",
    "purchase_power": "engagement",
}
# behavioural raw tables that carry signal (documented, strength not measured here)
BEHAVIOUR = {
    "default": [
        "statements.dpd",
        "statements.payment_type",
        "statements.closing_balance",
        "statements.cash_advance",
        "bnpl_monthly.overdue_days",
        "orders.late_night",
        "applications.legacy_score",
    ],
    "churn": [
        "statements.purchases",
        "sessions_monthly.app_sessions",
        "orders.order_date",
        "retention_offers.treated",
        "statements.rewards_redeemed",
    ],
}
PROXIES = {
    "device_price_band": "purchase_power (observable), no path to any outcome",
    # thin_file only says the bureau score is missing; it is drawn from city tier and age (which drive risk),
    # so it is associated with risk without any path of its own
    "thin_file": "city tier and age (drivers of risk); marks a missing bureau score, no path to any outcome",
}


def _rank(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(float)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    ok = ~np.isnan(x)
    if ok.sum() < 10:
        return 0.0
    return float(abs(np.corrcoef(_rank(x[ok]), _rank(y[ok]))[0, 1]))


def _numeric(s: pl.Series) -> np.ndarray:
    if s.dtype == pl.Utf8:
        return s.cast(pl.Categorical).to_physical().cast(pl.Float64).to_numpy()
    return s.cast(pl.Float64).to_numpy()


def true_drivers(root: Path, params: SimulateParams) -> dict:
    """Build the true-drivers document from the world written under ``root`` (uses the first shard)."""
    cust = pl.read_parquet(root / "raw" / "customers" / "part-00000.parquet")
    traits = pl.read_parquet(root / "oracle" / "traits" / "part-00000.parquet")
    df = cust.join(traits, on="customer_id")

    def strengths(cols: dict[str, str]) -> dict[str, dict]:
        out = {}
        for c, trait in cols.items():
            x = _numeric(df[c])
            # categorical columns: use the trait mean per category as the score (eta-like)
            if df[c].dtype == pl.Utf8:
                means = df.group_by(c).agg(pl.col(trait).mean().alias("_m"))
                x = df.select(c).join(means, on=c, how="left")["_m"].to_numpy()
            out[c] = {"trait": trait, "strength": round(_spearman(x, df[trait].to_numpy()), 4)}
        return out

    decoys = [f"decoy_{k}" for k in range(1, params.n_decoys + 1)]
    return {
        "default": {"customers": strengths(DEFAULT_DRIVERS), "behaviour": BEHAVIOUR["default"]},
        "churn": {"customers": strengths(CHURN_DRIVERS), "behaviour": BEHAVIOUR["churn"]},
        "proxies": {
            c: {"note": note, "strength_vs_risk": round(_spearman(_numeric(df[c]), df["risk"].to_numpy()), 4)}
            for c, note in PROXIES.items()
        },
        "decoys": {
            c: {
                "strength_vs_risk": round(_spearman(df[c].to_numpy(), df["risk"].to_numpy()), 4),
                "strength_vs_churn": round(_spearman(df[c].to_numpy(), df["churn_propensity"].to_numpy()), 4),
            }
            for c in decoys
        },
        "note": "strength = |Spearman| between the raw column and the latent trait (first shard); decoys have "
        "no causal path, proxies are correlated with a driver but not causal.",
    }
