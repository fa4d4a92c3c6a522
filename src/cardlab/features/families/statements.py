"""Card statements (raw table ``statements``): the monthly account-level ``acc`` family and the features of
the card's tenure, line, utilisation, delinquency, repayment, spend, cash advance, instalments, revenue and
rewards."""

from __future__ import annotations

import polars as pl

from cardlab.features.dictionary import Catalog, dirs
from cardlab.features.families.common import ident, in_world
from cardlab.features.io import WorldCalendar
from cardlab.features.texts import zh as zh_name
from cardlab.features.windows import LAST_DATE, MONTH_COL, Family, col, safe_div, slope, std


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
    monthly = in_world(statements, cal, "statement_month").select("card_id", MONTH_COL, *cols)
    base = tuple(c.meta.output_name() for c in cols if c.meta.output_name() != LAST_DATE)
    return Family("acc", "card_id", monthly, base, recency=("dpd_pos", "txn"), dense=False)


def add_snapshot_features(cat: Catalog, windows: list[int]) -> None:
    """Point-in-time features: the card's age, its last statement (window: the shortest) and the months since
    events (window None)."""
    t = pl.col("t")
    w1 = min(windows)
    n1 = pl.col(f"acc__n__{w1}")

    def last(c: str) -> pl.Expr:
        return pl.when(n1 > 0).then(col("acc", c, w1) / n1).otherwise(None)

    tenure_now = cat.block(family="account_tenure", window=None)
    line_last = cat.block(family="limit_history", window=w1)
    line_now = cat.block(family="limit_history", window=None)
    utilisation_last = cat.block(family="utilisation", window=w1)
    delinquency_last = cat.block(family="delinquency", window=w1)
    delinquency_now = cat.block(family="delinquency", window=None)
    spend_now = cat.block(family="spend", window=None)
    tenure_now(
        "acct_months_on_book",
        (t - pl.col("open_m")).clip(lower_bound=0),
        definition="months from the card's open month to the snapshot month (0 before booking)",
        en="account age",
        zh="账龄（月）",
        direction=dirs(churn=0),
    )
    line_last(
        "acct_limit_last",
        last("limit"),
        definition="credit limit (fen) on the last statement before the snapshot",
        en="current credit line",
        zh="当前授信额度",
    )
    line_now(
        "acct_limit_growth",
        safe_div(last("limit"), pl.col("initial_limit_fen")),
        definition="last credit limit / initial limit at booking",
        en="line growth since booking",
        zh="额度较初始额度的增长",
    )
    utilisation_last(
        "acct_balance_last",
        last("balance"),
        definition="closing balance (fen) on the last statement",
        en="outstanding balance",
        zh="当前账单余额",
    )
    delinquency_last(
        "acct_dpd_last",
        last("dpd"),
        definition="days past due on the last statement",
        en="current delinquency",
        zh="当前逾期天数",
        direction=dirs(limit=1),
    )
    delinquency_now(
        "acct_months_since_dpd",
        t - pl.col("acc__lastpos__dpd_pos"),
        definition="months since the last statement with DPD > 0 (null = never)",
        en="recency of delinquency",
        zh="距上次逾期的月数",
        direction=dirs(limit=-1),
    )
    spend_now(
        "acct_months_since_txn",
        t - pl.col("acc__lastpos__txn"),
        definition="months since the last statement with purchases or cash advance (null = never)",
        en="time since the card was last used",
        zh="距上次用卡的月数",
        direction=dirs(churn=1),
    )


def add_window_features(cat: Catalog, w: int, payment_types: list[str]) -> None:
    """The statement features of the window of ``w`` months, one block per family (interleaved: the order of
    the calls is the column order)."""
    tenure = cat.block(family="account_tenure", window=w)
    utilisation = cat.block(family="utilisation", window=w)
    repayment = cat.block(family="repayment", window=w)
    delinquency = cat.block(family="delinquency", window=w)
    spend = cat.block(family="spend", window=w)
    cash_advance = cat.block(family="cash_advance", window=w)
    instalments = cat.block(family="instalments", window=w)
    revenue = cat.block(family="revenue", window=w)
    rewards = cat.block(family="rewards", window=w)
    n = pl.col(f"acc__n__{w}")
    tenure(
        f"acct_statements_{w}m",
        n,
        definition="statements in the window",
        en="statement history available",
        zh="窗口内账单期数",
    )
    utilisation(
        f"acct_util_mean_{w}m",
        safe_div(col("acc", "util", w), n),
        definition="mean of closing balance / credit limit",
        en="credit line utilisation",
        zh="额度使用率",
        direction=dirs(limit=1),
    )
    repayment(
        f"acct_pay_ratio_{w}m",
        safe_div(col("acc", "payments", w), col("acc", "opening", w)),
        definition="payments / opening balances",
        en="share of the balance repaid",
        zh="还款比例",
        direction=dirs(limit=-1),
    )
    repayment(
        f"acct_min_due_cover_{w}m",
        safe_div(col("acc", "payments", w), col("acc", "min_due", w)),
        definition="payments / minimum due",
        en="payments relative to the minimum due",
        zh="还款额相对最低还款额",
    )
    utilisation(
        f"acct_revolve_mean_{w}m",
        safe_div(col("acc", "revolve", w), n),
        definition="mean revolving balance: max(opening balance - payments, 0), fen",
        en="revolving debt carried",
        zh="循环信用余额",
    )
    delinquency(
        f"acct_dpd_months_{w}m",
        col("acc", "dpd_pos", w),
        definition="statements with DPD > 0",
        en="delinquency history",
        zh="逾期期数",
        direction=dirs(limit=1),
    )
    delinquency(
        f"acct_dpd30_months_{w}m",
        col("acc", "dpd30", w),
        definition="statements with DPD >= 30",
        en="serious delinquency history",
        zh="逾期30天以上期数",
        direction=dirs(limit=1),
    )
    repayment(
        f"acct_late_pay_months_{w}m",
        col("acc", "late_pay", w),
        definition="statements whose payment came after the previous statement's due date (paid late, cured)",
        en="late card payments",
        zh="信用卡延迟还款期数",
        direction=dirs(limit=1),
        source="statements.payment_date",
    )
    repayment(
        f"acct_days_late_mean_{w}m",
        safe_div(col("acc", "days_late", w), col("acc", "late_pay", w)),
        definition="mean days after the due date of the late card payments (null = none)",
        en="how late card payments are",
        zh="信用卡平均延迟还款天数",
        source="statements.payment_date",
    )
    delinquency(
        f"acct_reaged_{w}m",
        col("acc", "reaged", w),
        definition="statements on which the bank re-aged a delinquent account to current",
        en="re-aged delinquency",
        zh="逾期账户重新账龄化次数",
        direction=dirs(limit=1),
        source="statements.reaged",
    )
    delinquency(
        f"acct_dpd_mean_{w}m",
        safe_div(col("acc", "dpd", w), n),
        definition="mean DPD over statements",
        en="average days past due",
        zh="平均逾期天数",
        direction=dirs(limit=1),
    )
    spend(
        f"acct_spend_{w}m",
        safe_div(col("acc", "purch", w), n),
        definition="mean monthly purchases (fen)",
        en="card spending",
        zh="月均刷卡消费",
        direction=dirs(churn=-1),
    )
    spend(
        f"acct_spend_to_limit_{w}m",
        safe_div(col("acc", "purch", w), col("acc", "limit", w)),
        definition="purchases / credit limit, summed over statements",
        en="spending relative to the line",
        zh="消费额度比",
    )
    for ch in ("platform", "online", "offline"):
        spend(
            f"acct_spend_share_{ch}_{w}m",
            safe_div(col("acc", f"purch_{ch}", w), col("acc", "purch", w)),
            definition=f"{ch} purchases / purchases",
            en=f"share of {ch} spending",
            zh=f"{zh_name(ch)}渠道消费占比",
        )
    spend(
        f"acct_active_months_{w}m",
        col("acc", "txn", w),
        definition="statements with purchases or cash advance > 0",
        en="regular card use",
        zh="用卡月份数",
        direction=dirs(churn=-1),
    )
    cash_advance(
        f"acct_cash_{w}m",
        col("acc", "cash", w),
        definition="cash advance (fen)",
        en="use of cash advance",
        zh="取现金额",
        direction=dirs(limit=1),
    )
    cash_advance(
        f"acct_cash_months_{w}m",
        col("acc", "cash_month", w),
        definition="statements with a cash advance",
        en="frequency of cash advance",
        zh="取现月份数",
        direction=dirs(limit=1),
    )
    instalments(
        f"acct_instalment_{w}m",
        col("acc", "instalment", w),
        definition="card instalment amounts (fen)",
        en="use of card instalments",
        zh="账单分期金额",
    )
    revenue(
        f"acct_interest_fees_{w}m",
        col("acc", "int_fees", w),
        definition="interest + fees (fen)",
        en="interest and fees paid",
        zh="利息与费用",
    )
    rewards(
        f"acct_rewards_earned_{w}m",
        col("acc", "rew_earned", w),
        definition="rewards earned",
        en="rewards earned",
        zh="获得积分",
    )
    rewards(
        f"acct_rewards_redeem_ratio_{w}m",
        safe_div(col("acc", "rew_redeemed", w), col("acc", "rew_earned", w)),
        definition="rewards redeemed / earned",
        en="engagement with rewards",
        zh="积分兑换率",
    )
    if w >= 3:
        for v in payment_types:
            repayment(
                f"acct_paytype_{ident(v)}_share_{w}m",
                safe_div(col("acc", f"ptype_{ident(v)}", w), n),
                definition=f"statements with payment_type '{v}' / statements",
                en=f"share of '{v}' payments",
                zh=f"还款方式占比：{zh_name(v)}",
            )
        utilisation(
            f"acct_util_std_{w}m",
            std("acc", "util", "util_sq", w),
            definition="standard deviation of monthly utilisation",
            en="volatility of utilisation",
            zh="额度使用率波动",
        )
    if w >= 6:
        utilisation(
            f"acct_util_slope_{w}m",
            slope("acc", "util", "util_m", w),
            definition="least-squares slope of utilisation per month",
            en="trend of utilisation",
            zh="额度使用率趋势",
            direction=dirs(limit=1),
        )
        spend(
            f"acct_spend_slope_{w}m",
            slope("acc", "purch", "purch_m", w),
            definition="least-squares slope of monthly purchases (fen/month)",
            en="trend of card spending",
            zh="刷卡消费趋势",
            direction=dirs(churn=-1),
        )
