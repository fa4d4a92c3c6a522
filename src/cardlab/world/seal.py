"""The content seal (docs/world.md, "Content seal"): no raw column *is* a latent trait or an oracle probability in disguise.

The name seal (raw tables carry no oracle column) says nothing about content: a raw score computed from the
latent risk leaks it under an innocent name. :func:`content_seal` measures it on a written world: the
|Spearman| of every numeric raw column with every latent trait (``oracle/traits``) and every oracle
probability or effect (``pd_true.pd_12m``, ``churn_true.p_label_3m``, ``retention_truth.tau_label``, ...).
Spearman is invariant to monotone transforms, so a column's rank over the table is covered; a dated table
also has each column's rank *within its month* checked (a score that drifts with time can still be the trait
month by month).

Joins are row-level: traits on ``customer_id``; a dated oracle table on ``customer_id`` and the calendar month of
the raw table's date (statements, sessions, BNPL months, applications, reviews, campaigns line up with the
oracle's snapshot / month / decision date); the customer profile on ``customer_id``. Rows are sampled
deterministically (``max_rows`` per raw table, a fixed seed) so the check stays cheap on any preset.

An observable may *measure* a trait, noisily and partially; above ``THRESHOLD`` it *is* the trait. The
allow-list :data:`ALLOWED` would hold known exceptions with the reason; World v2 (issue #18) emptied it (it held
World v1's ``customers.platform_credit_score``, 0.99 with the latent risk, and ``customers.bureau_revolving_fen``,
0.97 with the latent debt need).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
from scipy.stats import rankdata

THRESHOLD = 0.9
# (raw table, raw column) -> why it is tolerated for now; the test fails on anything else above THRESHOLD
ALLOWED: dict[tuple[str, str], str] = {}  # empty since World v2 (issue #18); keep it that way

# the date a raw table's row is observed at (None: a profile, joined on customer only)
RAW_DATES: dict[str, str | None] = {
    "customers": None,
    "applications": "application_date",
    "cards": "open_date",
    "statements": "statement_month",
    "limit_changes": "review_date",
    "retention_offers": "campaign_month",
    "invitations": "invite_date",
    "orders": "order_date",
    "sessions_monthly": "month",
    "bnpl_monthly": "month",
    "bnpl_plans": "start_date",
    "profile_changes": "change_date",
    "platform_scores": "month",
}
ORACLE_DATES = {
    "shock_path": "month",
    "pd_true": "snapshot_date",
    "churn_true": "month",
    "retention_truth": "campaign_month",
    "limit_potential": "decision_date",
}
KEYS = {"customer_id", "card_id", "application_id", "order_id", "plan_id", "campaign_id"}


@dataclass(frozen=True)
class Target:
    table: str
    column: str


def _oracle_columns(table: str, schema: pl.Schema) -> list[str]:
    """Latent traits and states (every numeric column of ``traits`` and ``shock_path``) and oracle
    probabilities / effects elsewhere."""
    numeric = [c for c, t in schema.items() if c not in KEYS and (t.is_numeric() or t == pl.Boolean)]
    if table in ("traits", "shock_path"):
        return numeric
    return [c for c in numeric if c.startswith(("pd_", "p_", "tau"))]


def _raw_columns(schema: pl.Schema) -> list[str]:
    return [
        c
        for c, t in schema.items()
        if c not in KEYS and not c.endswith("_id") and (t.is_numeric() or t == pl.Boolean)
    ]


def _month(col: str) -> pl.Expr:
    return pl.col(col).dt.truncate("1mo").alias("_month")


def _spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    ok = np.isfinite(a) & np.isfinite(b)
    n = int(ok.sum())
    if n < 50:
        return float("nan"), n
    x, y = a[ok], b[ok]
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), n
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1]), n


def _rank_in_month(df: pd.DataFrame, col: str) -> np.ndarray:
    return df.groupby("_month")[col].rank(method="average", pct=True).to_numpy(dtype=np.float64)


def content_seal(world: Path, *, max_rows: int = 40_000, seed: int = 0, min_rows: int = 200) -> pd.DataFrame:
    """|Spearman| of every numeric raw column (and its within-month rank) with every latent trait and oracle
    probability of the world written under ``world`` (``raw/`` and ``oracle/``). One row per (raw column,
    variant, oracle column): ``raw_table, raw_column, variant ("value" | "rank in month"), oracle_table,
    oracle_column, n, spearman, abs_spearman, allowed``; sorted by ``abs_spearman`` descending."""
    world = Path(world)
    oracle_frames: dict[str, tuple[pl.DataFrame, list[str]]] = {}
    for table in ("traits", *ORACLE_DATES):
        path = world / "oracle" / table
        if not path.exists():
            continue
        lf = pl.scan_parquet(path)
        schema = lf.collect_schema()
        if table == "limit_potential" and "chosen" in schema:
            lf = lf.filter(pl.col("chosen"))  # the option the world took: one row per decision
        cols = _oracle_columns(table, schema)
        date = ORACLE_DATES.get(table)
        keep = ["customer_id", *([_month(date)] if date else []), *(pl.col(c).cast(pl.Float64) for c in cols)]
        frame = lf.select(keep)
        if date:  # one value per customer-month (the first: reviews and applications are rarely repeated)
            frame = frame.group_by("customer_id", "_month", maintain_order=True).first()
        oracle_frames[table] = (frame.collect(), cols)
    rows = []
    for table, date in RAW_DATES.items():
        path = world / "raw" / table
        if not path.exists():
            continue
        lf = pl.scan_parquet(path)
        schema = lf.collect_schema()
        cols = _raw_columns(schema)
        if not cols or "customer_id" not in schema:
            continue
        raw = (
            lf.select(
                "customer_id", *([_month(date)] if date else []), *(pl.col(c).cast(pl.Float64) for c in cols)
            )
            .collect()
            .with_row_index("_row")
        )
        if raw.height > max_rows:
            raw = raw.sample(max_rows, seed=seed).sort("_row")
        for otable, (oframe, ocols) in oracle_frames.items():
            on = ["customer_id", "_month"] if date and otable in ORACLE_DATES else ["customer_id"]
            right = oframe if "_month" in on or "_month" not in oframe.columns else oframe.drop("_month")
            j = raw.join(right, on=on, how="inner").to_pandas()
            if len(j) < min_rows:
                continue
            variants = {"value": {c: j[c].to_numpy(dtype=np.float64) for c in cols}}
            if date:
                variants["rank in month"] = {c: _rank_in_month(j, c) for c in cols}
            for variant, values in variants.items():
                for c, a in values.items():
                    for oc in ocols:
                        rho, n = _spearman(a, j[oc].to_numpy(dtype=np.float64))
                        rows.append((table, c, variant, otable, oc, n, rho))
    out = pd.DataFrame(
        rows, columns=["raw_table", "raw_column", "variant", "oracle_table", "oracle_column", "n", "spearman"]
    )
    out["abs_spearman"] = out["spearman"].abs()
    out["allowed"] = [(t, c) in ALLOWED for t, c in zip(out["raw_table"], out["raw_column"], strict=True)]
    return out.sort_values("abs_spearman", ascending=False, kind="mergesort").reset_index(drop=True)


def violations(seal: pd.DataFrame, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Rows of :func:`content_seal` above ``threshold`` that the allow-list does not cover."""
    return seal[(seal["abs_spearman"] > threshold) & ~seal["allowed"]].reset_index(drop=True)


if __name__ == "__main__":  # python -m cardlab.world.seal data  (prints the strongest associations)
    import sys

    report = content_seal(Path(sys.argv[1] if len(sys.argv) > 1 else "data"))
    print(report.head(25).to_string(index=False))
    print(f"violations above {THRESHOLD}: {len(violations(report))}")
