"""The tune -> train steps every task shares, and the files they leave in ``experiments/<task>/``.

``best_params.json`` (tune) and ``model/`` (train) are DVC outputs with deterministic bytes. The MLflow run
id of the training run is kept in ``experiments/<task>/.mlflow_run`` (git- and DVC-ignored) so that the
evaluate stage adds its metrics, plots and registry entry to the same run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from cardlab import tracking
from cardlab.artifacts import atomic_dir, dir_digest, write_json
from cardlab.config import Params, params_hash
from cardlab.modeling.screen import shadow_screen
from cardlab.modeling.tuning import run_study
from cardlab.modeling.xgb import (
    TaskData,
    base_params,
    fit_booster,
    load_booster,
    read_dictionary,
    save_booster,
    task_features,
)

SPLITS = ("train", "valid", "oot")
# metrics where larger is better; everything else (logloss, rmse, ...) is minimised
MAXIMISED = {"auc", "aucpr", "map", "ndcg"}


def experiment_name(params: Params, task: str) -> str:
    return f"{params.tracking.experiment_prefix}-{task}"


def read_snapshots(features_root: Path, task: str) -> pd.DataFrame:
    path = Path(features_root) / task
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro features` (or `cardlab features`)")
    df = pl.read_parquet(path).to_pandas()
    missing = {"customer_id", "snapshot_date", "split", "label"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: contract columns missing: {sorted(missing)}")
    return df


def load_task_data(features_root: Path, task: str, modelled: pd.Series | None = None) -> TaskData:
    """Rows with a label (and ``modelled`` True when given), split into train/valid/oot frames."""
    df = read_snapshots(features_root, task)
    names, directions = task_features(read_dictionary(features_root), task)
    absent = [n for n in names if n not in df.columns]
    if absent:
        raise ValueError(f"features listed in the dictionary but absent from {task}: {absent[:5]}")
    keep = df["label"].notna()
    if modelled is not None:
        keep &= modelled.reindex(df.index, fill_value=False)
    df = df[keep]
    frames = {s: df[df["split"] == s].reset_index(drop=True) for s in SPLITS}
    for s, f in frames.items():
        if f.empty:
            raise ValueError(f"{task}: split {s!r} has no labelled rows; check features.split in params.yaml")
    return TaskData(frames=frames, features=names, directions=directions)


def tune_task(
    params: Params, task: str, data: TaskData, features_root: Path, out: Path, *, metric: str = "auc"
) -> dict:
    """Screen the features against shadows, run/resume the Optuna study on the kept ones and write
    ``best_params.json`` (with the kept ``features``, which train uses)."""
    tune = params.tune
    kept, pass_rate = shadow_screen(data, tune, params.simulate.seed)
    candidates = len(data.features)
    data = data.subset(kept)
    fixed = {"monotone_constraints": data.monotone}
    study = run_study(
        task=task,
        tune=tune,
        seed=params.simulate.seed,
        out_dir=out,
        data_digest=dir_digest(Path(features_root) / task)[:16],
        base=base_params(tune, eval_metric=metric),
        dtrain=data.matrix("train"),
        dvalid=data.matrix("valid"),
        fixed=fixed,
        direction="maximize" if metric in MAXIMISED else "minimize",
        metric=metric,
        experiment_name=experiment_name(params, task),
    )
    best = study.best_trial
    result = {
        "study_name": study.study_name,
        "best_value": round(float(best.value), 6),
        "metric": f"valid_{metric}",
        "n_trials": sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials),
        "n_pruned": sum(t.state.name == "PRUNED" for t in study.trials),
        "best_params": best.params,
        "features": kept,
        "screen": {"candidates": candidates, "kept": len(kept), "pass_rate": pass_rate},
    }
    write_json(result, out / "best_params.json")
    return result


def train_task(
    params: Params,
    task: str,
    data: TaskData,
    features_root: Path,
    out: Path,
    *,
    metric: str = "auc",
    description: str,
) -> Path:
    """Fit the final booster with the tuned params; write ``model/`` and log the model to MLflow."""
    best_path = out / "best_params.json"
    if not best_path.exists():
        raise FileNotFoundError(f"{best_path} is missing: run `cardlab tune {task}` first")
    tuned = json.loads(best_path.read_text())
    best = tuned["best_params"]
    if "features" in tuned:  # the features that passed the screen in tune
        data = data.subset(tuned["features"])
    booster_params = {
        **base_params(params.tune, eval_metric=metric),
        "monotone_constraints": data.monotone,
        **best,
    }
    booster = fit_booster(
        booster_params,
        data.matrix("train"),
        data.matrix("valid"),
        num_boost_round=params.tune.num_boost_round,
        early_stopping_rounds=params.tune.early_stopping_rounds,
    )
    model_dir = out / "model"
    with atomic_dir(model_dir) as tmp:
        save_booster(booster, tmp / "model.ubj")
        write_json(
            {"features": data.features, "directions": data.directions, "params": booster_params},
            tmp / "features.json",
        )
    with tracking.stage_run(
        experiment_name=experiment_name(params, task),
        run_name=f"{task}-model",
        description=description,
        stage=f"train@{task}",
        params_hash=params_hash(params.tune),
        inputs={f"features_{task}": Path(features_root) / task},
        tags={"task": task},
    ) as run:
        tracking.log_params(booster_params)
        tracking.log_metrics({"best_iteration": booster.num_boosted_rounds()})
        model_uri = tracking.log_xgboost_model(
            booster, data.frames["train"][data.features].astype("float32").head(20)
        )
        (out / ".mlflow_run").write_text(json.dumps({"run_id": run.info.run_id, "model_uri": model_uri}))
    return model_dir


def load_model(out: Path) -> tuple[object, list[str], dict[str, int]]:
    booster = load_booster(out / "model" / "model.ubj")
    meta = json.loads((out / "model" / "features.json").read_text())
    return booster, meta["features"], meta["directions"]


def log_evaluation(
    params: Params,
    task: str,
    out: Path,
    metrics: dict,
    *,
    passed: bool,
    description: str,
    params_slice: object,
    artifacts: dict[str, Path],
    registry_note: str,
    extra_params: dict | None = None,
) -> None:
    """Add evaluate's metrics and plots to the training run and register the model.

    The model URI comes from ``.mlflow_run`` (written by :func:`train_task`); if that run is gone from the
    store (e.g. a fresh mlflow.db), the model is logged again in a new run. The ``challenger`` alias is set
    only when ``passed`` (the task's OOT thresholds in params.yaml hold).
    """
    run_file = out / ".mlflow_run"
    logged = json.loads(run_file.read_text()) if run_file.exists() else {}
    run_id = logged.get("run_id")
    with tracking.resume_or_start(
        run_id,
        experiment_name=experiment_name(params, task),
        run_name=f"{task}-model",
        description=description,
        stage=f"evaluate@{task}",
        params_hash=params_hash(params_slice),
    ) as run:
        if run_id is None or run.info.run_id != run_id:
            booster, features, _ = load_model(out)
            example = pd.DataFrame(np.zeros((5, len(features)), dtype="float32"), columns=features)
            model_uri = tracking.log_xgboost_model(booster, example)
        else:
            model_uri = logged["model_uri"]
        if extra_params:
            tracking.log_params(extra_params)
        tracking.log_metrics(metrics)
        tracking.log_artifact(out / "metrics.json")
        for name, path in artifacts.items():
            tracking.log_artifacts(path, name)
        tracking.set_tags({"thresholds_passed": str(passed).lower()})
        tracking.register_model(
            task,
            model_uri,
            challenger=passed,
            description=f"{registry_note}; thresholds {'passed' if passed else 'NOT passed'}.",
        )
