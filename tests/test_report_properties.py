"""KPI identities of the portfolio report as property tests on generated inputs (no simulated world needed).

- account stock: opening + booked - closed = closing, and closing(m) = opening(m + 1), for any card book
- roll-rate matrix rows sum to 1 for any set of transitions
- cumulative vintage curves never decrease and 90+ never exceeds 30+
- the sample-ratio-mismatch check flags a broken split and passes a faithful one
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardlab.config import ReportParams
from cardlab.reports import campaigns as camp
from cardlab.reports import credit_curves as cc
from cardlab.reports import kpis as kp
from cardlab.reports.tables import BUCKET_ORDER, EXIT_STATES

FIRST = date(2023, 1, 1)
LAST = date(2024, 12, 1)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class FakeWorld:
    """The attributes of :class:`cardlab.reports.tables.World` the tested functions read."""

    cards: pl.DataFrame
    first_month: date = FIRST
    last_month: date = LAST


@st.composite
def card_books(draw) -> pl.DataFrame:
    n = draw(st.integers(1, 40))
    span = (date(2024, 12, 31) - FIRST).days
    rows = []
    for i in range(n):
        open_off = draw(st.integers(0, span))
        open_date = FIRST + timedelta(days=open_off)
        closed = draw(st.booleans())
        close_date = open_date + timedelta(days=draw(st.integers(0, 400))) if closed else None
        if close_date is not None and close_date > date(2024, 12, 31):
            close_date = None
        reason = draw(st.sampled_from(["voluntary", "charge_off"])) if close_date else None
        rows.append((i, open_date, close_date, reason))
    df = pl.DataFrame(rows, schema={"card_id": pl.Int64, "open_date": pl.Date, "close_date": pl.Date,
                                    "close_reason": pl.Utf8}, orient="row")  # fmt: skip
    return df.with_columns(
        pl.col("open_date").dt.month_start().alias("booking_month"),
        pl.col("close_date").dt.month_start().alias("close_month"),
        pl.lit("all").alias("vintage"),
    )


def _stock(frame: pl.DataFrame) -> pl.DataFrame:
    return (
        frame.group_by("month")
        .agg(pl.col(c).sum() for c in ("is_opening", "is_booked", "is_closed", "is_closing"))
        .sort("month")
    )


@SETTINGS
@given(card_books())
def test_opening_plus_booked_minus_closed_is_closing(cards):
    stock = _stock(kp.account_frame(FakeWorld(cards)))
    assert (stock["is_opening"] + stock["is_booked"] - stock["is_closed"] == stock["is_closing"]).all()
    # consecutive months chain: what closes month m opens month m + 1
    full = pl.DataFrame({"month": pl.date_range(FIRST, LAST, interval="1mo", eager=True)})
    s = full.join(stock, on="month", how="left").fill_null(0)
    assert (s["is_closing"][:-1] == s["is_opening"][1:]).all()
    # and the last month's closing stock is the number of cards never closed (or closed after the data)
    still_open = cards.filter(pl.col("close_date").is_null()).height
    assert s["is_closing"][-1] == still_open


@st.composite
def transition_sets(draw) -> pl.DataFrame:
    n = draw(st.integers(1, 200))
    frm = draw(st.lists(st.sampled_from(BUCKET_ORDER), min_size=n, max_size=n))
    to = draw(st.lists(st.sampled_from(BUCKET_ORDER + EXIT_STATES), min_size=n, max_size=n))
    return pl.DataFrame({"card_id": list(range(n)), "month": [FIRST] * n, "from_state": frm, "to_state": to})


@SETTINGS
@given(transition_sets())
def test_roll_rate_rows_sum_to_one(trans):
    m = cc.roll_rate_matrix(trans)
    assert m.height == len(BUCKET_ORDER) * len(cc.TO_STATES)
    rows = m.group_by("from_state").agg(pl.col("share").sum().alias("s"), pl.col("count").sum().alias("n"))
    seen = rows.filter(pl.col("n") > 0)
    assert np.allclose(seen["s"].to_numpy(), 1.0)
    assert rows.filter(pl.col("n") == 0)["s"].fill_null(0).eq(0).all()
    assert m["count"].sum() == trans.height
    assert m["share"].drop_nulls().is_between(0, 1).all()


@st.composite
def first_delinquency_frames(draw) -> pl.DataFrame:
    n = draw(st.integers(1, 60))
    rows = []
    for i in range(n):
        booking = draw(st.sampled_from(pl.date_range(FIRST, LAST, interval="1mo", eager=True).to_list()))
        f30 = draw(st.one_of(st.none(), st.integers(1, 30)))
        f90 = None if f30 is None else draw(st.one_of(st.none(), st.integers(f30 + 2, 40)))
        rows.append((i, booking, f30, f90))
    df = pl.DataFrame(rows, schema={"card_id": pl.Int64, "booking_month": pl.Date, "first_30_mob": pl.Int32,
                                    "first_90_mob": pl.Int32}, orient="row")  # fmt: skip
    return df.with_columns(
        (
            pl.col("booking_month").dt.year().cast(pl.Utf8)
            + "Q"
            + pl.col("booking_month").dt.quarter().cast(pl.Utf8)
        ).alias("vintage")
    )


@SETTINGS
@given(first_delinquency_frames())
def test_vintage_curves_never_decrease(first):
    curves = cc.vintage_curves(FakeWorld(pl.DataFrame()), first, ReportParams())
    for _, g in curves.group_by("cohort"):
        g = g.sort("mob")
        assert (g["ever_30p"].diff().drop_nulls() >= 0).all()
        assert (g["ever_90p"].diff().drop_nulls() >= 0).all()
        # a point exists only where every card of the cohort can have reached that months-on-book
        assert g["mob"].to_list() == list(range(g.height))
    assert curves["ever_30p"].is_between(0, 1).all()
    assert (curves["ever_90p"] <= curves["ever_30p"] + 1e-12).all()


def test_srm_check_flags_a_broken_split_and_passes_a_faithful_one():
    design = {"control": 0.3, "random": 0.35, "targeted": 0.35}
    rng = np.random.default_rng(0)
    faithful = dict(zip(design, rng.multinomial(6000, list(design.values())), strict=True))
    _, p_ok = camp.srm_check({k: int(v) for k, v in faithful.items()}, design)
    _, p_bad = camp.srm_check({"control": 1500, "random": 2250, "targeted": 2250}, design)
    assert p_ok > 0.001
    assert p_bad < 1e-6
