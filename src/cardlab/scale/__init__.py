"""Scale-out on existing engines (docs/scale.md).

- :mod:`cardlab.scale.engine`: the Dask cluster a stage runs on (``params.engine``) and the one way work is
  handed to it (ordered task maps with retries);
- :mod:`cardlab.scale.features`: the features stage partitioned by customer shard, byte-identical to the
  local build;
- :mod:`cardlab.scale.trials`: Optuna trials in batches on the workers, one RDB (PostgreSQL) storage;
- :mod:`cardlab.scale.training`: ``xgboost.dask`` training of a task's main booster;
- :mod:`cardlab.scale.services`: PostgreSQL, an S3-compatible store and an MLflow tracking server on
  127.0.0.1 (``make services``).

Nothing here is a scheduler of its own: Dask schedules, retries and restarts; PostgreSQL stores trials.
"""
