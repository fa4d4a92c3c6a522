"""Credit-limit reviews (raw table ``limit_changes``): the monthly account-level ``lim`` family and its
``limit_history`` features."""

from __future__ import annotations

import polars as pl

from cardlab.features.dictionary import Catalog
from cardlab.features.families.common import in_world
from cardlab.features.io import WorldCalendar
from cardlab.features.windows import LAST_DATE, MONTH_COL, Family, col


def limit_changes_family(lc: pl.LazyFrame, cal: WorldCalendar) -> Family:
    monthly = (
        in_world(lc, cal, "review_date")
        .group_by("card_id", MONTH_COL)
        .agg(
            pl.len().cast(pl.Float64).alias("reviews"),
            (pl.col("new_limit") > pl.col("old_limit")).cast(pl.Float64).sum().alias("inc"),
            (pl.col("new_limit") < pl.col("old_limit")).cast(pl.Float64).sum().alias("dec"),
            pl.col("review_date").max().alias(LAST_DATE),
        )
        .with_columns(changed=((pl.col("inc") + pl.col("dec")) > 0).cast(pl.Float64))
    )
    return Family("lim", "card_id", monthly, ("reviews", "inc", "dec", "changed"), ("changed",), dense=True)


def add_window_features(cat: Catalog, w: int) -> None:
    """The ``limit_history`` features of the window of ``w`` months."""
    add = cat.block(family="limit_history", window=w)
    add(
        f"lim_increases_{w}m",
        col("lim", "inc", w),
        definition="limit increases in the window",
        en="recent line increases",
        zh="近期提额次数",
    )
    add(
        f"lim_decreases_{w}m",
        col("lim", "dec", w),
        definition="limit decreases in the window",
        en="recent line decreases",
        zh="近期降额次数",
    )


def add_recency_features(cat: Catalog) -> None:
    """Months since the last limit change."""
    t = pl.col("t")
    add_recency = cat.block(family="limit_history", window=None)
    add_recency(
        "lim_months_since_change",
        t - pl.col("lim__lastpos__changed"),
        definition="months since the last limit change (null = never)",
        en="time since the last line change",
        zh="距上次调额的月数",
    )
