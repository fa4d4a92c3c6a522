"""The platform's own monthly credit score (raw table ``platform_scores``): the ``psc`` family and the
``platform_score`` features."""

from __future__ import annotations

import polars as pl

from cardlab.features.dictionary import Catalog, dirs
from cardlab.features.families.common import in_world
from cardlab.features.io import WorldCalendar
from cardlab.features.windows import LAST_DATE, MONTH_COL, Family, col, safe_div, slope


def platform_scores_family(ps: pl.LazyFrame, cal: WorldCalendar) -> Family:
    score = pl.col("platform_credit_score").cast(pl.Float64)
    monthly = in_world(ps, cal, "month").select(
        "customer_id",
        MONTH_COL,
        score.alias("score"),
        (score * pl.col(MONTH_COL).cast(pl.Float64)).alias("score_m"),
        pl.col("month").dt.month_end().alias(LAST_DATE),
    )
    return Family("psc", "customer_id", monthly, ("score", "score_m"), dense=False)


def add_features(cat: Catalog, windows: list[int]) -> None:
    """The ``platform_score`` features: the last score (shortest window), then per window."""
    # the platform's own credit score (monthly, points; higher = safer)
    wmin = min(windows)
    psn1 = pl.col(f"psc__n__{wmin}")
    add_latest = cat.block(family="platform_score", window=wmin)
    add_latest(
        "psc_score_last",
        pl.when(psn1 > 0).then(col("psc", "score", wmin) / psn1).otherwise(None),
        definition="the platform's credit score at the last month end before the snapshot",
        en="the platform's credit score",
        zh="平台信用分",
        direction=dirs(credit=-1, limit=-1),
    )
    for w in windows:
        add = cat.block(family="platform_score", window=w)
        if w >= 3:
            add(
                f"psc_score_mean_{w}m",
                safe_div(col("psc", "score", w), pl.col(f"psc__n__{w}")),
                definition=f"mean platform credit score over the last {w} month ends",
                en="the platform's credit score over time",
                zh="平台信用分均值",
                direction=dirs(credit=-1, limit=-1),
            )
        if w >= 6:
            add(
                f"psc_score_slope_{w}m",
                slope("psc", "score", "score_m", w),
                definition="least-squares slope of the monthly platform credit score (points/month)",
                en="trend of the platform's credit score",
                zh="平台信用分趋势",
            )
