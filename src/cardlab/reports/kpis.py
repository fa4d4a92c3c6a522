"""Lifecycle KPIs by month, for the whole book and cut by segment.

Every KPI is a ratio of two sums over one monthly *frame* (a table with one row per event or account-month):
``value = numerator / denominator`` (a plain count when there is no denominator). The same :data:`KPI_SPECS`
list computes the numbers and writes ``kpi_dictionary.json``, so definitions and figures cannot drift apart.

Frames (one row per ...):

- ``invitations``  invitation, month of ``invite_date``
- ``applications`` application, month of ``application_date``
- ``bookings``     card, month of ``open_date`` (booking month)
- ``accounts``     card x calendar month from booking to close (stock and flows of accounts)
- ``statements``   card x statement month while the card is open (the billed book)

Money is summed in fen and converted to yuan (/100) for ``*_yuan`` KPIs. Rates carry ``bounded=True`` and lie
in [0, 1]; ratios (utilisation, annualised loss rate) may exceed 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from cardlab.config import EconomicsParams, ReportParams
from cardlab.reports.tables import CUTS, World, month_index

SEGMENT_COLS = ("vintage", "acquisition_channel", "city_tier", "partner_bank")


@dataclass(frozen=True)
class Kpi:
    """One KPI: ``sum(num) / sum(den)`` over rows of ``frame`` grouped by month (and segment)."""

    name: str
    stage: str
    frame: str
    num: pl.Expr
    den: pl.Expr | None
    numerator: str
    denominator: str | None
    source: str
    unit: str
    bounded: bool
    scale: float = 1.0  # multiplies the ratio (e.g. 1/100 for fen -> yuan, 12 for annualising)

    def dictionary_entry(self) -> dict[str, object]:
        return {
            "stage": self.stage,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "source_table": self.source,
            "grain": f"month x segment; rows of the '{self.frame}' frame",
            "unit": self.unit,
            "bounded_0_1": self.bounded,
            "scale": self.scale,
        }


def _count() -> pl.Expr:
    return pl.len()


def kpi_specs(params: ReportParams, eco: EconomicsParams | None = None) -> list[Kpi]:
    """The KPI list in funnel order (invitation -> ... -> margin); ``eco`` = the world's unit economics."""
    eco = eco or EconomicsParams()
    c = pl.col
    # fmt: off
    specs: list[Kpi] = [
        Kpi("invitations", "acquisition", "invitations", _count(), None,
            "invitations sent in the month", None, "invitations", "count", False),
        Kpi("invite_to_application_30d", "acquisition", "invitations",
            c("applied_30d").filter(c("obs_30d")).sum(), c("obs_30d").sum(),
            "invitations of the month whose customer applied within 30 days of invite_date",
            "invitations of the month (only months whose 30-day window is fully observed)",
            "invitations, applications", "share", True),
        Kpi("applications", "acquisition", "applications", _count(), None,
            "applications received in the month", None, "applications", "count", False),
        Kpi("approval_rate", "acquisition", "applications", c("approved").cast(pl.Int64).sum(), _count(),
            "approved applications of the month", "applications of the month", "applications", "share", True),
        Kpi("bookings", "acquisition", "bookings", _count(), None,
            "cards opened (booked) in the month", None, "cards", "count", False),
    ]
    for w in params.activation_windows_days:
        specs.append(
            Kpi(f"activation_{w}d", "activation", "bookings",
                c(f"act_{w}d").filter(c(f"obs_{w}d")).sum(), c(f"obs_{w}d").sum(),
                f"cards booked in the month activated within {w} days of open_date",
                f"cards booked in the month (only months whose {w}-day window is fully observed)",
                "cards", "share", True)
        )
    specs += [
        Kpi("opening_accounts", "stock", "accounts", c("is_opening").sum(), None,
            "cards open at the start of the month (open_date before the 1st, not closed before the 1st)",
            None, "cards", "count", False),
        Kpi("booked_accounts", "stock", "accounts", c("is_booked").sum(), None,
            "cards whose open_date falls in the month", None, "cards", "count", False),
        Kpi("closed_accounts", "stock", "accounts", c("is_closed").sum(), None,
            "cards whose close_date falls in the month (any reason)", None, "cards", "count", False),
        Kpi("closing_accounts", "stock", "accounts", c("is_closing").sum(), None,
            "cards open at the end of the month (opened on or before the last day, not closed by it)",
            None, "cards", "count", False),
        Kpi("active_rate", "usage", "statements", c("transacted").sum(), _count(),
            "billed accounts with purchases + cash advances > 0 in the statement month",
            "billed accounts (statement rows of open cards)", "statements, cards", "share", True),
        Kpi("spend_per_active_yuan", "usage", "statements", c("purchases").sum(), c("transacted").sum(),
            "purchases of the month (fen)", "active accounts (purchases + cash advances > 0)",
            "statements", "yuan per active account", False, 0.01),
        Kpi("revolve_rate", "usage", "statements", c("revolver").sum(), c("due").sum(),
            "accounts with a payment due that paid the minimum or a partial amount but not in full",
            "accounts with a payment due (payment_type != none_due)", "statements", "share", True),
        Kpi("utilisation", "usage", "statements", c("closing_balance").sum(), c("credit_limit").sum(),
            "closing balances of billed accounts (fen)", "credit limits of billed accounts (fen)",
            "statements", "ratio", False),
        Kpi("payment_rate", "repayment", "statements", c("paid_capped").sum(), c("opening_balance").sum(),
            "payments in the month, each capped at the account's opening balance (fen)",
            "opening balances of billed accounts (fen)", "statements", "share", True),
        Kpi("full_pay_rate", "repayment", "statements", c("full_payer").sum(), c("due").sum(),
            "accounts with a payment due that paid the statement balance in full",
            "accounts with a payment due", "statements", "share", True),
    ]
    for b, lo, hi in (("dpd_1_29", 1, 29), ("dpd_30_59", 30, 59), ("dpd_60_89", 60, 89), ("dpd_90p", 90, None)):
        rng = f"{lo}-{hi}" if hi else f"{lo}+"
        specs.append(
            Kpi(f"delinquency_{b}", "delinquency", "statements", (c("bucket") == b).sum(), _count(),
                f"billed accounts {rng} days past due at statement", "billed accounts",
                "statements", "share", True)
        )
    specs += [
        Kpi("delinquency_30p_balance", "delinquency", "statements",
            c("closing_balance").filter(c("dpd") >= 30).sum(), c("closing_balance").sum(),
            "closing balances of accounts 30+ days past due (fen)", "closing balances of billed accounts (fen)",
            "statements", "share", True),
        Kpi("net_charge_off_rate_annualised", "loss", "statements", c("co_loss").sum(), c("closing_balance").sum(),
            "balance written off in the month (closing balance on the last statement of cards closed as "
            "charge_off; no recoveries are simulated, so net = gross), times 12",
            "closing balances of billed accounts (fen)", "statements, cards", "ratio (annualised)", False, 12.0),
        Kpi("charge_off_rate", "loss", "accounts", c("is_charge_off").sum(), c("is_opening").sum(),
            "cards closed with close_reason = charge_off in the month", "opening accounts of the month",
            "cards", "share", True),
        Kpi("voluntary_attrition_rate", "attrition", "accounts", c("is_voluntary").sum(), c("is_opening").sum(),
            "cards closed with close_reason = voluntary in the month", "opening accounts of the month",
            "cards", "share", True),
        Kpi("dormant_rate", "attrition", "statements", (c("months_silent") >= params.dormant_months).sum(), _count(),
            f"billed accounts without purchases or cash advances for >= {params.dormant_months} months "
            "(counting from booking when never used)", "billed accounts", "statements", "share", True),
        Kpi(f"silent_{params.silent_months}m_share", "attrition", "statements",
            (c("months_silent") >= params.silent_months).sum(), _count(),
            f"billed accounts without purchases or cash advances for >= {params.silent_months} months",
            "billed accounts", "statements", "share", True),
        Kpi("margin_before_loss_per_account_yuan", "economics", "statements", (c("margin") + c("co_loss")).sum(),
            _count(),
            f"interest + fees + {eco.interchange_rate:.2%} interchange on purchases - rewards earned - "
            f"funding cost ({eco.funding_rate_annual:.1%}/12 of closing balance) (fen)",
            "billed accounts", "statements", "yuan per billed account per month", False, 0.01),
        Kpi("margin_per_account_yuan", "economics", "statements", c("margin").sum(), _count(),
            f"interest + fees + {eco.interchange_rate:.2%} interchange on purchases - rewards earned - "
            f"funding cost ({eco.funding_rate_annual:.1%}/12 of closing balance) - charge-off loss (fen)",
            "billed accounts", "statements, cards", "yuan per billed account per month", False, 0.01),
    ]
    # fmt: on
    return specs


# ---------------------------------------------------------------------------------------------------------
# frames
# ---------------------------------------------------------------------------------------------------------
def _month_end(month: pl.Expr) -> pl.Expr:
    return month.dt.offset_by("1mo").dt.offset_by("-1d")


def _observed(month: pl.Expr, days: int, data_end: date) -> pl.Expr:
    """The window of ``days`` after the end of ``month`` lies inside the observed data."""
    return (_month_end(month) + pl.duration(days=days)) <= pl.lit(data_end)


def invitation_frame(world: World) -> pl.DataFrame | None:
    inv = world.invitations
    if inv is None:
        return None
    apps = world.applications.select("customer_id", "application_date")
    first_app = (
        inv.select("customer_id", "invite_date")
        .unique()
        .join(apps, on="customer_id", how="inner")
        .filter(
            (pl.col("application_date") >= pl.col("invite_date"))
            & (pl.col("application_date") <= pl.col("invite_date") + pl.duration(days=30))
        )
        .select("customer_id", "invite_date")
        .unique()
        .with_columns(pl.lit(True).alias("applied_30d"))
    )
    return (
        inv.join(first_app, on=["customer_id", "invite_date"], how="left")
        .with_columns(
            pl.col("invite_date").dt.month_start().alias("month"),
            pl.col("applied_30d").fill_null(False),
        )
        .with_columns(_observed(pl.col("month"), 30, world.data_end).alias("obs_30d"))
    )


def application_frame(world: World) -> pl.DataFrame:
    return world.applications.with_columns(
        pl.col("application_date").dt.month_start().alias("month"), pl.col("approved").cast(pl.Boolean)
    )


def booking_frame(world: World, params: ReportParams) -> pl.DataFrame:
    cards = world.cards.with_columns(pl.col("booking_month").alias("month"))
    extra = []
    for w in params.activation_windows_days:
        extra += [
            (
                pl.col("activation_date").is_not_null()
                & ((pl.col("activation_date") - pl.col("open_date")) <= timedelta(days=w))
            ).alias(f"act_{w}d"),
            _observed(pl.col("month"), w, world.data_end).alias(f"obs_{w}d"),
        ]
    return cards.with_columns(extra)


def account_frame(world: World) -> pl.DataFrame:
    """Card x calendar month for every month from booking to close (or the last observed month)."""
    last = world.last_month
    cards = world.cards.filter(pl.col("booking_month") <= last).with_columns(
        pl.date_ranges(
            pl.col("booking_month"),
            pl.min_horizontal(pl.coalesce(pl.col("close_month"), pl.lit(last)), pl.lit(last)),
            interval="1mo",
        ).alias("month")
    )
    frame = cards.explode("month")
    month_start = pl.col("month")
    month_end = _month_end(pl.col("month"))
    return frame.with_columns(
        (
            (pl.col("open_date") < month_start)
            & (pl.col("close_date").is_null() | (pl.col("close_date") >= month_start))
        ).alias("is_opening"),
        (pl.col("booking_month") == month_start).alias("is_booked"),
        (pl.col("close_month") == month_start).fill_null(False).alias("is_closed"),
        (
            (pl.col("open_date") <= month_end)
            & (pl.col("close_date").is_null() | (pl.col("close_date") > month_end))
        ).alias("is_closing"),
        ((pl.col("close_month") == month_start) & (pl.col("close_reason") == "charge_off"))
        .fill_null(False)
        .alias("is_charge_off"),
        ((pl.col("close_month") == month_start) & (pl.col("close_reason") == "voluntary"))
        .fill_null(False)
        .alias("is_voluntary"),
    )


def statement_frame(world: World, eco: EconomicsParams) -> pl.DataFrame:
    """Statement rows of open cards (not after the close month), with the derived per-row quantities."""
    st = world.statements.filter(pl.col("close_month").is_null() | (pl.col("month") <= pl.col("close_month")))
    pt = pl.col("payment_type")
    last_stmt = pl.col("month") == pl.col("month").max().over("card_id")
    co_loss = (
        pl.when(last_stmt & (pl.col("close_reason") == "charge_off"))
        .then(pl.col("closing_balance"))
        .otherwise(0)
        .cast(pl.Int64)
    )
    st = st.with_columns(
        co_loss.alias("co_loss"),
        (pt.is_not_null() & (pt != "none_due")).alias("due"),
        pt.is_in(["minimum", "partial"]).fill_null(False).alias("revolver"),
        (pt == "full").fill_null(False).alias("full_payer"),
        pl.min_horizontal(pl.col("payments"), pl.col("opening_balance").clip(lower_bound=0)).alias(
            "paid_capped"
        ),
    )
    margin = (
        pl.col("interest").cast(pl.Float64)
        + pl.col("fees")
        + eco.interchange_rate * pl.col("purchases")
        - pl.col("rewards_earned")
        - eco.funding_rate_annual / 12.0 * pl.col("closing_balance").clip(lower_bound=0)
        - pl.col("co_loss")
    )
    return st.with_columns(margin.alias("margin"))


def build_frames(
    world: World, params: ReportParams, eco: EconomicsParams | None = None
) -> dict[str, pl.DataFrame]:
    eco = eco or EconomicsParams()
    frames = {
        "applications": application_frame(world),
        "bookings": booking_frame(world, params),
        "accounts": account_frame(world),
        "statements": statement_frame(world, eco),
    }
    inv = invitation_frame(world)
    if inv is not None:
        frames["invitations"] = inv
    # restrict every frame to the observed calendar
    return {
        k: v.filter((pl.col("month") >= world.first_month) & (pl.col("month") <= world.last_month))
        for k, v in frames.items()
    }


# ---------------------------------------------------------------------------------------------------------
# the KPI table
# ---------------------------------------------------------------------------------------------------------
def _aggregate(frame: pl.DataFrame, specs: list[Kpi], by: list[str]) -> pl.DataFrame:
    aggs = []
    for k in specs:
        aggs.append(k.num.cast(pl.Float64).alias(f"{k.name}__num"))
        if k.den is not None:
            aggs.append(k.den.cast(pl.Float64).alias(f"{k.name}__den"))
    return frame.group_by(by).agg(aggs)


def compute_kpis(
    world: World,
    params: ReportParams,
    frames: dict[str, pl.DataFrame] | None = None,
    eco: EconomicsParams | None = None,
) -> pl.DataFrame:
    """Long KPI table: month, cut, segment, kpi, numerator, denominator, value (sorted, deterministic)."""
    frames = frames if frames is not None else build_frames(world, params, eco)
    specs = kpi_specs(params, eco)
    order = {k.name: i for i, k in enumerate(specs)}
    pieces = []
    for cut in CUTS:
        for frame_name, frame in frames.items():
            fspecs = [k for k in specs if k.frame == frame_name]
            if not fspecs:
                continue
            if cut == "portfolio":
                f = frame.with_columns(pl.lit("all").alias("segment"))
            else:
                if cut not in frame.columns:
                    continue
                f = frame.with_columns(pl.col(cut).cast(pl.Utf8).alias("segment")).filter(
                    pl.col("segment").is_not_null()
                )
            agg = _aggregate(f, fspecs, ["month", "segment"])
            for k in fspecs:
                den = pl.col(f"{k.name}__den") if k.den is not None else pl.lit(None, dtype=pl.Float64)
                value = (
                    pl.when(den > 0).then(pl.col(f"{k.name}__num") / den * k.scale).otherwise(None)
                    if k.den is not None
                    else pl.col(f"{k.name}__num") * k.scale
                )
                pieces.append(
                    agg.select(
                        "month",
                        pl.lit(cut).alias("cut"),
                        "segment",
                        pl.lit(k.name).alias("kpi"),
                        pl.col(f"{k.name}__num").alias("numerator"),
                        den.alias("denominator"),
                        value.alias("value"),
                    )
                )
    table = pl.concat(pieces, how="vertical")
    table = table.with_columns(pl.col("kpi").replace_strict(order, return_dtype=pl.Int32).alias("_order"))
    cut_order = {c: i for i, c in enumerate(CUTS)}
    table = table.with_columns(pl.col("cut").replace_strict(cut_order, return_dtype=pl.Int32).alias("_cut"))
    return table.sort(["_order", "_cut", "segment", "month"]).drop("_order", "_cut")


def kpi_dictionary(params: ReportParams, eco: EconomicsParams | None = None) -> dict[str, dict[str, object]]:
    return {k.name: k.dictionary_entry() for k in kpi_specs(params, eco)}


def headline(kpis: pl.DataFrame, params: ReportParams) -> dict[str, object]:
    """Portfolio figures of the latest month in which each KPI is defined (flat keys)."""
    port = kpis.filter((pl.col("cut") == "portfolio") & pl.col("value").is_not_null())
    last = port["month"].max()
    out: dict[str, object] = {"as_of_month": str(last)}
    for k in kpi_specs(params):
        rows = port.filter(pl.col("kpi") == k.name).sort("month")
        if rows.height == 0:
            continue
        v = rows["value"][-1]
        out[k.name] = round(float(v), 6)
        m = rows["month"][-1]
        if m != last:
            out[f"{k.name}_month"] = str(m)
    return out


def portfolio_wide(kpis: pl.DataFrame) -> pl.DataFrame:
    """Portfolio KPIs as one row per month, one column per KPI (the DVC trend plot file)."""
    port = kpis.filter(pl.col("cut") == "portfolio").select("month", "kpi", "value")
    names = list(dict.fromkeys(port["kpi"].to_list()))
    wide = port.pivot(on="kpi", index="month", values="value").sort("month")
    return wide.select(["month", *[n for n in names if n in wide.columns]])


def months_between(a: date, b: date) -> int:
    return pl.select(month_index(pl.lit(b)) - month_index(pl.lit(a))).item()
