"""What every family module shares: the task groups, column-name fragments and the world's month index."""

from __future__ import annotations

import re

import polars as pl

from cardlab.features.io import WorldCalendar
from cardlab.features.windows import MONTH_COL

ALL = ("credit", "limit", "churn")
ACCOUNT = ("limit", "churn")


def ident(value: object) -> str:
    """A category value as a column-name fragment."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", str(value)).strip("_").lower() or "na"


def in_world(lf: pl.LazyFrame, cal: WorldCalendar, date_col: str) -> pl.LazyFrame:
    return lf.with_columns(cal.index_expr(date_col).alias(MONTH_COL)).filter(
        (pl.col(MONTH_COL) >= 0) & (pl.col(MONTH_COL) < cal.months)
    )
