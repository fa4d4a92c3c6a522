"""App, web and mini-program sessions (raw table ``sessions_monthly``): the monthly ``ses`` family and the
``platform_engagement`` features."""

from __future__ import annotations

import polars as pl

from cardlab.features.dictionary import Catalog, dirs
from cardlab.features.families.common import ACCOUNT, in_world
from cardlab.features.io import WorldCalendar
from cardlab.features.windows import LAST_DATE, MONTH_COL, Family, col, safe_div, slope


def sessions_family(sessions: pl.LazyFrame, cal: WorldCalendar) -> Family:
    schema = sessions.collect_schema()
    parts = [c for c in ("app_sessions", "web_sessions", "mini_program_sessions") if c in schema]

    def s(c: str) -> pl.Expr:
        return pl.col(c).cast(pl.Float64).fill_null(0) if c in schema else pl.lit(0.0)

    total = pl.sum_horizontal([s(c) for c in parts]) if parts else pl.lit(0.0)
    monthly = (
        in_world(sessions, cal, "month")
        .group_by("customer_id", MONTH_COL)
        .agg(
            s("app_sessions").sum().alias("app"),
            s("web_sessions").sum().alias("web"),
            s("mini_program_sessions").sum().alias("mini"),
            total.sum().alias("total"),
            s("clicks").sum().alias("clicks"),
            s("card_page_visits").sum().alias("card"),
            s("credit_page_visits").sum().alias("credit"),
            s("price_compare_sessions").sum().alias("compare"),
            pl.col("month").dt.month_end().max().alias(LAST_DATE),
        )
        .with_columns(total_m=pl.col("total") * pl.col(MONTH_COL).cast(pl.Float64))
    )
    return Family(
        "ses",
        "customer_id",
        monthly,
        ("app", "web", "mini", "total", "clicks", "card", "credit", "compare", "total_m"),
        ("total",),
    )


def add_features(cat: Catalog, windows: list[int]) -> None:
    """The ``platform_engagement`` features: per window, then the recency."""
    t = pl.col("t")
    for w in windows:
        add = cat.block(family="platform_engagement", window=w)
        months = pl.col(f"ses__n__{w}")
        tot = col("ses", "total", w)
        add(
            f"ses_per_month_{w}m",
            safe_div(tot, months),
            definition="app + web + mini-program sessions per month",
            en="platform engagement",
            zh="平台活跃度（月均访问次数）",
            direction=dirs(churn=-1),
            source="sessions_monthly.app_sessions",
        )
        add(
            f"ses_credit_visits_per_month_{w}m",
            safe_div(col("ses", "credit", w), months),
            definition="visits to the credit and loan product pages per month",
            en="interest in credit and loans",
            zh="信贷及借款页面月均访问次数",
            source="sessions_monthly.credit_page_visits",
        )
        add(
            f"ses_price_compare_per_month_{w}m",
            safe_div(col("ses", "compare", w), months),
            definition="price-comparison sessions per month",
            en="price comparison",
            zh="比价行为月均次数",
            source="sessions_monthly.price_compare_sessions",
        )
        add(
            f"ses_app_share_{w}m",
            safe_div(col("ses", "app", w), tot),
            definition="app sessions / all sessions",
            en="use of the mobile app",
            zh="手机应用访问占比",
        )
        add(
            f"ses_mini_share_{w}m",
            safe_div(col("ses", "mini", w), tot),
            definition="mini-program sessions / all sessions",
            en="use of the mini-program",
            zh="小程序访问占比",
        )
        add(
            f"ses_clicks_per_session_{w}m",
            safe_div(col("ses", "clicks", w), tot),
            definition="clicks / sessions",
            en="browsing depth",
            zh="每次访问的点击深度",
        )
        add(
            f"ses_card_visits_per_month_{w}m",
            safe_div(col("ses", "card", w), months),
            definition="visits to the card's page in the app (bill, points) per month",
            en="attention to the card in the app",
            zh="应用内信用卡页面月均访问次数",
            direction=dirs(churn=-1),
            tasks=ACCOUNT,
            source="sessions_monthly.card_page_visits",
        )
        if w >= 6:
            add(
                f"ses_slope_{w}m",
                slope("ses", "total", "total_m", w),
                definition="least-squares slope of monthly sessions",
                en="trend of engagement",
                zh="活跃度趋势",
                direction=dirs(churn=-1),
            )
    add_recency = cat.block(family="platform_engagement", window=None)
    add_recency(
        "ses_months_since_active",
        t - pl.col("ses__lastpos__total"),
        definition="months since the last month with any session",
        en="time since last visit",
        zh="距上次访问的月数",
        direction=dirs(churn=1),
    )
