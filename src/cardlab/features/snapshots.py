"""Snapshot rows and labels for the three tasks.

A snapshot is (customer, snapshot_date) plus task keys. Features only use complete months strictly before the
snapshot's month (``t`` = month index of snapshot_date); labels only use months on/after it.

* credit - one row per application at its application_date; label = 90+ DPD (or charge-off) within the first
  ``credit_horizon_months`` statements after booking, i.e. statement months ``open_m + 1 .. open_m + h`` (a
  card's first statement comes the month after it opens; the oracle's ``pd_12m`` covers the same 12
  statements); null when declined, not booked, or the window is not fully inside the world.
* limit - one row per limit decision: the initial line (at the application date) and every periodic review
  (at its review_date); realised outcomes over the next ``limit_outcome_months`` statement months as ``y_*``
  columns, from the first statement the decision acts on (booking: the month after the card opens; review on
  the 28th: the next month), the same months as the oracle's ``limit_potential``; label = ``y_dpd90``; null
  when fewer than ``limit_min_outcome_months`` months are observable.

Every label window ends at statement month ``t + label_span_months(task)`` (``t`` = snapshot month index):
:meth:`cardlab.config.FeaturesParams.label_span_months` states it, and each split's performance-window gap is
checked against it.
* churn - one row per open, booked, not-yet-silent card at the first day of each month t; month t is the action
  month (gap); label = voluntary closure or ``silent_months`` consecutive months without purchases or cash
  advance inside months [t+gap, t+gap+horizon); rows whose card is charged off before the window ends, or
  closes in the gap month, are excluded.
"""

from __future__ import annotations

import polars as pl

from cardlab.config import FeaturesParams
from cardlab.features.io import WorldCalendar


def month_start_expr(cal: WorldCalendar, t: pl.Expr) -> pl.Expr:
    k = t + (cal.start_month.month - 1)
    return pl.date(cal.start_month.year + k // 12, k % 12 + 1, 1)


def _bad_events(statements: pl.LazyFrame, cal: WorldCalendar) -> pl.LazyFrame:
    """Card-months with DPD >= 90 (month index ``m``)."""
    return statements.filter(pl.col("dpd") >= 90).select(
        "card_id", cal.index_expr("statement_month").alias("m")
    )


def credit_snapshots(
    apps: pl.LazyFrame, cards: pl.LazyFrame, statements: pl.LazyFrame, cal: WorldCalendar, p: FeaturesParams
) -> pl.LazyFrame:
    h = p.credit_horizon_months
    schema = apps.collect_schema()
    extra = [c for c in ("legacy_score", "limit_cell", "limit_propensity", "partner_bank") if c in schema]
    base = apps.select(
        "application_id",
        "customer_id",
        pl.col("application_date").alias("snapshot_date"),
        pl.col("approved").cast(pl.Boolean),
        pl.col("initial_limit").cast(pl.Int64).alias("initial_limit_fen"),
        *extra,
    ).with_columns(cal.index_expr("snapshot_date").cast(pl.Int32).alias("t"))
    booked = cards.select(
        "application_id",
        "card_id",
        cal.index_expr("open_date").cast(pl.Int32).alias("open_m"),
        pl.col("close_date"),
        pl.col("close_reason").cast(pl.String),
    )
    # the first h statements: months open_m + 1 .. open_m + h (the booking month has no statement)
    first = pl.col("open_m") + 1
    bad = (
        _bad_events(statements, cal)
        .join(booked.select("card_id", "open_m"), on="card_id")
        .filter((pl.col("m") >= first) & (pl.col("m") < first + h))
        .group_by("card_id")
        .agg(pl.lit(True).alias("_dpd90"))
    )
    end_excl = month_start_expr(cal, first + h)
    out = (
        base.join(booked, on="application_id", how="left")
        .join(bad, on="card_id", how="left")
        .with_columns(
            (
                pl.col("_dpd90").fill_null(False)
                | ((pl.col("close_reason") == "charge_off") & (pl.col("close_date") < end_excl)).fill_null(
                    False
                )
            ).alias("_bad"),
            (pl.col("open_m") + h <= cal.months - 1).alias("_complete"),
        )
        .with_columns(
            pl.when(pl.col("approved") & pl.col("card_id").is_not_null() & pl.col("_complete"))
            .then(pl.col("_bad").cast(pl.Int8))
            .otherwise(None)
            .alias("label")
        )
        .drop("_dpd90", "_bad", "_complete", "close_date", "close_reason", "open_m")
        .rename({c: f"app_{c}" for c in extra})
    )
    return out


def _window_outcomes(
    decisions: pl.LazyFrame, statements: pl.LazyFrame, cards: pl.LazyFrame, cal: WorldCalendar, horizon: int
) -> pl.LazyFrame:
    """Realised outcomes over statement months [s, s + horizon) per decision (decision_id, card_id, s)."""
    st = statements.select(
        "card_id",
        cal.index_expr("statement_month").cast(pl.Int32).alias("m"),
        pl.col("purchases").cast(pl.Float64).alias("purch"),
        # the balance and interest of a current account only: a delinquent balance earns nothing the bank
        # collects, and the loss term prices it (docs/tasks/limit.md)
        pl.when(pl.col("dpd") == 0)
        .then(
            (pl.col("opening_balance").cast(pl.Float64) - pl.col("payments").cast(pl.Float64)).clip(
                lower_bound=0
            )
            if "opening_balance" in statements.collect_schema()
            else pl.col("closing_balance").cast(pl.Float64)
        )
        .otherwise(0.0)
        .alias("rev"),
        (
            pl.when(pl.col("dpd") == 0).then(pl.col("interest").cast(pl.Float64).fill_null(0)).otherwise(0.0)
            + pl.col("fees").cast(pl.Float64).fill_null(0)
            if {"interest", "fees"} <= set(statements.collect_schema().names())
            else pl.lit(0.0)
        ).alias("intfee"),
        (pl.col("dpd") >= 90).alias("d90"),
    )
    agg = (
        decisions.select("decision_id", "card_id", "s")
        .join(st, on="card_id")
        .filter((pl.col("m") >= pl.col("s")) & (pl.col("m") < pl.col("s") + horizon))
        .group_by("decision_id")
        .agg(
            pl.col("purch").sum().alias("y_spend_fen"),
            pl.col("rev").sum().alias("_rev_sum"),
            pl.col("intfee").sum().alias("y_interest_fees_fen"),
            pl.col("d90").any().alias("_d90"),
            pl.len().cast(pl.Int32).alias("y_statements"),
        )
    )
    co = cards.select(
        "card_id", pl.col("close_date"), pl.col("close_reason").cast(pl.String).alias("_close_reason")
    )
    return (
        decisions.join(agg, on="decision_id", how="left")
        .join(co, on="card_id", how="left")
        .with_columns(
            (
                pl.col("_d90").fill_null(False)
                | (
                    (pl.col("_close_reason") == "charge_off")
                    & (pl.col("close_date") < month_start_expr(cal, pl.col("s") + horizon))
                    & (pl.col("close_date") >= month_start_expr(cal, pl.col("s")))
                ).fill_null(False)
            )
            .cast(pl.Int8)
            .alias("y_dpd90"),
            pl.min_horizontal(pl.lit(horizon), pl.lit(cal.months) - pl.col("s"))
            .clip(lower_bound=0)
            .cast(pl.Int32)
            .alias("y_months_observed"),
            pl.col("y_spend_fen").fill_null(0.0),
            pl.col("y_interest_fees_fen").fill_null(0.0),
            pl.col("y_statements").fill_null(0),
        )
        # months after a closure count 0: the sum over the statements divided by the observable months
        .with_columns(
            pl.when(pl.col("y_months_observed") > 0)
            .then(pl.col("_rev_sum").fill_null(0.0) / pl.col("y_months_observed"))
            .alias("y_avg_revolving_fen")
        )
        .drop("_d90", "_close_reason", "close_date", "_rev_sum")
    )


def limit_snapshots(
    apps: pl.LazyFrame,
    cards: pl.LazyFrame,
    limit_changes: pl.LazyFrame,
    statements: pl.LazyFrame,
    cal: WorldCalendar,
    p: FeaturesParams,
) -> pl.LazyFrame:
    aschema = apps.collect_schema()
    lschema = limit_changes.collect_schema()
    card_keys = cards.select(
        "card_id", "application_id", cal.index_expr("open_date").cast(pl.Int32).alias("open_m")
    )
    initial = (
        apps.filter(pl.col("approved").cast(pl.Boolean))
        .join(card_keys, on="application_id")
        .select(
            "customer_id",
            "card_id",
            pl.col("application_date").alias("snapshot_date"),
            pl.lit("initial").alias("decision_type"),
            pl.lit(None, dtype=pl.Int64).alias("line_before_fen"),
            pl.col("initial_limit").cast(pl.Int64).alias("line_after_fen"),
            (
                pl.col("limit_cell").cast(pl.String) if "limit_cell" in aschema else pl.lit(None, pl.String)
            ).alias("cell"),
            (
                pl.col("limit_propensity").cast(pl.Float64)
                if "limit_propensity" in aschema
                else pl.lit(None, pl.Float64)
            ).alias("propensity"),
            # the first statement after booking: the same 12 months as the oracle's booking potential
            (pl.col("open_m") + 1).alias("s"),
        )
    )
    review_m = cal.index_expr("review_date").cast(pl.Int32)
    reviews = limit_changes.select(
        "customer_id",
        "card_id",
        pl.col("review_date").alias("snapshot_date"),
        pl.lit("review").alias("decision_type"),
        pl.col("old_limit").cast(pl.Int64).alias("line_before_fen"),
        pl.col("new_limit").cast(pl.Int64).alias("line_after_fen"),
        (pl.col("cell").cast(pl.String) if "cell" in lschema else pl.lit(None, pl.String)).alias("cell"),
        (
            pl.col("propensity").cast(pl.Float64) if "propensity" in lschema else pl.lit(None, pl.Float64)
        ).alias("propensity"),
        # a review on the 1st acts from that statement month, otherwise from the next one
        (review_m + (pl.col("review_date").dt.day() > 1).cast(pl.Int32)).alias("s"),
    )
    decisions = (
        pl.concat([initial, reviews], how="vertical_relaxed")
        .with_columns(
            (pl.col("line_after_fen") - pl.col("line_before_fen").fill_null(0)).alias("line_increase_fen"),
            cal.index_expr("snapshot_date").cast(pl.Int32).alias("t"),
        )
        .sort("card_id", "snapshot_date", "decision_type")
        .with_row_index("decision_id")
    )
    out = _window_outcomes(decisions, statements, cards, cal, p.limit_outcome_months)
    return out.with_columns(
        pl.when(pl.col("y_months_observed") >= p.limit_min_outcome_months)
        .then(pl.col("y_dpd90"))
        .otherwise(None)
        .alias("label")
    )


def churn_snapshots(
    cards: pl.LazyFrame,
    statements: pl.LazyFrame,
    offers: pl.LazyFrame,
    cal: WorldCalendar,
    p: FeaturesParams,
) -> pl.LazyFrame:
    """Card-month grid of candidate snapshots with labels (eligibility on activity is applied later, from
    features that only look back)."""
    gap, h, silent = p.churn_gap_months, p.churn_horizon_months, p.silent_months
    c = cards.select(
        "card_id",
        "customer_id",
        cal.index_expr("open_date").cast(pl.Int32).alias("open_m"),
        cal.index_expr("close_date").cast(pl.Int32).alias("close_m"),
        pl.col("close_reason").cast(pl.String),
    )
    last_t = pl.when(pl.col("close_m").is_not_null()).then(pl.col("close_m")).otherwise(cal.months - 1)
    grid = (
        c.with_columns(
            pl.int_ranges(pl.col("open_m") + 1, pl.min_horizontal(last_t, cal.months - 1) + 1).alias("t")
        )
        .explode("t")
        .drop_nulls("t")
        .with_columns(pl.col("t").cast(pl.Int32))
        .with_columns(month_start_expr(cal, pl.col("t")).alias("snapshot_date"))
    )
    lo, hi = pl.col("t") + gap, pl.col("t") + gap + h - 1  # label window, inclusive month indices
    # silent runs: months ending a run of `silent` consecutive statements with no purchases / cash advance
    sschema = statements.collect_schema()
    txn = pl.col("purchases").cast(pl.Float64) + (
        pl.col("cash_advance").cast(pl.Float64).fill_null(0) if "cash_advance" in sschema else pl.lit(0.0)
    )
    runs = (
        statements.select(
            "card_id", cal.index_expr("statement_month").cast(pl.Int32).alias("m"), (txn <= 0).alias("z")
        )
        .sort("card_id", "m")
        .with_columns(
            (
                (pl.col("z").cast(pl.Int32).rolling_sum(silent, min_samples=silent).over("card_id") == silent)
                & ((pl.col("m") - pl.col("m").shift(silent - 1).over("card_id")) == silent - 1)
            ).alias("run_end")
        )
        .filter("run_end")
        .select("card_id", "m")
    )
    silent_hit = (
        grid.select("card_id", "t")
        .join(runs, on="card_id")
        .filter((pl.col("m") >= pl.col("t") + gap + silent - 1) & (pl.col("m") <= pl.col("t") + gap + h - 1))
        .group_by("card_id", "t")
        .agg(pl.lit(True).alias("_silent"))
    )
    closed_vol = (pl.col("close_reason") == "voluntary") & pl.col("close_m").is_between(lo, hi)
    ocols = offers.collect_schema()
    off = offers.select(
        "card_id",
        cal.index_expr("campaign_month").cast(pl.Int32).alias("t"),
        pl.lit(True).alias("in_campaign"),
        pl.col("treated").cast(pl.Int8).alias("treatment"),
        pl.col("propensity").cast(pl.Float64).alias("propensity"),
        *([pl.col("arm").cast(pl.String).alias("arm")] if "arm" in ocols else []),
    ).unique(["card_id", "t"], keep="first")
    out = (
        grid.join(silent_hit, on=["card_id", "t"], how="left")
        .join(off, on=["card_id", "t"], how="left")
        # excluded: charge-off before the label window ends; any closure inside the gap
        .filter(
            ~((pl.col("close_reason") == "charge_off") & (pl.col("close_m") <= hi)).fill_null(False)
            & ~(pl.col("close_m").is_not_null() & (pl.col("close_m") < lo))
        )
        .with_columns(
            pl.when(hi <= cal.months - 1)
            .then((closed_vol.fill_null(False) | pl.col("_silent").fill_null(False)).cast(pl.Int8))
            .otherwise(None)
            .alias("label"),
            pl.col("in_campaign").fill_null(False),
        )
        .drop("_silent", "close_m", "close_reason")
    )
    return out
