"""Recompute every task's headline metrics from ``experiments/<task>/predictions.parquet`` and ``data/oracle``
with independent code (sklearn, scipy, plain numpy) and compare with ``metrics.json``; check that each bar of
``metrics.json["bars"]`` quotes its metric and that its verdict follows from its bounds.

Nothing here calls cardlab's metric code: a bug in it (a wrong row filter, a swapped column, an off-by-one in a
top-k) shows up as a mismatch."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy.stats import ks_2samp
from sklearn.metrics import brier_score_loss, roc_auc_score

pytestmark = pytest.mark.slow
TOL = 2e-6  # metrics.json rounds to 6 decimals


def _metrics(root: Path, task: str) -> dict:
    return json.loads((root / "experiments" / task / "metrics.json").read_text())


def _preds(root: Path, task: str) -> pd.DataFrame:
    return pl.read_parquet(root / "experiments" / task / "predictions.parquet").to_pandas()


def _oracle(root: Path, table: str) -> pd.DataFrame:
    return pl.read_parquet(root / "data" / "oracle" / table).to_pandas()


def _top_rate_lift(y: np.ndarray, score: np.ndarray, share: float) -> float:
    k = math.ceil(share * len(y))
    top = pd.Series(score).sort_values(ascending=False, kind="stable").index[:k]
    return float(y[top].mean() / y.mean())


def _true_qini_capture(tau: np.ndarray, score: np.ndarray) -> float:
    """Area between the true cumulative-effect curve of ``score``'s ranking and random targeting, over the
    same area for the ranking by tau itself (per point of the curve)."""

    def area(order_by: np.ndarray) -> float:
        order = pd.Series(order_by).sort_values(ascending=False, kind="stable").index.to_numpy()
        gain = np.concatenate([[0.0], np.cumsum(tau[order])])
        return float(np.mean(gain - np.linspace(0.0, gain[-1], len(gain))))

    return area(score) / area(tau)


def _bars_agree(m: dict) -> None:
    for b in m["bars"]:
        lo, hi, thr = b["lower"], b["upper"], b["threshold"]
        want = (
            "met"
            if lo is not None and lo >= thr
            else "not met"
            if hi is not None and hi < thr
            else "inconclusive"
        )
        if b["value"] is None:
            want = "inconclusive"
        assert b["verdict"] == want, b
        if b["name"] in m and isinstance(m[b["name"]], int | float) and not isinstance(m[b["name"]], bool):
            assert b["value"] == pytest.approx(m[b["name"]], abs=TOL), b
        if b["value"] is not None and lo is not None and hi is not None and lo != hi:
            assert lo <= b["value"] <= hi or b["name"].endswith("spearman"), b


def test_credit_headline_recomputed(pipeline_root: Path):
    m, p = _metrics(pipeline_root, "credit"), _preds(pipeline_root, "credit")
    oot = p[(p["split"] == "oot") & p["approved"].astype(bool) & p["label"].notna()].reset_index(drop=True)
    y = oot["label"].to_numpy(int)
    pdt = _oracle(pipeline_root, "pd_true")
    pdt = pdt[pdt["kind"] == "application"][["customer_id", "snapshot_date", "pd_12m"]]
    o = oot.merge(pdt, on=["customer_id", "snapshot_date"], how="left", validate="one_to_one")
    assert o["pd_12m"].notna().all()
    assert m["oot_n"] == len(oot)
    assert m["oot_auc"] == pytest.approx(roc_auc_score(y, oot["pd"]), abs=TOL)
    assert m["oot_oracle_auc"] == pytest.approx(roc_auc_score(y, o["pd_12m"]), abs=TOL)
    assert m["scorecard_oot_auc"] == pytest.approx(roc_auc_score(y, oot["pd_scorecard"]), abs=TOL)
    assert m["legacy_oot_auc"] == pytest.approx(roc_auc_score(y, oot["pd_legacy"]), abs=TOL)
    assert m["oot_brier"] == pytest.approx(brier_score_loss(y, oot["pd"]), abs=TOL)
    ks = ks_2samp(oot["pd"][y == 1], oot["pd"][y == 0]).statistic
    assert m["oot_ks"] == pytest.approx(ks, abs=TOL)
    assert m["oot_lift_at_10pct"] == pytest.approx(_top_rate_lift(y, oot["pd"].to_numpy(), 0.1), abs=TOL)
    ceiling = roc_auc_score(y, oot["pd_ceiling"])
    assert m["oot_auc_ceiling"] == pytest.approx(ceiling, abs=TOL)
    assert m["oot_auc_ceiling_ratio"] == pytest.approx(roc_auc_score(y, oot["pd"]) / ceiling, abs=1e-5)
    assert m["oot_auc_learning_loss"] == pytest.approx(ceiling - roc_auc_score(y, oot["pd"]), abs=1e-5)
    assert m["oot_auc_information_loss"] == pytest.approx(roc_auc_score(y, o["pd_12m"]) - ceiling, abs=1e-5)
    # the ceiling predicts exactly the graded rows, out of fold
    assert p["pd_ceiling"].notna().sum() == len(oot)
    declined = p[~p["approved"].astype(bool)]
    assert m["declined_n"] == len(declined)
    assert m["declined_mean_pd_pred"] == pytest.approx(declined["pd"].mean(), abs=TOL)
    _bars_agree(m)


def test_limit_headline_recomputed(pipeline_root: Path):
    m, p = _metrics(pipeline_root, "limit"), _preds(pipeline_root, "limit")
    pot = _oracle(pipeline_root, "limit_potential")
    pot = pot.rename(columns={"decision_date": "snapshot_date"})[
        ["customer_id", "snapshot_date", "kind", "option_line", "exp_profit", "exp_loss", "pd_12m"]
    ].drop_duplicates(["customer_id", "snapshot_date", "kind", "option_line"])  # capped review multiples
    pot["snapshot_date"] = pd.to_datetime(pot["snapshot_date"])
    p = p.assign(
        kind=np.where(p["decision_type"] == "review", "review", "booking"),
        snapshot_date=pd.to_datetime(p["snapshot_date"]),
    )
    profit = {}
    for policy, col in (
        ("policy", "chosen_line"),
        ("legacy", "legacy_line"),
        ("oracle", "oracle_line"),
        ("ceiling", "ceiling_line"),
    ):
        j = p.assign(option_line=np.round(p[col] * 100).astype("int64")).merge(
            pot,
            on=["customer_id", "snapshot_date", "kind", "option_line"],
            how="left",
            validate="many_to_one",
        )
        assert j["exp_profit"].notna().all(), policy
        profit[policy] = j["exp_profit"].to_numpy() / 100.0
        if policy == "policy":
            assert m["expected_loss"] == pytest.approx(j["exp_loss"].mean() / 100.0, abs=TOL)
        if policy == "legacy":
            pd_true_logged = j["pd_12m"].to_numpy()
    assert m["n_decisions"] == len(p)
    for policy in ("policy", "legacy", "oracle"):
        assert m[f"{policy}_profit"] == pytest.approx(profit[policy].mean(), abs=TOL), policy
    gain = profit["oracle"].mean() - profit["legacy"].mean()
    assert m["profit_capture"] == pytest.approx(
        (profit["policy"].mean() - profit["legacy"].mean()) / gain, abs=TOL
    )
    assert m["profit_capture_ceiling"] == pytest.approx(
        (profit["ceiling"].mean() - profit["legacy"].mean()) / gain, abs=TOL
    )
    assert m["exposure_used"] == pytest.approx(p["chosen_line"].mean(), abs=TOL)
    assert (p.loc[p["in_arrears"], "chosen_line"] <= p.loc[p["in_arrears"], "legacy_line"] + 1e-9).all()
    lab = p["label"].notna().to_numpy()
    y = p.loc[lab, "label"].to_numpy(int)
    assert m["oot_auc"] == pytest.approx(roc_auc_score(y, p.loc[lab, "pd_logged"]), abs=TOL)
    assert m["oot_oracle_auc"] == pytest.approx(roc_auc_score(y, pd_true_logged[lab]), abs=TOL)
    assert m["oot_auc_ceiling"] == pytest.approx(roc_auc_score(y, p.loc[lab, "pd_ceiling"]), abs=TOL)
    _bars_agree(m)


def test_churn_headline_recomputed(pipeline_root: Path):
    m, p = _metrics(pipeline_root, "churn"), _preds(pipeline_root, "churn")
    p["snapshot_date"] = pd.to_datetime(p["snapshot_date"])
    oot = p[(p["split"] == "oot") & p["label"].notna()].reset_index(drop=True)
    y = oot["label"].to_numpy(int)
    assert m["oot_n"] == len(oot)
    assert m["oot_auc"] == pytest.approx(roc_auc_score(y, oot["churn_p"]), abs=TOL)
    ct = _oracle(pipeline_root, "churn_true")
    ct = ct[ct["p_label_3m"].notna()].assign(
        snapshot_date=lambda d: pd.to_datetime(d["month"]) + pd.DateOffset(months=1)
    )
    o = oot.merge(
        ct[["card_id", "snapshot_date", "p_label_3m"]], on=["card_id", "snapshot_date"], how="inner"
    )
    assert len(o) == len(oot)
    assert m["oot_oracle_auc"] == pytest.approx(
        roc_auc_score(o["label"].astype(int), o["p_label_3m"]), abs=TOL
    )
    assert m["lift_at_capacity"] == pytest.approx(_top_rate_lift(y, oot["churn_p"].to_numpy(), 0.1), abs=TOL)
    ceiling = roc_auc_score(y, oot["churn_p_ceiling"])
    assert m["oot_auc_ceiling"] == pytest.approx(ceiling, abs=TOL)
    assert m["oot_auc_ceiling_ratio"] == pytest.approx(roc_auc_score(y, oot["churn_p"]) / ceiling, abs=1e-5)
    rt = _oracle(pipeline_root, "retention_truth")
    rt = rt.assign(snapshot_date=pd.to_datetime(rt["campaign_month"]))[
        ["card_id", "snapshot_date", "tau_label"]
    ]
    camp = oot.merge(rt, on=["card_id", "snapshot_date"], how="inner").reset_index(drop=True)
    assert m["uplift_n_oot"] == len(camp)
    tau = camp["tau_label"].to_numpy()
    assert m["ate_true"] == pytest.approx(tau.mean(), abs=TOL)
    assert m["qini_capture"] == pytest.approx(_true_qini_capture(tau, camp["uplift"].to_numpy()), abs=1e-5)
    assert m["qini_capture_ceiling"] == pytest.approx(
        _true_qini_capture(tau, camp["uplift_ceiling"].to_numpy()), abs=1e-5
    )
    _bars_agree(m)
