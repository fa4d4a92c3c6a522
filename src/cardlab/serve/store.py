"""The online feature store: customer feature rows computed by the batch feature code, looked up per request.

``cardlab materialize`` (DVC stage ``materialize``) runs :func:`cardlab.features.build.customer_features` -
the very function ``cardlab features`` uses - for every customer at every materialised as-of month ``t``
(month index: features use complete months strictly before ``t``), and writes one SQLite file:

- ``rows (customer_id, t, features)``: the customer-level feature values (windowed families + profile) as a
  zlib-compressed float64 vector (NaN = missing, booleans 0/1), plus the inputs of the features that depend
  on the exact application date (``signup_date`` as days since 1970-01-01);
- ``meta``: column names, the world's calendar, the materialised months, the partner-bank codes of the
  application features, the account features of a card not yet booked (a first-line decision has no account
  history) per month, and the feature dictionary's entries (reason texts in Chinese and English).

Rows: every customer "today" (``t`` = the month after the world's last complete month) and, for replay, the
customer-months of the card applications in the out-of-time windows of the credit and limit tasks (so OOT
applications can be replayed and compared with the batch, tests/test_serve_skew.py). At request time :class:`FeatureStore` returns the stored vector; the application's own fields
and the date-dependent features are evaluated by :mod:`cardlab.serve.features` with the build code's
expressions.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import zlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from cardlab.artifacts import atomic_dir
from cardlab.config import FeaturesParams
from cardlab.features.build import (
    account_features,
    application_catalog,
    as_of_exprs,
    credit_applications,
    customer_features,
    partner_banks,
    vocabularies,
)
from cardlab.features.dictionary import merge_specs
from cardlab.features.io import WorldCalendar, load_tables, read_calendar

STORE_FILE = "features.sqlite"
STORE_VERSION = 1
_EPOCH = date(1970, 1, 1)


class StoreError(ValueError):
    """The feature store is missing, from another version, or lacks what a model needs."""


def replay_months(params: FeaturesParams, cal: WorldCalendar) -> list[int]:
    """The credit and limit out-of-time months: applications in them can be replayed against the batch."""
    months: set[int] = set()
    for task in ("credit", "limit"):
        sp = params.split_for(task)
        months |= set(range(sp.oot_start, min(sp.oot_end, cal.months - 1) + 1))
    return sorted(months)


def store_keys(
    tables: dict[str, pl.LazyFrame], cal: WorldCalendar, replay: list[int]
) -> tuple[pl.DataFrame, int]:
    """(customer_id, t) rows to materialise: every customer "today" (``t = cal.months``: every complete month
    of the world is history) and, for replay, each customer-month with a card application in ``replay``."""
    today = cal.months
    everyone = tables["customers"].select("customer_id", pl.lit(today, pl.Int32).alias("t")).collect()
    applied = (
        tables["applications"]
        .select("customer_id", cal.index_expr("application_date").cast(pl.Int32).alias("t"))
        .filter(pl.col("t").is_in(replay))
        .unique()
        .collect()
    )
    return pl.concat([everyone, applied]).unique().sort("customer_id", "t"), today


def _as_float(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """Columns as a float64 matrix: null -> NaN, booleans -> 0/1, dates -> days since 1970-01-01."""
    exprs = []
    for c in columns:
        dt = frame.schema[c]
        e = pl.col(c)
        if dt == pl.Date:
            e = e.cast(pl.Int32)
        exprs.append(e.cast(pl.Float64).fill_null(float("nan")).alias(c))
    return frame.select(exprs).to_numpy().astype(np.float64, copy=False)


def _pack(vector: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(vector, dtype="<f8").tobytes(), 6)


def _unpack(blob: bytes) -> np.ndarray:
    return np.frombuffer(zlib.decompress(blob), dtype="<f8")


def _manifest_digest(path: Path) -> str | None:
    """Digest of the world's per-table row counts and content hashes (which world the store was built from)."""
    if not path.exists():
        return None
    tables = json.loads(path.read_text()).get("tables")
    return hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()


def materialize(params: FeaturesParams, raw: Path, out: Path, replay: list[int] | None = None) -> dict:
    """Write ``out/features.sqlite`` (atomically): every customer as of today and the customer-months of the
    applications in the ``replay`` months (default :func:`replay_months`); returns a summary."""
    raw, out = Path(raw), Path(out)
    tables = load_tables(raw)
    cal = read_calendar(raw, tables)
    replay = replay_months(params, cal) if replay is None else sorted(set(replay))
    bad = [m for m in replay if not 1 <= m < cal.months]
    if bad:
        raise StoreError(
            f"replay months {bad} are outside the world: choose month indices 1..{cal.months - 1}"
        )
    keys, today = store_keys(tables, cal, replay)
    months = sorted({*replay, today})
    categories, ptypes = vocabularies(tables)
    cf = customer_features(tables, cal, params, keys, categories)
    rows = cf.rows().sort("customer_id", "t")
    feature_cols = [s.name for s in (*cf.catalog.specs, *cf.static.specs) if s.name in rows.columns]
    as_of = [pl.col("snapshot_date").alias("snapshot_date")] + as_of_exprs(cf.has_signup)
    as_of_inputs = sorted(
        {r for e in as_of for r in e.meta.root_names() if r != "snapshot_date" and r in rows.columns}
    )
    # a card that is not booked yet: no statements, no line changes, opened at the decision month
    fresh = pl.DataFrame(
        {"card_id": [-1 - i for i in range(len(months))], "t": months},
        schema={"card_id": pl.Int64, "t": pl.Int32},
    )
    cards = fresh.select(
        "card_id", pl.col("t").alias("open_m"), pl.lit(None, pl.Float64).alias("initial_limit_fen")
    ).lazy()
    acct, acat = account_features(tables, cal, params, fresh, ptypes, cards=cards)
    acct_cols = [s.name for s in acat.specs]
    acct = acct.sort("t")
    banks = partner_banks(credit_applications(tables, cal, params).select("app_partner_bank").collect())
    app_cat = application_catalog(["app_legacy_score", "app_partner_bank"], banks)
    dictionary = {
        s.name: s.as_json()
        for s in merge_specs([*cf.catalog.specs, *cf.static.specs, *acat.specs, *app_cat.specs])
    }
    meta = {
        "store_version": STORE_VERSION,
        "columns": feature_cols,
        "as_of_inputs": [{"name": c, "dtype": str(rows.schema[c])} for c in as_of_inputs],
        "has_signup": cf.has_signup,
        "world": {"start_month": cal.start_month.isoformat(), "months": cal.months},
        "months": months,
        "today": today,
        "replay_months": replay,
        "partner_banks": banks,
        "account_columns": acct_cols,
        "new_card": {
            str(int(t)): v.tolist() for t, v in zip(acct["t"], _as_float(acct, acct_cols), strict=True)
        },
        "dictionary": dictionary,
        "raw_tables_sha256": _manifest_digest(raw.parent / "manifest.json"),
    }
    matrix = _as_float(rows, feature_cols + as_of_inputs)
    ids = rows["customer_id"].to_numpy()
    ts = rows["t"].to_numpy()
    with atomic_dir(out) as tmp:
        path = tmp / STORE_FILE
        con = sqlite3.connect(path)
        try:
            con.execute("PRAGMA journal_mode=OFF")
            con.execute("PRAGMA page_size=4096")
            con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
            con.execute(
                "CREATE TABLE rows (customer_id INTEGER NOT NULL, t INTEGER NOT NULL, features BLOB NOT NULL, "
                "PRIMARY KEY (customer_id, t)) WITHOUT ROWID"
            )
            con.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [(k, json.dumps(v, sort_keys=True, ensure_ascii=False)) for k, v in sorted(meta.items())],
            )
            con.executemany(
                "INSERT INTO rows VALUES (?, ?, ?)",
                ((int(i), int(t), _pack(v)) for i, t, v in zip(ids, ts, matrix, strict=True)),
            )
            con.commit()
            con.execute("VACUUM")
        finally:
            con.close()
        size = path.stat().st_size
    return {
        "rows": len(ids),
        "customers": int(len(np.unique(ids))),
        "columns": len(feature_cols),
        "today": today,
        "replay_months": replay,
        "bytes": size,
    }


@dataclass
class StoredRow:
    """One customer's stored features at as-of month ``t`` and the inputs of the date-dependent features."""

    values: np.ndarray  # float64, aligned with FeatureStore.columns
    as_of_inputs: dict[str, object]


class FeatureStore:
    """Read-only lookups in ``features.sqlite`` (one connection; the service calls it from one thread)."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / STORE_FILE
        if not path.exists():
            raise StoreError(
                f"feature store {path} is missing: run `cardlab materialize` (or `dvc repro materialize`)"
            )
        self.path = path
        self._con = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False
        )
        meta = {k: json.loads(v) for k, v in self._con.execute("SELECT key, value FROM meta")}
        if meta.get("store_version") != STORE_VERSION:
            raise StoreError(
                f"feature store {path} has version {meta.get('store_version')}, this code reads {STORE_VERSION}: "
                "re-run `cardlab materialize`"
            )
        self.meta = meta
        self.columns: list[str] = meta["columns"]
        self.index = {c: i for i, c in enumerate(self.columns)}
        self._inputs = meta["as_of_inputs"]
        self.months: list[int] = meta["months"]
        self.today: int = int(meta["today"])
        self.replay_months: list[int] = meta["replay_months"]
        w = meta["world"]
        self.calendar = WorldCalendar(
            start_month=date.fromisoformat(w["start_month"]), months=int(w["months"])
        )
        self.account_columns: list[str] = meta["account_columns"]
        self.new_card = {int(t): np.asarray(v, dtype=np.float64) for t, v in meta["new_card"].items()}
        self.partner_banks: list[str] = meta["partner_banks"]
        self.dictionary: dict[str, dict] = meta["dictionary"]
        self.has_signup: bool = bool(meta["has_signup"])

    def month_index(self, day: date) -> int:
        start = self.calendar.start_month
        return (day.year - start.year) * 12 + day.month - start.month

    def month_start(self, t: int) -> date:
        return self.calendar.month_start(t)

    def get(self, customer_id: int, t: int) -> StoredRow | None:
        hit = self._con.execute(
            "SELECT features FROM rows WHERE customer_id = ? AND t = ?", (int(customer_id), int(t))
        ).fetchone()
        if hit is None:
            return None
        vec = _unpack(hit[0])
        n = len(self.columns)
        inputs: dict[str, object] = {}
        for j, spec in enumerate(self._inputs):
            v = vec[n + j]
            if np.isnan(v):
                inputs[spec["name"]] = None
            elif spec["dtype"] == "Date":
                inputs[spec["name"]] = date.fromordinal(_EPOCH.toordinal() + int(v))
            else:
                inputs[spec["name"]] = float(v)
        return StoredRow(values=vec[:n], as_of_inputs=inputs)

    def has_customer(self, customer_id: int) -> bool:
        return (
            self._con.execute(
                "SELECT 1 FROM rows WHERE customer_id = ? LIMIT 1", (int(customer_id),)
            ).fetchone()
            is not None
        )

    def customers(self, t: int, limit: int) -> list[int]:
        """Up to ``limit`` customer ids stored at as-of month ``t`` (warm-up, tests, benchmarks)."""
        rows = self._con.execute("SELECT customer_id FROM rows WHERE t = ? LIMIT ?", (int(t), int(limit)))
        return [int(r[0]) for r in rows]

    def close(self) -> None:
        self._con.close()
