"""Optuna tuning of XGBoost, shared by the tasks.

- Sampler: TPE, re-seeded before every trial with ``seed + number of finished trials`` so that a study
  resumed after a crash draws exactly what an uninterrupted study would have drawn (two runs give the same
  best params; a resumed run repeats no finished trial).
- Pruning: optuna-integration's ``XGBoostPruningCallback`` on the validation metric, with early stopping.
- Storage: a journal file (``experiments/<task>/optuna.journal``) by default, or any RDB URL from params.
  The study name carries a hash of the data and the search settings, so changed inputs start a new study and
  an interrupted one resumes by name.
- MLflow: one parent run per study, lean nested runs per trial (params + metric only).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import xgboost as xgb
from optuna.trial import TrialState
from optuna_integration import XGBoostPruningCallback
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cardlab import tracking
from cardlab.config import TuneParams, params_hash
from cardlab.modeling.xgb import fit_booster

optuna.logging.set_verbosity(optuna.logging.WARNING)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def suggest_xgb_params(trial: optuna.Trial, tune: TuneParams) -> dict[str, Any]:
    space = tune.search_space
    return {
        "max_depth": trial.suggest_int("max_depth", *space.max_depth),
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        "min_child_weight": trial.suggest_float("min_child_weight", *space.min_child_weight, log=True),
        "subsample": trial.suggest_float("subsample", *space.subsample),
        "colsample_bytree": trial.suggest_float("colsample_bytree", *space.colsample_bytree),
        "reg_lambda": trial.suggest_float("reg_lambda", *space.reg_lambda, log=True),
    }


def storage_for(tune: TuneParams, out_dir: Path) -> optuna.storages.BaseStorage | str:
    if tune.storage:
        return tune.storage
    out_dir.mkdir(parents=True, exist_ok=True)
    backend = optuna.storages.journal.JournalFileBackend(str(out_dir / "optuna.journal"))
    return optuna.storages.journal.JournalStorage(backend)


def study_name(task: str, tune: TuneParams, data_digest: str, extra: dict[str, Any] | None = None) -> str:
    key = json.dumps({"tune": params_hash(tune), "data": data_digest, "extra": extra or {}}, sort_keys=True)
    return f"{task}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _fail_interrupted(study: optuna.Study) -> int:
    """Trials left RUNNING by a killed process are marked FAIL (they are re-drawn, finished ones are not)."""
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
    return len(stale)


def run_study(
    *,
    task: str,
    tune: TuneParams,
    seed: int,
    out_dir: Path,
    data_digest: str,
    base: dict[str, Any],
    dtrain: xgb.DMatrix,
    dvalid: xgb.DMatrix,
    fixed: dict[str, Any] | None = None,
    direction: str = "maximize",
    metric: str = "auc",
    experiment_name: str,
    on_trial: Callable[[int], None] | None = None,
) -> optuna.Study:
    """Run (or resume) the study for ``task`` until ``tune.n_trials`` trials have finished."""
    name = study_name(task, tune, data_digest, {"seed": seed, "fixed": fixed or {}})
    study = optuna.create_study(
        study_name=name,
        storage=storage_for(tune, out_dir),
        direction=direction,
        load_if_exists=True,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=20),
    )
    _fail_interrupted(study)

    def finished() -> int:
        return sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))

    def objective(trial: optuna.Trial) -> float:
        params = {**base, **(fixed or {}), **suggest_xgb_params(trial, tune)}
        pruning = XGBoostPruningCallback(trial, f"valid-{metric}")
        booster = fit_booster(
            params,
            dtrain,
            dvalid,
            num_boost_round=tune.num_boost_round,
            early_stopping_rounds=tune.early_stopping_rounds,
            callbacks=[pruning],
        )
        trial.set_user_attr("best_iteration", int(booster.num_boosted_rounds()))
        score = float(booster.eval(dvalid, "valid").split(":")[-1])
        return score

    done_before = finished()
    with (
        tracking.stage_run(
            experiment_name=experiment_name,
            run_name=f"{task}-tune-{name.split('-')[-1]}",
            description=f"Optuna study {name} for the {task} task: seeded TPE, median pruning, "
            f"{tune.n_trials} trials (resumed with {done_before} finished).",
            stage=f"tune@{task}",
            params_hash=params_hash(tune),
            tags={"task": task, "optuna_study": name},
        ),
        Progress(
            TextColumn(f"[bold]tune {task}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False,
        ) as progress,
    ):
        bar = progress.add_task("trials", total=tune.n_trials, completed=done_before)
        while finished() < tune.n_trials:
            # re-seed per trial: a resumed study draws what an uninterrupted one would have drawn
            study.sampler = optuna.samplers.TPESampler(seed=seed + finished(), n_startup_trials=8)
            study.optimize(objective, n_trials=1, timeout=tune.timeout_s, catch=())
            trial = study.trials[-1]
            with tracking.stage_run(
                experiment_name=experiment_name,
                run_name=f"trial-{trial.number:03d}",
                description=f"trial {trial.number} of study {name}",
                stage=f"tune@{task}",
                params_hash=params_hash(tune),
                nested=True,
            ):
                tracking.log_params(trial.params)
                tracking.log_metrics(
                    {f"valid_{metric}": trial.value if trial.value is not None else float("nan")}
                )
                tracking.set_tags({"trial_state": trial.state.name})
            progress.update(bar, completed=finished())
            if on_trial is not None:
                on_trial(trial.number)
        best = study.best_trial
        tracking.log_params({f"best_{k}": v for k, v in best.params.items()})
        tracking.log_metrics({f"best_valid_{metric}": best.value, "n_trials": finished()})
    return study
