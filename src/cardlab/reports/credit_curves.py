"""Vintage curves, roll-rate matrices and the evidence behind the credit task's bad definition.

- Vintage curve: for each booking cohort, the cumulative share of *booked* cards that have ever been
  ``dpd >= 30`` (or ``>= 90``) at a statement with months-on-book (mob) <= k. Cards that close stay in the
  denominator with their flag frozen; a charge-off counts as 90+ at its close month at the latest. A point is
  reported only when every card of the cohort can have reached mob k inside the observed months.
- Roll-rate matrix: the share of card-months in bucket *from* at statement month t that are in bucket *to*
  at t + 1; a card with no statement at t + 1 because it closed is ``charged_off`` or ``closed``. Card-months
  of the last observed month (no t + 1 yet) are left out. Each row sums to 1.
"""

from __future__ import annotations

from typing import cast

import polars as pl

from cardlab.config import ReportParams
from cardlab.reports.tables import BUCKET_ORDER, EXIT_STATES, World, bucket_expr, month_index

TO_STATES = BUCKET_ORDER + EXIT_STATES


def first_delinquency(world: World, statement_rows: pl.DataFrame) -> pl.DataFrame:
    """Per card: cohort, booking month, first mob at 30+ and at 90+ (null when never), last observed mob."""
    st = statement_rows
    per_card = st.group_by("card_id").agg(
        pl.col("mob").filter(pl.col("dpd") >= 30).min().alias("first_30_mob"),
        pl.col("mob").filter(pl.col("dpd") >= 90).min().alias("first_90_mob"),
    )
    cards = world.cards.select(
        "card_id", "vintage", "booking_month", "close_month", "close_reason"
    ).with_columns(
        (month_index(pl.col("close_month")) - month_index(pl.col("booking_month"))).alias("close_mob"),
    )
    out = cards.join(per_card, on="card_id", how="left")
    co = pl.when(pl.col("close_reason") == "charge_off").then(pl.col("close_mob")).otherwise(None)
    return out.with_columns(
        pl.min_horizontal(pl.col("first_90_mob"), co).alias("first_90_mob"),
        pl.min_horizontal(pl.col("first_30_mob"), co).alias("first_30_mob"),
    ).sort("card_id")


def vintage_curves(world: World, first: pl.DataFrame, params: ReportParams) -> pl.DataFrame:
    """Long table: cohort, mob, accounts, ever_30p, ever_90p (cumulative shares of booked cards)."""
    last_idx = pl.select(month_index(pl.lit(world.last_month))).item()
    cohorts = (
        first.group_by("vintage")
        .agg(
            pl.len().alias("accounts"),
            month_index(pl.col("booking_month")).max().alias("_last_booking"),
            pl.col("first_30_mob").drop_nulls().alias("_f30"),
            pl.col("first_90_mob").drop_nulls().alias("_f90"),
        )
        .sort("vintage")
    )
    rows = []
    for r in cohorts.iter_rows(named=True):
        max_mob = min(params.vintage_max_mob, last_idx - r["_last_booking"])
        f30 = sorted(r["_f30"])
        f90 = sorted(r["_f90"])
        for k in range(0, max_mob + 1):
            n30 = sum(1 for m in f30 if m <= k)
            n90 = sum(1 for m in f90 if m <= k)
            rows.append(
                {
                    "cohort": r["vintage"],
                    "mob": k,
                    "accounts": r["accounts"],
                    "ever_30p": n30 / r["accounts"],
                    "ever_90p": n90 / r["accounts"],
                }
            )
    schema = {
        "cohort": pl.Utf8,
        "mob": pl.Int32,
        "accounts": pl.Int64,
        "ever_30p": pl.Float64,
        "ever_90p": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema).sort(["cohort", "mob"])


def transitions(world: World, statement_rows: pl.DataFrame) -> pl.DataFrame:
    """One row per card-month with a known next state: card_id, month, from_state, to_state."""
    st = statement_rows.select("card_id", "month", "dpd", "close_month", "close_reason").sort(
        ["card_id", "month"]
    )
    st = st.with_columns(
        bucket_expr(pl.col("dpd")).alias("from_state"),
        pl.col("month").shift(-1).over("card_id").alias("_next_month"),
        bucket_expr(pl.col("dpd").shift(-1).over("card_id")).alias("_next_bucket"),
    )
    nxt = pl.col("month").dt.offset_by("1mo")
    has_next = pl.col("_next_month") == nxt
    closed = pl.col("close_month").is_not_null() & (pl.col("close_month") <= nxt)
    to_state = (
        pl.when(has_next)
        .then(pl.col("_next_bucket"))
        .when(closed & (pl.col("close_reason") == "charge_off"))
        .then(pl.lit("charged_off"))
        .when(closed)
        .then(pl.lit("closed"))
        .otherwise(None)
    )
    return (
        st.filter(pl.col("month") < world.last_month)
        .with_columns(to_state.alias("to_state"))
        .filter(pl.col("to_state").is_not_null())
        .select("card_id", "month", "from_state", "to_state")
    )


def roll_rate_matrix(trans: pl.DataFrame) -> pl.DataFrame:
    """Long matrix: from_state, to_state, count, share (rows over BUCKET_ORDER, columns over TO_STATES)."""
    grid = pl.DataFrame({"from_state": BUCKET_ORDER}).join(pl.DataFrame({"to_state": TO_STATES}), how="cross")
    counts = trans.group_by("from_state", "to_state").agg(pl.len().cast(pl.Int64).alias("count"))
    m = grid.join(counts, on=["from_state", "to_state"], how="left").with_columns(
        pl.col("count").fill_null(0)
    )
    m = m.with_columns(pl.col("count").sum().over("from_state").alias("_row"))
    m = m.with_columns(
        pl.when(pl.col("_row") > 0).then(pl.col("count") / pl.col("_row")).otherwise(None).alias("share")
    ).drop("_row")
    fo = {s: i for i, s in enumerate(BUCKET_ORDER)}
    to = {s: i for i, s in enumerate(TO_STATES)}
    return (
        m.with_columns(
            pl.col("from_state").replace_strict(fo, return_dtype=pl.Int32).alias("_f"),
            pl.col("to_state").replace_strict(to, return_dtype=pl.Int32).alias("_t"),
        )
        .sort(["_f", "_t"])
        .drop("_f", "_t")
    )


def forward_roll_rates(trans: pl.DataFrame) -> pl.DataFrame:
    """Monthly forward roll rates (current->1-29, 1-29->30-59, 30-59->60-89, 60-89->90+)."""
    steps = list(zip(BUCKET_ORDER[:-1], BUCKET_ORDER[1:], strict=True))
    out: pl.DataFrame | None = None
    for a, b in steps:
        name = f"roll_{a}_to_{b}"
        part = (
            trans.filter(pl.col("from_state") == a)
            .group_by("month")
            .agg(((pl.col("to_state") == b).sum() / pl.len()).alias(name))
        )
        out = part if out is None else out.join(part, on="month", how="full", coalesce=True)
    if out is None:  # unreachable: BUCKET_ORDER is fixed and has several states
        raise ValueError("no roll-rate steps: BUCKET_ORDER needs at least two states")
    return out.sort("month")


def _sum(s: pl.Series) -> float:
    """``s.sum()`` of a numeric column, unchanged: polars types it as int | float | Decimal."""
    return cast(float, s.sum())


def bad_definition_evidence(
    world: World, first: pl.DataFrame, trans: pl.DataFrame, matrix: pl.DataFrame, curves: pl.DataFrame,
    statement_rows: pl.DataFrame, params: ReportParams,
) -> dict[str, float]:  # fmt: skip
    """Numbers that support (or refute) 'bad = ever 90+ DPD within 12 months' for the credit task."""
    h = params.bad_horizon_months
    share = {(r["from_state"], r["to_state"]): r["share"] for r in matrix.iter_rows(named=True)}
    ev: dict[str, float] = {}

    def put(key: str, val: float | None) -> None:
        if val is not None:
            ev[key] = round(float(val), 6)

    put("cure_rate_dpd_1_29", share.get(("dpd_1_29", "current")))
    put("cure_rate_dpd_30_59", share.get(("dpd_30_59", "current")))
    put("cure_rate_dpd_60_89", share.get(("dpd_60_89", "current")))
    put("cure_rate_dpd_90p", share.get(("dpd_90p", "current")))
    put("roll_rate_60_89_to_90p", share.get(("dpd_60_89", "dpd_90p")))
    put(
        "stay_or_charge_off_rate_90p",
        (share.get(("dpd_90p", "dpd_90p")) or 0.0) + (share.get(("dpd_90p", "charged_off")) or 0.0),
    )
    # of cards first 30+ at mob m (and observed m + h), the share reaching 90+ by m + h
    last_idx = pl.select(month_index(pl.lit(world.last_month))).item()
    f = first.with_columns((last_idx - month_index(pl.col("booking_month"))).alias("_max_mob"))
    obs30 = f.filter(
        pl.col("first_30_mob").is_not_null() & (pl.col("first_30_mob") + h <= pl.col("_max_mob"))
    )
    if obs30.height:
        put(
            f"ever_30p_reach_90p_within_{h}m",
            obs30.select(
                (
                    pl.col("first_90_mob").is_not_null()
                    & (pl.col("first_90_mob") <= pl.col("first_30_mob") + h)
                ).mean()
            ).item(),
        )
    # of cards first 90+ (observed h months after), the share back to current within h months
    obs90 = f.filter(
        pl.col("first_90_mob").is_not_null() & (pl.col("first_90_mob") + h <= pl.col("_max_mob"))
    )
    if obs90.height:
        cured = (
            statement_rows.join(obs90.select("card_id", "first_90_mob"), on="card_id", how="inner")
            .filter(
                (pl.col("mob") > pl.col("first_90_mob"))
                & (pl.col("mob") <= pl.col("first_90_mob") + h)
                & (pl.col("dpd") == 0)
            )
            .select("card_id")
            .unique()
            .height
        )
        put(f"ever_90p_cured_within_{h}m", cured / obs90.height)
        put(
            f"ever_90p_charged_off_within_{h}m",
            obs90.join(
                world.cards.select("card_id", "close_reason", "close_month", "booking_month"), on="card_id"
            )
            .select(
                (
                    (pl.col("close_reason") == "charge_off")
                    & (
                        month_index(pl.col("close_month")) - month_index(pl.col("booking_month"))
                        <= pl.col("first_90_mob") + h
                    )
                )
                .fill_null(False)
                .mean()
            )
            .item(),
        )
    # vintage maturity: pooled over cohorts observed to 2h months on book
    mature = curves.filter(pl.col("mob").is_in([h, 2 * h]))
    full = mature.group_by("cohort").agg(pl.len().alias("n")).filter(pl.col("n") == 2)["cohort"]
    if len(full):
        m = mature.filter(pl.col("cohort").is_in(full.implode())).with_columns(
            (pl.col("ever_90p") * pl.col("accounts")).alias("b90"),
            (pl.col("ever_30p") * pl.col("accounts")).alias("b30"),
        )
        at_h = m.filter(pl.col("mob") == h)
        at_2h = m.filter(pl.col("mob") == 2 * h)
        if _sum(at_2h["b90"]) > 0:
            put(f"vintage_90p_share_reached_by_mob{h}_of_mob{2 * h}", _sum(at_h["b90"]) / _sum(at_2h["b90"]))
        put(f"vintage_ever_90p_mob{h}", _sum(at_h["b90"]) / _sum(at_h["accounts"]))
        put(f"vintage_ever_90p_mob{2 * h}", _sum(at_2h["b90"]) / _sum(at_2h["accounts"]))
        put(f"vintage_ever_30p_mob{h}", _sum(at_h["b30"]) / _sum(at_h["accounts"]))
        put("vintage_cohorts_mature", float(len(full)))
    return ev
