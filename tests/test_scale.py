"""Scale-out (issue 23, docs/scale.md): what the dask engine, the batched trials and the services promise.

- simulate and features on a 2-worker LocalCluster write the local run's bytes, also when a worker is killed
  mid-stage (Dask re-runs its task);
- the partitioned features merge writes ``artifacts.write_parquet``'s bytes across row-group boundaries;
- batched tuning: B = 1 reproduces the sequential study; B = 2 gives the same trials in-process and on Dask
  workers sharing PostgreSQL, also when a worker dies mid-trial (Optuna's heartbeat + retry) and when
  PostgreSQL restarts between batches (no finished trial lost); a second tuner is refused by PostgreSQL;
- a tracking server that does not answer stops a stage with ``TrackingServerError``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import xgboost as xgb

from cardlab.artifacts import PARQUET_OPTS, dir_digest, write_parquet
from cardlab.config import EngineParams, FeaturesParams, PresetSize, SimulateParams, TuneParams
from cardlab.errors import StudyBusyError, TrackingServerError

pytestmark = pytest.mark.timeout(900)
DASK = EngineParams(kind="dask", local_workers=2, memory_per_worker="2GiB", heartbeat_s=1, retries=2)
TINY = SimulateParams(preset="ci", presets={"ci": PresetSize(n_customers=3000, months=24, shard_size=1000)})


def _postgres():
    from cardlab.scale.services import PostgresServer, port_free

    try:
        port = next(p for p in range(17600, 17700) if port_free(p))
        return PostgresServer(Path(os.environ.get("TMPDIR", "/tmp")) / f"cardlab-pg-test-{port}", port)
    except FileNotFoundError as err:
        pytest.skip(str(err))


# ---------------------------------------------------------------------------------------------------------
# simulate and features
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from cardlab.world.simulate import simulate

    out = tmp_path_factory.mktemp("world") / "local"
    simulate(TINY, out, workers=1, progress=False)
    return out


def test_simulate_on_dask_is_byte_identical_with_a_worker_killed(tiny_world, tmp_path, monkeypatch):
    from cardlab.world.simulate import simulate

    once = tmp_path / "killed-once"
    monkeypatch.setenv("CARDLAB_FAULT", "scale.task.simulate-shard-1:SIGKILL")
    monkeypatch.setenv("CARDLAB_FAULT_ONCE", str(once))
    simulate(TINY, tmp_path / "dask", workers=1, progress=False, engine=DASK)
    assert once.exists(), "the worker running shard 1 was not killed"
    assert dir_digest(tmp_path / "dask") == dir_digest(tiny_world)


def test_features_partitioned_are_byte_identical_with_a_worker_killed(tiny_world, tmp_path, monkeypatch):
    from cardlab.features.build import build_features

    params = FeaturesParams()
    build_features(params, tiny_world / "raw", tmp_path / "local", progress=False)
    once = tmp_path / "killed-once"
    monkeypatch.setenv("CARDLAB_FAULT", "scale.task.features-partition-1:SIGKILL")
    monkeypatch.setenv("CARDLAB_FAULT_ONCE", str(once))
    build_features(params, tiny_world / "raw", tmp_path / "dask", progress=False, engine=DASK)
    assert once.exists(), "the worker building partition 1 was not killed"
    local = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*") if p.is_file())
    dask = sorted(p.relative_to(tmp_path / "dask") for p in (tmp_path / "dask").rglob("*") if p.is_file())
    assert local == dask
    for rel in local:
        assert (tmp_path / "local" / rel).read_bytes() == (tmp_path / "dask" / rel).read_bytes(), rel


def test_merge_writer_makes_write_parquets_bytes_across_row_groups(tmp_path, monkeypatch):
    """The partitioned merge appends months to the output; its row groups must be write_parquet's."""
    from cardlab.scale.features import _RowGroupWriter

    monkeypatch.setitem(PARQUET_OPTS, "row_group_size", 1000)
    rng = np.random.default_rng(3)
    n = 4321
    frame = pl.DataFrame(
        {
            "customer_id": np.arange(n, dtype=np.int64),
            "x": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
            "label": pl.Series(rng.integers(0, 2, n), dtype=pl.Int8),
            "kind": rng.choice(["a", "b", "c"], n),
        }
    ).with_columns(pl.when(pl.col("x") > 1).then(None).otherwise(pl.col("x")).alias("x"))
    write_parquet(frame, tmp_path / "whole.parquet")
    writer = _RowGroupWriter(tmp_path / "merged.parquet")
    for start in range(0, n, 700):  # pieces that straddle the row-group boundaries
        writer.append(frame.slice(start, 700))
    writer.close(frame.clear())
    assert (tmp_path / "merged.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()


def test_interleaving_card_ranges_are_refused():
    from cardlab.errors import InputDataError
    from cardlab.features.build import WorldVocabulary
    from cardlab.scale.features import PartitionFacts, world_vocabularies

    v = WorldVocabulary((), (), (), ())
    ok = world_vocabularies([PartitionFacts(0, v, 3, (1, 5)), PartitionFacts(1, v, 4, (6, 9))])
    assert [ok[0].decision_id_offset, ok[1].decision_id_offset] == [0, 3]
    with pytest.raises(InputDataError, match="interleaving card ids"):
        world_vocabularies([PartitionFacts(0, v, 3, (1, 7)), PartitionFacts(1, v, 4, (6, 9))])


# ---------------------------------------------------------------------------------------------------------
# tuning
# ---------------------------------------------------------------------------------------------------------
def _data() -> tuple[xgb.DMatrix, xgb.DMatrix]:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3000, 6)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + rng.normal(size=3000) > 0.3).astype("float32")
    names = [f"f{i}" for i in range(6)]
    return (
        xgb.DMatrix(x[:2000], label=y[:2000], feature_names=names, nthread=1),
        xgb.DMatrix(x[2000:], label=y[2000:], feature_names=names, nthread=1),
    )


def _tune(tmp: Path, *, parallel: int, storage: str | None, engine: EngineParams, data_tag: str = "d"):
    from cardlab.modeling.tuning import run_study
    from cardlab.modeling.xgb import base_params
    from cardlab.scale import engine as eng

    tune = TuneParams(
        n_trials=6,
        num_boost_round=40,
        early_stopping_rounds=5,
        nthread=1,
        storage=storage,
        parallel_trials=parallel,
    )
    dtrain, dvalid = _data()
    eng.configure(engine)
    try:
        study = run_study(
            task="credit",
            tune=tune,
            seed=7,
            out_dir=tmp,
            data_digest=data_tag,
            base=base_params(tune),
            dtrain=dtrain,
            dvalid=dvalid,
            experiment_name="cardlab-scale-test",
        )
    finally:
        eng.configure(EngineParams())
    return study


def _finished(study) -> list[tuple]:
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    key = (
        (lambda t: (t.user_attrs["batch"], t.user_attrs["slot"]))
        if done and "batch" in done[0].user_attrs
        else (lambda t: t.number)
    )
    return [(t.state.name, t.params, t.value) for t in sorted(done, key=key)]


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("CARDLAB_ROOT", str(tmp_path))
    return tmp_path


def test_batches_of_one_reproduce_the_sequential_study(mlflow_store, monkeypatch):
    from cardlab.scale import trials

    sequential = _tune(mlflow_store / "seq", parallel=1, storage=None, engine=EngineParams())
    monkeypatch.setattr(trials, "batched", lambda tune, engine: True)  # the batched path at B = 1, in-process
    batched = _tune(mlflow_store / "bat", parallel=1, storage=None, engine=EngineParams())
    assert _finished(batched) == _finished(sequential)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    pg = _postgres().start()
    pg.create_database("optuna")
    yield pg
    pg.stop("immediate")
    pg.remove()  # its data too: a later run on the same port must not resume this run's studies


@pytest.fixture(scope="module")
def reference_b2(tmp_path_factory):
    """B = 2 run in-process on a journal file: the trials every other B = 2 run must reproduce."""
    tmp = tmp_path_factory.mktemp("ref")
    old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "CARDLAB_ROOT")}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
    os.environ["CARDLAB_ROOT"] = str(tmp)
    try:
        return _finished(_tune(tmp, parallel=2, storage=None, engine=EngineParams()))
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_parallel_trials_on_dask_workers_and_postgres_survive_a_worker_killed_mid_trial(
    mlflow_store, postgres, reference_b2, monkeypatch
):
    once = mlflow_store / "killed-once"
    monkeypatch.setenv("CARDLAB_FAULT", "scale.trial.b1:SIGKILL")
    monkeypatch.setenv("CARDLAB_FAULT_ONCE", str(once))
    study = _tune(
        mlflow_store, parallel=2, storage=postgres.sqlalchemy_url("optuna"), engine=DASK, data_tag="kill"
    )
    assert once.exists(), "no worker was killed mid-trial"
    states = [t.state.name for t in study.trials]
    assert states.count("FAIL") == 1, states  # the killed attempt, failed by its stale heartbeat ...
    retried = [t for t in study.trials if "failed_trial" in t.system_attrs]
    assert len(retried) == 1 and retried[0].state.name in ("COMPLETE", "PRUNED")  # ... and retried
    assert _finished(study) == reference_b2


def test_postgres_restart_between_batches_loses_no_finished_trial(
    mlflow_store, postgres, reference_b2, monkeypatch
):
    from cardlab.scale import trials

    seen: dict[str, list] = {}

    def restart(name: str) -> None:
        if name == "tune.batch.0":
            import optuna

            url = postgres.sqlalchemy_url("optuna")
            study = optuna.load_study(study_name=optuna.get_all_study_names(url)[-1], storage=url)
            seen["before"] = [(t.number, t.value) for t in study.trials if t.state.name == "COMPLETE"]
            postgres.restart()

    monkeypatch.setattr(trials, "fault_point", restart)
    study = _tune(
        mlflow_store,
        parallel=2,
        storage=postgres.sqlalchemy_url("optuna"),
        engine=EngineParams(),
        data_tag="restart",
    )
    assert seen.get("before"), "PostgreSQL was not restarted mid-tuning"
    after = {t.number: t.value for t in study.trials if t.state.name == "COMPLETE"}
    assert all(after.get(n) == v for n, v in seen["before"]), "a trial finished before the restart was lost"
    assert _finished(study) == reference_b2


def test_a_second_tuner_of_a_study_on_postgres_is_refused(postgres):
    from cardlab.scale.trials import rdb_study_lock

    url = postgres.sqlalchemy_url("optuna")
    with rdb_study_lock(url, "credit-abc"), pytest.raises(StudyBusyError, match="credit-abc"):  # noqa: SIM117
        with rdb_study_lock(url, "credit-abc"):
            pass
    with rdb_study_lock(url, "credit-abc"):  # released with the block
        pass


# ---------------------------------------------------------------------------------------------------------
# tracking server
# ---------------------------------------------------------------------------------------------------------
def test_a_tracking_server_that_is_down_stops_the_stage_clearly(tmp_path, monkeypatch):
    from cardlab import tracking
    from cardlab.scale.services import port_free

    port = next(p for p in range(17700, 17800) if port_free(p))
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(TrackingServerError, match=f"{uri}.*does not answer"):
        tracking.check_server()
    # a real server that goes down while a stage logs
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'db.sqlite'}",
            "--default-artifact-root",
            str(tmp_path / "art"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                tracking.check_server()
                break
            except TrackingServerError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        with pytest.raises(TrackingServerError, match="does not answer"):  # noqa: SIM117
            with tracking.stage_run(
                experiment_name="cardlab-down",
                run_name="r",
                description="d",
                stage="train@credit",
                params_hash="x",
            ):
                tracking.log_metrics({"a": 1.0})
                os.killpg(server.pid, 9)
                server.wait(timeout=30)
                tracking.log_metrics({"b": 2.0})
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 9)


def test_distributed_training_with_xgboost_dask_matches_the_local_fit():
    """engine.distributed_training: train's booster is fitted by xgboost.dask over 2 LocalCluster workers
    (rows in 4 blocks). Promised: a close model, not the same bytes — the workers' quantile sketches are merged
    into slightly different histogram bins and the histogram sums are reduced in another order — so the check
    is on predictions (mean |diff| of the probabilities) and the OOT AUC against the local fit of the same
    tuned params on the same rows."""
    import pandas as pd

    from cardlab.modeling import metrics as model_metrics
    from cardlab.modeling.workflow import fit_tuned
    from cardlab.modeling.xgb import TaskData
    from cardlab.scale import engine

    rng = np.random.default_rng(5)
    n, features = 6000, [f"x{i}" for i in range(6)]
    x = rng.normal(size=(n, len(features)))
    p = 1 / (1 + np.exp(-(x[:, 0] - 0.7 * x[:, 1] + 0.4 * x[:, 2] * x[:, 3] - 1.5)))
    frame = pd.DataFrame(x, columns=features).assign(label=(rng.random(n) < p).astype(float))
    frames = {"train": frame.iloc[:4000], "valid": frame.iloc[4000:5000], "oot": frame.iloc[5000:]}
    data = TaskData(frames, features, {"x0": 1, "x1": -1})
    tune = TuneParams(num_boost_round=80, early_stopping_rounds=10, nthread=1)
    best = {"max_depth": 3, "learning_rate": 0.1}
    previous = engine.current()
    try:
        engine.configure(EngineParams(kind="local"))
        local, _ = fit_tuned(tune, data, best, metric="logloss")
        engine.configure(DASK.model_copy(update={"distributed_training": True}))
        distributed, _ = fit_tuned(tune, data, best, metric="logloss")
    finally:
        engine.configure(previous)
    oot = frames["oot"][features].to_numpy(dtype=np.float32)
    p_local, p_dist = local.inplace_predict(oot), distributed.inplace_predict(oot)
    y = frames["oot"]["label"].to_numpy()
    assert distributed.num_boosted_rounds() > 5
    assert np.mean(np.abs(p_local - p_dist)) < 0.02
    assert abs(model_metrics.auc(y, p_local) - model_metrics.auc(y, p_dist)) < 0.01
    assert model_metrics.auc(y, p_dist) > 0.7  # it learned the signal
