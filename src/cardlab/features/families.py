"""Feature families: monthly base tables (what happened in each complete month) and the windowed features
computed from them. Customer-level families serve all tasks; account-level families serve limit and churn.

Amounts are fen unless a name says otherwise; windows are complete calendar months strictly before the
snapshot month; ratios are null when their denominator is zero.
"""

from __future__ import annotations

import re

import polars as pl

from cardlab.features.dictionary import Catalog, dirs
from cardlab.features.io import WorldCalendar
from cardlab.features.texts import zh as zh_name
from cardlab.features.windows import LAST_DATE, MONTH_COL, Family, col, safe_div, slope, std

ALL = ("credit", "limit", "churn")
ACCOUNT = ("limit", "churn")
# near-cash goods a customer can resell or spend like cash (a classic sign of turning credit into cash)
CASH_LIKE_CATEGORIES = ("gift_cards", "phone_topup", "game_credits")


def ident(value: object) -> str:
    """A category value as a column-name fragment."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", str(value)).strip("_").lower() or "na"


def _in_world(lf: pl.LazyFrame, cal: WorldCalendar, date_col: str) -> pl.LazyFrame:
    return lf.with_columns(cal.index_expr(date_col).alias(MONTH_COL)).filter(
        (pl.col(MONTH_COL) >= 0) & (pl.col(MONTH_COL) < cal.months)
    )


def festival_expr(date_col: str) -> pl.Expr:
    """Shopping festivals of Chinese e-commerce: 618 (1-18 June), Double 11 (1-11 Nov), Double 12 (12 Dec)."""
    d = pl.col(date_col)
    mo, dy = d.dt.month(), d.dt.day()
    return ((mo == 6) & (dy <= 18)) | ((mo == 11) & (dy <= 11)) | ((mo == 12) & (dy == 12))


# ------------------------------------------------------------------------------------------------------------
# customer-level monthly families
# ------------------------------------------------------------------------------------------------------------
def orders_family(orders: pl.LazyFrame, cal: WorldCalendar, categories: list[str]) -> Family:
    schema = orders.collect_schema()
    amt = pl.col("amount_fen").cast(pl.Float64)

    def flag(c: str) -> pl.Expr:
        return pl.col(c).cast(pl.Float64).fill_null(0) if c in schema else pl.lit(0.0)

    paid = pl.col("paid_with").cast(pl.String) if "paid_with" in schema else pl.lit("")
    aggs = [
        pl.len().cast(pl.Float64).alias("orders"),
        amt.sum().alias("gmv"),
        (pl.col("discount_fen").cast(pl.Float64).sum() if "discount_fen" in schema else pl.lit(0.0)).alias(
            "discount"
        ),
        flag("returned").sum().alias("n_returned"),
        flag("cancelled").sum().alias("n_cancel"),
        flag("late_night").sum().alias("n_late"),
        pl.col("category").cast(pl.String).is_in(CASH_LIKE_CATEGORIES).cast(pl.Float64).sum().alias("n_cash")
        if "category" in schema
        else pl.lit(0.0).alias("n_cash"),
        (paid == "bnpl").cast(pl.Float64).sum().alias("n_bnpl"),
        (paid == "card").cast(pl.Float64).sum().alias("n_card"),
        (amt * festival_expr("order_date").cast(pl.Float64)).sum().alias("gmv_festival"),
        pl.col("order_date").max().alias(LAST_DATE),
    ]
    for c in categories:
        aggs.append(
            (amt * (pl.col("category").cast(pl.String) == c).cast(pl.Float64))
            .sum()
            .alias(f"gmv_cat_{ident(c)}")
        )
    monthly = (
        _in_world(orders, cal, "order_date")
        .group_by("customer_id", MONTH_COL)
        .agg(aggs)
        .with_columns(
            active=pl.lit(1.0),
            gmv_m=pl.col("gmv") * pl.col(MONTH_COL).cast(pl.Float64),
        )
    )
    base = (
        "orders",
        "gmv",
        "discount",
        "n_returned",
        "n_cancel",
        "n_late",
        "n_cash",
        "n_bnpl",
        "n_card",
        "gmv_festival",
        "active",
        "gmv_m",
    )
    base += tuple(f"gmv_cat_{ident(c)}" for c in categories)
    return Family("ord", "customer_id", monthly, base, recency=("active",))


def sessions_family(sessions: pl.LazyFrame, cal: WorldCalendar) -> Family:
    schema = sessions.collect_schema()
    parts = [c for c in ("app_sessions", "web_sessions", "mini_program_sessions") if c in schema]

    def s(c: str) -> pl.Expr:
        return pl.col(c).cast(pl.Float64).fill_null(0) if c in schema else pl.lit(0.0)

    total = pl.sum_horizontal([s(c) for c in parts]) if parts else pl.lit(0.0)
    monthly = (
        _in_world(sessions, cal, "month")
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


def bnpl_plans_family(plans: pl.LazyFrame, cal: WorldCalendar) -> Family:
    schema = plans.collect_schema()
    inst = pl.col("instalments").cast(pl.Float64) if "instalments" in schema else pl.lit(0.0)
    monthly = (
        _in_world(plans, cal, "start_date")
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
        _in_world(bm, cal, "month")
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


def profile_changes_family(pc: pl.LazyFrame, cal: WorldCalendar) -> Family:
    kind = pl.col("kind").cast(pl.String)
    monthly = (
        _in_world(pc, cal, "change_date")
        .group_by("customer_id", MONTH_COL)
        .agg(
            pl.len().cast(pl.Float64).alias("changes"),
            (kind == "delivery_address").cast(pl.Float64).sum().alias("address"),
            (kind == "phone_number").cast(pl.Float64).sum().alias("phone"),
            pl.col("change_date").max().alias(LAST_DATE),
        )
    )
    return Family("pch", "customer_id", monthly, ("changes", "address", "phone"), ("changes",))


def platform_scores_family(ps: pl.LazyFrame, cal: WorldCalendar) -> Family:
    score = pl.col("platform_credit_score").cast(pl.Float64)
    monthly = _in_world(ps, cal, "month").select(
        "customer_id",
        MONTH_COL,
        score.alias("score"),
        (score * pl.col(MONTH_COL).cast(pl.Float64)).alias("score_m"),
        pl.col("month").dt.month_end().alias(LAST_DATE),
    )
    return Family("psc", "customer_id", monthly, ("score", "score_m"), dense=False)


def applications_family(apps: pl.LazyFrame, cal: WorldCalendar) -> Family:
    monthly = (
        _in_world(apps, cal, "application_date")
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
        _in_world(inv, cal, "invite_date")
        .group_by("customer_id", MONTH_COL)
        .agg(pl.len().cast(pl.Float64).alias("invites"), pl.col("invite_date").max().alias(LAST_DATE))
    )
    return Family("inv", "customer_id", monthly, ("invites",), ("invites",))


def customer_catalog(windows: list[int], categories: list[str], invitations: bool = False) -> Catalog:
    cat = Catalog(ALL)
    t = pl.col("t")
    for w in windows:
        n = col("ord", "orders", w)
        gmv = col("ord", "gmv", w)
        months = pl.col(f"ord__n__{w}")
        cat.add(
            f"ord_n_{w}m",
            n,
            family="platform_orders",
            window=w,
            definition=f"orders placed in the last {w} complete months",
            en="how often the customer shops on the platform",
            zh="客户在平台的下单频次",
            direction=dirs(churn=-1),
        )
        cat.add(
            f"ord_gmv_avg_month_{w}m",
            safe_div(gmv, months),
            family="platform_orders",
            window=w,
            definition=f"GMV (fen) per month over the last {w} months",
            en="platform spending level",
            zh="平台月均消费金额",
        )
        cat.add(
            f"ord_ticket_{w}m",
            safe_div(gmv, n),
            family="platform_orders",
            window=w,
            definition=f"average order value (fen) over the last {w} months",
            en="average basket size",
            zh="客单价",
        )
        cat.add(
            f"ord_discount_rate_{w}m",
            safe_div(col("ord", "discount", w), gmv),
            family="platform_orders",
            window=w,
            definition="discount fen / GMV fen",
            en="reliance on discounts and coupons",
            zh="对折扣优惠的依赖程度",
        )
        cat.add(
            f"ord_return_rate_{w}m",
            safe_div(col("ord", "n_returned", w), n),
            family="platform_orders",
            window=w,
            definition="returned orders / orders",
            en="share of orders returned",
            zh="退货比例",
            source="orders.returned",
        )
        cat.add(
            f"ord_cancel_rate_{w}m",
            safe_div(col("ord", "n_cancel", w), n),
            family="platform_orders",
            window=w,
            definition="cancelled orders / orders",
            en="share of orders cancelled",
            zh="取消订单比例",
            direction=dirs(credit=1, limit=1),
            source="orders.cancelled",
        )
        cat.add(
            f"ord_cash_like_share_{w}m",
            safe_div(col("ord", "n_cash", w), n),
            family="platform_orders",
            window=w,
            definition=f"orders of cash-like goods ({', '.join(CASH_LIKE_CATEGORIES)}) / orders",
            en="buying of cash-like goods (gift cards, top-ups, game credits)",
            zh="购买类现金商品（礼品卡、话费充值、游戏点卡）占比",
            direction=dirs(credit=1, limit=1),
            source="orders.category",
        )
        cat.add(
            f"ord_late_night_share_{w}m",
            safe_div(col("ord", "n_late", w), n),
            family="platform_orders",
            window=w,
            definition="late-night orders / orders",
            en="share of late-night shopping",
            zh="深夜下单占比",
            source="orders.late_night",
        )
        cat.add(
            f"ord_bnpl_share_{w}m",
            safe_div(col("ord", "n_bnpl", w), n),
            family="platform_orders",
            window=w,
            definition="orders paid with BNPL / orders",
            en="use of buy-now-pay-later at checkout",
            zh="先享后付支付占比",
            source="orders.paid_with",
        )
        cat.add(
            f"ord_card_share_{w}m",
            safe_div(col("ord", "n_card", w), n),
            family="platform_orders",
            window=w,
            definition="orders paid with the co-branded card / orders",
            en="use of the card at checkout",
            zh="联名卡支付占比",
            direction=dirs(churn=-1),
            source="orders.paid_with",
        )
        cat.add(
            f"ord_active_months_{w}m",
            col("ord", "active", w),
            family="platform_orders",
            window=w,
            definition=f"months with at least one order among the last {w}",
            en="regularity of shopping",
            zh="有下单的月份数",
            direction=dirs(churn=-1),
        )
        if w >= 3:
            for c in categories:
                cat.add(
                    f"ord_gmv_share_{ident(c)}_{w}m",
                    safe_div(col("ord", f"gmv_cat_{ident(c)}", w), gmv),
                    family="platform_orders",
                    window=w,
                    definition=f"GMV in category '{c}' / GMV",
                    en=f"spending mix: {c}",
                    zh=f"品类消费占比：{zh_name(c)}",
                )
        if w >= 6:
            cat.add(
                f"ord_festival_gmv_share_{w}m",
                safe_div(col("ord", "gmv_festival", w), gmv),
                family="platform_orders",
                window=w,
                definition="GMV during 618 (1-18 Jun), Double 11 (1-11 Nov) and Double 12 / GMV",
                en="concentration of spending in shopping festivals",
                zh="购物节（618、双11、双12）消费集中度",
            )
            cat.add(
                f"ord_gmv_slope_{w}m",
                slope("ord", "gmv", "gmv_m", w),
                family="platform_orders",
                window=w,
                definition="least-squares slope of monthly GMV (fen/month)",
                en="trend of platform spending",
                zh="平台消费趋势",
            )
    wmax, wmin = max(windows), min(windows)
    cat.add(
        "ord_gmv_momentum",
        safe_div(
            safe_div(col("ord", "gmv", wmin), pl.col(f"ord__n__{wmin}")),
            safe_div(col("ord", "gmv", wmax), pl.col(f"ord__n__{wmax}")),
        ),
        family="platform_orders",
        window=wmax,
        definition=f"monthly GMV over {wmin}m / monthly GMV over {wmax}m",
        en="recent change in spending",
        zh="近期消费变化",
    )
    cat.add(
        "ord_months_since_last",
        t - pl.col("ord__lastpos__active"),
        family="platform_orders",
        window=None,
        definition="months since the last month with an order (1 = last month; null = never)",
        en="time since last purchase",
        zh="距上次下单的月数",
        direction=dirs(churn=1),
    )
    # sessions
    for w in windows:
        months = pl.col(f"ses__n__{w}")
        tot = col("ses", "total", w)
        cat.add(
            f"ses_per_month_{w}m",
            safe_div(tot, months),
            family="platform_engagement",
            window=w,
            definition="app + web + mini-program sessions per month",
            en="platform engagement",
            zh="平台活跃度（月均访问次数）",
            direction=dirs(churn=-1),
            source="sessions_monthly.app_sessions",
        )
        cat.add(
            f"ses_credit_visits_per_month_{w}m",
            safe_div(col("ses", "credit", w), months),
            family="platform_engagement",
            window=w,
            definition="visits to the credit and loan product pages per month",
            en="interest in credit and loans",
            zh="信贷及借款页面月均访问次数",
            source="sessions_monthly.credit_page_visits",
        )
        cat.add(
            f"ses_price_compare_per_month_{w}m",
            safe_div(col("ses", "compare", w), months),
            family="platform_engagement",
            window=w,
            definition="price-comparison sessions per month",
            en="price comparison",
            zh="比价行为月均次数",
            source="sessions_monthly.price_compare_sessions",
        )
        cat.add(
            f"ses_app_share_{w}m",
            safe_div(col("ses", "app", w), tot),
            family="platform_engagement",
            window=w,
            definition="app sessions / all sessions",
            en="use of the mobile app",
            zh="手机应用访问占比",
        )
        cat.add(
            f"ses_mini_share_{w}m",
            safe_div(col("ses", "mini", w), tot),
            family="platform_engagement",
            window=w,
            definition="mini-program sessions / all sessions",
            en="use of the mini-program",
            zh="小程序访问占比",
        )
        cat.add(
            f"ses_clicks_per_session_{w}m",
            safe_div(col("ses", "clicks", w), tot),
            family="platform_engagement",
            window=w,
            definition="clicks / sessions",
            en="browsing depth",
            zh="每次访问的点击深度",
        )
        cat.add(
            f"ses_card_visits_per_month_{w}m",
            safe_div(col("ses", "card", w), months),
            family="platform_engagement",
            window=w,
            definition="visits to the card's page in the app (bill, points) per month",
            en="attention to the card in the app",
            zh="应用内信用卡页面月均访问次数",
            direction=dirs(churn=-1),
            tasks=ACCOUNT,
            source="sessions_monthly.card_page_visits",
        )
        if w >= 6:
            cat.add(
                f"ses_slope_{w}m",
                slope("ses", "total", "total_m", w),
                family="platform_engagement",
                window=w,
                definition="least-squares slope of monthly sessions",
                en="trend of engagement",
                zh="活跃度趋势",
                direction=dirs(churn=-1),
            )
    cat.add(
        "ses_months_since_active",
        t - pl.col("ses__lastpos__total"),
        family="platform_engagement",
        window=None,
        definition="months since the last month with any session",
        en="time since last visit",
        zh="距上次访问的月数",
        direction=dirs(churn=1),
    )
    # BNPL
    for w in windows:
        cat.add(
            f"bnpl_plans_{w}m",
            col("bnp", "plans", w),
            family="bnpl",
            window=w,
            definition="BNPL plans started",
            en="appetite for instalment credit",
            zh="先享后付分期笔数",
        )
        cat.add(
            f"bnpl_principal_{w}m",
            col("bnp", "principal", w),
            family="bnpl",
            window=w,
            definition="BNPL principal started (fen)",
            en="amount of instalment credit taken",
            zh="先享后付分期本金",
        )
        cat.add(
            f"bnpl_repay_ratio_{w}m",
            safe_div(col("bnr", "paid", w), col("bnr", "due", w)),
            family="bnpl",
            window=w,
            definition="BNPL paid fen / due fen",
            en="BNPL repayment discipline",
            zh="先享后付还款比例",
            direction=dirs(credit=-1, limit=-1),
            source="bnpl_monthly.paid_fen",
        )
        cat.add(
            f"bnpl_late_months_{w}m",
            col("bnr", "late", w),
            family="bnpl",
            window=w,
            definition="months with a BNPL instalment paid after its due date",
            en="late BNPL repayments",
            zh="先享后付延迟还款月数",
            direction=dirs(credit=1, limit=1),
            source="bnpl_monthly.days_late",
        )
        cat.add(
            f"bnpl_short_months_{w}m",
            col("bnr", "short", w),
            family="bnpl",
            window=w,
            definition="months in which less than the BNPL amount due was paid (partial or missed)",
            en="partial or missed BNPL repayments",
            zh="先享后付未足额还款月数",
            direction=dirs(credit=1, limit=1),
            source="bnpl_monthly.paid_fen",
        )
        cat.add(
            f"bnpl_overdue_months_{w}m",
            col("bnr", "overdue", w),
            family="bnpl",
            window=w,
            definition="months with BNPL overdue days > 0",
            en="BNPL delinquency history",
            zh="先享后付逾期月数",
            direction=dirs(credit=1, limit=1),
            source="bnpl_monthly.overdue_days",
        )
        cat.add(
            f"bnpl_overdue30_months_{w}m",
            col("bnr", "overdue30", w),
            family="bnpl",
            window=w,
            definition="months with BNPL overdue days >= 30",
            en="serious BNPL delinquency",
            zh="先享后付逾期30天以上月数",
            direction=dirs(credit=1, limit=1),
            source="bnpl_monthly.overdue_days",
        )
        cat.add(
            f"bnpl_due_months_{w}m",
            col("bnr", "has_due", w),
            family="bnpl",
            window=w,
            definition="months with a BNPL amount due",
            en="ongoing BNPL obligations",
            zh="有先享后付应还款的月数",
        )
    cat.add(
        f"bnpl_avg_instalments_{wmax}m",
        safe_div(col("bnp", "instalments", wmax), col("bnp", "plans", wmax)),
        family="bnpl",
        window=wmax,
        definition="mean instalments per BNPL plan",
        en="preferred instalment length",
        zh="平均分期期数",
    )
    cat.add(
        "bnpl_months_since_overdue",
        t - pl.col("bnr__lastpos__overdue"),
        family="bnpl",
        window=None,
        definition="months since the last month with BNPL overdue days > 0 (null = never)",
        en="recency of BNPL delinquency",
        zh="距上次先享后付逾期的月数",
        direction=dirs(credit=-1, limit=-1),
        source="bnpl_monthly.overdue_days",
    )
    cat.add(
        f"bnpl_days_late_mean_{wmax}m",
        safe_div(col("bnr", "late_days", wmax), col("bnr", "late", wmax)),
        family="bnpl",
        window=wmax,
        definition="mean of the largest days late of the months with a late BNPL repayment (null = none)",
        en="how late BNPL repayments are",
        zh="先享后付平均延迟天数",
        source="bnpl_monthly.days_late",
    )
    cat.add(
        "bnpl_months_since_late",
        t - pl.col("bnr__lastpos__late"),
        family="bnpl",
        window=None,
        definition="months since the last month with a late BNPL repayment (null = never)",
        en="recency of late BNPL repayments",
        zh="距上次先享后付延迟还款的月数",
        direction=dirs(credit=-1, limit=-1),
        source="bnpl_monthly.days_late",
    )
    # profile changes
    for w in windows:
        for kind, en, zh in (
            ("address", "delivery address", "收货地址"),
            ("phone", "phone number", "手机号"),
        ):
            cat.add(
                f"pch_{kind}_changes_{w}m",
                col("pch", kind, w),
                family="profile_changes",
                window=w,
                definition=f"{en} changes",
                en=f"recent changes of {en}",
                zh=f"近期更换{zh}次数",
                direction=dirs(credit=1, limit=1),
                source="profile_changes.kind",
            )
    cat.add(
        "pch_months_since_change",
        t - pl.col("pch__lastpos__changes"),
        family="profile_changes",
        window=None,
        definition="months since the last delivery-address or phone-number change (null = never)",
        en="time since the profile last changed",
        zh="距上次更换地址或手机号的月数",
        source="profile_changes.kind",
    )
    # the platform's own credit score (monthly, points; higher = safer)
    psn1 = pl.col(f"psc__n__{wmin}")
    cat.add(
        "psc_score_last",
        pl.when(psn1 > 0).then(col("psc", "score", wmin) / psn1).otherwise(None),
        family="platform_score",
        window=wmin,
        definition="the platform's credit score at the last month end before the snapshot",
        en="the platform's credit score",
        zh="平台信用分",
        direction=dirs(credit=-1, limit=-1),
    )
    for w in windows:
        if w >= 3:
            cat.add(
                f"psc_score_mean_{w}m",
                safe_div(col("psc", "score", w), pl.col(f"psc__n__{w}")),
                family="platform_score",
                window=w,
                definition=f"mean platform credit score over the last {w} month ends",
                en="the platform's credit score over time",
                zh="平台信用分均值",
                direction=dirs(credit=-1, limit=-1),
            )
        if w >= 6:
            cat.add(
                f"psc_score_slope_{w}m",
                slope("psc", "score", "score_m", w),
                family="platform_score",
                window=w,
                definition="least-squares slope of the monthly platform credit score (points/month)",
                en="trend of the platform's credit score",
                zh="平台信用分趋势",
            )
    cat.add(
        f"app_prior_{wmax}m",
        col("aph", "apps", wmax),
        family="application_history",
        window=wmax,
        definition="card applications in complete months before the snapshot month",
        en="recent credit seeking",
        zh="近期申卡次数",
    )
    cat.add(
        f"app_prior_declined_{wmax}m",
        col("aph", "declined", wmax),
        family="application_history",
        window=wmax,
        definition="declined card applications before the snapshot month",
        en="previous declines",
        zh="近期被拒次数",
        direction=dirs(credit=1),
    )
    if invitations:
        cat.add(
            f"inv_invites_{wmax}m",
            col("inv", "invites", wmax),
            family="application_history",
            window=wmax,
            definition="card invitations received in complete months before the snapshot month",
            en="marketing pressure to apply",
            zh="近期收到的办卡邀请次数",
        )
        cat.add(
            "inv_months_since_invite",
            t - pl.col("inv__lastpos__invites"),
            family="application_history",
            window=None,
            definition="months since the last invitation (null = never)",
            en="time since invited",
            zh="距上次邀请的月数",
        )
    return cat


# ------------------------------------------------------------------------------------------------------------
# account-level (card) monthly families
# ------------------------------------------------------------------------------------------------------------
def statements_family(statements: pl.LazyFrame, cal: WorldCalendar, payment_types: list[str]) -> Family:
    schema = statements.collect_schema()

    def f(c: str) -> pl.Expr:
        return pl.col(c).cast(pl.Float64).fill_null(0) if c in schema else pl.lit(0.0)

    limit = f("credit_limit")
    util = safe_div(f("closing_balance"), limit).clip(0.0, 5.0).fill_null(0.0)
    m = pl.col(MONTH_COL).cast(pl.Float64)
    cols = [
        limit.alias("limit"),
        f("closing_balance").alias("balance"),
        util.alias("util"),
        (util * util).alias("util_sq"),
        (util * m).alias("util_m"),
        f("purchases").alias("purch"),
        (f("purchases") * m).alias("purch_m"),
        f("purchases_platform").alias("purch_platform"),
        f("purchases_online").alias("purch_online"),
        f("purchases_offline").alias("purch_offline"),
        f("cash_advance").alias("cash"),
        (f("cash_advance") > 0).cast(pl.Float64).alias("cash_month"),
        f("instalment_fen").alias("instalment"),
        (f("interest") + f("fees")).alias("int_fees"),
        f("rewards_earned").alias("rew_earned"),
        f("rewards_redeemed").alias("rew_redeemed"),
        f("payments").alias("payments"),
        f("opening_balance").alias("opening"),
        f("min_due").alias("min_due"),
        (f("opening_balance") - f("payments")).clip(lower_bound=0).alias("revolve"),
        f("dpd").alias("dpd"),
        (f("dpd") > 0).cast(pl.Float64).alias("dpd_pos"),
        (f("dpd") >= 30).cast(pl.Float64).alias("dpd30"),
        (f("dpd") >= 90).cast(pl.Float64).alias("dpd90"),
        ((f("purchases") + f("cash_advance")) > 0).cast(pl.Float64).alias("txn"),
        pl.col("statement_month").dt.month_end().alias(LAST_DATE),
    ]
    if {"payment_date", "due_date"} <= set(schema.names()):
        # days the payment of the month came after the previous statement's due date (0 on time / no payment)
        prev_due = pl.col("due_date").shift(1).over("card_id", order_by="statement_month")
        late = (pl.col("payment_date") - prev_due).dt.total_days().cast(pl.Float64).clip(lower_bound=0)
        cols += [
            (late > 0).cast(pl.Float64).fill_null(0).alias("late_pay"),
            late.fill_null(0).alias("days_late"),
        ]
    if "reaged" in schema:
        cols.append(pl.col("reaged").cast(pl.Float64).fill_null(0).alias("reaged"))
    for v in payment_types:
        cols.append(
            (pl.col("payment_type").cast(pl.String) == v)
            .cast(pl.Float64)
            .fill_null(0)
            .alias(f"ptype_{ident(v)}")
        )
    monthly = _in_world(statements, cal, "statement_month").select("card_id", MONTH_COL, *cols)
    base = tuple(c.meta.output_name() for c in cols if c.meta.output_name() != LAST_DATE)
    return Family("acc", "card_id", monthly, base, recency=("dpd_pos", "txn"), dense=False)


def limit_changes_family(lc: pl.LazyFrame, cal: WorldCalendar) -> Family:
    monthly = (
        _in_world(lc, cal, "review_date")
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


def account_catalog(windows: list[int], payment_types: list[str]) -> Catalog:
    cat = Catalog(ACCOUNT)
    t = pl.col("t")
    w1 = min(windows)
    n1 = pl.col(f"acc__n__{w1}")
    last = lambda c: pl.when(n1 > 0).then(col("acc", c, w1) / n1).otherwise(None)  # noqa: E731
    cat.add(
        "acct_months_on_book",
        (t - pl.col("open_m")).clip(lower_bound=0),
        family="account_tenure",
        window=None,
        definition="months from the card's open month to the snapshot month (0 before booking)",
        en="account age",
        zh="账龄（月）",
        direction=dirs(churn=0),
    )
    cat.add(
        "acct_limit_last",
        last("limit"),
        family="limit_history",
        window=w1,
        definition="credit limit (fen) on the last statement before the snapshot",
        en="current credit line",
        zh="当前授信额度",
    )
    cat.add(
        "acct_limit_growth",
        safe_div(last("limit"), pl.col("initial_limit_fen")),
        family="limit_history",
        window=None,
        definition="last credit limit / initial limit at booking",
        en="line growth since booking",
        zh="额度较初始额度的增长",
    )
    cat.add(
        "acct_balance_last",
        last("balance"),
        family="utilisation",
        window=w1,
        definition="closing balance (fen) on the last statement",
        en="outstanding balance",
        zh="当前账单余额",
    )
    cat.add(
        "acct_dpd_last",
        last("dpd"),
        family="delinquency",
        window=w1,
        definition="days past due on the last statement",
        en="current delinquency",
        zh="当前逾期天数",
        direction=dirs(limit=1),
    )
    cat.add(
        "acct_months_since_dpd",
        t - pl.col("acc__lastpos__dpd_pos"),
        family="delinquency",
        window=None,
        definition="months since the last statement with DPD > 0 (null = never)",
        en="recency of delinquency",
        zh="距上次逾期的月数",
        direction=dirs(limit=-1),
    )
    cat.add(
        "acct_months_since_txn",
        t - pl.col("acc__lastpos__txn"),
        family="spend",
        window=None,
        definition="months since the last statement with purchases or cash advance (null = never)",
        en="time since the card was last used",
        zh="距上次用卡的月数",
        direction=dirs(churn=1),
    )
    for w in windows:
        n = pl.col(f"acc__n__{w}")
        cat.add(
            f"acct_statements_{w}m",
            n,
            family="account_tenure",
            window=w,
            definition="statements in the window",
            en="statement history available",
            zh="窗口内账单期数",
        )
        cat.add(
            f"acct_util_mean_{w}m",
            safe_div(col("acc", "util", w), n),
            family="utilisation",
            window=w,
            definition="mean of closing balance / credit limit",
            en="credit line utilisation",
            zh="额度使用率",
            direction=dirs(limit=1),
        )
        cat.add(
            f"acct_pay_ratio_{w}m",
            safe_div(col("acc", "payments", w), col("acc", "opening", w)),
            family="repayment",
            window=w,
            definition="payments / opening balances",
            en="share of the balance repaid",
            zh="还款比例",
            direction=dirs(limit=-1),
        )
        cat.add(
            f"acct_min_due_cover_{w}m",
            safe_div(col("acc", "payments", w), col("acc", "min_due", w)),
            family="repayment",
            window=w,
            definition="payments / minimum due",
            en="payments relative to the minimum due",
            zh="还款额相对最低还款额",
        )
        cat.add(
            f"acct_revolve_mean_{w}m",
            safe_div(col("acc", "revolve", w), n),
            family="utilisation",
            window=w,
            definition="mean revolving balance: max(opening balance - payments, 0), fen",
            en="revolving debt carried",
            zh="循环信用余额",
        )
        cat.add(
            f"acct_dpd_months_{w}m",
            col("acc", "dpd_pos", w),
            family="delinquency",
            window=w,
            definition="statements with DPD > 0",
            en="delinquency history",
            zh="逾期期数",
            direction=dirs(limit=1),
        )
        cat.add(
            f"acct_dpd30_months_{w}m",
            col("acc", "dpd30", w),
            family="delinquency",
            window=w,
            definition="statements with DPD >= 30",
            en="serious delinquency history",
            zh="逾期30天以上期数",
            direction=dirs(limit=1),
        )
        cat.add(
            f"acct_late_pay_months_{w}m",
            col("acc", "late_pay", w),
            family="repayment",
            window=w,
            definition="statements whose payment came after the previous statement's due date (paid late, cured)",
            en="late card payments",
            zh="信用卡延迟还款期数",
            direction=dirs(limit=1),
            source="statements.payment_date",
        )
        cat.add(
            f"acct_days_late_mean_{w}m",
            safe_div(col("acc", "days_late", w), col("acc", "late_pay", w)),
            family="repayment",
            window=w,
            definition="mean days after the due date of the late card payments (null = none)",
            en="how late card payments are",
            zh="信用卡平均延迟还款天数",
            source="statements.payment_date",
        )
        cat.add(
            f"acct_reaged_{w}m",
            col("acc", "reaged", w),
            family="delinquency",
            window=w,
            definition="statements on which the bank re-aged a delinquent account to current",
            en="re-aged delinquency",
            zh="逾期账户重新账龄化次数",
            direction=dirs(limit=1),
            source="statements.reaged",
        )
        cat.add(
            f"acct_dpd_mean_{w}m",
            safe_div(col("acc", "dpd", w), n),
            family="delinquency",
            window=w,
            definition="mean DPD over statements",
            en="average days past due",
            zh="平均逾期天数",
            direction=dirs(limit=1),
        )
        cat.add(
            f"acct_spend_{w}m",
            safe_div(col("acc", "purch", w), n),
            family="spend",
            window=w,
            definition="mean monthly purchases (fen)",
            en="card spending",
            zh="月均刷卡消费",
            direction=dirs(churn=-1),
        )
        cat.add(
            f"acct_spend_to_limit_{w}m",
            safe_div(col("acc", "purch", w), col("acc", "limit", w)),
            family="spend",
            window=w,
            definition="purchases / credit limit, summed over statements",
            en="spending relative to the line",
            zh="消费额度比",
        )
        for ch in ("platform", "online", "offline"):
            cat.add(
                f"acct_spend_share_{ch}_{w}m",
                safe_div(col("acc", f"purch_{ch}", w), col("acc", "purch", w)),
                family="spend",
                window=w,
                definition=f"{ch} purchases / purchases",
                en=f"share of {ch} spending",
                zh=f"{zh_name(ch)}渠道消费占比",
            )
        cat.add(
            f"acct_active_months_{w}m",
            col("acc", "txn", w),
            family="spend",
            window=w,
            definition="statements with purchases or cash advance > 0",
            en="regular card use",
            zh="用卡月份数",
            direction=dirs(churn=-1),
        )
        cat.add(
            f"acct_cash_{w}m",
            col("acc", "cash", w),
            family="cash_advance",
            window=w,
            definition="cash advance (fen)",
            en="use of cash advance",
            zh="取现金额",
            direction=dirs(limit=1),
        )
        cat.add(
            f"acct_cash_months_{w}m",
            col("acc", "cash_month", w),
            family="cash_advance",
            window=w,
            definition="statements with a cash advance",
            en="frequency of cash advance",
            zh="取现月份数",
            direction=dirs(limit=1),
        )
        cat.add(
            f"acct_instalment_{w}m",
            col("acc", "instalment", w),
            family="instalments",
            window=w,
            definition="card instalment amounts (fen)",
            en="use of card instalments",
            zh="账单分期金额",
        )
        cat.add(
            f"acct_interest_fees_{w}m",
            col("acc", "int_fees", w),
            family="revenue",
            window=w,
            definition="interest + fees (fen)",
            en="interest and fees paid",
            zh="利息与费用",
        )
        cat.add(
            f"acct_rewards_earned_{w}m",
            col("acc", "rew_earned", w),
            family="rewards",
            window=w,
            definition="rewards earned",
            en="rewards earned",
            zh="获得积分",
        )
        cat.add(
            f"acct_rewards_redeem_ratio_{w}m",
            safe_div(col("acc", "rew_redeemed", w), col("acc", "rew_earned", w)),
            family="rewards",
            window=w,
            definition="rewards redeemed / earned",
            en="engagement with rewards",
            zh="积分兑换率",
        )
        if w >= 3:
            for v in payment_types:
                cat.add(
                    f"acct_paytype_{ident(v)}_share_{w}m",
                    safe_div(col("acc", f"ptype_{ident(v)}", w), n),
                    family="repayment",
                    window=w,
                    definition=f"statements with payment_type '{v}' / statements",
                    en=f"share of '{v}' payments",
                    zh=f"还款方式占比：{zh_name(v)}",
                )
            cat.add(
                f"acct_util_std_{w}m",
                std("acc", "util", "util_sq", w),
                family="utilisation",
                window=w,
                definition="standard deviation of monthly utilisation",
                en="volatility of utilisation",
                zh="额度使用率波动",
            )
        if w >= 6:
            cat.add(
                f"acct_util_slope_{w}m",
                slope("acc", "util", "util_m", w),
                family="utilisation",
                window=w,
                definition="least-squares slope of utilisation per month",
                en="trend of utilisation",
                zh="额度使用率趋势",
                direction=dirs(limit=1),
            )
            cat.add(
                f"acct_spend_slope_{w}m",
                slope("acc", "purch", "purch_m", w),
                family="spend",
                window=w,
                definition="least-squares slope of monthly purchases (fen/month)",
                en="trend of card spending",
                zh="刷卡消费趋势",
                direction=dirs(churn=-1),
            )
        cat.add(
            f"lim_increases_{w}m",
            col("lim", "inc", w),
            family="limit_history",
            window=w,
            definition="limit increases in the window",
            en="recent line increases",
            zh="近期提额次数",
        )
        cat.add(
            f"lim_decreases_{w}m",
            col("lim", "dec", w),
            family="limit_history",
            window=w,
            definition="limit decreases in the window",
            en="recent line decreases",
            zh="近期降额次数",
        )
    cat.add(
        "lim_months_since_change",
        t - pl.col("lim__lastpos__changed"),
        family="limit_history",
        window=None,
        definition="months since the last limit change (null = never)",
        en="time since the last line change",
        zh="距上次调额的月数",
    )
    return cat
