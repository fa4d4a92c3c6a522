"""Limit task: the response-model pieces around the S-learners (monotone envelope, utilisation offset, the
PD line slope from the randomised cells and the PD recalibration)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from scipy.special import expit

from cardlab.config import Params
from cardlab.modeling.xgb import TaskData
from cardlab.tasks import limit


def test_monotone_envelope_never_falls_with_the_line_and_ignores_masked_options():
    lines = np.array([[10_000.0, 5_000.0, 20_000.0, 0.0], [2_000.0, 5_000.0, 10_000.0, 20_000.0]])
    values = np.array([[3.0, 4.0, 2.0, 99.0], [1.0, 0.5, 2.0, 1.5]])
    out = limit.monotone_in_line(values, lines)
    # row 0 sorted by line: 5k -> 4, 10k -> max(4, 3), 20k -> max(4, 2); the masked option is untouched
    assert out[0].tolist() == [4.0, 4.0, 4.0, 99.0]
    assert out[1].tolist() == [1.0, 1.0, 2.0, 2.0]
    for r in range(2):
        keep = lines[r] > 0
        order = np.argsort(lines[r, keep])
        assert np.all(np.diff(out[r, keep][order]) >= 0)


def test_revolve_is_a_utilisation_model_with_a_log_line_offset():
    p = Params()
    assert p.limit.revolve_model == "utilisation"
    assert limit._line_offset("revolve", p) == 1.0 and limit._treat_sign("revolve", p) == -1
    assert limit._line_offset("spend", p) == 0.0 and limit._treat_sign("spend", p) == 1
    assert limit._treat_sign("default", p) == 1
    p.limit.revolve_model = "balance"
    assert limit._line_offset("revolve", p) == 0.0 and limit._treat_sign("revolve", p) == 1


def _synthetic_frames(n: int, slope: float, seed: int = 0) -> TaskData:
    """Bookings with a risk feature; half are a randomised test cell over the grid, half get a line that
    falls with risk (a confounded legacy rule). P(default) = expit(-3 + risk + slope * log(line / 10k))."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    grid = np.array([2_000, 5_000, 10_000, 20_000, 30_000, 50_000], dtype=np.float64)
    test = rng.random(n) < 0.5
    legacy_idx = np.clip(np.round(2.5 - 1.5 * risk), 0, 5).astype(int)
    line = np.where(test, grid[rng.integers(0, 6, n)], grid[legacy_idx])
    y = rng.random(n) < expit(-3.0 + risk + slope * np.log(line / 10_000))
    df = pd.DataFrame(
        {
            "risk": risk,
            "treat_log_line": np.log(line),
            "label": y.astype(np.float64),
            "cell": np.where(test, "test", "grid"),
            "decision_type": "initial",
            "line_before_fen": pd.array([None] * n, dtype="Int64"),
            "line_after_fen": (line * 100).astype(np.int64),
            "snapshot_date": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 240, n), unit="D"),
        }
    )
    half = n // 2
    frames = {"train": df.iloc[:half].reset_index(drop=True), "valid": df.iloc[half:].reset_index(drop=True)}
    return TaskData(frames=frames, features=["risk", "treat_log_line"], label="label")


def _flat_booster(data: TaskData) -> xgb.Booster:
    """A default model that has learnt risk but (like shallow, regularised trees) not the line effect."""
    tr = data.frames["train"]
    dm = xgb.DMatrix(tr[["risk"]].assign(treat_log_line=0.0), label=tr["label"], feature_names=data.features)
    return xgb.train({"objective": "binary:logistic", "max_depth": 2, "verbosity": 0}, dm, 60)


@pytest.mark.parametrize("slope", [0.0, 0.6])
def test_pd_line_slope_recovers_the_randomised_effect(slope):
    data = _synthetic_frames(40_000, slope)
    booster = _flat_booster(data)
    est, se, n_rows = limit.pd_line_slope(booster, data)
    assert n_rows == int((pd.concat(data.frames.values())["cell"] == "test").sum())
    assert 0 < se < 0.1
    assert abs(est - slope) < 3 * se + 0.02


def test_pd_line_slope_needs_enough_test_cell_rows():
    data = _synthetic_frames(60, 0.5)
    for f in data.frames.values():
        f["cell"] = "grid"
    est, _, n_rows = limit.pd_line_slope(_flat_booster(_synthetic_frames(2_000, 0.5)), data)
    assert n_rows == 0 and np.isnan(est)


def test_recalibration_matches_the_latest_months_default_rate():
    data = _synthetic_frames(20_000, 0.0, seed=3)
    booster = _flat_booster(data)
    valid = data.frames["valid"]
    month = pd.to_datetime(valid["snapshot_date"]).dt.to_period("M")
    recent = month > month.max() - 3
    # a shock: the latest valid months default twice as often as the model expects
    rng = np.random.default_rng(4)
    base = limit._margin(booster, valid, data.features, 0.0)
    valid.loc[recent, "label"] = (rng.random(int(recent.sum())) < expit(base[recent] + np.log(2.0))).astype(
        float
    )
    shift = limit.recalibration_shift(booster, data, 0.0, 3)
    assert shift > 0.4
    m = limit._margin(booster, valid[recent].reset_index(drop=True), data.features, 0.0)
    assert expit(m + shift).mean() == pytest.approx(valid.loc[recent, "label"].mean(), rel=1e-6)
    assert limit.recalibration_shift(booster, data, 0.0, 0) == 0.0
