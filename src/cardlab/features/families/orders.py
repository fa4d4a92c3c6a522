"""Platform orders (raw table ``orders``): the monthly ``ord`` family and the ``platform_orders`` features."""

from __future__ import annotations

import polars as pl

from cardlab.features.dictionary import Catalog, dirs
from cardlab.features.families.common import ident, in_world
from cardlab.features.io import WorldCalendar
from cardlab.features.texts import zh as zh_name
from cardlab.features.windows import LAST_DATE, MONTH_COL, Family, col, safe_div, slope

# near-cash goods a customer can resell or spend like cash (a classic sign of turning credit into cash)
CASH_LIKE_CATEGORIES = ("gift_cards", "phone_topup", "game_credits")


def festival_expr(date_col: str) -> pl.Expr:
    """Shopping festivals of Chinese e-commerce: 618 (1-18 June), Double 11 (1-11 Nov), Double 12 (12 Dec)."""
    d = pl.col(date_col)
    mo, dy = d.dt.month(), d.dt.day()
    return ((mo == 6) & (dy <= 18)) | ((mo == 11) & (dy <= 11)) | ((mo == 12) & (dy == 12))


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
        in_world(orders, cal, "order_date")
        .group_by("customer_id", MONTH_COL)
        .agg(aggs)
        .with_columns(
            active=pl.lit(1.0),
            gmv_m=pl.col("gmv") * pl.col(MONTH_COL).cast(pl.Float64),
        )
    )
    base: tuple[str, ...] = (
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


def add_features(cat: Catalog, windows: list[int], categories: list[str]) -> None:
    """The ``platform_orders`` features: per window, then the momentum (longest window) and the recency."""
    t = pl.col("t")
    for w in windows:
        add = cat.block(family="platform_orders", window=w)
        n = col("ord", "orders", w)
        gmv = col("ord", "gmv", w)
        months = pl.col(f"ord__n__{w}")
        add(
            f"ord_n_{w}m",
            n,
            definition=f"orders placed in the last {w} complete months",
            en="how often the customer shops on the platform",
            zh="客户在平台的下单频次",
            direction=dirs(churn=-1),
        )
        add(
            f"ord_gmv_avg_month_{w}m",
            safe_div(gmv, months),
            definition=f"GMV (fen) per month over the last {w} months",
            en="platform spending level",
            zh="平台月均消费金额",
        )
        add(
            f"ord_ticket_{w}m",
            safe_div(gmv, n),
            definition=f"average order value (fen) over the last {w} months",
            en="average basket size",
            zh="客单价",
        )
        add(
            f"ord_discount_rate_{w}m",
            safe_div(col("ord", "discount", w), gmv),
            definition="discount fen / GMV fen",
            en="reliance on discounts and coupons",
            zh="对折扣优惠的依赖程度",
        )
        add(
            f"ord_return_rate_{w}m",
            safe_div(col("ord", "n_returned", w), n),
            definition="returned orders / orders",
            en="share of orders returned",
            zh="退货比例",
            source="orders.returned",
        )
        add(
            f"ord_cancel_rate_{w}m",
            safe_div(col("ord", "n_cancel", w), n),
            definition="cancelled orders / orders",
            en="share of orders cancelled",
            zh="取消订单比例",
            direction=dirs(credit=1, limit=1),
            source="orders.cancelled",
        )
        add(
            f"ord_cash_like_share_{w}m",
            safe_div(col("ord", "n_cash", w), n),
            definition=f"orders of cash-like goods ({', '.join(CASH_LIKE_CATEGORIES)}) / orders",
            en="buying of cash-like goods (gift cards, top-ups, game credits)",
            zh="购买类现金商品（礼品卡、话费充值、游戏点卡）占比",
            direction=dirs(credit=1, limit=1),
            source="orders.category",
        )
        add(
            f"ord_late_night_share_{w}m",
            safe_div(col("ord", "n_late", w), n),
            definition="late-night orders / orders",
            en="share of late-night shopping",
            zh="深夜下单占比",
            source="orders.late_night",
        )
        add(
            f"ord_bnpl_share_{w}m",
            safe_div(col("ord", "n_bnpl", w), n),
            definition="orders paid with BNPL / orders",
            en="use of buy-now-pay-later at checkout",
            zh="先享后付支付占比",
            source="orders.paid_with",
        )
        add(
            f"ord_card_share_{w}m",
            safe_div(col("ord", "n_card", w), n),
            definition="orders paid with the co-branded card / orders",
            en="use of the card at checkout",
            zh="联名卡支付占比",
            direction=dirs(churn=-1),
            source="orders.paid_with",
        )
        add(
            f"ord_active_months_{w}m",
            col("ord", "active", w),
            definition=f"months with at least one order among the last {w}",
            en="regularity of shopping",
            zh="有下单的月份数",
            direction=dirs(churn=-1),
        )
        if w >= 3:
            for c in categories:
                add(
                    f"ord_gmv_share_{ident(c)}_{w}m",
                    safe_div(col("ord", f"gmv_cat_{ident(c)}", w), gmv),
                    definition=f"GMV in category '{c}' / GMV",
                    en=f"spending mix: {c}",
                    zh=f"品类消费占比：{zh_name(c)}",
                )
        if w >= 6:
            add(
                f"ord_festival_gmv_share_{w}m",
                safe_div(col("ord", "gmv_festival", w), gmv),
                definition="GMV during 618 (1-18 Jun), Double 11 (1-11 Nov) and Double 12 / GMV",
                en="concentration of spending in shopping festivals",
                zh="购物节（618、双11、双12）消费集中度",
            )
            add(
                f"ord_gmv_slope_{w}m",
                slope("ord", "gmv", "gmv_m", w),
                definition="least-squares slope of monthly GMV (fen/month)",
                en="trend of platform spending",
                zh="平台消费趋势",
            )
    wmax, wmin = max(windows), min(windows)
    add_longest = cat.block(family="platform_orders", window=wmax)
    add_recency = cat.block(family="platform_orders", window=None)
    add_longest(
        "ord_gmv_momentum",
        safe_div(
            safe_div(col("ord", "gmv", wmin), pl.col(f"ord__n__{wmin}")),
            safe_div(col("ord", "gmv", wmax), pl.col(f"ord__n__{wmax}")),
        ),
        definition=f"monthly GMV over {wmin}m / monthly GMV over {wmax}m",
        en="recent change in spending",
        zh="近期消费变化",
    )
    add_recency(
        "ord_months_since_last",
        t - pl.col("ord__lastpos__active"),
        definition="months since the last month with an order (1 = last month; null = never)",
        en="time since last purchase",
        zh="距上次下单的月数",
        direction=dirs(churn=1),
    )
