"""Realism anchors and oracle calibration on the ci world (bands from public anchors, see docs/world.md)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cardlab.config import FeaturesParams, SimulateParams
from cardlab.features.io import load_tables, read_calendar
from cardlab.features.snapshots import churn_snapshots
from cardlab.modeling import metrics as M
from cardlab.world import oracle, schemas
from cardlab.world.behaviour import CLOSE_SHARE, LAPSED_ACTIVE, LAPSED_CLOSE_HAZARD
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
    # the book (docs/world.md "Economics and delinquency"): ci has ~4k open cards, so a few charge-offs move these
    "net_charge_off_rate_normal": 0.01,
    "net_charge_off_shock_ratio": 0.2,
    "return_on_receivables_normal": 0.01,
    "return_on_receivables_shock_drop": 0.004,
    "delinquent_30p_balance_share": 0.008,
    "delinquent_60p_over_30p_balance": 0.08,
    "delinquency_funnel_1_29_over_30_59": 0.0,
    "delinquency_funnel_30_59_over_60_89": 0.0,
    "roll_current_to_1_29": 0.005,
    "cure_rate_1_29": 0.05,
    "roll_rate_30_59_to_60_89": 0.08,
    "roll_rate_60_89_to_90p": 0.08,
    "invitations_last_over_first_year": 0.1,
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
    + [
        "singles_day_nov_over_oct",
        "order_amount_log_skew",
        "utilisation_zero_share",
        "silent_accounts_18m",
        "new_users_per_month_min",
    ],
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
    lab = booked_labels(world, date(2023, 1, 1), SimulateParams().size.months)
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


def _decision_month(col: str) -> pl.Expr:
    """0-based world month of a date column (the ci world starts in January 2023)."""
    return (pl.col(col).dt.year() - 2023) * 12 + pl.col(col).dt.month() - 1


def test_limit_replay_reproduces_the_factual_default_of_the_chosen_line(world):
    """default_12m of the chosen option is the factual outcome (common random numbers): 90+ DPD on a
    statement within the 12 months after the decision month, wherever the factual path held that line for
    the onset window (no later line change) and no retention offer changed the churn hazard."""
    params = SimulateParams()
    assert params.start_month == date(2023, 1, 1)
    M_ = params.size.months
    lp = (
        pl.read_parquet(str(world / "oracle/limit_potential/*.parquet"))
        .filter("chosen", pl.col("default_12m").is_not_null())
        .with_columns(_decision_month("decision_date").alias("m"))
        .filter(pl.col("m") + 12 <= M_ - 1)
    )
    st = pl.read_parquet(str(world / "raw/statements/*.parquet")).with_columns(
        _decision_month("statement_month").alias("t")
    )
    bad = (
        lp.select("customer_id", "decision_date", "m")
        .join(st.select("customer_id", "t", "dpd"), on="customer_id")
        .filter((pl.col("t") > pl.col("m")) & (pl.col("t") <= pl.col("m") + 12))
        .group_by("customer_id", "decision_date")
        .agg((pl.col("dpd") >= 90).any().alias("factual"))
    )
    lc = pl.read_parquet(str(world / "raw/limit_changes/*.parquet")).with_columns(
        _decision_month("review_date").alias("t")
    )
    moved = (
        lp.select("customer_id", "decision_date", "m")
        .join(lc.filter(pl.col("new_limit") != pl.col("old_limit")), on="customer_id")
        .filter((pl.col("t") > pl.col("m")) & (pl.col("t") < pl.col("m") + 9))
        .select("customer_id", "decision_date")
    )
    offers = pl.read_parquet(str(world / "raw/retention_offers/*.parquet")).filter("treated")
    offered = offers.select("customer_id").unique()
    j = (
        lp.join(bad, on=["customer_id", "decision_date"], how="left")
        .with_columns(pl.col("factual").fill_null(False))
        .join(moved, on=["customer_id", "decision_date"], how="anti")
        .join(offered, on="customer_id", how="anti")
    )
    assert len(j) > 500 and j["factual"].sum() > 30
    differ = j.filter(pl.col("default_12m") != pl.col("factual"))
    assert differ.is_empty(), differ.head()


def test_limit_replay_never_turns_a_default_into_a_cure_at_a_higher_line(world):
    """With the same uniforms, a higher line raises every month's default hazard and leaves the churn path
    alone, so the realised onset comes no later: default_12m is non-decreasing in the option line."""
    lp = pl.read_parquet(str(world / "oracle/limit_potential/*.parquet")).filter(
        pl.col("default_12m").is_not_null()
    )
    steps = lp.sort("customer_id", "decision_date", "option_line").with_columns(
        pl.col("default_12m").cast(pl.Int8).diff().over("customer_id", "decision_date", "kind").alias("step")
    )
    assert (steps["step"].drop_nulls() >= 0).all()
    # and the lines do matter: some decision defaults at its highest option only
    assert (steps["step"] == 1).sum() > 0


def test_limit_potential_revolving_balance_is_calibrated_on_the_realised_one(world):
    """exp_avg_revolving of the chosen line is the expectation of the balance the card then carries: the
    revolving balance max(opening - payments, 0) of each of the 12 statements after a review, counted while
    the account is current (0 in arrears, after closure, while silent or not yet activated). By decile of the
    oracle's value, the realised mean tracks it. A review's expectation starts from the account's state at
    the review: the oracle used to start every account active, and a silent revolver's expected balance came
    out at several times what it carried (realised / oracle 0.70 in the lowest deciles on dev)."""
    M_ = SimulateParams().size.months
    lp = (
        pl.read_parquet(str(world / "oracle/limit_potential/*.parquet"))
        .filter("chosen", pl.col("kind") == "review")
        .with_columns(_decision_month("decision_date").alias("m"))
        .filter(pl.col("m") + 12 <= M_ - 1)
    )
    st = pl.read_parquet(str(world / "raw/statements/*.parquet")).select(
        "customer_id",
        _decision_month("statement_month").alias("t"),
        pl.when(pl.col("dpd") == 0)
        .then((pl.col("opening_balance") - pl.col("payments")).clip(lower_bound=0))
        .otherwise(0)
        .alias("rev"),
    )
    real = (
        lp.select("customer_id", "decision_date", "m")
        .join(st, on="customer_id")
        .filter((pl.col("t") > pl.col("m")) & (pl.col("t") <= pl.col("m") + 12))
        .group_by("customer_id", "decision_date")
        .agg((pl.col("rev").sum() / 12).alias("real"))
    )
    j = lp.join(real, on=["customer_id", "decision_date"], how="left").with_columns(
        pl.col("real").fill_null(0)
    )
    revolving = j.filter(pl.col("exp_avg_revolving") > 0)
    assert len(revolving) > 1000
    bins = (
        revolving.with_columns(
            (pl.col("exp_avg_revolving").rank("ordinal") * 5 // (pl.len() + 1)).alias("bin")
        )
        .group_by("bin")
        .agg(pl.col("exp_avg_revolving").mean().alias("oracle"), pl.col("real").mean(), pl.len())
        .with_columns((pl.col("real") / pl.col("oracle")).alias("ratio"))
    )
    assert bins["ratio"].is_between(0.9, 1.1).all(), bins
    # the oracle's zeros (transactors, silent, distressed, never activated) carry next to nothing
    zero = j.filter(pl.col("exp_avg_revolving") == 0)
    assert zero["real"].mean() < 0.02 * revolving["real"].mean()


# ---------------------------------------------------------------------------------------------------------
# churn oracle: p_label_3m = P(churn label | account state)
# ---------------------------------------------------------------------------------------------------------
SHOCK_MULT = 3.0  # shocked hazard / normal hazard in the Monte Carlo cases (capped at 0.9)


def _brute_force_label(h, q, p_active, can_txn, state, n, rng, z0=0, p_in=0.0, p_out=0.2):
    """Monte Carlo of the simulator's monthly rules (card.py) for one account, with the income-shock chain
    (start ``z0``, entry ``p_in``, exit ``p_out``; a shocked month's hazard is min(SHOCK_MULT * h, 0.9)):
    returns (label, excluded)."""
    st = np.full(n, state)  # 0 active, 1 silent, 2 distressed, 3 closed
    z = np.full(n, bool(z0))
    txn = np.zeros(n, bool)
    closed_gap = np.zeros(n, bool)
    closed_win = np.zeros(n, bool)
    for j in range(len(h)):
        u_z = rng.random(n)
        z = np.where(z, u_z >= p_out, u_z < p_in)
        healthy = st <= 1
        onset = healthy & (rng.random(n) < np.where(z, min(SHOCK_MULT * h[j], 0.9), h[j]))
        u = rng.random(n)
        event = healthy & ~onset & (st == 0) & (u < q[j])
        close = event & (u < q[j] * CLOSE_SHARE)
        st[event & ~close] = 1
        close |= healthy & ~onset & (st == 1) & ~event & (rng.random(n) < LAPSED_CLOSE_HAZARD)
        p_txn = np.where(st == 1, LAPSED_ACTIVE, p_active) * can_txn[j]
        spends = (healthy & ~onset & ~close & (rng.random(n) < p_txn)) | onset  # onset month: the drawdown
        if j == 0:
            closed_gap |= close
        else:
            closed_win |= close
            txn |= spends & (st <= 2)
        st[onset] = 2
        st[close] = 3
    return closed_win | ~txn, closed_gap


def _chain(z0: int, p_in: float, p_out: float, T: int) -> oracle.ShockChain:
    return oracle.ShockChain(np.array([z0]), np.full((1, T), p_in), p_out)


def _two_state(h: np.ndarray) -> np.ndarray:
    """(T,) normal hazards -> (1, T, 2) normal / shocked hazards of the Monte Carlo cases."""
    return np.stack([h, np.minimum(SHOCK_MULT * h, 0.9)], axis=-1)[None]


CASES = [
    (oracle.ACTIVE, [0.01, 0.01, 0.02, 0.02], [0.05, 0.05, 0.05, 0.05], 0.7, [1, 1, 1, 1], (0, 0.0)),
    (oracle.ACTIVE, [0.1, 0.05, 0.2, 0.1], [0.3, 0.1, 0.2, 0.4], 0.3, [1, 1, 1, 1], (0, 0.0)),
    (
        oracle.ACTIVE,
        [0.05, 0.1, 0.1, 0.1],
        [0.2, 0.2, 0.2, 0.2],
        0.8,
        [0, 0, 1, 1],
        (0, 0.0),
    ),  # activates late
    (
        oracle.ACTIVE,
        [0.08, 0.08, 0.08, 0.08],
        [0.1, 0.1, 0.1, 0.1],
        0.9,
        [0, 0, 0, 0],
        (0, 0.0),
    ),  # never activated
    (oracle.SILENT, [0.05, 0.15, 0.05, 0.1], [0.9, 0.9, 0.9, 0.9], 0.9, [1, 1, 1, 1], (0, 0.0)),
    (oracle.DISTRESSED, [0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], 0.5, [1, 1, 1, 1], (0, 0.0)),
    (oracle.ACTIVE, [0.05, 0.05, 0.1, 0.1], [0.1, 0.2, 0.1, 0.2], 0.6, [1, 1, 1, 1], (1, 0.1)),  # shocked now
    (
        oracle.SILENT,
        [0.04, 0.08, 0.05, 0.1],
        [0.3, 0.3, 0.3, 0.3],
        0.6,
        [1, 1, 1, 1],
        (0, 0.3),
    ),  # shocks come
]


@pytest.mark.parametrize(("state", "h", "q", "p_active", "can_txn", "shock"), CASES)
def test_churn_label_recursion_matches_monte_carlo(state, h, q, p_active, can_txn, shock):
    n = 200_000
    z0, p_in = shock
    h, q, can_txn = np.array(h), np.array(q), np.array(can_txn, bool)
    label, excluded = _brute_force_label(
        h, q, p_active, can_txn, state, n, np.random.default_rng(11), z0, p_in, 0.2
    )
    p, p_excl = oracle.churn_label_prob(
        _two_state(h),
        q[None],
        _chain(z0, p_in, 0.2, len(h)),
        np.array([p_active]),
        can_txn[None],
        np.array([state]),
        gap=1,
    )
    kept = ~excluded
    mc = label[kept].mean()
    se = np.sqrt(max(p[0] * (1 - p[0]), 1e-12) / kept.sum())
    assert abs(mc - p[0]) < 4 * se + 1e-12, (mc, p[0], se)
    se_x = np.sqrt(max(p_excl[0] * (1 - p_excl[0]), 1e-12) / n)
    assert abs(excluded.mean() - p_excl[0]) < 4 * se_x + 1e-12
    if state == oracle.DISTRESSED:
        assert p[0] == 1.0 and p_excl[0] == 0.0


@pytest.mark.parametrize(("state", "h", "q", "p_active", "can_txn", "shock"), CASES[:5] + CASES[6:])
def test_pd_recursion_with_income_shocks_matches_monte_carlo(state, h, q, p_active, can_txn, shock):
    """oracle.pd_onset (distress onset before a voluntary closure, over the shock chain) against a Monte Carlo
    of the same monthly rules."""
    n, rng = 400_000, np.random.default_rng(5)
    z0, p_in = shock
    h, q = np.array(h), np.array(q)
    st, z, onset = np.full(n, state), np.full(n, bool(z0)), np.zeros(n, bool)
    for j in range(len(h)):
        u_z = rng.random(n)
        z = np.where(z, u_z >= 0.2, u_z < p_in)
        open_ = st <= 1
        now = open_ & (rng.random(n) < np.where(z, min(SHOCK_MULT * h[j], 0.9), h[j]))
        onset |= now
        u = rng.random(n)
        event = open_ & ~now & (st == 0) & (u < q[j])
        close = (event & (u < q[j] * CLOSE_SHARE)) | (
            open_ & ~now & (st == 1) & (rng.random(n) < LAPSED_CLOSE_HAZARD)
        )
        st[event & ~close] = 1
        st[now | close] = 3
    p = oracle.pd_onset(
        _two_state(h), q[None], np.array([state == oracle.ACTIVE]), _chain(z0, p_in, 0.2, len(h))
    )
    se = np.sqrt(p[0] * (1 - p[0]) / n)
    assert abs(onset.mean() - p[0]) < 4 * se, (onset.mean(), p[0], se)


@pytest.fixture(scope="module")
def churn_labelled(world) -> pl.DataFrame:
    """Churn snapshots with their realised labels (the features' own label code on the raw tables), joined to
    the oracle row written at the end of the month before the snapshot."""
    tables = load_tables(world / "raw")
    cal = read_calendar(world / "raw", tables)
    lab = churn_snapshots(
        tables["cards"], tables["statements"], tables["retention_offers"], cal, FeaturesParams()
    ).collect()
    ct = pl.read_parquet(str(world / "oracle/churn_true/*.parquet"))
    schemas.raw_schema("churn_true").validate(ct)
    ct = ct.with_columns(pl.col("month").dt.offset_by("1mo").alias("snapshot_date"))
    return lab.join(ct.drop("customer_id"), on=["card_id", "snapshot_date"], how="left")


def _cluster_se(y: np.ndarray, p: np.ndarray, cluster: np.ndarray) -> float:
    """s.e. of mean(y - p), robust to the correlation of a card's overlapping label windows."""
    _, inv = np.unique(cluster, return_inverse=True)
    return float(np.sqrt((np.bincount(inv, weights=y - p) ** 2).sum()) / len(y))


def test_churn_oracle_covers_every_labelled_snapshot(churn_labelled):
    lab = churn_labelled.filter(pl.col("label").is_not_null())
    # every snapshot with a label is an open card at the end of the previous month, with a probability
    assert lab["state"].null_count() == 0
    assert lab["p_label_3m"].null_count() == 0
    # distressed accounts never transact again: label 1 with certainty
    dis = lab.filter(pl.col("state") == "distressed")
    assert len(dis) > 0 and (dis["p_label_3m"] == 1.0).all() and (dis["label"] == 1).all()
    # p_churn_3m (event probability) exactly on active accounts
    assert (lab["p_churn_3m"].is_not_null() == (lab["state"] == "active")).all()


def test_churn_oracle_is_calibrated_and_beats_the_event_probability(churn_labelled):
    d = churn_labelled.filter(pl.col("label").is_not_null())
    y, p, card = d["label"].to_numpy().astype(float), d["p_label_3m"].to_numpy(), d["card_id"].to_numpy()
    assert abs(y.mean() - p.mean()) < 3 * _cluster_se(y, p, card), (y.mean(), p.mean())
    dec = np.minimum((np.argsort(np.argsort(p, kind="stable")) * 10) // len(p), 9)
    for k in range(10):
        b = dec == k
        se = _cluster_se(y[b], p[b], card[b])
        assert abs(y[b].mean() - p[b].mean()) < 4 * se + 0.005, (k, y[b].mean(), p[b].mean(), se)
    # the label probability ranks the label better than the churn-event probability, on the event's rows
    a = d.filter(pl.col("state") == "active")
    ya = a["label"].to_numpy().astype(int)
    assert M.auc(ya, a["p_label_3m"].to_numpy()) >= M.auc(ya, a["p_churn_3m"].to_numpy())
    assert M.auc(y.astype(int), p) > 0.85
