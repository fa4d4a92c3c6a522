"""Buy-now-pay-later (raw tables ``bnpl_plans`` and ``bnpl_monthly``): the monthly ``bnp`` (plans started) and
``bnr`` (repayments) families and the ``bnpl`` features."""

from __future__ import annotations

import polars as pl

from cardlab.features.dictionary import Catalog, dirs
from cardlab.features.families.common import in_world
from cardlab.features.io import WorldCalendar
from cardlab.features.windows import LAST_DATE, MONTH_COL, Family, col, safe_div


def bnpl_plans_family(plans: pl.LazyFrame, cal: WorldCalendar) -> Family:
    schema = plans.collect_schema()
    inst = pl.col("instalments").cast(pl.Float64) if "instalments" in schema else pl.lit(0.0)
    monthly = (
        in_world(plans, cal, "start_date")
        .group_by("customer_id", MONTH_COL)
        .agg(
            pl.len().cast(pl.Float64).alias("plans"),
            pl.col("principal_fen").cast(pl.Float64).sum().alias("principal"),
            inst.sum().alias("instalments"),
            pl.col("start_date").max().alias(LAST_DATE),
        )
    )
    return Family("bnp", "customer_id", monthly, ("plans", "principal", "instalments"), ("plans",))


def bnpl_repay_family(bm: pl.LazyFrame, cal: WorldCalendar) -> Family:
    schema = bm.collect_schema()
    od = pl.col("overdue_days").cast(pl.Float64).fill_null(0)
    late = pl.col("days_late").cast(pl.Float64).fill_null(0) if "days_late" in schema else pl.lit(0.0)
    monthly = (
        in_world(bm, cal, "month")
        .group_by("customer_id", MONTH_COL)
        .agg(
            pl.col("due_fen").cast(pl.Float64).sum().alias("due"),
            pl.col("paid_fen").cast(pl.Float64).sum().alias("paid"),
            (od > 0).cast(pl.Float64).max().alias("overdue"),
            (od >= 30).cast(pl.Float64).max().alias("overdue30"),
            od.max().alias("overdue_days"),
            (late > 0).cast(pl.Float64).max().alias("late"),
            late.max().alias("late_days"),
            (pl.col("paid_fen") < pl.col("due_fen")).cast(pl.Float64).max().alias("short"),
            pl.col("month").dt.month_end().max().alias(LAST_DATE),
        )
        .with_columns(has_due=(pl.col("due") > 0).cast(pl.Float64))
    )
    return Family(
        "bnr",
        "customer_id",
        monthly,
        ("due", "paid", "overdue", "overdue30", "overdue_days", "late", "late_days", "short", "has_due"),
        ("overdue", "late"),
    )


def add_features(cat: Catalog, windows: list[int]) -> None:
    """The ``bnpl`` features: per window, then those of the longest window and the recencies."""
    t = pl.col("t")
    wmax = max(windows)
    for w in windows:
        add = cat.block(family="bnpl", window=w)
        add(
            f"bnpl_plans_{w}m",
            col("bnp", "plans", w),
            definition="BNPL plans started",
            en="appetite for instalment credit",
            zh="先享后付分期笔数",
        )
        add(
            f"bnpl_principal_{w}m",
            col("bnp", "principal", w),
            definition="BNPL principal started (fen)",
            en="amount of instalment credit taken",
            zh="先享后付分期本金",
        )
        add(
            f"bnpl_repay_ratio_{w}m",
            safe_div(col("bnr", "paid", w), col("bnr", "due", w)),
            definition="BNPL paid fen / due fen",
            en="BNPL repayment discipline",
            zh="先享后付还款比例",
            direction=dirs(credit=-1, limit=-1),
            source="bnpl_monthly.paid_fen",
        )
        add(
            f"bnpl_late_months_{w}m",
            col("bnr", "late", w),
            definition="months with a BNPL instalment paid after its due date",
            en="late BNPL repayments",
            zh="先享后付延迟还款月数",
            direction=dirs(credit=1, limit=1),
            source="bnpl_monthly.days_late",
        )
        add(
            f"bnpl_short_months_{w}m",
            col("bnr", "short", w),
            definition="months in which less than the BNPL amount due was paid (partial or missed)",
            en="partial or missed BNPL repayments",
            zh="先享后付未足额还款月数",
            direction=dirs(credit=1, limit=1),
            source="bnpl_monthly.paid_fen",
        )
        add(
            f"bnpl_overdue_months_{w}m",
            col("bnr", "overdue", w),
            definition="months with BNPL overdue days > 0",
            en="BNPL delinquency history",
            zh="先享后付逾期月数",
            direction=dirs(credit=1, limit=1),
            source="bnpl_monthly.overdue_days",
        )
        add(
            f"bnpl_overdue30_months_{w}m",
            col("bnr", "overdue30", w),
            definition="months with BNPL overdue days >= 30",
            en="serious BNPL delinquency",
            zh="先享后付逾期30天以上月数",
            direction=dirs(credit=1, limit=1),
            source="bnpl_monthly.overdue_days",
        )
        add(
            f"bnpl_due_months_{w}m",
            col("bnr", "has_due", w),
            definition="months with a BNPL amount due",
            en="ongoing BNPL obligations",
            zh="有先享后付应还款的月数",
        )
    add_longest = cat.block(family="bnpl", window=wmax)
    add_recency = cat.block(family="bnpl", window=None)
    add_longest(
        f"bnpl_avg_instalments_{wmax}m",
        safe_div(col("bnp", "instalments", wmax), col("bnp", "plans", wmax)),
        definition="mean instalments per BNPL plan",
        en="preferred instalment length",
        zh="平均分期期数",
    )
    add_recency(
        "bnpl_months_since_overdue",
        t - pl.col("bnr__lastpos__overdue"),
        definition="months since the last month with BNPL overdue days > 0 (null = never)",
        en="recency of BNPL delinquency",
        zh="距上次先享后付逾期的月数",
        direction=dirs(credit=-1, limit=-1),
        source="bnpl_monthly.overdue_days",
    )
    add_longest(
        f"bnpl_days_late_mean_{wmax}m",
        safe_div(col("bnr", "late_days", wmax), col("bnr", "late", wmax)),
        definition="mean of the largest days late of the months with a late BNPL repayment (null = none)",
        en="how late BNPL repayments are",
        zh="先享后付平均延迟天数",
        source="bnpl_monthly.days_late",
    )
    add_recency(
        "bnpl_months_since_late",
        t - pl.col("bnr__lastpos__late"),
        definition="months since the last month with a late BNPL repayment (null = never)",
        en="recency of late BNPL repayments",
        zh="距上次先享后付延迟还款的月数",
        direction=dirs(credit=-1, limit=-1),
        source="bnpl_monthly.days_late",
    )
