"""Credit scoring at application: a monotone, Optuna-tuned XGBoost PD model graded against the oracle.

Label: 90+ DPD within 12 months of booking (``data/features/credit``; see docs/tasks/credit.md).
Modelled rows: approved applicants with a full outcome window. Declined applicants are scored too and
compared with their true PD from the oracle (how much the model misjudges the unseen population).
Baselines: a WOE logistic scorecard (optbinning) and the bank's legacy application score.
All PDs map to one score scale: ``base_points`` at odds ``base_odds`` good:bad, ``pdo`` points to double
the odds, so a higher score means a lower risk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from cardlab.artifacts import atomic_dir, rounded, write_json, write_parquet
from cardlab.config import Params
from cardlab.modeling import grading as oracle_grading
from cardlab.modeling import metrics as model_metrics
from cardlab.modeling import monitoring
from cardlab.modeling.fairness import decision_mask, fairness_table, min_air
from cardlab.modeling.scorecard import fit_scorecard, scorecard_pd
from cardlab.modeling.stylised import footprint_facts, model_class_fact
from cardlab.modeling.validation import top_gain_features, validation_pack
from cardlab.modeling.workflow import (
    SPLITS,
    ContractMetrics,
    load_model,
    load_task_data,
    log_evaluation,
    read_snapshots,
    train_task,
    tune_task,
)
from cardlab.modeling.xgb import read_dictionary, task_features

TASK = "credit"
DESCRIPTION = (
    "Application PD model for the co-branded card: probability of 90+ DPD within 12 months of booking. "
    "Monotone XGBoost (business directions from the feature dictionary), tuned with Optuna on the "
    "time-based validation split; graded out-of-time against the true PD of the synthetic world."
)


def _booked(df: pd.DataFrame) -> pd.Series:
    return df["approved"].astype(bool) if "approved" in df.columns else pd.Series(True, index=df.index)


def _data(features_root: Path):
    snapshots = read_snapshots(features_root, TASK)
    return load_task_data(features_root, TASK, modelled=_booked(snapshots))


# Validation log-loss, not AUC, drives tuning and early stopping: with a few hundred bads in the
# validation cohorts AUC is a noisy, step-like target, log-loss is smooth and rewards calibration too.
METRIC = "logloss"
LEGACY_SCORE = "app_legacy_score"  # the bank's own application score, as the features stage names it
PLATFORM_SCORE = "psc_score_last"  # the platform's credit score at the last month end (features stage)


def tune(params: Params, features_root: Path, out: Path) -> dict:
    return tune_task(params, TASK, _data(features_root), features_root, out, metric=METRIC)


def train(params: Params, features_root: Path, out: Path) -> Path:
    return train_task(
        params, TASK, _data(features_root), features_root, out, metric=METRIC, description=DESCRIPTION
    )


def read_pd_true(oracle: Path) -> pd.DataFrame:
    """Application-time true PDs (evaluation only: the oracle is sealed from features and training)."""
    path = Path(oracle) / "pd_true"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro simulate`")
    pdt = pl.read_parquet(path)
    if "kind" in pdt.columns:
        pdt = pdt.filter(pl.col("kind") == "application")
    return pdt.select("customer_id", "snapshot_date", pl.col("pd_12m").alias("pd_true")).to_pandas()


def evaluate(
    params: Params, features_root: Path, oracle: Path, out: Path, *, contract: ContractMetrics
) -> dict:
    """Score every application, grade against the oracle, write metrics/predictions/plots, register."""
    cp = params.credit
    monitoring.check_waivers(cp.gate_waivers)  # a typo stops evaluate before it replaces any output
    booster, features, _ = load_model(out)
    snapshots = read_snapshots(features_root, TASK)
    snapshots = snapshots.merge(read_pd_true(oracle), on=["customer_id", "snapshot_date"], how="left")
    if snapshots["pd_true"].isna().any():
        raise ValueError("oracle pd_true is missing for some applications: world and features disagree")
    snapshots["pd"] = booster.inplace_predict(snapshots[features].astype("float32"))
    snapshots["score"] = model_metrics.pd_to_score(
        snapshots["pd"].to_numpy(), cp.base_points, cp.base_odds, cp.pdo
    )

    booked = _booked(snapshots) & snapshots["label"].notna()
    modelled = snapshots[booked]
    # the scorecard baseline bins every dictionary feature itself (its own IV screen), not XGBoost's screened set
    candidates, _ = task_features(read_dictionary(features_root), TASK)
    card = fit_scorecard(modelled[modelled["split"] == "train"], candidates)
    snapshots["pd_scorecard"] = scorecard_pd(card, snapshots, candidates)
    baselines = {"scorecard": "pd_scorecard"}
    # the bank's legacy application score (a points score, higher = safer) as a risk ranking in [0, 1]
    if LEGACY_SCORE not in snapshots.columns:
        raise ValueError(f"credit features lack {LEGACY_SCORE!r}, the legacy baseline (see docs/features.md)")
    ls = snapshots[LEGACY_SCORE].astype(float)
    snapshots["pd_legacy"] = 1.0 - (ls - ls.min()) / max(ls.max() - ls.min(), 1e-9)
    baselines["legacy"] = "pd_legacy"

    frames = {
        s: snapshots[booked & (snapshots["split"] == s)]
        .reset_index(drop=True)
        .assign(label=lambda d: d["label"].astype(int))
        for s in SPLITS
    }
    top_features = top_gain_features(booster, 15)
    with atomic_dir(out / "validation") as tmp:
        metrics: dict[str, Any] = validation_pack(  # numbers, then the bars (a list) are added
            frames,
            score_col="pd",
            label_col="label",
            month_col="snapshot_date",
            oracle_col="pd_true",
            baseline_cols=baselines,
            features=top_features,
            out_dir=tmp,
            n_boot=cp.bootstrap,
            seed=params.tune.seed,
            n_grades=cp.n_grades,
        )
    declined = snapshots[~_booked(snapshots)]
    best = json.loads((out / "best_params.json").read_text())
    metrics.update(
        {
            "n_trials": int(best["n_trials"]),
            "declined_n": int(len(declined)),
            "declined_mean_pd_pred": float(declined["pd"].mean()) if len(declined) else float("nan"),
            "declined_mean_pd_true": float(declined["pd_true"].mean()) if len(declined) else float("nan"),
            "booked_mean_pd_true": float(modelled["pd_true"].mean()),
        }
    )
    graded, snapshots["pd_ceiling"] = grade(
        params, snapshots, booked & (snapshots["split"] == "oot"), candidates
    )
    metrics.update(graded)
    metrics.update(screen_counts(best, read_dictionary(features_root)))
    # World v2's stylised facts (modeling/stylised.py): the footprint vs the bureau, and what model class buys
    metrics.update(
        footprint_facts(
            modelled.assign(label=lambda d: d["label"].astype(int)),
            read_dictionary(features_root),
            candidates,
            seed=params.grading.seed,
            nthread=params.tune.nthread,
        )
    )
    metrics.update(model_class_fact(metrics))
    # the platform's own credit score at the last month end before the application, as a reported baseline
    oot_booked = frames["oot"]
    if PLATFORM_SCORE in oot_booked.columns and oot_booked[PLATFORM_SCORE].notna().any():
        score = oot_booked[PLATFORM_SCORE].astype(float).fillna(oot_booked[PLATFORM_SCORE].median())
        metrics["platform_score_oot_auc"] = model_metrics.auc(
            oot_booked["label"].to_numpy(), -score.to_numpy()
        )
    # the explanation keys of the contract (the explain stage computes the same on the same sample, and more)
    metrics.update(contract(params, TASK, features_root, oracle, out))
    # adverse impact of the approve/decline rule on OOT applications (the table explain reports, same rule)
    oot = (snapshots["split"] == "oot").to_numpy()
    adverse, _ = decision_mask(TASK, params, snapshots, snapshots["pd"].to_numpy(dtype=np.float64), oot)
    fair = fairness_table(snapshots, snapshots["pd"].to_numpy(), adverse, oot, snapshots["score"].to_numpy())
    metrics.update(min_air(fair))
    metrics["bars"] = bars(metrics, params)
    metrics["gate"] = monitoring.gate(
        monitoring.plan(cp.max_oot_psi, cp.min_oot_auc),
        {**metrics, **monitoring.derived(metrics)},
        cp.gate_waivers,
    )
    metrics = rounded(dict(sorted(metrics.items())))
    write_json(metrics, out / "metrics.json")
    pred_cols = [
        "customer_id",
        "snapshot_date",
        "split",
        "label",
        "pd",
        "score",
        "pd_scorecard",
        "pd_ceiling",
    ]
    pred_cols += [c for c in ("approved", "pd_legacy") if c in snapshots.columns]
    with atomic_dir(out / "predictions.parquet") as tmp:
        write_parquet(snapshots[pred_cols].reset_index(drop=True), tmp / "part-0.parquet")

    # the challenger gate is the report's monitoring plan (modeling/monitoring.py), not AUC and PSI alone
    passed = bool(metrics["gate"]["passed"])
    log_evaluation(
        params,
        TASK,
        out,
        metrics,
        passed=passed,
        description=DESCRIPTION,
        params_slice=params.credit,
        artifacts={"validation": out / "validation"},
        registry_note=f"OOT AUC {metrics['oot_auc']:.3f} (oracle {metrics['oot_oracle_auc']:.3f}), "
        f"PSI {metrics['oot_psi']:.3f}",
        gate=metrics["gate"],
    )
    return metrics


def grade(
    params: Params, snapshots: pd.DataFrame, graded: pd.Series, candidates: list[str]
) -> tuple[dict, np.ndarray]:
    """The observable ceiling of the OOT AUC and clustered-bootstrap bounds (modeling/grading.py).

    Ceiling: XGBoost fitted to the oracle's ``pd_true`` (soft labels) on every application row, booked or
    declined, in every split, on all candidate features, cross-fitted over customer folds; its out-of-fold PD
    ranks the ``graded`` rows (booked OOT applications with a label). The lift in the riskiest 10 % gets the
    same bootstrap. Returns the metrics and the ceiling's PD per row (NaN outside the graded rows)."""
    gp = params.grading
    ceiling = oracle_grading.cross_fit_ceiling(
        snapshots[candidates],
        snapshots["pd_true"].to_numpy(),
        snapshots["customer_id"].to_numpy(),
        graded.to_numpy(),
        gp.ceiling,
        objective="binary:logistic",
        seed=gp.seed,
        nthread=params.tune.nthread,
    )
    rows = graded.to_numpy()
    g = snapshots[rows]
    y, pd_model = g["label"].to_numpy(dtype=float), g["pd"].to_numpy()
    out = oracle_grading.grade_auc(
        y, pd_model, ceiling, g["pd_true"].to_numpy(), g["customer_id"].to_numpy(), gp, rows=rows
    )
    out["oot_auc_ceiling_train_rows"] = ceiling.train_rows
    boot = oracle_grading.ClusterBootstrap.from_params(g["customer_id"].to_numpy(), gp)
    lo, hi = boot.bounds(boot.replicates(lambda w: oracle_grading.weighted_lift(y, pd_model, 0.1, w)))
    out["oot_lift_at_10pct_lo"], out["oot_lift_at_10pct_hi"] = float(lo[0]), float(hi[0])
    return out, ceiling.full


def screen_counts(best: dict, dictionary: list[dict]) -> dict:
    """Features the shadow screen kept (``best_params.json`` -> ``features``) and how many of them are
    behavioural (orders, sessions, BNPL; grading.is_behavioural)."""
    kept = best.get("features", [])
    entries = {e["name"]: e for e in dictionary}
    return {
        "screen_candidates": int(best.get("screen", {}).get("candidates", len(entries))),
        "screen_kept": len(kept),
        "screen_kept_behavioural": sum(oracle_grading.is_behavioural(entries.get(f, {})) for f in kept),
    }


def bars(metrics: dict, params: Params) -> list[dict]:
    """The credit bars (params ``grading.bars.credit`` and ``.explain``; docs/grading.md)."""
    b = params.grading.bars.credit
    return [
        oracle_grading.metric_bar(metrics, "oot_auc_ceiling_ratio", b.oot_auc_ceiling_ratio),
        oracle_grading.count_bar("screen_kept", metrics["screen_kept"], b.screen_kept),
        oracle_grading.count_bar(
            "screen_kept_behavioural", metrics["screen_kept_behavioural"], b.screen_kept_behavioural
        ),
        *oracle_grading.explain_bars(metrics, params.grading.bars.explain),
    ]
