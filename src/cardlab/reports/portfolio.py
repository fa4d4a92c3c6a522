"""The ``report`` stage: portfolio KPIs, vintage / roll-rate, campaign evaluation -> experiments/portfolio/.

Outputs (all deterministic: same raw data and params -> byte-identical files):

- ``kpis.parquet``          long table month x cut x segment x kpi (numerator, denominator, value)
- ``kpis.json``             flat headline figures: the latest month of each portfolio KPI, bad-definition evidence
                            (``bad_def_*``) and campaign summary (``campaign_*``)
- ``kpi_dictionary.json``   numerator, denominator, source table, unit of every KPI
- ``campaigns.parquet``     one row per evaluated retention campaign
- ``vintage.parquet``       vintage curves (cohort x months on book)
- ``plots/*.csv``           DVC plot files (see docs/portfolio.md)
- ``report.html``           self-contained HTML (charts inlined as base64 PNG)

The oracle is read only to grade the campaign estimates (true mean effect per campaign).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

from cardlab.artifacts import atomic_dir, write_csv, write_json, write_parquet
from cardlab.config import EconomicsParams, ReportParams, SimulateParams, params_hash
from cardlab.reports import campaigns as camp
from cardlab.reports import credit_curves as cc
from cardlab.reports import kpis as kp
from cardlab.reports import render
from cardlab.reports.tables import load_world

EXPERIMENT = "cardlab-portfolio"


def _log(progress: bool, msg: str, t0: float) -> None:
    if progress:
        print(f"[report {time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def world_manifest(raw: Path) -> dict[str, Any]:
    """The world's manifest (``<world>/manifest.json`` next to ``raw/``), or {} when absent."""
    for cand in (Path(raw).parent / "manifest.json", Path(raw) / "manifest.json"):
        if cand.exists():
            try:
                return json.loads(cand.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                return {}
    return {}


def world_design(manifest: dict[str, Any]) -> tuple[float, EconomicsParams]:
    """The world's retention control share and unit economics (the simulator's defaults when unrecorded)."""
    sim = manifest.get("params") or {}
    default = SimulateParams()
    share = float(sim.get("retention_control_share", default.retention_control_share))
    eco = EconomicsParams.model_validate(sim["economics"]) if "economics" in sim else default.economics
    return share, eco


def _csv(df: pl.DataFrame, path: Path) -> None:
    write_csv(df, path)


def _vintage_wide(curves: pl.DataFrame, col: str) -> pl.DataFrame:
    if curves.height == 0:
        return pl.DataFrame({"mob": []})
    w = curves.pivot(on="cohort", index="mob", values=col).sort("mob")
    return w.select(["mob", *sorted(c for c in w.columns if c != "mob")])


def build_report(
    params: ReportParams, raw: Path, oracle: Path, out: Path, *, progress: bool = True, track: bool = True
) -> dict:
    """Build the portfolio report from ``raw`` (and the oracle for campaign grading) into ``out``.

    Returns the headline figures written to ``out/kpis.json`` (also logged to MLflow as metrics when
    ``track``).
    """
    t0 = time.perf_counter()
    raw, oracle, out = Path(raw), Path(oracle), Path(out)
    world = load_world(raw, params)
    control_share, eco = world_design(world_manifest(raw))
    _log(progress, f"loaded {world.statements.height:,} statement rows, {world.cards.height:,} cards", t0)

    frames = kp.build_frames(world, params, eco)
    kpis = kp.compute_kpis(world, params, frames, eco)
    wide = kp.portfolio_wide(kpis)
    _log(progress, f"KPI table: {kpis.height:,} rows", t0)

    st = frames["statements"]
    first = cc.first_delinquency(world, st)
    curves = cc.vintage_curves(world, first, params)
    trans = cc.transitions(world, st)
    matrix = cc.roll_rate_matrix(trans)
    forward = cc.forward_roll_rates(trans)
    evidence = cc.bad_definition_evidence(world, first, trans, matrix, curves, st, params)
    _log(progress, "vintage curves and roll rates done", t0)

    design = camp.design_shares(params, control_share)
    campaigns, outcome_diag = camp.evaluate_campaigns(world, params, oracle, st, design)
    camp_summary = {**camp.summarise(campaigns, params), **outcome_diag}
    _log(progress, f"{campaigns.height} campaigns evaluated", t0)

    headline: dict[str, Any] = kp.headline(kpis, params)
    headline.update({f"bad_def_{k}": v for k, v in evidence.items()})
    headline.update(camp_summary)
    # JSON has no NaN: a figure that cannot be computed (e.g. no campaign with both arms) is left out
    headline = {k: v for k, v in headline.items() if not (isinstance(v, float) and not math.isfinite(v))}
    dictionary = kp.kpi_dictionary(params, eco)

    with render.with_rc():
        charts = [
            render.chart_accounts(wide),
            render.chart_acquisition(wide),
            render.chart_usage(wide),
            render.chart_delinquency(wide),
            render.chart_attrition(wide, f"silent_{params.silent_months}m_share"),
            render.chart_margin(wide),
            render.chart_segments(kpis, world.last_month),
            render.chart_vintage(curves, params.bad_horizon_months),
            render.chart_roll_rate(matrix),
        ]
        cchart = render.chart_campaigns(campaigns)
        if cchart is not None:
            charts.append(cchart)
    _log(progress, f"{len(charts)} charts drawn", t0)

    html_text = _html(headline, dictionary, charts, campaigns, evidence, params)

    with atomic_dir(out) as tmp:
        write_parquet(kpis, tmp / "kpis.parquet")
        write_json(headline, tmp / "kpis.json")
        write_json(dictionary, tmp / "kpi_dictionary.json")
        write_parquet(curves, tmp / "vintage.parquet")
        write_parquet(matrix, tmp / "roll_rate.parquet")
        if campaigns.height:
            write_parquet(campaigns, tmp / "campaigns.parquet")
        plots = tmp / "plots"
        _csv(wide, plots / "kpi_trends.csv")
        _csv(_vintage_wide(curves, "ever_30p"), plots / "vintage_30dpd.csv")
        _csv(_vintage_wide(curves, "ever_90p"), plots / "vintage_90dpd.csv")
        _csv(matrix, plots / "roll_rate.csv")
        _csv(forward, plots / "roll_rate_monthly.csv")
        if campaigns.height:
            keep = [
                c
                for c in (
                    "campaign_month",
                    "n_control",
                    "n_random",
                    "ate",
                    "ate_ci_lo",
                    "ate_ci_hi",
                    "cuped_ate",
                    "cuped_ci_lo",
                    "cuped_ci_hi",
                    "true_tau_treated",
                    "srm_p",
                    "incremental_roi",
                    "true_incremental_roi",
                )  # fmt: skip
                if c in campaigns.columns
            ]
            _csv(campaigns.select(keep), plots / "campaigns.csv")
        (tmp / "report.html").write_text(html_text, encoding="utf-8")
    _log(progress, f"wrote {out}", t0)

    if track:
        from cardlab import tracking  # imports mlflow: only when logging

        with tracking.stage_run(
            experiment_name=EXPERIMENT,
            run_name=f"portfolio-{headline.get('as_of_month', 'na')}",
            description="Portfolio operations report: lifecycle KPIs, vintage and roll-rate, retention campaigns "
            "graded against the oracle.",
            stage="report",
            params_hash=params_hash(params),
            inputs={"raw": raw},
        ):
            tracking.log_metrics(headline)
            tracking.log_artifacts(out)
        _log(progress, "logged to MLflow", t0)
    return headline


def _html(
    headline: dict[str, Any],
    dictionary: dict[str, dict[str, object]],
    charts: list[render.Chart],
    campaigns: pl.DataFrame,
    evidence: dict[str, float],
    params: ReportParams,
) -> str:
    by_key = {c.key: c for c in charts}
    kpi_rows = [
        {
            "kpi": k,
            "value": headline[k],
            "unit": d["unit"],
            "month": headline.get(f"{k}_month", headline["as_of_month"]),
        }
        for k, d in dictionary.items()
        if k in headline
    ]
    dict_rows = [
        {
            "kpi": k,
            "numerator": d["numerator"],
            "denominator": d["denominator"] or "(count)",
            "source": d["source_table"],
        }
        for k, d in dictionary.items()
    ]
    sections: list[tuple[str, str]] = [
        (
            "Headline (portfolio, latest month)",
            "<p>Rates whose window runs past the data (activation, invitation conversion) are shown for the "
            "latest fully observed month.</p>" + render.table_html(kpi_rows),
        ),
        ("Accounts", render.figure_html(by_key["accounts"])),
        ("Acquisition and activation", render.figure_html(by_key["acquisition"])),
        ("Usage and repayment", render.figure_html(by_key["usage"])),
        ("Delinquency and loss", render.figure_html(by_key["delinquency"])),
        ("Attrition and dormancy", render.figure_html(by_key["attrition"])),
        ("Economics", render.figure_html(by_key["margin"])),
        ("Segments", render.figure_html(by_key["segments"])),
        (
            "Vintage curves and roll rates",
            render.figure_html(by_key["vintage"])
            + render.figure_html(by_key["roll_rate"])
            + f"<p>Evidence for the credit bad definition (ever 90+ DPD within "
            f"{params.bad_horizon_months} months):</p>"
            + render.table_html([{"measure": k, "value": v} for k, v in evidence.items()]),
        ),
    ]
    if "campaigns" in by_key:
        cols: list[str] = [
            c
            for c in (
                "campaign_month",
                "n_control",
                "n_random",
                "srm_p",
                "churn_rate_control",
                "churn_rate_random",
                "ate",
                "ate_ci_lo",
                "ate_ci_hi",
                "cuped_ate",
                "cuped_variance_reduction",
                "true_tau_treated",
                "covered",
                "incremental_roi",
                "true_incremental_roi",
            )  # fmt: skip
            if c in campaigns.columns
        ]
        summary = [{"measure": k, "value": v} for k, v in headline.items() if k.startswith("campaign_")]
        sections.append(
            (
                "Retention campaigns (random arm vs random holdout)",
                f"<p>Outcome: voluntary closure within {params.churn_horizon_months} months from the campaign "
                f"month; effect = churn rate (random) - churn rate (control), {params.ci_level:.0%} normal CI. "
                "Truth = oracle mean tau over the treated rows of the random arm (evaluation only).</p>"
                + render.figure_html(by_key["campaigns"])
                + render.table_html(summary)
                + render.table_html(campaigns.select(cols).to_dicts(), cols),
            )
        )
    sections.append(("KPI dictionary", render.table_html(dict_rows)))
    return render.render_html(sections, "cardlab portfolio report")
