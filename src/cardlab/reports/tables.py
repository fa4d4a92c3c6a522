"""Reading the raw world for the portfolio report and shaping it into the frames the KPIs are built on.

Everything here is observable data (``data/raw``); the oracle is read only by :mod:`cardlab.reports.campaigns`
for evaluation. Months are first-of-month dates; money stays in integer fen until a KPI converts it to yuan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal, cast, overload

import polars as pl

from cardlab.config import ReportParams
from cardlab.errors import RawDataError

# delinquency buckets at statement, by days past due (dpd); "current" is dpd == 0
DPD_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("current", 0, 0),
    ("dpd_1_29", 1, 29),
    ("dpd_30_59", 30, 59),
    ("dpd_60_89", 60, 89),
    ("dpd_90p", 90, None),
)
BUCKET_ORDER = [b[0] for b in DPD_BUCKETS]
# absorbing states of the roll-rate matrix (the card has no statement next month)
EXIT_STATES = ["charged_off", "closed"]

# segment cuts of the KPI table; "portfolio" is the whole book
CUTS = ("portfolio", "vintage", "acquisition_channel", "city_tier", "partner_bank")


@overload
def read_table(root: Path, name: str, *, required: Literal[True] = True) -> pl.DataFrame: ...
@overload
def read_table(root: Path, name: str, *, required: bool) -> pl.DataFrame | None: ...
def read_table(root: Path, name: str, *, required: bool = True) -> pl.DataFrame | None:
    """Read ``root/<name>/*.parquet`` (all parts) into one frame, sorted by nothing (callers sort)."""
    folder = Path(root) / name
    parts = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not parts:
        single = Path(root) / f"{name}.parquet"
        parts = [single] if single.exists() else []
    if not parts:
        if required:
            raise RawDataError(f"{folder}: no parquet parts found (run `cardlab simulate` first)")
        return None
    return pl.concat([pl.read_parquet(p) for p in parts], how="vertical_relaxed")


def _need(df: pl.DataFrame, table: str, cols: list[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise RawDataError(f"raw table {table!r} lacks column(s) {missing}; has {df.columns}")


def bucket_expr(dpd: pl.Expr) -> pl.Expr:
    """Delinquency bucket label of a dpd expression (null dpd counts as current)."""
    d = dpd.fill_null(0)
    return (
        pl.when(d <= 0)
        .then(pl.lit("current"))
        .when(d < 30)
        .then(pl.lit("dpd_1_29"))
        .when(d < 60)
        .then(pl.lit("dpd_30_59"))
        .when(d < 90)
        .then(pl.lit("dpd_60_89"))
        .otherwise(pl.lit("dpd_90p"))
    )


def month_index(col: pl.Expr) -> pl.Expr:
    """Months since year 0 of a date expression: differences of it count calendar months."""
    return col.dt.year().cast(pl.Int32) * 12 + col.dt.month().cast(pl.Int32) - 1


@dataclass
class World:
    """The raw tables the report reads, normalised (month columns added, segment attributes joined)."""

    customers: pl.DataFrame
    invitations: pl.DataFrame | None
    applications: pl.DataFrame
    cards: pl.DataFrame  # one row per card with segment attributes and booking vintage
    statements: pl.DataFrame  # one row per card x statement month, with segments, bucket, mob, dormancy
    retention_offers: pl.DataFrame | None
    first_month: date
    last_month: date

    @property
    def data_end(self) -> date:
        """Last calendar day observed (end of the last statement month)."""
        nxt = pl.select(pl.lit(self.last_month).dt.offset_by("1mo")).item()
        return date.fromordinal(nxt.toordinal() - 1)


def _vintage_expr(col: pl.Expr, granularity: str) -> pl.Expr:
    if granularity == "quarter":
        return (col.dt.year().cast(pl.Utf8) + pl.lit("Q") + col.dt.quarter().cast(pl.Utf8)).alias("vintage")
    return col.dt.strftime("%Y-%m").alias("vintage")


def _segment_attributes(customers: pl.DataFrame, applications: pl.DataFrame) -> pl.DataFrame:
    """customer_id -> acquisition_channel, city_tier, partner_bank (as strings; 'unknown' when absent)."""
    cols = ["customer_id"]
    for c in ("acquisition_channel", "city_tier", "partner_bank"):
        if c in customers.columns:
            cols.append(c)
    seg = customers.select(cols)
    if "partner_bank" not in seg.columns and "partner_bank" in applications.columns:
        # the bank of the customer's latest application stands in for the customer's bank
        bank = (
            applications.sort(["customer_id", "application_date"])
            .group_by("customer_id", maintain_order=True)
            .agg(pl.col("partner_bank").last())
        )
        seg = seg.join(bank, on="customer_id", how="left")
    for c in ("acquisition_channel", "city_tier", "partner_bank"):
        if c not in seg.columns:
            seg = seg.with_columns(pl.lit("unknown").alias(c))
        seg = seg.with_columns(pl.col(c).cast(pl.Utf8).fill_null("unknown"))
    return seg


def load_world(raw: Path, params: ReportParams) -> World:
    """Read and normalise the raw tables the report uses."""
    raw = Path(raw)
    customers = read_table(raw, "customers")
    applications = read_table(raw, "applications")
    cards = read_table(raw, "cards")
    statements = read_table(raw, "statements")
    invitations = read_table(raw, "invitations", required=False)
    offers = read_table(raw, "retention_offers", required=False)
    _need(customers, "customers", ["customer_id"])
    _need(applications, "applications", ["customer_id", "application_date", "approved"])
    _need(cards, "cards", ["card_id", "customer_id", "open_date"])
    _need(
        statements,
        "statements",
        [
            "customer_id",
            "card_id",
            "statement_month",
            "credit_limit",
            "purchases",
            "payments",
            "closing_balance",
            "dpd",
        ],
    )

    if statements.height == 0:
        raise RawDataError(f"{raw / 'statements'}: the statements table is empty; nothing to report on")
    seg = _segment_attributes(customers, applications)

    # cards: booking month, vintage, segment attributes; the card's own partner bank wins when recorded
    for c in ("activation_date", "close_date"):
        if c not in cards.columns:
            cards = cards.with_columns(pl.lit(None, dtype=pl.Date).alias(c))
    if "close_reason" not in cards.columns:
        cards = cards.with_columns(pl.lit(None, dtype=pl.Utf8).alias("close_reason"))
    card_bank = None
    if "partner_bank" in cards.columns:
        card_bank = cards.select("card_id", pl.col("partner_bank").cast(pl.Utf8).alias("_card_bank"))
        cards = cards.drop("partner_bank")
    elif (
        "application_id" in cards.columns
        and "application_id" in applications.columns
        and ("partner_bank" in applications.columns)
    ):
        card_bank = (
            cards.select("card_id", "application_id")
            .join(
                applications.select(
                    "application_id", pl.col("partner_bank").cast(pl.Utf8).alias("_card_bank")
                ),
                on="application_id",
                how="left",
            )
            .select("card_id", "_card_bank")
        )
    drop = [c for c in ("acquisition_channel", "city_tier") if c in cards.columns]
    cards = (
        cards.drop(drop)
        .join(seg, on="customer_id", how="left")
        .with_columns(
            pl.col("open_date").dt.month_start().alias("booking_month"),
            pl.col("close_date").dt.month_start().alias("close_month"),
            pl.col("close_reason").cast(pl.Utf8),
        )
    )
    if card_bank is not None:
        cards = (
            cards.join(card_bank, on="card_id", how="left")
            .with_columns(pl.coalesce("_card_bank", "partner_bank").alias("partner_bank"))
            .drop("_card_bank")
        )
    cards = cards.with_columns(
        _vintage_expr(pl.col("booking_month"), params.vintage_granularity),
        pl.col("acquisition_channel").fill_null("unknown"),
        pl.col("city_tier").fill_null("unknown"),
        pl.col("partner_bank").fill_null("unknown"),
    ).sort("card_id")

    money = [
        "opening_balance", "purchases", "cash_advance", "interest", "fees", "rewards_earned",
        "rewards_redeemed", "min_due", "payments", "closing_balance", "credit_limit",
    ]  # fmt: skip
    for c in money:
        if c not in statements.columns:
            statements = statements.with_columns(pl.lit(0, dtype=pl.Int64).alias(c))
    if "payment_type" not in statements.columns:
        statements = statements.with_columns(pl.lit(None, dtype=pl.Utf8).alias("payment_type"))

    card_cols = cards.select(
        "card_id", "booking_month", "vintage", "open_date", "close_month", "close_reason",
        "acquisition_channel", "city_tier", "partner_bank",
    )  # fmt: skip
    st = (
        statements.drop(
            [c for c in ("acquisition_channel", "city_tier", "partner_bank") if c in statements.columns]
        )
        .with_columns(pl.col("statement_month").dt.month_start().alias("month"))
        .join(card_cols, on="card_id", how="inner")
        .sort(["card_id", "month"])
        .with_columns(
            (month_index(pl.col("month")) - month_index(pl.col("booking_month"))).alias("mob"),
            bucket_expr(pl.col("dpd")).alias("bucket"),
            ((pl.col("purchases") + pl.col("cash_advance")) > 0).alias("transacted"),
            pl.col("payment_type").cast(pl.Utf8),
        )
    )
    # months since the card last transacted (since booking when it never has): the dormancy clock
    st = st.with_columns(
        pl.when(pl.col("transacted")).then(month_index(pl.col("month"))).otherwise(None).alias("_last_txn")
    ).with_columns(pl.col("_last_txn").forward_fill().over("card_id"))
    st = st.with_columns(
        (
            month_index(pl.col("month"))
            - pl.coalesce(pl.col("_last_txn"), month_index(pl.col("booking_month")) - 1)
        ).alias("months_silent")
    ).drop("_last_txn")

    inv = None
    if invitations is not None and "invite_date" in invitations.columns:
        inv = invitations.drop(
            [c for c in ("acquisition_channel", "city_tier", "partner_bank") if c in invitations.columns]
        ).join(seg, on="customer_id", how="left")
    apps = applications.drop(
        [c for c in ("acquisition_channel", "city_tier") if c in applications.columns]
    ).join(seg.rename({"partner_bank": "_cust_bank"}), on="customer_id", how="left")
    if "partner_bank" in apps.columns:
        apps = apps.with_columns(
            pl.coalesce(pl.col("partner_bank").cast(pl.Utf8), "_cust_bank").alias("partner_bank")
        )
        apps = apps.drop("_cust_bank")
    else:
        apps = apps.rename({"_cust_bank": "partner_bank"})
    apps = apps.with_columns(pl.col("partner_bank").fill_null("unknown"))

    # polars types Series.min/max as any Python literal; "month" is a Date column
    first_month = cast(date, st["month"].min())
    last_month = cast(date, st["month"].max())
    return World(
        customers=customers,
        invitations=inv,
        applications=apps,
        cards=cards,
        statements=st,
        retention_offers=offers,
        first_month=first_month,
        last_month=last_month,
    )
