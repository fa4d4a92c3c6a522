"""Realism anchors and oracle calibration on the ci world (bands from public anchors, see docs/world.md)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cardlab.config import SimulateParams
from cardlab.world.realism import booked_labels, realism_report
from cardlab.world.simulate import simulate


def ci_world(tmp_path_factory) -> Path:
    """The default ci world, simulated once per test session and shared by the test_world* modules."""
    out = tmp_path_factory.getbasetemp() / "cardlab_ci_world"
    if not (out / "manifest.json").exists():
        simulate(SimulateParams(), out, workers=2, progress=False)
    return out


# tolerance around each published band for a 20k-customer world (sampling noise)
TOLERANCE = {
    "bad_rate_12m_booked": 0.005,
    "utilisation_aggregate": 0.03,
    "payment_mix_none_due": 0.03,
    "payment_mix_full": 0.03,
    "payment_mix_revolving": 0.03,
    "annual_voluntary_attrition": 0.02,
    "oracle_application_auc": 0.03,
    "mpb_slope_riskiest": 0.1,
    "mpb_slope_safest": 0.05,
    "bad_rate_tier5_over_tier1": 0.1,
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return ci_world(tmp_path_factory)


def test_realism_report_written_and_reusable(world):
    rep = json.loads((world / "realism.json").read_text())
    again = realism_report(world, SimulateParams())
    assert json.loads(json.dumps(again)) == rep
    for name, a in rep.items():
        assert {"value", "band", "pass", "source"} <= set(a), name


@pytest.mark.parametrize(
    "anchor",
    sorted(TOLERANCE)
    + ["singles_day_nov_over_oct", "order_amount_log_skew", "utilisation_zero_share", "silent_accounts_18m"],
)
def test_anchor_within_band(world, anchor):
    a = json.loads((world / "realism.json").read_text())[anchor]
    lo, hi = a["band"]
    tol = TOLERANCE.get(anchor, 0.0)
    assert lo - tol <= a["value"] <= hi + tol, (anchor, a)


def test_tier_gradient(world):
    a = json.loads((world / "realism.json").read_text())["bad_rate_tier5_over_tier1"]
    assert a["by_tier"]["5"] > a["by_tier"]["1"]


def test_oracle_pd_is_calibrated_on_realised_labels(world):
    lab = booked_labels(world, date(2023, 1, 1), 36)
    pd = pl.read_parquet(str(world / "oracle/pd_true/*.parquet")).filter(pl.col("kind") == "application")
    j = lab.join(pd, on="customer_id")
    p = j["pd_12m"].to_numpy()
    se = np.sqrt((p * (1 - p)).sum()) / len(p)
    assert abs(j["bad"].mean() - p.mean()) < 3.5 * se
    # every application has a pd_true row, declined included
    apps = pl.read_parquet(str(world / "raw/applications/*.parquet"))
    assert len(pd) == len(apps) and set(pd["customer_id"]) == set(apps["customer_id"])


def test_retention_potential_outcomes_match_probabilities(world):
    rt = pl.read_parquet(str(world / "oracle/retention_truth/*.parquet"))
    for y, p in (("y0", "p_churn_y0"), ("y1", "p_churn_y1")):
        pv = rt[p].to_numpy()
        se = np.sqrt((pv * (1 - pv)).sum()) / len(pv)
        assert abs(rt[y].mean() - pv.mean()) < 3.5 * se
    assert 0.05 < (rt["tau"] < 0).mean() < 0.4  # a minority of sleeping dogs
    ro = pl.read_parquet(str(world / "raw/retention_offers/*.parquet"))
    assert (rt["treated"] == ro["treated"]).all()


def test_limit_potential_has_one_chosen_option_per_decision(world):
    lp = pl.read_parquet(str(world / "oracle/limit_potential/*.parquet"))
    per = lp.group_by("customer_id", "decision_date", "kind").agg(pl.col("chosen").sum(), pl.len())
    assert (per["chosen"] == 1).all()
    assert set(per.filter(pl.col("kind") == "booking")["len"]) == {6}
    assert set(per.filter(pl.col("kind") == "review")["len"]) == {4}
    lc = pl.read_parquet(str(world / "raw/limit_changes/*.parquet"))
    assert len(per.filter(pl.col("kind") == "review")) == len(lc)
