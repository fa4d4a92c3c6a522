"""World simulator: determinism, accounting invariants, schemas, oracle sealing, failure safety."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cardlab.artifacts import OutputError
from cardlab.config import PresetSize, SimulateParams
from cardlab.world import schemas
from cardlab.world import simulate as sim_mod
from cardlab.world.simulate import simulate


def ci_world(tmp_path_factory) -> Path:
    """The default ci world, simulated once per test session and shared by the test_world* modules."""
    out = tmp_path_factory.getbasetemp() / "cardlab_ci_world"
    if not (out / "manifest.json").exists():
        simulate(SimulateParams(), out, workers=2, progress=False)
    return out


def small_params(seed: int = 7, **kw) -> SimulateParams:
    """Two shards of 1,500 customers, 24 months."""
    presets = {
        "ci": PresetSize(n_customers=3_000, months=24, shard_size=1_500),
        "dev": PresetSize(n_customers=1_000),
        "bench": PresetSize(n_customers=1_000),
    }
    return SimulateParams(preset="ci", seed=seed, presets=presets, shock_month=12, **kw)


@pytest.fixture(scope="module")
def small_worlds(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    m1 = simulate(small_params(), root / "w1", workers=1, progress=False)
    m2 = simulate(small_params(), root / "w2", workers=2, progress=False)
    return root, m1, m2


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return ci_world(tmp_path_factory)


def read(world: Path, table: str, kind: str = "raw") -> pl.DataFrame:
    return pl.read_parquet(str(world / kind / table / "*.parquet"))


# ---------------------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------------------
def test_workers_do_not_change_bytes(small_worlds):
    root, m1, m2 = small_worlds
    assert m1["tables"] == m2["tables"]
    assert (root / "w1" / "realism.json").read_bytes() == (root / "w2" / "realism.json").read_bytes()
    assert (root / "w1" / "oracle" / "true_drivers.json").read_bytes() == (
        root / "w2" / "oracle" / "true_drivers.json"
    ).read_bytes()


def test_seed_changes_world_and_manifest_is_complete(small_worlds, tmp_path):
    _, m1, _ = small_worlds
    m3 = simulate(small_params(seed=8), tmp_path / "w3", workers=1, progress=False)
    assert m3["tables"]["raw/statements"]["sha256"] != m1["tables"]["raw/statements"]["sha256"]
    assert m1["seed"] == 7 and m1["preset"] == "ci"
    assert set(m1["versions"]) == {"numpy", "pyarrow", "cardlab"}
    expected = {f"raw/{t}" for t in schemas.RAW} | {f"oracle/{t}" for t in schemas.ORACLE}
    assert set(m1["tables"]) == expected
    on_disk = json.loads((tmp_path / "w3" / "manifest.json").read_text())
    assert on_disk["tables"] == m3["tables"]


def test_customer_ids_are_global_and_deterministic(small_worlds):
    root, _, _ = small_worlds
    ids = read(root / "w1", "customers")["customer_id"].to_numpy()
    assert np.array_equal(np.sort(ids), np.arange(1, 3_001))


# ---------------------------------------------------------------------------------------------------------
# accounting invariants of statements
# ---------------------------------------------------------------------------------------------------------
def test_balance_recursion_and_channels(world):
    st = read(world, "statements")
    lhs = st["closing_balance"]
    rhs = (
        st["opening_balance"]
        + st["purchases"]
        + st["cash_advance"]
        + st["interest"]
        + st["fees"]
        - st["payments"]
    )
    assert (lhs == rhs).all()
    assert (
        st["purchases"] == st["purchases_platform"] + st["purchases_online"] + st["purchases_offline"]
    ).all()
    # payments never exceed what is owed (no overpayment in this world), minimum due never exceeds the balance
    assert (st["payments"] <= st["opening_balance"]).all()
    assert (st["min_due"] <= st["closing_balance"]).all()
    assert (st["credit_limit"] >= 0).all() and (st["closing_balance"] >= 0).all()
    assert st["statement_month"].dt.day().max() == 1


def test_balances_chain_and_dpd_state_machine(world):
    st = read(world, "statements").sort("card_id", "statement_month")
    prev = st.with_columns(
        pl.col("closing_balance").shift(1).over("card_id").alias("prev_close"),
        pl.col("dpd").shift(1).over("card_id").alias("prev_dpd"),
        pl.col("min_due").shift(1).over("card_id").alias("prev_due"),
        pl.col("statement_month").shift(1).over("card_id").alias("prev_month"),
    ).drop_nulls("prev_close")
    assert (prev["opening_balance"] == prev["prev_close"]).all()
    # consecutive months, no gaps
    gap = (
        prev["statement_month"].dt.year() * 12
        + prev["statement_month"].dt.month()
        - prev["prev_month"].dt.year() * 12
        - prev["prev_month"].dt.month()
    )
    assert (gap == 1).all()
    # DPD: +30 on a payment below the previous minimum due, else cured to 0
    missed = prev["payments"] < prev["prev_due"]
    assert (prev.filter(missed)["dpd"] == prev.filter(missed)["prev_dpd"] + 30).all()
    assert (prev.filter(~missed)["dpd"] == 0).all()
    # payment type agrees with the payment and the previous minimum due
    pt = prev["payment_type"]
    assert ((pt == "missed") == missed).all()
    assert (prev.filter(pt == "none_due")["prev_due"] == 0).all()


def test_lifecycle_dates(world):
    st = read(world, "statements")
    cards = read(world, "cards")
    apps = read(world, "applications")
    j = st.join(cards, on=["card_id", "customer_id"])
    assert (j["statement_month"] > j["open_date"]).all()
    closed = j.filter(pl.col("close_date").is_not_null())
    assert (closed["statement_month"] <= closed["close_date"]).all()
    # charge-offs reach 180 DPD, voluntary closures leave a zero balance
    last = st.sort("statement_month").group_by("card_id").last().join(cards, on="card_id")
    co = last.filter(pl.col("close_reason") == "charge_off")
    assert len(co) > 0 and (co["dpd"] >= 180).all()
    vol = last.filter(pl.col("close_reason") == "voluntary")
    assert len(vol) > 0 and (vol["closing_balance"] == 0).all()
    assert ((cards["close_date"].is_null()) == (cards["close_reason"].is_null())).all()
    # events after close: none
    for table, col in (("limit_changes", "review_date"), ("retention_offers", "campaign_month")):
        ev = read(world, table).join(cards.select("card_id", "close_date"), on="card_id")
        ev = ev.filter(pl.col("close_date").is_not_null())
        assert (ev[col] <= ev["close_date"]).all(), table
    orders = (
        read(world, "orders").filter(pl.col("paid_with") == "card").join(cards, on="customer_id", how="left")
    )
    assert orders["open_date"].is_not_null().all()
    assert (orders["order_date"] >= orders["activation_date"]).all()
    ok = orders.filter(pl.col("close_date").is_not_null())
    assert (ok["order_date"] <= ok["close_date"]).all()
    # applications: a line iff approved; every approved application has a card
    assert (apps["approved"] == apps["initial_limit"].is_not_null()).all()
    assert set(apps.filter("approved")["application_id"]) == set(cards["application_id"])
    # silent accounts stay open
    assert cards["close_date"].is_null().sum() > 0


def test_limit_changes_and_propensities(world):
    lc = read(world, "limit_changes")
    assert (lc["new_limit"] >= lc["old_limit"]).all()
    assert ((lc["propensity"] > 0) & (lc["propensity"] <= 1)).all()
    st = read(world, "statements").select("card_id", "statement_month", "dpd")
    # legacy never increases a line in arrears
    j = lc.with_columns(pl.col("review_date").dt.truncate("1mo").alias("statement_month")).join(
        st, on=["card_id", "statement_month"]
    )
    arrears = j.filter(pl.col("dpd") > 0)
    assert len(arrears) > 0 and (arrears["new_limit"] == arrears["old_limit"]).all()
    apps = read(world, "applications").filter("approved")
    assert set(apps["limit_cell"]) == {"grid", "test"}
    ro = read(world, "retention_offers")
    assert set(ro["arm"]) == {"control", "random", "targeted"}
    assert not ro.filter(pl.col("arm") == "control")["treated"].any()
    assert ro.filter(pl.col("arm") == "random")["treated"].all()


# ---------------------------------------------------------------------------------------------------------
# schemas, types, oracle sealing
# ---------------------------------------------------------------------------------------------------------
def test_raw_tables_match_schemas(world):
    for table in schemas.RAW:
        data = pl.read_parquet(str(world / "raw" / table / "*.parquet"))
        schemas.raw_schema(table, 3).validate(data)
    st = read(world, "statements")
    assert st.schema["closing_balance"] == pl.Int64 and st.schema["statement_month"] == pl.Date


def test_schema_rejects_broken_recursion(world):
    import pandera.errors

    st = read(world, "statements").head(1000).with_columns(pl.col("closing_balance") + 1)
    with pytest.raises(pandera.errors.SchemaError):
        schemas.raw_schema("statements").validate(st)


def test_raw_never_contains_oracle_information(world):
    oracle_cols = set()
    for table in schemas.ORACLE:
        oracle_cols |= {c for c, _, _ in schemas.ORACLE[table]}
    oracle_cols -= {"customer_id", "card_id", "campaign_month", "month", "kind", "treated"}
    for table in schemas.RAW:
        cols = set(read(world, table).columns)
        assert not cols & oracle_cols, (table, cols & oracle_cols)
    assert {p.name for p in (world / "raw").iterdir()} == set(schemas.RAW)
    drivers = json.loads((world / "oracle" / "true_drivers.json").read_text())
    assert set(drivers["decoys"]) == {"decoy_1", "decoy_2", "decoy_3"}
    assert "device_price_band" in drivers["proxies"]
    strongest_decoy = max(d["strength_vs_risk"] for d in drivers["decoys"].values())
    assert drivers["default"]["customers"]["bureau_score"]["strength"] > 5 * strongest_decoy


# ---------------------------------------------------------------------------------------------------------
# failure safety
# ---------------------------------------------------------------------------------------------------------
def test_unknown_preset_and_bad_workers_write_nothing(tmp_path):
    with pytest.raises(ValueError, match="preset"):
        SimulateParams(preset="huge")
    bad = SimulateParams.model_construct(**{**small_params().__dict__, "preset": "huge"})
    with pytest.raises(ValueError, match="unknown preset"):
        simulate(bad, tmp_path / "out", workers=1, progress=False)
    with pytest.raises(ValueError, match="workers"):
        simulate(small_params(), tmp_path / "out", workers=0, progress=False)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError):
        simulate(small_params(), blocker / "world", workers=1, progress=False)


def test_failure_keeps_previous_output(small_worlds, tmp_path, monkeypatch):
    root, m1, _ = small_worlds
    import shutil

    out = tmp_path / "world"
    shutil.copytree(root / "w1", out)
    real = sim_mod.simulate_shard

    def boom(params, shard, n, tmp):
        real(params, shard, n, tmp)
        if shard == 1:
            raise RuntimeError("killed mid-way")

    monkeypatch.setattr(sim_mod, "simulate_shard", boom)
    with pytest.raises(RuntimeError):
        simulate(small_params(), out, workers=1, progress=False)
    assert json.loads((out / "manifest.json").read_text())["tables"] == m1["tables"]
    assert [p.name for p in tmp_path.iterdir()] == ["world"]
