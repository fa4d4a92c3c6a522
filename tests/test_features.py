"""Features stage: contract columns and splits, point-in-time correctness (cut-off, future poisoning),
the leak canary, the sealed ground truth, clear errors, atomic output, and the pandas peer."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import cardlab.features
from cardlab.artifacts import dir_digest
from cardlab.config import FeaturesParams, PresetSize, SimulateParams
from cardlab.features import windows
from cardlab.features.build import build_features, compute_task_frames
from cardlab.features.guards import leak_canary
from cardlab.features.io import RawDataError, load_tables, read_calendar
from cardlab.features.windows import LeakageError, assert_cutoff
from cardlab.taskspec import FRAMES
from cardlab.world.simulate import simulate

REPO = Path(__file__).resolve().parents[1]
SPLITS = {"train", "valid", "oot"}


def small_world_params() -> SimulateParams:
    """One shard of 3,000 customers over the full 48 months (the default splits need them)."""
    presets = {
        "ci": PresetSize(n_customers=3_000, months=48, shard_size=3_000),
        "dev": PresetSize(n_customers=1_000),
        "bench": PresetSize(n_customers=1_000),
    }
    return SimulateParams(preset="ci", presets=presets)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("feat") / "world"
    simulate(small_world_params(), out, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def built(world: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("feat_out") / "features"
    summary = build_features(FeaturesParams(), world / "raw", out, progress=False)
    return out, summary


@pytest.fixture(scope="module")
def frames(built) -> dict[str, pl.DataFrame]:
    out, _ = built
    return {t: pl.read_parquet(out / t) for t in FRAMES}


@pytest.fixture(scope="module")
def dictionary(built) -> dict:
    out, _ = built
    return json.loads((out / "feature_dictionary.json").read_text())


# ------------------------------------------------------------------------------------------------------------
# contract
# ------------------------------------------------------------------------------------------------------------
def test_contract_columns_splits_and_labels(built, frames):
    _, summary = built
    for task in FRAMES:
        f = frames[task]
        assert f.columns[:4] == ["customer_id", "snapshot_date", "split", "label"], task
        assert f.schema["snapshot_date"] == pl.Date
        assert set(f["split"].unique()) == SPLITS, f"{task}: every split must be non-empty"
        assert set(f["label"].drop_nulls().unique()) <= {0, 1}
        assert summary["rows"][task] == f.height > 0
        # oot rows are the latest
        by = f.group_by("split").agg(lo=pl.col("snapshot_date").min(), hi=pl.col("snapshot_date").max())
        lim = {r["split"]: (r["lo"], r["hi"]) for r in by.iter_rows(named=True)}
        assert lim["train"][1] < lim["valid"][0] and lim["valid"][1] < lim["oot"][0]
    # labelled rows in every split of every task; both classes in train
    for task in FRAMES:
        lab = frames[task].filter(pl.col("label").is_not_null())
        assert set(lab["split"].unique()) == SPLITS, task
        assert set(lab.filter(pl.col("split") == "train")["label"].unique()) == {0, 1}, task


def test_churn_oot_after_shock_and_credit_window_complete(frames):
    start = date(2023, 1, 1)
    months = 48
    shock_month = SimulateParams().shock_month  # the OOT windows start at or after the income shock
    shock = date(
        start.year + (start.month - 1 + shock_month) // 12, (start.month - 1 + shock_month) % 12 + 1, 1
    )
    assert frames["churn"].filter(pl.col("split") == "oot")["snapshot_date"].min() >= shock
    assert frames["limit"].filter(pl.col("split") == "oot")["snapshot_date"].min() >= shock
    # credit: a labelled row's 12 statements (months t+1 .. t+12 after booking month t) end inside the
    # 48-month world (last statement month 47 = 2026-12): t <= 35, i.e. booked before 2026-01
    last_booking = months - 1 - FeaturesParams().credit_horizon_months
    cutoff = date(start.year + (last_booking + 1) // 12, (last_booking + 1) % 12 + 1, 1)
    credit = frames["credit"]
    assert credit.filter(pl.col("label").is_not_null())["snapshot_date"].max() < cutoff
    # declined applications stay, with a null label
    declined = credit.filter(~pl.col("approved"))
    assert declined.height > 0 and declined["label"].null_count() == declined.height
    assert credit["snapshot_date"].min() >= start


def test_dictionary_covers_every_column(frames, dictionary):
    feats = {e["name"]: e for e in dictionary["features"]}
    nonf = {e["name"] for e in dictionary["non_features"]}
    required = {"name", "family", "window", "definition", "direction", "reason_zh", "reason_en", "tasks"}
    for e in dictionary["features"]:
        assert required <= set(e), e["name"]
        assert all(v in (-1, 0, 1) for v in e["direction"].values())
        assert e["reason_zh"] and e["reason_en"]
        # a reason a bank sends is Chinese throughout (features/texts.py names the world's values)
        assert not any("a" <= ch.lower() <= "z" for ch in e["reason_zh"]), (e["name"], e["reason_zh"])
    for task in FRAMES:
        f = frames[task]
        listed = dictionary["tasks"][task]["feature_columns"]
        assert listed, task
        for c in f.columns:
            assert c in feats or c in nonf, f"{task}: column {c} missing from the dictionary"
        for c in listed:
            assert c in f.columns and task in feats[c]["tasks"] and task in feats[c]["direction"]
            assert f.schema[c].is_numeric(), f"{task}: feature {c} is not numeric"
        assert not set(listed) & {"label", "approved", "treatment", "propensity", "initial_limit_fen"}
        assert not any(c.startswith("y_") for c in listed)
    # decoys and the proxy are there on purpose
    assert any(n.startswith("cust_decoy_") for n in feats) and "cust_device_price_band" in feats


def test_task_specific_columns(frames):
    lim = frames["limit"]
    assert set(lim["decision_type"].unique()) == {"initial", "review"}
    for c in (
        "line_before_fen",
        "line_after_fen",
        "line_increase_fen",
        "propensity",
        "cell",
        "y_spend_fen",
        "y_avg_revolving_fen",
        "y_interest_fees_fen",
        "y_dpd90",
    ):
        assert c in lim.columns
    churn = frames["churn"]
    camp = churn.filter(pl.col("in_campaign"))
    assert (
        camp.height > 0 and camp["treatment"].null_count() == 0 and camp["propensity"].is_between(0, 1).all()
    )
    assert (
        churn.filter(~pl.col("in_campaign"))["treatment"].null_count()
        == churn.filter(~pl.col("in_campaign")).height
    )


def test_deterministic_bytes(world, built, tmp_path):
    out, _ = built
    again = tmp_path / "again"
    build_features(FeaturesParams(), world / "raw", again, progress=False)
    assert dir_digest(again) == dir_digest(out)


# ------------------------------------------------------------------------------------------------------------
# leakage
# ------------------------------------------------------------------------------------------------------------
def test_cutoff_assertion_trips():
    frame = pl.DataFrame(
        {
            "customer_id": [1, 2],
            "snapshot_date": [date(2024, 3, 1), date(2024, 3, 1)],
            "ord__last_event_date": [date(2024, 2, 29), date(2024, 3, 1)],
        }
    )
    with pytest.raises(LeakageError, match="on/after the snapshot date"):
        assert_cutoff(frame, "credit")
    assert_cutoff(frame.head(1), "credit")


def test_leak_canary_trips_on_a_leaky_column(frames):
    f = frames["churn"].filter(pl.col("label").is_not_null())
    rng = np.random.default_rng(0)
    leaky = f.with_columns(
        leaky=pl.col("label").cast(pl.Float64) + pl.Series(rng.normal(0, 0.1, f.height)),
        noise=pl.Series(rng.normal(0, 1, f.height)),
    )
    assert leak_canary(leaky, "label", ["leaky", "noise", "acct_util_mean_3m"]) == ["leaky"]
    # the inverted leak is caught too (direction-free AUC)
    assert leak_canary(leaky.with_columns(-pl.col("leaky")), "label", ["leaky"]) == ["leaky"]


def test_builder_raises_on_leaky_feature(world, monkeypatch):
    """The canary runs inside the builder: sneak the label into a feature and the build must fail."""
    import cardlab.features.build as b

    real = b.leak_canary

    def spy(df, label, features):
        df = df.with_columns(pl.col("label").cast(pl.Float32).alias(features[0]))
        return real(df, label, features)

    monkeypatch.setattr(b, "leak_canary", spy)
    tables = load_tables(world / "raw")
    with pytest.raises(LeakageError, match="AUC > 0.95"):
        compute_task_frames(tables, read_calendar(world / "raw", tables), FeaturesParams())


@pytest.fixture(scope="module")
def base_tables(world):
    tables = {k: v.collect() for k, v in load_tables(world / "raw").items()}
    cal = read_calendar(world / "raw", {k: v.lazy() for k, v in tables.items()})
    frames = compute_task_frames(
        {k: v.lazy() for k, v in tables.items()}, cal, FeaturesParams(), canary=False
    )
    return tables, cal, frames


NATURAL_KEYS = {
    "credit": ["application_id"],
    "limit": ["card_id", "snapshot_date", "decision_type"],
    "churn": ["card_id", "snapshot_date"],
}


def _poison(tables: dict[str, pl.DataFrame], cutoff: date, end: date, seed: int, n: int, scale: float):
    """Append ``n`` arbitrary events per event table, all dated on/after ``cutoff``."""
    rng = np.random.default_rng(seed)
    days = max((end - cutoff).days, 1)
    custs = tables["customers"]["customer_id"].to_numpy()
    cards = tables["cards"].select("card_id", "customer_id")
    pick_c = rng.choice(custs, n)
    pick_k = cards.sample(n, with_replacement=True, seed=seed)
    when = [cutoff + timedelta(days=int(d)) for d in rng.integers(0, days, n)]  # may fall on the cut-off day
    later = [d + timedelta(days=1) for d in when]  # new decisions/applications: strictly after the cut-off
    first = [date(d.year, d.month, 1) for d in when]
    first = [f if f >= cutoff else date(f.year + (f.month == 12), f.month % 12 + 1, 1) for f in first]
    amt = (rng.random(n) * scale * 1e7).astype(np.int64) + 1
    out = dict(tables)

    def add(name: str, new: dict) -> None:
        base = tables[name]
        frame = pl.DataFrame(new).with_columns(
            [pl.col(c).cast(base.schema[c]) for c in new if c in base.schema]
        )
        fill = [pl.lit(None).cast(dt).alias(c) for c, dt in base.schema.items() if c not in new]
        out[name] = pl.concat([base, frame.with_columns(fill).select(base.columns)])

    add(
        "orders",
        {
            "order_id": np.arange(n) + 10**9,
            "customer_id": pick_c,
            "order_date": when,
            "category": rng.choice(tables["orders"]["category"].unique().to_list(), n),
            "amount_fen": amt,
            "discount_fen": amt // 3,
            "returned": rng.random(n) < 0.5,
            "paid_with": rng.choice(["bnpl", "card", "wallet"], n),
            "late_night": rng.random(n) < 0.5,
        },
    )
    add(
        "sessions_monthly",
        {
            "customer_id": pick_c,
            "month": first,
            "app_sessions": amt % 1000,
            "web_sessions": amt % 77,
            "mini_program_sessions": amt % 33,
            "clicks": amt % 5000,
        },
    )
    add(
        "bnpl_plans",
        {
            "plan_id": np.arange(n) + 10**9,
            "customer_id": pick_c,
            "order_id": np.arange(n),
            "start_date": when,
            "instalments": np.full(n, 12),
            "principal_fen": amt,
        },
    )
    add(
        "bnpl_monthly",
        {
            "customer_id": pick_c,
            "month": first,
            "due_fen": amt,
            "paid_fen": amt // 7,
            "overdue_days": np.full(n, 90),
        },
    )
    add(
        "statements",
        {
            "customer_id": pick_k["customer_id"],
            "card_id": pick_k["card_id"],
            "statement_month": first,
            "credit_limit": amt,
            "opening_balance": amt,
            "purchases": amt,
            "purchases_platform": amt,
            "purchases_online": np.zeros(n),
            "purchases_offline": np.zeros(n),
            "cash_advance": amt,
            "payments": np.zeros(n),
            "closing_balance": amt * 2,
            "dpd": np.full(n, 120),
            "min_due": amt,
            "payment_type": rng.choice(tables["statements"]["payment_type"].unique().to_list(), n),
        },
    )
    add(
        "limit_changes",
        {
            "customer_id": pick_k["customer_id"],
            "card_id": pick_k["card_id"],
            "review_date": later,
            "old_limit": amt,
            "new_limit": amt * 3,
            "cell": ["legacy"] * n,
            "propensity": np.full(n, 0.5),
        },
    )
    add(
        "applications",
        {
            "application_id": np.arange(n) + 10**9,
            "customer_id": pick_c,
            "application_date": later,
            "approved": np.zeros(n, dtype=bool),
            "legacy_score": np.full(n, 500),
            "limit_cell": ["grid"] * n,
            "partner_bank": ["bank_a"] * n,
        },
    )
    if "invitations" in tables:
        add(
            "invitations",
            {"customer_id": pick_c, "campaign_id": ["x"] * n, "invite_date": when, "channel": ["sms"] * n},
        )
    return out


@settings(
    max_examples=4,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cut=st.integers(min_value=3, max_value=33),
    seed=st.integers(0, 2**16),
    n=st.integers(1, 400),
    scale=st.floats(min_value=0.001, max_value=100.0),
)
def test_future_poisoning_leaves_features_unchanged(base_tables, cut, seed, n, scale):
    tables, cal, clean = base_tables
    cutoff = cal.month_start(cut) + timedelta(days=int(seed % 20))
    poisoned = _poison(tables, cutoff, cal.month_start(cal.months), seed, n, scale)
    dirty = compute_task_frames(
        {k: v.lazy() for k, v in poisoned.items()}, cal, FeaturesParams(), canary=False
    )
    for task in FRAMES:
        feats = clean.features[task]
        keys = NATURAL_KEYS[task]
        a = clean.frames[task].filter(pl.col("snapshot_date") <= cutoff).select(*keys, *feats)
        b = dirty.frames[task].filter(pl.col("snapshot_date") <= cutoff).select(*keys, *feats)
        assert a.height == b.height, f"{task}: snapshot rows up to the cut-off changed"
        joined = a.join(b, on=keys, how="inner", suffix="__p", nulls_equal=True)
        assert joined.height == a.height, f"{task}: snapshot rows up to the cut-off changed"
        for c in feats:
            x, y = joined[c], joined[f"{c}__p"]
            same = (x == y) | (x.is_null() & y.is_null()) | (x.is_nan() & y.is_nan()).fill_null(False)
            assert same.all(), f"{task}: feature {c} changed when events after {cutoff} were appended"


# ------------------------------------------------------------------------------------------------------------
# the sealed ground truth
# ------------------------------------------------------------------------------------------------------------
def test_features_code_never_touches_the_oracle(world, built, tmp_path):
    """A real check, not a grep: the features built from a copy of the raw tables with no oracle beside them,
    and again with a poisoned oracle folder beside them, are byte-identical to the pipeline's build."""
    import shutil

    out, _ = built
    copy = tmp_path / "w"
    shutil.copytree(world / "raw", copy / "raw")
    shutil.copy(world / "manifest.json", copy / "manifest.json")
    build_features(FeaturesParams(), copy / "raw", tmp_path / "f_none", progress=False)
    assert dir_digest(tmp_path / "f_none") == dir_digest(out)
    for table in ("traits", "pd_true", "churn_true", "true_drivers.json"):
        (copy / "oracle" / table).parent.mkdir(parents=True, exist_ok=True)
        (copy / "oracle" / table).write_bytes(b"not parquet")
    build_features(FeaturesParams(), copy / "raw", tmp_path / "f_poison", progress=False)
    assert dir_digest(tmp_path / "f_poison") == dir_digest(out)
    # and importing every features module loads nothing from the simulator (which writes the oracle)
    code = (
        "import sys, pkgutil, importlib, cardlab.features as f\n"
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(f.__path__, 'cardlab.features.')]\n"
        "bad = [m for m in sys.modules if m.startswith('cardlab.world')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert [m.name for m in pkgutil.walk_packages(cardlab.features.__path__, "cardlab.features.")]


def test_refuses_raw_inside_oracle_folder(world, tmp_path):
    sealed = tmp_path / "oracle" / "raw"
    sealed.mkdir(parents=True)
    with pytest.raises(RawDataError, match="oracle"):
        build_features(FeaturesParams(), sealed, tmp_path / "out", progress=False)
    with pytest.raises(RawDataError, match="oracle"):
        build_features(FeaturesParams(), world / "oracle", tmp_path / "out", progress=False)


# ------------------------------------------------------------------------------------------------------------
# clear errors, atomic output
# ------------------------------------------------------------------------------------------------------------
def test_clear_errors_for_missing_or_malformed_raw(world, tmp_path):
    with pytest.raises(RawDataError, match="does not exist"):
        build_features(FeaturesParams(), tmp_path / "nowhere", tmp_path / "out", progress=False)
    raw = tmp_path / "raw"
    raw.mkdir()
    with pytest.raises(RawDataError, match="raw table 'customers' is missing"):
        build_features(FeaturesParams(), raw, tmp_path / "out", progress=False)
    # a table without a required column: the message names table and column
    import shutil

    shutil.copytree(world / "raw", raw, dirs_exist_ok=True)
    st_files = sorted((raw / "statements").glob("*.parquet"))
    for f in st_files:
        pl.read_parquet(f).drop("dpd").write_parquet(f)
    with pytest.raises(RawDataError, match=r"'statements' lacks column\(s\) \['dpd'\]"):
        build_features(FeaturesParams(), raw, tmp_path / "out", progress=False)
    for f in st_files:
        pl.read_parquet(f).with_columns(dpd=pl.lit(0), statement_month=pl.lit("2024-01")).write_parquet(f)
    with pytest.raises(RawDataError, match="'statements': column 'statement_month' has dtype"):
        build_features(FeaturesParams(), raw, tmp_path / "out", progress=False)


def test_failure_leaves_previous_output_intact(world, built, tmp_path):
    out = tmp_path / "features"
    build_features(FeaturesParams(), world / "raw", out, progress=False)
    before = dir_digest(out)
    with pytest.raises(RawDataError):
        build_features(FeaturesParams(), tmp_path / "nowhere", out, progress=False)
    bad = tmp_path / "raw"
    import shutil

    shutil.copytree(world / "raw", bad)
    for f in (bad / "orders").glob("*.parquet"):
        f.write_bytes(b"not parquet")
    with pytest.raises(Exception):  # noqa: B017 - any failure while building
        build_features(FeaturesParams(), bad, out, progress=False)
    assert dir_digest(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".features.tmp")]


# ------------------------------------------------------------------------------------------------------------
# the pandas peer computes the same values
# ------------------------------------------------------------------------------------------------------------
def test_pandas_peer_gives_the_same_values(world, frames):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bench_features_pandas as peer
    finally:
        sys.path.pop(0)
    ref = pl.from_pandas(peer.build(world / "raw")).with_columns(pl.col("snapshot_date").cast(pl.Date))
    cols = [c for c in ref.columns if c not in ("card_id", "customer_id", "t", "snapshot_date")]
    assert len(cols) >= 40
    ours = frames["churn"].select("card_id", "snapshot_date", *cols)
    joined = ours.join(
        ref.select("card_id", "snapshot_date", *cols), on=["card_id", "snapshot_date"], suffix="__pd"
    )
    assert joined.height == ours.height > 0
    for c in cols:
        a = joined[c].cast(pl.Float64).fill_nan(None).to_numpy()
        b = joined[f"{c}__pd"].cast(pl.Float64).fill_nan(None).to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{c}: null pattern differs"
        m = ~np.isnan(a)
        np.testing.assert_allclose(a[m], b[m], rtol=1e-6, atol=1e-9, err_msg=c)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 12), st.floats(-1e6, 1e6, allow_nan=False)),
        min_size=0,
        max_size=40,
    ),
    snaps=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 14)), min_size=1, max_size=30),
    o=st.integers(0, 12),
)
def test_packed_as_of_lookup_matches_polars_join_asof(rows, snaps, o):
    """The binary-search as-of lookup in window_sums finds exactly the rows polars' join_asof finds."""
    cum = (
        pl.DataFrame(rows, schema={"k": pl.Int64, "m": pl.Int32, "v": pl.Float64}, orient="row")
        .unique(["k", "m"], keep="first")
        .sort("k", "m")
    )
    out = pl.DataFrame(snaps, schema={"k": pl.Int64, "t": pl.Int32}, orient="row").unique().sort("k", "t")
    got = out.with_columns(windows._as_of(cum, out, "k", o, {"v": "got"}))
    ref = out.with_columns((pl.col("t") - 1 - o).alias("_p")).join_asof(
        cum.rename({"m": "_m"}), left_on="_p", right_on="_m", by="k", strategy="backward"
    )
    assert got["got"].to_list() == ref["v"].to_list()


def test_limit_outcomes_count_the_revolving_balance_only_while_current():
    """y_avg_revolving_fen: the revolving balance max(opening - payments, 0) of each statement in the outcome
    window while the account is current (0 DPD), summed and divided by the window's observable months, so
    a month in arrears or after closure counts 0. A delinquent balance earns no interest the bank collects;
    the loss term prices it (docs/tasks/limit.md). Hand-computed on a two-card toy world."""
    from cardlab.features.io import WorldCalendar
    from cardlab.features.snapshots import limit_snapshots

    cal = WorldCalendar(start_month=date(2023, 1, 1), months=12)
    p = FeaturesParams(limit_outcome_months=4, limit_min_outcome_months=2)
    apps = pl.LazyFrame(
        {
            "application_id": [1, 2],
            "customer_id": [10, 20],
            "application_date": [date(2023, 1, 5), date(2023, 1, 6)],
            "approved": [True, True],
            "initial_limit": [1_000_000, 2_000_000],
        }
    )
    cards = pl.LazyFrame(
        {
            "card_id": [102, 202],
            "application_id": [1, 2],
            "customer_id": [10, 20],
            "open_date": [date(2023, 1, 10), date(2023, 1, 10)],
            "close_date": [None, date(2023, 3, 15)],
            "close_reason": [None, "voluntary"],
        }
    )
    changes = pl.LazyFrame(
        schema={
            "customer_id": pl.Int64,
            "card_id": pl.Int64,
            "review_date": pl.Date,
            "old_limit": pl.Int64,
            "new_limit": pl.Int64,
        }
    )
    # the first statement comes the month after opening (the booking decision's outcome window starts there,
    # as the oracle's): card 102: months 1..4 with revolving 100, 200 (in arrears: dpd 30), 300, 400; card 202
    # closes after two statements with revolving 500 and 600
    statements = pl.LazyFrame(
        {
            "card_id": [102, 102, 102, 102, 202, 202],
            "statement_month": [date(2023, m, 1) for m in (2, 3, 4, 5)]
            + [date(2023, 2, 1), date(2023, 3, 1)],
            "opening_balance": [150, 200, 300, 450, 500, 700],
            "payments": [50, 0, 0, 50, 0, 100],
            "purchases": [0] * 6,
            "interest": [0] * 6,
            "fees": [0] * 6,
            "dpd": [0, 30, 0, 0, 0, 0],
        }
    )
    out = limit_snapshots(apps, cards, changes, statements, cal, p).collect().sort("customer_id")
    assert out["y_months_observed"].to_list() == [4, 4]
    assert out["y_avg_revolving_fen"].to_list() == [(100 + 300 + 400) / 4, (500 + 600) / 4]
