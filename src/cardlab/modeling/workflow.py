"""The tune -> train -> evaluate steps every task shares, and the files they leave in ``experiments/<task>/``.

A task with one booster (credit, churn) runs them whole (:func:`tune_task`, :func:`train_task`,
:func:`log_evaluation`); a task with several (limit's response models) prepares each booster's data itself and
calls the same building blocks per booster: :func:`tune_booster` (one study), :func:`fit_tuned` (the final
fit), :func:`save_models` (``model/``, the training run, the run pointer) and :func:`log_evaluation` with
``scored_models``. (Over 400 lines on purpose: these steps and the handoff below change together.)

``best_params.json`` (tune) and ``model/`` (train) are DVC outputs with deterministic bytes. The train ->
evaluate handoff (docs/reliability.md):

- train removes the run pointer ``experiments/<task>/.mlflow_run`` (git- and DVC-ignored) *before* it replaces
  ``model/``, and writes it again, atomically, only after the model is logged: run id, model URI and the
  **model digest** (:func:`model_digest`, sha256 of the ``model/`` files). So a pointer never describes another
  model than the one on disk, whatever moment train is killed at.
- evaluate records the digest of the files it loads (:func:`load_model`), checks before registering that
  ``model/`` still has it, and registers the training run's model only when the pointer carries the same
  digest; otherwise (no pointer, a pointer of another model, a run absent from the store) it logs the scored
  model in its own run and registers that. The version carries the digest as tag ``model_digest``, and a
  digest already registered returns its existing version (:func:`cardlab.tracking.register_model`).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import optuna
import pandas as pd
import polars as pl
import xgboost as xgb
from pydantic import BaseModel

from cardlab import taskspec, tracking
from cardlab.artifacts import atomic_dir, dir_digest, fault_point, read_json, write_json
from cardlab.config import Params, TuneParams, params_hash
from cardlab.errors import InputDataError, MissingInputError, ModelFileError
from cardlab.modeling import monitoring
from cardlab.modeling.screen import shadow_screen
from cardlab.modeling.tuning import run_study
from cardlab.modeling.xgb import (
    TaskData,
    base_params,
    fit_booster,
    fit_booster_dask,
    load_booster,
    read_dictionary,
    save_booster,
    task_features,
)
from cardlab.scale import engine

SPLITS = ("train", "valid", "oot")
# computes the explanation keys of a task's metrics.json contract: (params, task, features_root, oracle, out);
# the CLI passes cardlab.explain.run.contract_metrics to each task's evaluate (tasks never import explain)
ContractMetrics = Callable[[Params, str, Path, Path, Path], dict]
# metrics where larger is better; everything else (logloss, rmse, ...) is minimised
MAXIMISED = {"auc", "aucpr", "map", "ndcg"}
RUN_POINTER = ".mlflow_run"
# digest of the model/ files each evaluate loaded, by folder: checked again before registering
_SCORED: dict[Path, str] = {}


def experiment_name(params: Params, task: str) -> str:
    return f"{params.tracking.experiment_prefix}-{task}"


def model_run_name(task: str, digest: str) -> str:
    """``<task>-model-<first 8 hex of the model digest>``: two runs share a name only when they hold the same
    model (a re-run that trained the same bytes), and the name matches the registered version's tag."""
    return f"{task}-model-{digest[:8]}"


def read_snapshots(features_root: Path, task: str) -> pd.DataFrame:
    """The snapshot rows of the frame ``task`` reads (``data/features/<frame>/``, cardlab.taskspec)."""
    path = Path(features_root) / taskspec.frame_of(task)
    if not path.exists():
        raise MissingInputError(f"{path} is missing: run `dvc repro features` (or `cardlab features`)")
    try:
        df = pl.read_parquet(path).to_pandas()
    except (pl.exceptions.ComputeError, OSError) as err:
        raise InputDataError(
            f"{path}: not readable as Parquet ({str(err).splitlines()[0]}); re-run `dvc repro features`"
        ) from None
    missing = {"customer_id", "snapshot_date", "split", "label"} - set(df.columns)
    if missing:
        raise InputDataError(
            f"{path}: contract columns missing: {sorted(missing)}; re-run `dvc repro features`"
        )
    return df


def load_task_data(features_root: Path, task: str, modelled: pd.Series | None = None) -> TaskData:
    """Rows with a label (and ``modelled`` True when given), split into train/valid/oot frames."""
    df = read_snapshots(features_root, task)
    names, directions = task_features(read_dictionary(features_root), task)
    absent = [n for n in names if n not in df.columns]
    if absent:
        raise InputDataError(
            f"features listed in {Path(features_root) / 'feature_dictionary.json'} but absent from "
            f"{Path(features_root) / task}: {absent[:5]}; re-run `dvc repro features`"
        )
    keep = df["label"].notna()
    if modelled is not None:
        keep &= modelled.reindex(df.index, fill_value=False)
    df = df[keep]
    frames = {s: df[df["split"] == s].reset_index(drop=True) for s in SPLITS}
    for s, f in frames.items():
        if f.empty:
            raise InputDataError(
                f"{task}: split {s!r} has no labelled rows; check features.split in params.yaml"
            )
    return TaskData(frames=frames, features=names, directions=directions)


def tune_task(
    params: Params, task: str, data: TaskData, features_root: Path, out: Path, *, metric: str = "auc"
) -> dict:
    """Screen the features against shadows, run/resume the Optuna study on the kept ones and write
    ``best_params.json`` (with the kept ``features``, which train uses)."""
    kept, pass_rate = shadow_screen(data, params.tune, params.tune.seed)
    candidates = len(data.features)
    data = data.subset(kept)
    result = {
        **tune_booster(
            params, task, data, out, data_digest=features_digest(features_root, task), metric=metric
        ),
        "features": kept,
        "screen": {"candidates": candidates, "kept": len(kept), "pass_rate": pass_rate},
    }
    write_json(result, out / "best_params.json")
    return result


def tune_booster(
    params: Params,
    task: str,
    data: TaskData,
    out: Path,
    *,
    data_digest: str,
    study: str | None = None,
    objective: str = "binary:logistic",
    metric: str = "auc",
    fixed: dict[str, Any] | None = None,
    dtrain: xgb.DMatrix | None = None,
    dvalid: xgb.DMatrix | None = None,
) -> dict:
    """Run/resume the Optuna study of one booster of ``task`` on ``data`` and summarise it
    (:func:`study_summary`). ``study``: the study's name prefix (default the task; limit: one per response
    model); ``fixed``: booster params beside the monotone constraints that the trials do not tune;
    ``dtrain``/``dvalid``: the matrices when the task builds its own (weights, base margins), else
    ``data.matrix``."""
    tune = params.tune
    result = run_study(
        task=study or task,
        tune=tune,
        seed=params.tune.seed,
        out_dir=out,
        data_digest=data_digest,
        base=base_params(tune, objective=objective, eval_metric=metric),
        dtrain=data.matrix("train") if dtrain is None else dtrain,
        dvalid=data.matrix("valid") if dvalid is None else dvalid,
        fixed={"monotone_constraints": data.monotone, **(fixed or {})},
        direction="maximize" if metric in MAXIMISED else "minimize",
        metric=metric,
        experiment_name=experiment_name(params, task),
        code_roots=("cardlab.modeling.workflow", taskspec.get(task).module),
        identity={"features": data.features},
    )
    return study_summary(result, metric)


def study_summary(study: optuna.Study, metric: str) -> dict:
    """What ``best_params.json`` records of a study: the best value and params, trials run and pruned."""
    best = study.best_trial
    return {
        "best_value": round(float(cast(float, best.value)), 6),  # the best trial is COMPLETE: value is set
        "metric": f"valid_{metric}",
        "n_trials": sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials),
        "n_pruned": sum(t.state.name == "PRUNED" for t in study.trials),
        "best_params": best.params,
    }


def train_task(
    params: Params,
    task: str,
    data: TaskData,
    features_root: Path,
    out: Path,
    *,
    metric: str = "auc",
    description: str,
    extra_models: Callable[[Path], None] | None = None,
) -> Path:
    """Fit the final booster with the tuned params; write ``model/`` and log the model to MLflow.

    ``extra_models(folder)`` writes further models of the task into the new ``model/`` before it replaces the
    old one (churn's value and uplift models), so the whole folder changes in one rename."""
    tuned = read_best_params(out, task)
    best = tuned["best_params"]
    if "features" in tuned:  # the features that passed the screen in tune
        data = data.subset(tuned["features"])
    booster, booster_params = fit_tuned(params.tune, data, best, metric=metric)
    return save_models(
        params,
        task,
        features_root,
        out,
        {"default": booster},
        {"features": data.features, "directions": data.directions, "params": booster_params},
        description=description,
        logged_params=booster_params,
        logged_metrics={"best_iteration": booster.num_boosted_rounds()},
        example=data.frames["train"][data.features].astype("float32").head(20),
        files={"default": "model.ubj"},
        extra_models=extra_models,
    )


def fit_tuned(
    tune: TuneParams,
    data: TaskData,
    best: dict[str, Any],
    *,
    objective: str = "binary:logistic",
    metric: str = "auc",
    fixed: dict[str, Any] | None = None,
    dtrain: xgb.DMatrix | None = None,
    dvalid: xgb.DMatrix | None = None,
) -> tuple[xgb.Booster, dict[str, Any]]:
    """Fit one booster with its tuned params ``best`` (early-stopped on valid); returns it and its params
    (base params, monotone constraints, ``fixed``, then ``best``). ``dtrain``/``dvalid`` as in
    :func:`tune_booster`."""
    booster_params = {
        **base_params(tune, objective=objective, eval_metric=metric),
        "monotone_constraints": data.monotone,
        **(fixed or {}),
        **best,
    }
    current = engine.current()
    if engine.is_dask(current) and current.distributed_training and dtrain is None and dvalid is None:
        # xgboost.dask across the workers (params.engine.distributed_training; docs/scale.md); a task that
        # builds its own matrices (limit: weights and base margins) keeps the local fit
        with engine.cluster(current) as client:
            workers = max(1, len(client.scheduler_info().get("workers", {})))
            booster = fit_booster_dask(
                client,
                booster_params,
                data,
                num_boost_round=tune.num_boost_round,
                early_stopping_rounds=tune.early_stopping_rounds,
                partitions=2 * workers,
            )
        return booster, booster_params
    booster = fit_booster(
        booster_params,
        data.matrix("train") if dtrain is None else dtrain,
        data.matrix("valid") if dvalid is None else dvalid,
        num_boost_round=tune.num_boost_round,
        early_stopping_rounds=tune.early_stopping_rounds,
    )
    return booster, booster_params


def save_models(
    params: Params,
    task: str,
    features_root: Path,
    out: Path,
    boosters: dict[str, xgb.Booster],
    meta: dict[str, Any],
    *,
    description: str,
    logged_params: dict[str, Any],
    logged_metrics: dict[str, Any],
    example: pd.DataFrame,
    files: dict[str, str] | None = None,
    extra_models: Callable[[Path], None] | None = None,
) -> Path:
    """Replace ``model/`` with ``boosters`` (each as ``files[name]``, default ``<name>.ubj``), ``meta`` as
    ``features.json`` and what ``extra_models`` writes; then log every booster to the training run (with
    ``logged_params``, ``logged_metrics``, ``example`` as input example) and write the run pointer (model URIs
    by name; ``default`` is the one registered). The handoff of the module docstring."""
    model_dir = out / "model"
    clear_run_pointer(out)  # from here on no pointer may describe the model being replaced
    with atomic_dir(model_dir) as tmp:
        for name, booster in boosters.items():
            save_booster(booster, tmp / (files or {}).get(name, f"{name}.ubj"))
        write_json(meta, tmp / "features.json")
        if extra_models is not None:
            extra_models(tmp)
        # of the files this process wrote (model/ may change under a concurrent train)
        digest = dir_digest(tmp)
    fault_point("train.model_written")
    with tracking.stage_run(
        experiment_name=experiment_name(params, task),
        run_name=model_run_name(task, digest),
        description=description,
        stage=f"train@{task}",
        params_hash=params_hash(params.tune),
        inputs={f"features_{task}": Path(features_root) / taskspec.frame_of(task)},
        tags={"task": task, "model_digest": digest},
    ) as run:
        tracking.log_params(logged_params)
        tracking.log_metrics(logged_metrics)
        uris = {name: tracking.log_xgboost_model(booster, example) for name, booster in boosters.items()}
        write_run_pointer(out, run.info.run_id, uris, digest)
    return model_dir


def read_best_params(out: Path, task: str) -> dict:
    """``best_params.json`` of ``task`` (written by tune); errors name the file and the stage to run."""
    tuned = read_json(
        Path(out) / "best_params.json",
        what="the tuned params",
        remedy=f"run `cardlab tune {task}` (or `dvc repro tune@{task}`)",
    )
    if not isinstance(tuned, dict):
        raise InputDataError(
            f"{Path(out) / 'best_params.json'}: expected a JSON object; re-run `cardlab tune {task}`"
        )
    return tuned


def features_digest(features_root: Path, task: str) -> str:
    """Digest of a task's snapshot rows and the feature dictionary (what a study's trials are fitted on)."""
    root = Path(features_root)
    parts = [dir_digest(root / task)]
    if (root / "feature_dictionary.json").exists():
        parts.append(dir_digest(root / "feature_dictionary.json"))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------
# the train -> evaluate handoff
# ---------------------------------------------------------------------------------------------------------
def model_digest(out: Path) -> str:
    """sha256 over the names and bytes of ``out/model/`` (every model file the task trained)."""
    folder = Path(out) / "model"
    if not folder.is_dir():
        raise MissingInputError(f"{folder} is missing: run `cardlab train {Path(out).name}` first")
    return dir_digest(folder)


def clear_run_pointer(out: Path) -> None:
    (Path(out) / RUN_POINTER).unlink(missing_ok=True)


def write_run_pointer(out: Path, run_id: str, model_uris: dict[str, str], digest: str) -> None:
    """Atomically record the MLflow run holding the model with ``digest`` (the files the run's model came from)."""
    write_json(
        {
            "run_id": run_id,
            "model_uri": model_uris["default"],
            "model_uris": model_uris,
            "model_digest": digest,
        },
        Path(out) / RUN_POINTER,
    )


def read_run_pointer(out: Path) -> dict:
    """The run pointer, or {} when absent or unreadable (then evaluate logs the model itself)."""
    try:
        pointer = json.loads((Path(out) / RUN_POINTER).read_text())
    except (OSError, ValueError):
        return {}
    return pointer if isinstance(pointer, dict) else {}


def remember_scored(out: Path, digest: str) -> None:
    """Record that evaluate scores the ``model/`` files with ``digest`` (see :func:`scored_digest`)."""
    _SCORED[(Path(out) / "model").resolve()] = digest


def scored_digest(out: Path) -> str:
    """The digest of the model evaluate scored, checked against ``model/`` now: a model replaced while
    evaluate ran (a concurrent train) is never registered under the scores of another."""
    now = model_digest(out)
    scored = _SCORED.get((Path(out) / "model").resolve(), now)
    if scored != now:
        raise ModelFileError(
            f"{Path(out) / 'model'} changed while evaluate ran (digest {scored[:12]} when loaded, {now[:12]} "
            f"now; another `cardlab train` ran meanwhile): re-run `cardlab evaluate {Path(out).name}`"
        )
    return scored


def verified_run(out: Path, digest: str) -> dict:
    """The run pointer if it describes the model with ``digest``, else {} (saying why on stderr)."""
    pointer = read_run_pointer(out)
    if pointer and pointer.get("model_digest") != digest:
        sys.stderr.write(
            f"note: {Path(out) / RUN_POINTER} describes another model than {Path(out) / 'model'} (digest "
            f"{str(pointer.get('model_digest'))[:12]} vs {digest[:12]}); the scored model is logged to this "
            "evaluation's MLflow run and registered from there\n"
        )
        return {}
    return pointer


def load_model(out: Path) -> tuple[xgb.Booster, list[str], dict[str, int]]:
    """The booster, feature list and directions in ``out/model/``; remembers their digest for registration."""
    out = Path(out)
    digest = model_digest(out)
    task = out.name
    booster = load_booster(out / "model" / "model.ubj", remedy=f"re-run `cardlab train {task}`")
    meta = read_json(
        out / "model" / "features.json",
        what="the model's feature list",
        remedy=f"re-run `cardlab train {task}` (or `dvc repro train@{task}`)",
    )
    if not isinstance(meta, dict) or not {"features", "directions"} <= set(meta):
        raise ModelFileError(
            f"{out / 'model' / 'features.json'}: expected keys 'features' and 'directions'; "
            f"re-run `cardlab train {task}`"
        )
    remember_scored(out, digest)
    return booster, meta["features"], meta["directions"]


def log_evaluation(
    params: Params,
    task: str,
    out: Path,
    metrics: dict,
    *,
    passed: bool,
    description: str,
    params_slice: BaseModel | dict[str, Any],
    artifacts: dict[str, Path],
    registry_note: str = "",
    registry_description: str | None = None,
    extra_params: dict | None = None,
    json_artifacts: dict[str, Any] | None = None,
    scored_models: Callable[[Path], tuple[dict[str, Any], list[str]]] | None = None,
    gate: dict[str, Any] | None = None,
) -> None:
    """Add evaluate's metrics and plots to the training run and register the model evaluate scored.

    ``gate``: the monitoring plan's verdict (:func:`cardlab.modeling.monitoring.gate`); its grades, red and
    waived indicators become run and model-version tags (``gate_<indicator>``, ``gate_red``,
    ``gate_waived``) and end the version's description, so the registry shows why a model is or is not
    challenger.

    The training run is used only when the run pointer carries the digest of the scored model (module
    docstring); otherwise the scored model is logged in a new run and the pointer is rewritten to it. The
    ``challenger`` alias is set only when ``passed`` (the task's OOT thresholds in params.yaml hold).

    ``artifacts``: folders logged under their names; ``json_artifacts``: objects logged as JSON files at their
    artifact paths (``"folder/name.json"``). The registered version's description is ``registry_description``,
    else ``"<registry_note>; thresholds passed|NOT passed."``. ``scored_models(out)``: the boosters (by name;
    ``default`` is registered) and the feature list, for logging them anew (default: :func:`load_model`'s
    single booster). With several boosters each one's URI is also a run tag ``model_uri_<name>``.
    """
    digest = scored_digest(out)
    logged = verified_run(out, digest)
    run_id = logged.get("run_id")
    with tracking.resume_or_start(
        run_id,
        experiment_name=experiment_name(params, task),
        run_name=model_run_name(task, digest),
        description=description,
        stage=f"evaluate@{task}",
        params_hash=params_hash(params_slice),
        tags={"task": task, "model_digest": digest},
    ) as run:
        if run_id is None or run.info.run_id != run_id:
            boosters, features = (scored_models or _scored_booster)(out)
            example = pd.DataFrame(np.zeros((5, len(features)), dtype="float32"), columns=features)
            uris = {name: tracking.log_xgboost_model(booster, example) for name, booster in boosters.items()}
            write_run_pointer(out, run.info.run_id, uris, digest)
        else:
            uris = logged.get("model_uris") or {"default": logged["model_uri"]}
        if extra_params:
            tracking.log_params(extra_params)
        tracking.log_metrics(metrics)
        tracking.log_artifact(out / "metrics.json")
        for name, path in artifacts.items():
            tracking.log_artifacts(path, name)
        if json_artifacts:
            with tempfile.TemporaryDirectory() as tmp:
                for name, obj in json_artifacts.items():
                    folder, _, file_name = name.rpartition("/")
                    write_json(obj, Path(tmp) / file_name)
                    tracking.log_artifact(Path(tmp) / file_name, folder or None)
        tags = {"thresholds_passed": str(passed).lower()}
        gate_tags = monitoring.tags(gate) if gate is not None else {}
        tags.update(gate_tags)
        if len(uris) > 1:  # several models: the registry holds the default one, the run tags name them all
            tags.update({f"model_uri_{name}": uri for name, uri in uris.items()})
        tracking.set_tags(tags)
        if registry_description is None:
            registry_description = f"{registry_note}; thresholds {'passed' if passed else 'NOT passed'}."
        if gate is not None:
            registry_description += " " + monitoring.summary(gate)
        # lineage on the version itself: the run, the commit, the inputs as dvc.lock hashes them
        lineage = {
            "run_id": run.info.run_id,
            **{k: v for k, v in run.data.tags.items() if k in ("git_commit", "git_dirty", "params_hash")},
            **{k: v for k, v in run.data.tags.items() if k.startswith("dvc_md5_")},
        }
        version = tracking.register_model(
            task,
            uris["default"],
            challenger=passed,
            description=registry_description,
            model_digest=digest,
            version_tags={**gate_tags, **lineage},
        )
        tracking.set_tags({"registered_version": f"{taskspec.get(task).registered} v{version}"})


def _scored_booster(out: Path) -> tuple[dict[str, Any], list[str]]:
    """The single booster of ``out/model/`` by its run-pointer name, and its features (:func:`load_model`)."""
    booster, features, _ = load_model(out)
    return {"default": booster}, features
