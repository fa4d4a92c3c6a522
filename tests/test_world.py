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
from cardlab.world.behaviour import DUE_DAY
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
    # DPD with day resolution (behaviour.DUE_DAY): paying the previous minimum cures to 0; a first miss shows
    # as the days from the due date to the closing day; each further missed cycle adds the month's days; a
    # flat payment (the current cycle only) keeps the account about where it was
    missed = prev["payments"] < prev["prev_due"]
    assert (prev.filter(~missed)["dpd"] == 0).all()
    first = prev.filter((prev["payments"] == 0) & missed & (prev["prev_dpd"] == 0))
    assert len(first) > 100
    assert (first["dpd"] == first["statement_month"].dt.month_end().dt.day().cast(pl.Int32) - DUE_DAY).all()
    again = prev.filter((prev["payments"] == 0) & missed & (prev["prev_dpd"] > 0) & ~prev["reaged"])
    assert len(again) > 50
    assert (again["dpd"] == again["prev_dpd"] + again["statement_month"].dt.month_end().dt.day()).all()
    flat = prev.filter((prev["payments"] > 0) & missed & (prev["prev_dpd"] > 0) & ~prev["reaged"])
    assert len(flat) > 10 and ((flat["dpd"] - flat["prev_dpd"]).abs() <= 3).all()
    assert (prev.filter("reaged")["dpd"] == 0).all() and prev["reaged"].sum() > 0
    # every delinquency bucket is populated, 1-29 first
    assert ((st["dpd"] > 0) & (st["dpd"] < 30)).sum() > ((st["dpd"] >= 30) & (st["dpd"] < 60)).sum() > 0
    # payment type agrees with the payment and the previous minimum due
    pt = prev["payment_type"]
    assert ((pt == "missed") == (prev["payments"] == 0) & (prev["prev_due"] > 0)).all()
    assert ((pt == "below_minimum") == ((prev["payments"] > 0) & missed)).all()
    assert (prev.filter(pt == "none_due")["prev_due"] == 0).all()
    # payment and due dates: a payment has a date in its statement month; a minimum is due on DUE_DAY next month
    paid = st.filter(pl.col("payments") > 0)
    assert (paid["payment_date"].dt.truncate("1mo") == paid["statement_month"]).all()
    assert st.filter(pl.col("payments") == 0)["payment_date"].is_null().all()
    due = st.filter(pl.col("min_due") > 0)
    assert (due["due_date"].dt.day() == DUE_DAY).all()
    assert (due["due_date"].dt.truncate("1mo") == due["statement_month"].dt.offset_by("1mo")).all()


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


# ---------------------------------------------------------------------------------------------------------
# card-paid platform orders vs card statements
# ---------------------------------------------------------------------------------------------------------
def card_order_totals(orders: pl.DataFrame) -> pl.DataFrame:
    """Card-paid orders per customer and statement month (the calendar month of the order date): ``n_orders``
    and ``net_fen`` = sum(amount_fen - discount_fen), what the customer was charged (returns are not netted
    anywhere in the world)."""
    return (
        orders.filter(pl.col("paid_with") == "card")
        .with_columns(pl.col("order_date").dt.truncate("1mo").alias("statement_month"))
        .group_by("customer_id", "statement_month")
        .agg(
            pl.len().alias("n_orders"), (pl.col("amount_fen") - pl.col("discount_fen")).sum().alias("net_fen")
        )
    )


def card_order_link_breaks(
    orders: pl.DataFrame, statements: pl.DataFrame, cards: pl.DataFrame
) -> pl.DataFrame:
    """Customer-months of card-paid orders that break the link the simulator builds: a card order is drawn
    only in a month whose statement has platform spend (``ecommerce.card_orders``), which is a month with a
    statement row, not the month the card closes (closing or charged off: a closing or distressed account
    cannot spend). ``problem`` names the break; empty when the link holds."""
    st = statements.select("customer_id", "statement_month", "dpd")
    close = cards.select("customer_id", pl.col("close_date").dt.truncate("1mo").alias("close_month"))
    j = (
        card_order_totals(orders)
        .join(st, on=["customer_id", "statement_month"], how="left")
        .join(close, on="customer_id", how="left")
    )
    problem = (
        pl.when(pl.col("dpd").is_null())
        .then(pl.lit("no_statement"))
        .when(pl.col("statement_month") == pl.col("close_month"))
        .then(pl.lit("close_month"))
    )
    return j.with_columns(problem.alias("problem")).filter(pl.col("problem").is_not_null())


def platform_spend_mismatches(orders: pl.DataFrame, statements: pl.DataFrame) -> pl.DataFrame:
    """Customer-months where the net amount of card-paid orders differs from the statement's
    ``purchases_platform`` (integer fen), over the union of both: a statement month without card orders
    counts 0 orders, card orders without a statement row count against 0 platform spend."""
    st = statements.select("customer_id", "statement_month", "purchases_platform")
    j = card_order_totals(orders).join(st, on=["customer_id", "statement_month"], how="full", coalesce=True)
    j = j.with_columns(pl.col("net_fen", "purchases_platform", "n_orders").fill_null(0))
    return j.filter(pl.col("net_fen") != pl.col("purchases_platform"))


def test_card_paid_orders_fall_in_usable_statement_months(world):
    orders, st, cards = read(world, "orders"), read(world, "statements"), read(world, "cards")
    assert (orders["paid_with"] == "card").sum() > 10_000
    breaks = card_order_link_breaks(orders, st, cards)
    assert breaks.is_empty(), breaks.head()


def test_card_order_link_check_detects_a_broken_link(world):
    orders, st, cards = read(world, "orders"), read(world, "statements"), read(world, "cards")
    card = orders.with_row_index("row").filter(pl.col("paid_with") == "card")
    row, cust = card["row"][0], card["customer_id"][0]
    open_date = cards.filter(pl.col("customer_id") == cust)["open_date"][0]
    # one card order moved to before its card was opened: no statement in that month
    moved = orders.with_row_index("row").with_columns(
        pl.when(pl.col("row") == row)
        .then(pl.lit(open_date) - pl.duration(days=40))
        .otherwise("order_date")
        .alias("order_date")
    )
    assert card_order_link_breaks(moved.drop("row"), st, cards)["problem"].to_list() == ["no_statement"]
    # one wallet order of a customer without a card switched to card
    no_card = orders.join(cards, on="customer_id", how="anti").with_row_index("row")
    switched = no_card.with_columns(
        pl.when(pl.col("row") == 0).then(pl.lit("card")).otherwise("paid_with").alias("paid_with")
    )
    assert len(card_order_link_breaks(switched.drop("row"), st, cards)) == 1
    # a card order in the month its card closes
    closed = card.join(cards.filter(pl.col("close_date").is_not_null()), on="customer_id")
    row, close = closed["row"][0], closed["close_date"][0]
    late = orders.with_row_index("row").with_columns(
        pl.when(pl.col("row") == row).then(pl.lit(close)).otherwise("order_date").alias("order_date")
    )
    assert card_order_link_breaks(late.drop("row"), st, cards)["problem"].to_list() == ["close_month"]


def test_card_orders_reconcile_with_platform_spend(world):
    """The amount link: per customer and statement month, sum(amount_fen - discount_fen) of card-paid orders
    == purchases_platform, to the fen, over the union of both (ecommerce.card_orders)."""
    orders, st = read(world, "orders"), read(world, "statements")
    mismatches = platform_spend_mismatches(orders, st)
    assert mismatches.is_empty(), f"{len(mismatches)} customer-months differ: {mismatches.head()}"
    assert (st["purchases_platform"] > 0).sum() > 10_000


def test_card_orders_start_on_the_activation_day(world):
    orders, cards = read(world, "orders"), read(world, "cards")
    j = orders.filter(pl.col("paid_with") == "card").join(cards, on="customer_id")
    assert j["activation_date"].null_count() == 0
    assert (j["order_date"] >= j["activation_date"]).all()
    # every card order has a positive net amount
    assert (j["amount_fen"] - j["discount_fen"] >= 1).all()


def test_silent_cardholders_visit_the_card_page_less(world):
    """sessions_monthly.card_page_visits: zero without an open card; a silent (lapsed) cardholder visits at
    CARD_VISITS_SILENT of an active one's rate (oracle state at the end of the month) — a noisy trace: many
    silent cardholders still visit and some active ones never do."""
    from cardlab.world.ecommerce import CARD_VISITS_SILENT

    ses = read(world, "sessions_monthly")
    cards = read(world, "cards")
    no_card = ses.join(cards, on="customer_id", how="anti")
    assert len(no_card) > 0 and no_card["card_page_visits"].sum() == 0
    state = pl.read_parquet(world / "oracle" / "churn_true").select(
        "customer_id", pl.col("month").dt.truncate("1mo"), "state"
    )
    by = ses.join(state, on=["customer_id", "month"]).group_by("state").agg(pl.col("card_page_visits").mean())
    rate = dict(zip(by["state"], by["card_page_visits"], strict=True))
    ratio = rate["silent"] / rate["active"]
    # the traits of silent customers differ a little from active ones (engagement), hence the band
    assert 0.5 * CARD_VISITS_SILENT < ratio < 2 * CARD_VISITS_SILENT, rate
    zero = (
        ses.join(state, on=["customer_id", "month"])
        .group_by("state")
        .agg((pl.col("card_page_visits") == 0).mean())
    )
    share = dict(zip(zero["state"], zero["card_page_visits"], strict=True))
    assert share["active"] > 0.1 and share["silent"] < 0.9, share  # not a detector of the hidden state


def test_bureau_other_card_record_reads_the_borrowing_traits(world):
    """customers.bureau_revolving_fen / bureau_card_utilisation: null exactly without a bureau file; revolvers
    carry more on their other cards than transactors (some of whom carry a little too); both read the borrowing
    traits noisily — informative, never the trait itself."""
    cust = read(world, "customers")
    traits = pl.read_parquet(world / "oracle" / "traits").select(
        "customer_id", "revolver", "mpb", "debt_need_fen"
    )
    j = cust.join(traits, on="customer_id")
    for c in ("bureau_revolving_fen", "bureau_card_utilisation"):
        assert (j[c].is_null() == j["thin_file"]).all(), c
    rec = j.filter(~pl.col("thin_file"))
    by = rec.group_by("revolver").agg(pl.col("bureau_revolving_fen").median())
    med = dict(zip(by["revolver"], by["bureau_revolving_fen"], strict=True))
    assert med[True] > 3 * max(med[False], 1.0), med
    assert ((rec["bureau_revolving_fen"] > 0) & ~rec["revolver"]).sum() > 0
    assert rec["bureau_card_utilisation"].is_between(0, 1).all()
    for col, trait in (("bureau_card_utilisation", "mpb"), ("bureau_revolving_fen", "debt_need_fen")):
        rho = rec.select(pl.corr(col, trait, method="spearman")).item()
        assert 0.4 < rho < 0.9, (col, rho)


def test_income_shocks_show_in_behaviour_noisily(world):
    """An income shock (oracle shock_path) raises BNPL repayment incidents, visits to credit pages and cash-like
    purchases several-fold — yet most shocked months look normal, so behaviour reads the shock, never equals it."""
    shock = pl.read_parquet(world / "oracle" / "shock_path")
    bm = read(world, "bnpl_monthly").join(shock, on=["customer_id", "month"])
    incident = (pl.col("days_late") > 0) | (pl.col("paid_fen") < pl.col("due_fen"))
    rates = bm.group_by("shocked").agg(incident.mean().alias("r"))
    r = dict(zip(rates["shocked"], rates["r"], strict=True))
    assert r[True] > 2.5 * r[False] and r[True] < 0.8, r
    ses = read(world, "sessions_monthly").join(shock, on=["customer_id", "month"])
    v = dict(ses.group_by("shocked").agg(pl.col("credit_page_visits").mean()).iter_rows())
    assert v[True] > 2 * v[False], v
    assert 0.02 < shock["shocked"].mean() < 0.15


def test_platform_spend_check_detects_a_changed_order_amount(world):
    orders = read(world, "orders")
    # statements that do reconcile: purchases_platform rebuilt from the card orders themselves
    st = card_order_totals(orders).select(
        "customer_id", "statement_month", pl.col("net_fen").alias("purchases_platform")
    )
    assert platform_spend_mismatches(orders, st).is_empty()
    row = orders.with_row_index("row").filter(pl.col("paid_with") == "card")["row"][0]
    changed = orders.with_row_index("row").with_columns(
        pl.when(pl.col("row") == row)
        .then(pl.col("amount_fen") + 1)
        .otherwise("amount_fen")
        .alias("amount_fen")
    )
    bad = platform_spend_mismatches(changed.drop("row"), st)
    assert len(bad) == 1 and (bad["net_fen"] - bad["purchases_platform"]).to_list() == [1]


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
    strongest_decoy = max(d["strength_vs_default"] for d in drivers["decoys"].values())
    assert drivers["default"]["customers"]["bureau_score"]["strength"] > 5 * strongest_decoy
    # behavioural drivers carry measured strengths, stronger than any decoy
    behaviour = drivers["default"]["behaviour"]
    assert behaviour["bnpl_monthly.overdue_days"]["strength"] > 5 * strongest_decoy
    assert all(v["customers"] > 100 for v in behaviour.values())


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
