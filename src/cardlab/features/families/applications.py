"""Earlier card applications and invitations (raw tables ``applications`` and ``invitations``): the monthly
``aph`` and ``inv`` families and the ``application_history`` features."""

from __future__ import annotations

import polars as pl

from cardlab.features.dictionary import Catalog, dirs
from cardlab.features.families.common import in_world
from cardlab.features.io import WorldCalendar
from cardlab.features.windows import LAST_DATE, MONTH_COL, Family, col


def applications_family(apps: pl.LazyFrame, cal: WorldCalendar) -> Family:
    monthly = (
        in_world(apps, cal, "application_date")
        .group_by("customer_id", MONTH_COL)
        .agg(
            pl.len().cast(pl.Float64).alias("apps"),
            (~pl.col("approved").cast(pl.Boolean)).cast(pl.Float64).sum().alias("declined"),
            pl.col("application_date").max().alias(LAST_DATE),
        )
    )
    return Family("aph", "customer_id", monthly, ("apps", "declined"), ("apps",))


def invitations_family(inv: pl.LazyFrame, cal: WorldCalendar) -> Family:
    monthly = (
        in_world(inv, cal, "invite_date")
        .group_by("customer_id", MONTH_COL)
        .agg(pl.len().cast(pl.Float64).alias("invites"), pl.col("invite_date").max().alias(LAST_DATE))
    )
    return Family("inv", "customer_id", monthly, ("invites",), ("invites",))


def add_features(cat: Catalog, windows: list[int], invitations: bool) -> None:
    """The ``application_history`` features over the longest window (and the invitations' recency when the
    world has invitations)."""
    t = pl.col("t")
    wmax = max(windows)
    add_longest = cat.block(family="application_history", window=wmax)
    add_recency = cat.block(family="application_history", window=None)
    add_longest(
        f"app_prior_{wmax}m",
        col("aph", "apps", wmax),
        definition="card applications in complete months before the snapshot month",
        en="recent credit seeking",
        zh="近期申卡次数",
    )
    add_longest(
        f"app_prior_declined_{wmax}m",
        col("aph", "declined", wmax),
        definition="declined card applications before the snapshot month",
        en="previous declines",
        zh="近期被拒次数",
        direction=dirs(credit=1),
    )
    if invitations:
        add_longest(
            f"inv_invites_{wmax}m",
            col("inv", "invites", wmax),
            definition="card invitations received in complete months before the snapshot month",
            en="marketing pressure to apply",
            zh="近期收到的办卡邀请次数",
        )
        add_recency(
            "inv_months_since_invite",
            t - pl.col("inv__lastpos__invites"),
            definition="months since the last invitation (null = never)",
            en="time since invited",
            zh="距上次邀请的月数",
        )
