"""The portfolio report on a small simulated world: KPI identities against the raw tables, bounds, outputs,
determinism, and the campaign estimates graded against the oracle."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import cardlab
from cardlab.artifacts import dir_digest
from cardlab.config import ReportParams, SimulateParams, params_hash
from cardlab.reports import kpis as kp
from cardlab.reports.portfolio import build_report
from cardlab.reports.tables import CUTS, load_world
from cardlab.world.simulate import simulate

# 48 months give 13 retention campaigns whose outcome window is observed (one every 3 months from month 6)
SMALL = {"ci": {"n_customers": 4000, "months": 48, "shard_size": 2000}}


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "world"
    simulate(SimulateParams(presets=SMALL), out, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def report(world_dir) -> tuple[Path, dict]:
    out = world_dir.parent / "portfolio"
    headline = build_report(
        ReportParams(), world_dir / "raw", world_dir / "oracle", out, progress=False, track=False
    )
    return out, headline


@pytest.fixture(scope="module")
def kpis(report) -> pl.DataFrame:
    return pl.read_parquet(report[0] / "kpis.parquet")


def _kpi(kpis: pl.DataFrame, name: str, cut: str = "portfolio") -> pl.DataFrame:
    return kpis.filter((pl.col("kpi") == name) & (pl.col("cut") == cut)).sort("segment", "month")


def test_account_identity_holds_for_every_cut(kpis):
    for cut in CUTS:
        wide = (
            kpis.filter(pl.col("cut") == cut)
            .filter(
                pl.col("kpi").is_in(
                    ["opening_accounts", "booked_accounts", "closed_accounts", "closing_accounts"]
                )
            )
            .pivot(on="kpi", index=["month", "segment"], values="numerator")
            .fill_null(0)
        )
        lhs = wide["opening_accounts"] + wide["booked_accounts"] - wide["closed_accounts"]
        assert (lhs == wide["closing_accounts"]).all(), cut


def test_closing_accounts_match_raw_cards(world_dir, kpis):
    cards = pl.read_parquet(world_dir / "raw" / "cards")
    last = kpis["month"].max()
    closing = _kpi(kpis, "closing_accounts").filter(pl.col("month") == last)["numerator"].item()
    month_end = pl.select(pl.lit(last).dt.month_end()).item()
    expected = cards.filter(
        (pl.col("open_date") <= month_end)
        & (pl.col("close_date").is_null() | (pl.col("close_date") > month_end))
    ).height
    assert closing == expected
    # the statement book of the last month is the open book (one statement per open card, except cards
    # booked in the last month, whose first statement comes the month after booking)
    st = pl.read_parquet(world_dir / "raw" / "statements").filter(pl.col("statement_month") == last)
    booked_last = _kpi(kpis, "booked_accounts").filter(pl.col("month") == last)["numerator"]
    closed_last = _kpi(kpis, "closed_accounts").filter(pl.col("month") == last)["numerator"].item()
    assert st.height == closing - (booked_last.item() if booked_last.len() else 0) + closed_last


def test_counts_of_segments_add_up_to_the_portfolio(kpis):
    counts = [
        "opening_accounts",
        "booked_accounts",
        "closed_accounts",
        "closing_accounts",
        "applications",
        "bookings",
    ]
    port = kpis.filter((pl.col("cut") == "portfolio") & pl.col("kpi").is_in(counts)).select(
        "month", "kpi", "numerator"
    )
    for cut in CUTS[1:]:
        seg = (
            kpis.filter((pl.col("cut") == cut) & pl.col("kpi").is_in(counts))
            .group_by("month", "kpi")
            .agg(pl.col("numerator").sum().alias("seg"))
        )
        j = port.join(seg, on=["month", "kpi"], how="inner")
        assert j.height > 0
        assert (j["numerator"] == j["seg"]).all(), cut


def test_rates_are_within_unit_interval(kpis):
    bounded = [k.name for k in kp.kpi_specs(ReportParams()) if k.bounded]
    rates = kpis.filter(pl.col("kpi").is_in(bounded))
    assert rates.height > 0
    assert rates["value"].drop_nulls().is_between(0.0, 1.0).all()
    assert (rates["numerator"] <= rates["denominator"] + 1e-9).fill_null(True).all()
    # every rate is defined in most portfolio months (only censored windows may be missing)
    port = rates.filter(pl.col("cut") == "portfolio")
    assert port["value"].is_not_null().mean() > 0.8


def test_delinquency_buckets_partition_the_billed_book(kpis):
    names = ["delinquency_dpd_1_29", "delinquency_dpd_30_59", "delinquency_dpd_60_89", "delinquency_dpd_90p"]
    dq = kpis.filter((pl.col("cut") == "portfolio") & pl.col("kpi").is_in(names))
    past_due = dq.group_by("month").agg(
        pl.col("numerator").sum().alias("past_due"), pl.col("denominator").first()
    )
    active = _kpi(kpis, "active_rate").select("month", pl.col("denominator").alias("billed"))
    j = past_due.join(active, on="month")
    assert (j["denominator"] == j["billed"]).all()
    assert (j["past_due"] <= j["billed"]).all()


def test_vintage_and_roll_rate_outputs(report):
    out, headline = report
    curves = pl.read_parquet(out / "vintage.parquet")
    for _, g in curves.group_by("cohort"):
        g = g.sort("mob")
        assert (g["ever_90p"].diff().drop_nulls() >= 0).all()
        assert (g["ever_30p"].diff().drop_nulls() >= 0).all()
    matrix = pl.read_parquet(out / "roll_rate.parquet")
    rows = (
        matrix.group_by("from_state")
        .agg(pl.col("share").sum(), pl.col("count").sum())
        .filter(pl.col("count") > 0)
    )
    assert np.allclose(rows["share"].to_numpy(), 1.0)
    # the world's delinquency is absorbing after the second miss: nothing at 90+ ever cures
    assert headline["bad_def_cure_rate_dpd_90p"] == 0.0


def test_campaign_intervals_cover_the_oracle_effect(report):
    """95% intervals should cover the oracle's mean effect in ~95% of campaigns; with 13 campaigns the chance
    of fewer than 70% covered is below 1e-4 under nominal coverage, so a failure means a biased estimate or a
    broken interval (the observable churn proxy attenuates the effect by ~30%, small next to the SE here)."""
    out, headline = report
    c = pl.read_parquet(out / "campaigns.parquet")
    assert c.height >= 10
    assert headline["campaigns_evaluated"] >= 10
    assert c["covered"].mean() >= 0.7
    assert c["cuped_covered"].mean() >= 0.7
    # the design split is respected: no sample-ratio alarm at alpha = 0.001 beyond chance
    assert c["srm_flag"].sum() <= 1
    # the randomised arms are what the world says: control = 30% of eligible accounts
    share = c["n_control"].sum() / (c["n_control"] + c["n_random"] + c["n_targeted"]).sum()
    assert abs(share - 0.3) < 0.03


def test_output_files_are_complete_and_self_contained(report):
    out, headline = report
    for name in ("kpis.parquet", "kpis.json", "kpi_dictionary.json", "report.html", "campaigns.parquet"):
        assert (out / name).exists(), name
    for name in (
        "kpi_trends.csv",
        "vintage_30dpd.csv",
        "vintage_90dpd.csv",
        "roll_rate.csv",
        "campaigns.csv",
    ):
        assert (out / "plots" / name).stat().st_size > 0, name
    flat = json.loads((out / "kpis.json").read_text())
    assert flat == json.loads(json.dumps(headline))
    assert all(isinstance(v, int | float | str) for v in flat.values())
    dictionary = json.loads((out / "kpi_dictionary.json").read_text())
    kpi_names = set(pl.read_parquet(out / "kpis.parquet")["kpi"].unique())
    assert kpi_names <= set(dictionary)
    for entry in dictionary.values():
        assert entry["numerator"] and entry["source_table"]
    html = (out / "report.html").read_text()
    assert len(re.findall(r"src='data:image/png;base64,", html)) >= 9
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", html)


def test_world_reader_needs_the_statements(world_dir, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("customers", "applications", "cards"):
        (raw / name).symlink_to(world_dir / "raw" / name)
    with pytest.raises(ValueError, match="statements"):
        load_world(raw, ReportParams())


def test_rerun_is_byte_identical_and_logs_through_tracking(world_dir, report, tmp_path, monkeypatch):
    """A second build is byte-identical; the stage's MLflow wiring is checked with cardlab.tracking replaced
    by a recorder (the real store is slow; see the slow test below)."""
    calls: dict[str, object] = {}

    @contextlib.contextmanager
    def stage_run(**kwargs):
        calls["run"] = kwargs
        yield None

    fake = types.SimpleNamespace(
        stage_run=stage_run,
        log_metrics=lambda m, step=None: calls.setdefault("metrics", dict(m)),
        log_artifacts=lambda path, artifact_path=None: calls.setdefault("artifacts", Path(path)),
    )
    monkeypatch.setitem(sys.modules, "cardlab.tracking", fake)
    monkeypatch.setattr(cardlab, "tracking", fake, raising=False)
    out = tmp_path / "portfolio"
    params = ReportParams()
    headline = build_report(params, world_dir / "raw", world_dir / "oracle", out, progress=False)
    run = calls["run"]
    assert run["experiment_name"] == "cardlab-portfolio" and run["stage"] == "report"
    assert run["params_hash"] == params_hash(params)
    assert run["inputs"] == {"raw": world_dir / "raw"}
    assert calls["metrics"] == headline
    assert calls["artifacts"] == out and (out / "report.html").exists()
    # the second build of the same world is byte-identical to the first (DVC sees nothing to do)
    first = report[0]
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert dir_digest(first) == dir_digest(out)


@pytest.mark.slow
def test_report_is_logged_to_mlflow(world_dir, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("CARDLAB_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        out = tmp_path / "portfolio"
        headline = build_report(ReportParams(), world_dir / "raw", world_dir / "oracle", out, progress=False)
        runs = mlflow.search_runs(experiment_names=["cardlab-portfolio"], output_format="list")
        assert len(runs) == 1
        run = runs[0]
        assert run.data.tags["dvc_stage"] == "report"
        assert run.data.metrics["active_rate"] == pytest.approx(headline["active_rate"])
        arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
        assert {"report.html", "kpis.json", "plots"} <= arts
    finally:
        mlflow.set_tracking_uri(None)
