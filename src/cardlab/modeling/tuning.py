"""Optuna tuning of XGBoost, shared by the tasks.

- Sampler: TPE, re-seeded before every trial with ``seed + number of finished trials`` so that a study
  resumed after a crash draws exactly what an uninterrupted study would have drawn (two runs give the same
  best params; a resumed run repeats no finished trial).
- Pruning: optuna-integration's ``XGBoostPruningCallback`` on the validation metric, with early stopping.
- Storage: a journal file (``experiments/<task>/optuna.journal``) by default, or any RDB URL from params.
- Identity: the study name carries a hash of everything a trial's result depends on — the tune params
  (search space, budget, rounds), the seed and fixed booster params, the data digest, the source of every
  cardlab module the objective can run (:func:`cardlab.codedeps.code_digest`: the task module, this module,
  the screen, the booster code ...) and the versions of xgboost/optuna. Changed code or data start a new study;
  a killed run of the *same* study resumes by name and finishes exactly the missing trials.
- Concurrency: a file lock per study (``.<study>.tune.lock`` beside the journal), and on PostgreSQL storage
  also a session advisory lock on the study's name (hosts that share the database but not the folder); a
  second process that would tune the same study refuses at once with a message naming the holder (two
  tuners would draw the same trials and overshoot ``n_trials``).
- Parallel trials (``tune.parallel_trials`` > 1, or the dask engine): batches of trials drawn together and
  run on the engine's workers (:mod:`cardlab.scale.trials`; what stays bit-reproducible: docs/scale.md).
- MLflow: one parent run per study, lean nested runs per trial (params + metric only).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import filelock
import optuna
import optuna.storages.journal  # explicit, so type checkers see the submodule
import xgboost as xgb
from optuna.trial import TrialState
from optuna_integration import XGBoostPruningCallback
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cardlab import liveness, tracking
from cardlab.artifacts import fault_point
from cardlab.codedeps import code_digest
from cardlab.config import TuneParams, params_hash
from cardlab.errors import StudyBusyError
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


def evaluate_trial(
    trial: optuna.Trial,
    tune: TuneParams,
    base: dict[str, Any],
    dtrain: xgb.DMatrix,
    dvalid: xgb.DMatrix,
    metric: str,
) -> float:
    """One trial: fit with the trial's params (median pruning on ``valid-<metric>``), return the valid score.
    The objective of the sequential study and of the batched one (:mod:`cardlab.scale.trials`)."""
    params = {**base, **suggest_xgb_params(trial, tune)}
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
    return float(booster.eval(dvalid, "valid").split(":")[-1])


def storage_for(tune: TuneParams, out_dir: Path) -> optuna.storages.BaseStorage | str:
    if tune.storage:
        return tune.storage
    out_dir.mkdir(parents=True, exist_ok=True)
    backend = optuna.storages.journal.JournalFileBackend(str(out_dir / "optuna.journal"))
    return optuna.storages.journal.JournalStorage(backend)


# libraries whose behaviour decides a trial's result (sampler, pruner, booster)
LIBRARIES = ("optuna", "optuna-integration", "xgboost", "numpy")


def code_identity(roots: Iterable[str] = ()) -> str:
    """Digest of the source an objective can run (``roots`` plus this module, transitively) and of the
    versions of :data:`LIBRARIES`."""
    code = code_digest(["cardlab.modeling.tuning", *roots])
    libs = ",".join(f"{lib}={version(lib)}" for lib in LIBRARIES)
    return hashlib.sha256(f"{code}|{libs}".encode()).hexdigest()


def study_name(
    task: str, tune: TuneParams, data_digest: str, extra: dict[str, Any] | None = None, *, code: str = ""
) -> str:
    """``<task>-<hash>``: the hash covers the tune params (search space included), the data digest, ``extra``
    (seed, fixed booster params) and ``code`` (:func:`code_identity`)."""
    key = json.dumps(
        {"tune": params_hash(tune), "data": data_digest, "extra": extra or {}, "code": code},
        sort_keys=True,
        default=str,
    )
    return f"{task}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


@contextlib.contextmanager
def study_lock(out_dir: Path, name: str) -> Iterator[None]:
    """Hold the lock of study ``name`` for the block; refuse at once when another process holds it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lock_path = out_dir / f".{name}.tune.lock"
    owner_path = out_dir / f".{name}.tune.owner"
    lock = filelock.FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        try:
            holder = json.loads(owner_path.read_text())
            who = f"pid {holder['pid']} on {holder['host']}, started {holder['since']}"
        except (OSError, ValueError, KeyError):
            who = "another process"
        raise StudyBusyError(
            f"Optuna study {name} is being tuned by {who} (lock {lock_path}); wait for it to finish and "
            "re-run: the study then resumes where it stopped (two tuners on one study would draw the same "
            "trials)"
        ) from None
    try:
        host, pid, _ = liveness.token().rsplit(":", 2)
        since = datetime.datetime.now().isoformat(timespec="seconds")
        owner_path.write_text(json.dumps({"pid": int(pid), "host": host, "since": since}))
        yield
    finally:
        owner_path.unlink(missing_ok=True)
        lock.release()


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
    direction: Literal["minimize", "maximize"] = "maximize",
    metric: str = "auc",
    experiment_name: str,
    on_trial: Callable[[int], None] | None = None,
    code_roots: Iterable[str] = (),
    identity: dict[str, Any] | None = None,
) -> optuna.Study:
    """Run (or resume) the study for ``task`` until ``tune.n_trials`` trials have finished.

    ``code_roots``: the modules that prepare the matrices and call this (e.g. ``cardlab.tasks.credit``); their
    source is part of the study's identity, with ``identity`` (anything else that decides the result)."""
    code = code_identity(code_roots)
    name = study_name(
        task, tune, data_digest, {"seed": seed, "fixed": fixed or {}, **(identity or {})}, code=code
    )
    from cardlab.scale import engine
    from cardlab.scale.trials import batched, rdb_study_lock, run_batched_study

    with study_lock(out_dir, name), rdb_study_lock(tune.storage, name):
        if batched(tune, engine.current()):
            return run_batched_study(
                name=name,
                code=code,
                task=task,
                tune=tune,
                seed=seed,
                out_dir=out_dir,
                base={**base, **(fixed or {})},
                dtrain=dtrain,
                dvalid=dvalid,
                direction=direction,
                metric=metric,
                experiment_name=experiment_name,
                engine=engine.current(),
            )
        return _run_locked_study(
            name=name,
            code=code,
            task=task,
            tune=tune,
            seed=seed,
            out_dir=out_dir,
            base=base,
            dtrain=dtrain,
            dvalid=dvalid,
            fixed=fixed,
            direction=direction,
            metric=metric,
            experiment_name=experiment_name,
            on_trial=on_trial,
        )


def _run_locked_study(
    *,
    name: str,
    code: str,
    task: str,
    tune: TuneParams,
    seed: int,
    out_dir: Path,
    base: dict[str, Any],
    dtrain: xgb.DMatrix,
    dvalid: xgb.DMatrix,
    fixed: dict[str, Any] | None,
    direction: Literal["minimize", "maximize"],
    metric: str,
    experiment_name: str,
    on_trial: Callable[[int], None] | None,
) -> optuna.Study:
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
        return evaluate_trial(trial, tune, {**base, **(fixed or {})}, dtrain, dvalid, metric)

    done_before = finished()
    with (
        tracking.stage_run(
            experiment_name=experiment_name,
            run_name=f"{task}-tune-{name.split('-')[-1]}",
            description=f"Optuna study {name} for the {task} task: seeded TPE, median pruning, "
            f"{tune.n_trials} trials (resumed with {done_before} finished).",
            stage=f"tune@{task}",
            params_hash=params_hash(tune),
            tags={"task": task, "optuna_study": name, "code_digest": code[:16]},
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
            study.optimize(objective, n_trials=1, catch=())
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
            fault_point(f"tune.trial.{trial.number}")
            if on_trial is not None:
                on_trial(trial.number)
        best = study.best_trial
        tracking.log_params({f"best_{k}": v for k, v in best.params.items()})
        tracking.log_metrics({f"best_valid_{metric}": best.value, "n_trials": finished()})
    return study
