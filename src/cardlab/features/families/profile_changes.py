"""Delivery-address and phone-number changes (raw table ``profile_changes``): the monthly ``pch`` family and
the ``profile_changes`` features."""

from __future__ import annotations

import polars as pl

from cardlab.features.dictionary import Catalog, dirs
from cardlab.features.families.common import in_world
from cardlab.features.io import WorldCalendar
from cardlab.features.windows import LAST_DATE, MONTH_COL, Family, col


def profile_changes_family(pc: pl.LazyFrame, cal: WorldCalendar) -> Family:
    kind = pl.col("kind").cast(pl.String)
    monthly = (
        in_world(pc, cal, "change_date")
        .group_by("customer_id", MONTH_COL)
        .agg(
            pl.len().cast(pl.Float64).alias("changes"),
            (kind == "delivery_address").cast(pl.Float64).sum().alias("address"),
            (kind == "phone_number").cast(pl.Float64).sum().alias("phone"),
            pl.col("change_date").max().alias(LAST_DATE),
        )
    )
    return Family("pch", "customer_id", monthly, ("changes", "address", "phone"), ("changes",))


def add_features(cat: Catalog, windows: list[int]) -> None:
    """The ``profile_changes`` features: per window, then the recency."""
    t = pl.col("t")
    for w in windows:
        add = cat.block(family="profile_changes", window=w)
        for kind, en, zh in (
            ("address", "delivery address", "收货地址"),
            ("phone", "phone number", "手机号"),
        ):
            add(
                f"pch_{kind}_changes_{w}m",
                col("pch", kind, w),
                definition=f"{en} changes",
                en=f"recent changes of {en}",
                zh=f"近期更换{zh}次数",
                direction=dirs(credit=1, limit=1),
                source="profile_changes.kind",
            )
    add_recency = cat.block(family="profile_changes", window=None)
    add_recency(
        "pch_months_since_change",
        t - pl.col("pch__lastpos__changes"),
        definition="months since the last delivery-address or phone-number change (null = never)",
        en="time since the profile last changed",
        zh="距上次更换地址或手机号的月数",
        source="profile_changes.kind",
    )
