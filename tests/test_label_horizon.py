"""Label and oracle on the same horizon, checked on the pipeline's world (ci preset).

For every task the oracle's mean probability must match the realised label rate within binomial tolerance
(|observed - expected| <= 3 standard deviations of a sum of independent Bernoulli(p) draws). For credit and
the limit decisions, whose oracle also replays each account's *realised* 12-statement default at the option
the world took (``limit_potential.default_12m``, same random draws as the factual path), the label must agree
with it row by row up to chance: the discordant pairs split evenly (exact binomial test). A label window one
statement short (11 instead of 12, as before) loses every default that first reaches 90+ DPD at the 12th
statement: 23 discordant pairs against 1 on ci, while the count test alone cannot tell (165 vs 141 bads is
1.9 standard deviations at ci size).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy.stats import binomtest

from cardlab.config import load_params
from cardlab.features import snapshots as SN
from cardlab.features.io import load_tables, read_calendar

pytestmark = pytest.mark.slow


def _features(root: Path, task: str) -> pd.DataFrame:
    return pl.read_parquet(root / "data" / "features" / task).to_pandas()


def _labels(root: Path, task: str) -> pd.DataFrame:
    """The task's labels for every snapshot of the world (the features stage's own code, before the split
    drops the gap months): all the rows the test can use."""
    p = load_params(root / "params.yaml").features
    raw = root / "data" / "raw"
    t = load_tables(raw)
    cal = read_calendar(raw, t)
    if task == "credit":
        lf = SN.credit_snapshots(t["applications"], t["cards"], t["statements"], cal, p)
    else:
        lf = SN.limit_snapshots(t["applications"], t["cards"], t["limit_changes"], t["statements"], cal, p)
    return lf.collect().to_pandas()


def _oracle(root: Path, table: str) -> pl.DataFrame:
    return pl.read_parquet(root / "data" / "oracle" / table)


def _binomial_z(y: np.ndarray, p: np.ndarray) -> float:
    return float((y.sum() - p.sum()) / np.sqrt(np.sum(p * (1 - p))))


def _discordance(label: np.ndarray, realised: np.ndarray) -> tuple[int, int, float]:
    """(oracle default but no label, label but no oracle default, two-sided exact p of an even split)."""
    b = int(np.sum((realised == 1) & (label == 0)))
    c = int(np.sum((realised == 0) & (label == 1)))
    return b, c, (binomtest(b, b + c, 0.5).pvalue if b + c else 1.0)


def _booking_replay(root: Path) -> pd.DataFrame:
    lp = _oracle(root, "limit_potential").filter((pl.col("kind") == "booking") & pl.col("chosen"))
    return lp.select(
        "customer_id", pl.col("decision_date").alias("snapshot_date"), "default_12m", "pd_12m"
    ).to_pandas()


def test_credit_label_matches_the_oracle_horizon(pipeline_root: Path):
    f = _labels(pipeline_root, "credit")
    f = f[f["label"].notna()]
    pdt = _oracle(pipeline_root, "pd_true").filter(pl.col("kind") == "application").to_pandas()
    j = f.merge(pdt[["customer_id", "snapshot_date", "pd_12m"]], on=["customer_id", "snapshot_date"])
    assert len(j) == len(f) > 1000
    z = _binomial_z(j["label"].to_numpy(float), j["pd_12m"].to_numpy())
    assert abs(z) < 3, (
        f"credit: {j['label'].sum():.0f} bads vs {j['pd_12m'].sum():.1f} expected (z = {z:.2f})"
    )
    r = f.merge(_booking_replay(pipeline_root), on=["customer_id", "snapshot_date"])
    r = r[r["default_12m"].notna()]
    assert len(r) > 0.9 * len(f)
    b, c, p = _discordance(r["label"].to_numpy(int), r["default_12m"].astype(int).to_numpy())
    assert p > 1e-3, (
        f"credit label vs the oracle's realised 12-statement default: {b} oracle defaults without a label, "
        f"{c} labels without an oracle default (p = {p:.2g}): the label window is not the oracle's"
    )


def test_limit_label_matches_the_oracle_horizon(pipeline_root: Path):
    f = _labels(pipeline_root, "limit")
    full = f[f["label"].notna() & (f["y_months_observed"] >= 12)].copy()
    full["kind"] = np.where(full["decision_type"] == "review", "review", "booking")
    lp = (
        _oracle(pipeline_root, "limit_potential")
        .filter(pl.col("chosen"))
        .select(
            "customer_id", pl.col("decision_date").alias("snapshot_date"), "kind", "pd_12m", "default_12m"
        )
        .unique(["customer_id", "snapshot_date", "kind"], keep="first")
        .to_pandas()
    )
    j = full.merge(lp, on=["customer_id", "snapshot_date", "kind"])
    assert len(j) == len(full) > 1000
    for kind, g in j.groupby("kind"):
        z = _binomial_z(g["label"].to_numpy(float), g["pd_12m"].to_numpy())
        assert abs(z) < 3, (
            f"limit {kind}: {g['label'].sum():.0f} bads vs {g['pd_12m'].sum():.1f} (z = {z:.2f})"
        )
        g = g[g["default_12m"].notna()]
        b, c, p = _discordance(g["label"].to_numpy(int), g["default_12m"].astype(int).to_numpy())
        assert p > 1e-3, f"limit {kind}: {b} oracle defaults without a label, {c} labels without one"


def test_churn_label_matches_the_oracle_probability(pipeline_root: Path):
    f = _features(pipeline_root, "churn")
    f = f[f["label"].notna()]
    ct = (
        _oracle(pipeline_root, "churn_true")
        .filter(pl.col("p_label_3m").is_not_null())
        .select("card_id", pl.col("month").dt.offset_by("1mo").alias("snapshot_date"), "p_label_3m")
        .to_pandas()
    )
    j = f.merge(ct, on=["card_id", "snapshot_date"])
    assert len(j) > 0.99 * len(f)
    z = _binomial_z(j["label"].to_numpy(float), j["p_label_3m"].to_numpy())
    assert abs(z) < 3, (
        f"churn: {j['label'].sum():.0f} labels vs {j['p_label_3m'].sum():.1f} expected (z = {z:.2f})"
    )
