"""Optuna trials in parallel on the engine's workers, sharing one RDB (PostgreSQL) storage.

Batch-synchronous TPE, so that the tuned result depends on ``tune.parallel_trials`` (B) and never on timing,
the number of workers or a worker's death:

- the tuner (the client) creates the study once, before any worker starts, and holds its locks;
- batch k's B parameter sets are drawn by the client from the finished trials of batches < k only, slot i
  with TPE seeded ``seed + k*B + i`` (for B = 1 exactly the sequential study's ``seed + finished``), on an
  in-memory copy of that history in a canonical order (batch, slot) — so a retried trial, which gets a new
  trial number, changes nothing;
- the sets are enqueued (user attributes ``batch``, ``slot``) and B Dask tasks each run one enqueued trial
  with ``study.optimize`` on the worker: Optuna's heartbeat marks the trial alive; pruning compares only with
  completed trials of earlier batches (:class:`EarlierBatchesPruner`), never with a sibling that happens to
  finish first;
- a worker killed mid-trial: its heartbeat stops, the retried Dask task fails the stale trial
  (``fail_stale_trials`` after the grace period) and Optuna's ``RetryHeartbeatStaleTrialCallback`` enqueues a copy
  with the same parameters, which the task then runs: XGBoost's ``hist`` is deterministic, so the value is
  the one the killed attempt would have produced;
- the tuner killed: the next run resumes the first incomplete batch, enqueueing only its missing slots.

What is *not* reproduced: a study with B > 1 differs from the sequential one (TPE sees less history per
draw), and trial numbers and wall times vary. PostgreSQL restarts are survived by ``pool_pre_ping`` (dead
pooled connections are replaced) and by committed rows: a finished trial is a committed transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeGuard, cast

import optuna
import xgboost as xgb
from optuna.trial import TrialState

from cardlab import tracking
from cardlab.artifacts import fault_point
from cardlab.config import EngineParams, TuneParams, params_hash
from cardlab.errors import EngineError, StudyBusyError
from cardlab.scale.engine import fault

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_DATA: dict[str, tuple[xgb.DMatrix, xgb.DMatrix]] = {}  # per worker process: the study's matrices


def batched(tune: TuneParams, engine: EngineParams) -> bool:
    """Batches are used for B > 1, and on the dask engine (B = 1 then reproduces the sequential study)."""
    return tune.parallel_trials > 1 or engine.kind == "dask"


def is_postgres(url: str | None) -> TypeGuard[str]:
    if not url:
        return False
    return url.split(":", 1)[0].split("+")[0] in ("postgresql", "postgres")


@contextlib.contextmanager
def rdb_study_lock(url: str | None, name: str) -> Iterator[None]:
    """On PostgreSQL storage: a session advisory lock on the study's name for the block (released by the
    server when this process's connection ends, however it ends); a second tuner refuses at once."""
    if not is_postgres(url):
        yield
        return
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with engine.connect() as conn:
        got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        if not got:
            holder = conn.execute(
                sa.text(
                    "SELECT a.client_addr, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.objid = (:k & 4294967295)::oid LIMIT 1"
                ),
                {"k": key},
            ).first()
            who = f"backend pid {holder[1]} from {holder[0]}" if holder else "another tuner"
            raise StudyBusyError(
                f"Optuna study {name} is being tuned by {who} (PostgreSQL advisory lock in {engine.url.host}:"
                f"{engine.url.port}); wait for it to finish and re-run: the study then resumes"
            )
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # a restarted server already dropped the lock
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    engine.dispose()


def rdb_storage(url: str, engine: EngineParams) -> optuna.storages.RDBStorage:
    """The study's RDB storage: heartbeats, failed-trial retry, connections checked before use."""
    # heartbeats and the stale-trial retry are marked experimental by Optuna (since 2.8/2.9) but are its
    # documented mechanism for this; the warning would print once per worker and trial
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs={"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2},
            heartbeat_interval=engine.heartbeat_s,
            grace_period=3 * engine.heartbeat_s,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=engine.retries
            ),
        )


def _storage(tune: TuneParams, out_dir: Path, engine: EngineParams) -> Any:
    from cardlab.modeling.tuning import storage_for

    if tune.storage and not tune.storage.startswith("sqlite"):
        return rdb_storage(tune.storage, engine)
    if engine.kind == "dask":
        raise EngineError(
            "tune on the dask engine needs an RDB storage the workers share: set tune.storage to a "
            "PostgreSQL URL (e.g. $CARDLAB_OPTUNA_STORAGE of `make services`)"
        )
    return storage_for(tune, out_dir)


def _value(trial: optuna.trial.FrozenTrial) -> float:
    """The objective value of a COMPLETE trial (optuna types FrozenTrial.value as float | None)."""
    return cast(float, trial.value)


class EarlierBatchesPruner(optuna.pruners.BasePruner):
    """Median pruning against the *completed trials of earlier batches* only (for B = 1: every completed
    trial, i.e. the sequential study's ``MedianPruner``): a sibling in the same batch that finishes first
    must not decide whether this trial is pruned."""

    def __init__(self) -> None:
        self._median = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=20)

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        # _EarlierBatches provides the part of the Study interface MedianPruner reads (duck-typed)
        view = cast(optuna.Study, _EarlierBatches(study, trial.user_attrs["batch"]))
        return self._median.prune(view, trial)


class _EarlierBatches:
    """A read-only view of a study holding only the trials of batches before ``batch``."""

    def __init__(self, study: optuna.Study, batch: int) -> None:
        self._study, self._batch = study, batch

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[optuna.trial.FrozenTrial]:
        trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in trials if t.user_attrs.get("batch", -1) < self._batch]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def _slot(t: optuna.trial.FrozenTrial) -> tuple[int, int]:
    return int(t.user_attrs["batch"]), int(t.user_attrs["slot"])


def history(study: optuna.Study, before_batch: int) -> list[optuna.trial.FrozenTrial]:
    """Finished trials of batches < ``before_batch``, one per slot, in (batch, slot) order."""
    seen: dict[tuple[int, int], optuna.trial.FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False, states=FINISHED):
        if "batch" in t.user_attrs and _slot(t)[0] < before_batch:
            seen.setdefault(_slot(t), t)
    return [seen[k] for k in sorted(seen)]


def draw(
    study: optuna.Study, tune: TuneParams, seed: int, batch: int, slots: list[int], size: int
) -> dict[int, dict[str, Any]]:
    """The parameters of ``slots`` of ``batch``: TPE over the earlier batches, seeded per slot."""
    from cardlab.modeling.tuning import suggest_xgb_params

    past = history(study, batch)
    out = {}
    for slot in slots:
        sampler = optuna.samplers.TPESampler(seed=seed + batch * size + slot, n_startup_trials=8)
        scratch = optuna.create_study(direction=study.direction, sampler=sampler)
        scratch.add_trials(past)
        out[slot] = suggest_xgb_params(scratch.ask(), tune)
    return out


def run_trial(
    spec: dict[str, Any], batch: int, data: tuple[str, str], tune: TuneParams, engine: EngineParams
) -> int:
    """A Dask task (or an in-process call): run one enqueued trial of ``batch``; return its number, or -1
    when the batch had nothing left (a duplicate of a task that already ran)."""
    from cardlab.modeling.tuning import evaluate_trial

    storage = rdb_storage(spec["url"], engine) if spec["url"] else spec["storage"]
    study = optuna.load_study(
        study_name=spec["name"],
        storage=storage,
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=EarlierBatchesPruner(),
    )
    dtrain, dvalid = _matrices(data)
    ran: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        if trial.user_attrs.get("batch") != batch:
            raise _NotEnqueued(trial.number)
        ran.append(trial.number)
        if isinstance(storage, optuna.storages.RDBStorage):
            # Optuna's heartbeat thread records its first beat asynchronously; a worker killed before it
            # would leave a trial that never turns stale (so never retried): beat once, now
            storage.record_heartbeat(trial._trial_id)
        fault(f"scale.trial.b{batch}")  # tests kill a worker mid-trial here (its heartbeat then stops)
        return evaluate_trial(trial, tune, spec["base"], dtrain, dvalid, spec["metric"])

    deadline = time.monotonic() + 6 * engine.heartbeat_s + 120
    while time.monotonic() < deadline:
        if spec["url"]:
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial -> FAIL + a WAITING copy
        mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("batch") == batch]
        if any(t.state == TrialState.WAITING for t in mine):
            try:
                study.optimize(objective, n_trials=1, catch=())
            except _NotEnqueued:  # another task took the last waiting trial first
                continue
            return ran[-1]
        if all(t.state in (*FINISHED, TrialState.FAIL) for t in mine):
            return -1
        time.sleep(min(engine.heartbeat_s, 5))
    raise EngineError(f"study {spec['name']} batch {batch}: no trial to run after waiting for stale ones")


class _NotEnqueued(RuntimeError):
    def __init__(self, number: int) -> None:
        super().__init__(f"trial {number} was not enqueued by the tuner")


def _matrices(data: tuple[str, str]) -> tuple[xgb.DMatrix, xgb.DMatrix]:
    key = "|".join(data)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = (xgb.DMatrix(data[0]), xgb.DMatrix(data[1]))
    return _DATA[key]


def run_batched_study(
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
    direction: Literal["minimize", "maximize"],
    metric: str,
    experiment_name: str,
    engine: EngineParams,
) -> optuna.Study:
    """Run (or resume) study ``name`` in batches of ``tune.parallel_trials`` until ``tune.n_trials`` trials
    have finished (see the module docstring)."""
    from cardlab.modeling.tuning import _fail_interrupted

    storage = _storage(tune, out_dir, engine)
    study = optuna.create_study(
        study_name=name, storage=storage, direction=direction, load_if_exists=True, sampler=None
    )  # created once, here, before any worker starts
    _fail_interrupted(study)  # we hold the study's locks: a RUNNING trial belongs to a dead tuner
    size = tune.parallel_trials
    # the matrices travel as XGBoost binary buffers in a folder the workers share with the tuner
    data_dir = Path(out_dir) / f".{name}.data"
    data_dir.mkdir(parents=True, exist_ok=True)
    data = (str(data_dir / "train.buffer"), str(data_dir / "valid.buffer"))
    dtrain.save_binary(data[0])
    dvalid.save_binary(data[1])
    spec = {
        "name": name,
        "url": tune.storage if isinstance(storage, optuna.storages.RDBStorage) else None,
        "storage": None if isinstance(storage, optuna.storages.RDBStorage) else storage,
        "base": base,
        "metric": metric,
    }
    n_batches = -(-tune.n_trials // size)
    with contextlib.ExitStack() as stack:
        client = None
        if engine.kind == "dask":
            from cardlab.scale.engine import cluster

            client = stack.enter_context(cluster(engine))
        stack.enter_context(
            tracking.stage_run(
                experiment_name=experiment_name,
                run_name=f"{task}-tune-{name.split('-')[-1]}",
                description=f"Optuna study {name} for the {task} task: batch-synchronous TPE, {size} trials "
                f"per batch on the {engine.kind} engine, median pruning against earlier batches, "
                f"{tune.n_trials} trials.",
                stage=f"tune@{task}",
                params_hash=params_hash(tune),
                tags={"task": task, "optuna_study": name, "code_digest": code[:16], "engine": engine.kind},
            )
        )
        for batch in range(n_batches):
            slots = list(range(min(size, tune.n_trials - batch * size)))
            for attempt in range(engine.retries + 2):
                done = {_slot(t)[1] for t in history(study, batch + 1) if _slot(t)[0] == batch}
                missing = [s for s in slots if s not in done]
                if not missing:
                    break
                if attempt > engine.retries:
                    raise EngineError(
                        f"study {name}: batch {batch} slots {missing} did not finish after {attempt} attempts"
                    )
                waiting = {
                    _slot(t)[1]
                    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                    if t.user_attrs.get("batch") == batch
                }
                for slot, params in draw(
                    study, tune, seed, batch, [s for s in missing if s not in waiting], size
                ).items():
                    study.enqueue_trial(params, user_attrs={"batch": batch, "slot": slot})
                args = [(spec, batch, data, tune, engine) for _ in missing]
                if client is None:
                    for a in args:
                        run_trial(*a)
                else:
                    from cardlab.scale.engine import map_tasks

                    map_tasks(client, run_trial, args, name=f"tune-{name}-b{batch}-a{attempt}")
            _log_batch(study, batch, name, task, tune, experiment_name, metric)
            fault_point(f"tune.batch.{batch}")
        finished = history(study, n_batches)
        best = max(
            (t for t in finished if t.state == TrialState.COMPLETE),
            key=lambda t: _value(t) if direction == "maximize" else -_value(t),
        )
        tracking.log_params({f"best_{k}": v for k, v in best.params.items()})
        tracking.log_metrics({f"best_valid_{metric}": best.value, "n_trials": len(finished)})
    shutil.rmtree(data_dir, ignore_errors=True)
    return study


def _log_batch(
    study: optuna.Study, batch: int, name: str, task: str, tune: TuneParams, experiment_name: str, metric: str
) -> None:
    """Nested MLflow runs of the batch's trials, in slot order (lean: params and the metric)."""
    for t in history(study, batch + 1):
        if _slot(t)[0] != batch:
            continue
        with tracking.stage_run(
            experiment_name=experiment_name,
            run_name=f"trial-b{batch:03d}-s{_slot(t)[1]:02d}",
            description=f"trial {t.number} (batch {batch}, slot {_slot(t)[1]}) of study {name}",
            stage=f"tune@{task}",
            params_hash=params_hash(tune),
            nested=True,
        ):
            tracking.log_params(t.params)
            tracking.log_metrics({f"valid_{metric}": t.value if t.value is not None else float("nan")})
            tracking.set_tags({"trial_state": t.state.name, "trial_number": str(t.number)})


__all__ = ["EarlierBatchesPruner", "batched", "draw", "history", "rdb_study_lock", "run_batched_study"]
