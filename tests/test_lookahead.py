"""No look-ahead by construction: every train/valid label, and every outcome a fitted object learns from, closes
before the first OOT month (config.SplitParams.gap_months >= FeaturesParams.label_span_months), and a split
that would violate it is rejected when params.yaml is loaded.

The proof is a perturbation: rewrite everything the world records from a task's first OOT month on (every
statement 150 days past due with a large spend, every open card closed) and rebuild the task's snapshots and
split. No train or valid label or outcome may change (while OOT labels do, so the perturbation bites)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from cardlab.config import FeaturesParams, Params, PresetSize, SimulateParams, parse_params
from cardlab.features import snapshots as SN
from cardlab.features.build import _apply_split
from cardlab.features.io import load_tables, read_calendar
from cardlab.tasks.churn import realised_value, value_training_target
from cardlab.world.simulate import simulate

KEYS = {"credit": ["application_id"], "limit": ["decision_id"], "churn": ["card_id", "snapshot_date"]}
OUTCOMES = {
    "credit": ["label"],
    "limit": [
        "label",
        "y_dpd90",
        "y_spend_fen",
        "y_avg_revolving_fen",
        "y_interest_fees_fen",
        "y_months_observed",
    ],
    "churn": ["label"],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    presets = {
        "ci": PresetSize(n_customers=3_000, months=48, shard_size=3_000),
        "dev": PresetSize(n_customers=1_000),
        "bench": PresetSize(n_customers=1_000),
    }
    out = tmp_path_factory.mktemp("lookahead") / "world"
    simulate(SimulateParams(preset="ci", presets=presets), out, workers=1, progress=False)
    return out


def _snapshots(task: str, tables: dict[str, pl.LazyFrame], cal, p: FeaturesParams) -> pd.DataFrame:
    if task == "credit":
        lf = SN.credit_snapshots(tables["applications"], tables["cards"], tables["statements"], cal, p)
    elif task == "limit":
        lf = SN.limit_snapshots(
            tables["applications"], tables["cards"], tables["limit_changes"], tables["statements"], cal, p
        )
    else:
        lf = SN.churn_snapshots(tables["cards"], tables["statements"], tables["retention_offers"], cal, p)
    return _apply_split(lf, p, task).collect().to_pandas()


def _perturb(tables: dict[str, pl.LazyFrame], cut: date) -> dict[str, pl.LazyFrame]:
    """Everything from month ``cut`` on rewritten: statements deeply delinquent with a large spend, every card
    still open then closed on ``cut`` (charge-off for half of them, voluntary for the rest)."""
    after = pl.col("statement_month") >= cut
    types = tables["statements"].collect_schema()
    st = tables["statements"].with_columns(
        pl.when(after).then(150).otherwise(pl.col("dpd")).cast(types["dpd"]).alias("dpd"),
        *(
            pl.when(after).then(pl.col(c) * 3 + 1_000_000).otherwise(pl.col(c)).cast(types[c]).alias(c)
            for c in ("purchases", "closing_balance", "opening_balance", "interest")
        ),
        pl.when(after).then(0).otherwise(pl.col("payments")).cast(types["payments"]).alias("payments"),
    )
    open_at_cut = pl.col("close_date").is_null() | (pl.col("close_date") >= cut)
    cards = tables["cards"].with_columns(
        pl.when(open_at_cut).then(pl.lit(cut)).otherwise(pl.col("close_date")).alias("close_date"),
        pl.when(open_at_cut)
        .then(pl.when(pl.col("card_id") % 4 == 2).then(pl.lit("charge_off")).otherwise(pl.lit("voluntary")))
        .otherwise(pl.col("close_reason").cast(pl.String))
        .cast(tables["cards"].collect_schema()["close_reason"])
        .alias("close_reason"),
    )
    return {**tables, "statements": st, "cards": cards}


def _same(a: pd.Series, b: pd.Series) -> np.ndarray:
    x, y = a.astype("float64").to_numpy(), b.astype("float64").to_numpy()
    return (x == y) | (np.isnan(x) & np.isnan(y))


@pytest.mark.parametrize("task", ["credit", "limit", "churn"])
def test_no_train_or_valid_outcome_reads_the_oot_period(world: Path, task: str):
    p = FeaturesParams()
    tables = load_tables(world / "raw")
    cal = read_calendar(world / "raw", tables)
    cut = cal.month_start(p.split_for(task).oot_start)
    base = _snapshots(task, tables, cal, p)
    poked = _snapshots(task, _perturb(tables, cut), cal, p)
    j = base.merge(
        poked, on=KEYS[task], how="outer", suffixes=("", "__p"), validate="one_to_one", indicator=True
    )
    fitted = (
        j["split"].isin(["train", "valid"]).to_numpy() | j["split__p"].isin(["train", "valid"]).to_numpy()
    )
    assert fitted.sum() > 100 and (~fitted).sum() > 100
    # the same train/valid rows exist (a closure in the OOT period may only remove OOT rows)
    assert (j.loc[fitted, "_merge"] == "both").all(), f"{task}: train/valid rows appear or vanish"
    assert (j.loc[fitted, "split"] == j.loc[fitted, "split__p"]).all()
    for col in OUTCOMES[task]:
        same = _same(j[col], j[f"{col}__p"])
        assert same[fitted].all(), (
            f"{task}: {int((~same[fitted]).sum())} train/valid rows change {col} when the world after "
            f"{cut} is rewritten: a label window reaches the OOT period"
        )
    changed = ~_same(j["label"], j["label__p"]) | (j["_merge"] != "both").to_numpy()
    assert changed[~fitted].any(), "the perturbation must change some OOT labels (else it proves nothing)"


def test_churn_value_target_is_cut_at_the_first_oot_month(world: Path, tmp_path: Path):
    """The churn value model trains on realised margin (tasks/churn.py value_training_target): it reads
    nothing from the first OOT month on."""
    p = Params()
    tables = load_tables(world / "raw")
    cal = read_calendar(world / "raw", tables)
    cut = cal.month_start(p.features.split.oot_start)
    snaps = _snapshots("churn", tables, cal, p.features)
    poked_raw = tmp_path / "raw"
    (poked_raw / "statements").mkdir(parents=True)
    _perturb(tables, cut)["statements"].collect().write_parquet(poked_raw / "statements" / "part-0.parquet")
    fitted = snaps["split"].isin(["train", "valid"]).to_numpy()
    a = value_training_target(snaps, world / "raw", p)[fitted]
    b = value_training_target(snaps, poked_raw, p)[fitted]
    assert a.notna().sum() > 100
    assert _same(a, b).all(), f"{int((~_same(a, b)).sum())} value targets read the OOT period"
    # the uncut realised value (OOT grading) does read it: the perturbation bites
    full = realised_value(snaps[fitted], world / "raw", p), realised_value(snaps[fitted], poked_raw, p)
    assert not _same(*full).all()


@pytest.mark.parametrize(
    ("key", "split", "span"),
    [
        ("credit_split", {"valid_start": 12, "gap_months": 0, "oot_start": 18, "oot_end": 22}, 12),
        ("limit_split", {"valid_start": 16, "gap_months": 6, "oot_start": 24, "oot_end": 29}, 12),
        ("split", {"valid_start": 16, "gap_months": 2, "oot_start": 24, "oot_end": 32}, 3),
    ],
)
def test_config_rejects_a_split_whose_labels_look_ahead(key, split, span):
    with pytest.raises(ValueError) as err:
        parse_params({"features": {key: split}})
    msg = str(err.value)
    assert f"{key}.gap_months" in msg and f">= {span}" in msg and "look ahead" in msg


def test_label_spans_follow_the_horizons():
    p = FeaturesParams(
        churn_gap_months=2,
        churn_horizon_months=4,
        split={"valid_start": 10, "gap_months": 5, "oot_start": 24, "oot_end": 30},
    )
    assert p.label_span_months("churn") == 5
    assert p.label_span_months("credit") == p.credit_horizon_months == 12
    assert p.split_for("churn").valid_end == 19
