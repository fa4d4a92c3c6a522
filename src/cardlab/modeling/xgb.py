"""Shared XGBoost training for the three tasks.

A :class:`TaskData` holds the prepared matrices of one task (feature order fixed by the feature
dictionary); :func:`fit_booster` is a thin wrapper over ``xgb.train`` (the benchmark in
``benchmarks/bench_training.py`` keeps its overhead under 1.1x a bare ``xgb.train``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from cardlab import taskspec
from cardlab.config import TuneParams
from cardlab.errors import InputDataError, MissingInputError, ModelFileError

SEED = 20231101  # fixed: XGBoost's own sampling seed; study-level randomness comes from params


@dataclass
class TaskData:
    """Snapshot rows of one task split by time, with the feature list and monotone directions."""

    frames: dict[str, pd.DataFrame]
    features: list[str]
    directions: dict[str, int] = field(default_factory=dict)
    label: str = "label"

    def matrix(self, split: str, *, weight: np.ndarray | None = None) -> xgb.DMatrix:
        df = self.frames[split]
        return xgb.DMatrix(
            df[self.features].astype("float32"),
            label=df[self.label].to_numpy(dtype="float32"),
            weight=weight,
            feature_names=self.features,
            nthread=2,
        )

    def subset(self, features: list[str]) -> TaskData:
        """The same rows with only ``features`` (kept in this data's order)."""
        keep = set(features)
        return TaskData(self.frames, [f for f in self.features if f in keep], self.directions, self.label)

    @property
    def monotone(self) -> str:
        """XGBoost ``monotone_constraints`` string in feature order (+1 increasing risk, -1 decreasing)."""
        return "(" + ",".join(str(int(self.directions.get(f, 0))) for f in self.features) + ")"


def read_dictionary(features_root: Path) -> list[dict[str, Any]]:
    path = Path(features_root) / "feature_dictionary.json"
    if not path.exists():
        raise MissingInputError(f"{path} is missing: run `dvc repro features` (or `cardlab features`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputDataError(f"{path}: not valid JSON ({err}); re-run `dvc repro features`") from None
    return data["features"] if isinstance(data, dict) else data


def task_features(dictionary: list[dict[str, Any]], task: str) -> tuple[list[str], dict[str, int]]:
    """Feature names used by ``task`` and their business directions (for monotone constraints), read for the
    frame the task fits on (cardlab.taskspec). A per-frame direction table without the frame is an error: a
    silent 0 would drop the feature's monotone constraint."""
    frame = taskspec.frame_of(task)
    names, directions = [], {}
    for entry in dictionary:
        tasks = entry.get("tasks")
        if tasks is not None and frame not in tasks:
            continue
        if entry.get("is_feature", True) is False:
            continue
        direction = entry.get("direction", 0)
        if isinstance(direction, dict):
            if frame not in direction:
                raise ValueError(
                    f"feature dictionary: {entry['name']!r} has no direction for frame {frame!r} (task "
                    f"{task!r}); rebuild features (`dvc repro features`)"
                )
            direction = direction[frame]
        names.append(entry["name"])
        directions[entry["name"]] = int(direction or 0)
    if not names:
        raise ValueError(f"feature dictionary lists no features for task {task!r}")
    return names, directions


def base_params(tune: TuneParams, objective: str = "binary:logistic", eval_metric: str = "auc") -> dict:
    return {
        "objective": objective,
        "eval_metric": eval_metric,
        "tree_method": "hist",
        "nthread": tune.nthread,
        "seed": SEED,
        "verbosity": 0,
    }


def fit_booster(
    params: dict[str, Any],
    dtrain: xgb.DMatrix,
    dvalid: xgb.DMatrix | None,
    *,
    num_boost_round: int,
    early_stopping_rounds: int | None,
    callbacks: list[Any] | None = None,
) -> xgb.Booster:
    """Train with early stopping on ``dvalid``; the returned booster is trimmed to its best iteration."""
    evals = [(dvalid, "valid")] if dvalid is not None else []
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=num_boost_round,
        evals=evals,
        early_stopping_rounds=early_stopping_rounds if dvalid is not None else None,
        callbacks=callbacks,
        verbose_eval=False,
    )
    if dvalid is not None and early_stopping_rounds:
        booster = booster[: booster.best_iteration + 1]
    return booster


def fit_booster_dask(
    client: Any,
    params: dict[str, Any],
    data: TaskData,
    *,
    num_boost_round: int,
    early_stopping_rounds: int | None,
    partitions: int,
) -> xgb.Booster:
    """:func:`fit_booster` with ``xgboost.dask``: the train and valid rows as Dask arrays of ``partitions``
    row blocks, spread over the client's workers, which build the histograms and allreduce them. Early stopping
    on the valid split as locally; the booster is trimmed to its best iteration. Close to the local fit, not
    equal: each worker sketches its own rows' quantiles (merged bins differ slightly) and the order of the
    histogram sums depends on where the blocks sit (docs/scale.md)."""
    import dask.array as da
    import xgboost.dask as dxgb

    def arrays(split: str) -> tuple[Any, Any]:
        frame = data.frames[split]
        x = frame[data.features].to_numpy(dtype=np.float32)
        y = frame[data.label].to_numpy(dtype=np.float32)
        rows = max(1, -(-len(x) // partitions))
        return da.from_array(x, chunks=(rows, x.shape[1])), da.from_array(y, chunks=rows)

    x_train, y_train = arrays("train")
    x_valid, y_valid = arrays("valid")
    dtrain = dxgb.DaskDMatrix(client, x_train, y_train, feature_names=data.features)
    dvalid = dxgb.DaskDMatrix(client, x_valid, y_valid, feature_names=data.features)
    result = dxgb.train(
        client,
        {k: v for k, v in params.items() if k != "nthread"},
        dtrain,
        num_boost_round=num_boost_round,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=early_stopping_rounds,
        verbose_eval=False,
    )
    booster = result["booster"]
    if early_stopping_rounds:
        booster = booster[: booster.best_iteration + 1]
    return booster


def save_booster(booster: xgb.Booster, path: Path) -> None:
    """Save in XGBoost's UBJSON format (deterministic bytes for the same trees)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(path))


def load_booster(path: Path, remedy: str = "re-run the train stage") -> xgb.Booster:
    """Load a saved booster; a missing, truncated or foreign file raises an error naming it and ``remedy``."""
    if not Path(path).exists():
        raise MissingInputError(f"{path} is missing: {remedy}")
    booster = xgb.Booster()
    try:
        booster.load_model(str(path))
    except xgb.core.XGBoostError as err:
        reason = str(err).strip().splitlines()[0][:160]
        raise ModelFileError(
            f"{path}: not a readable XGBoost model (truncated or damaged: {reason}); {remedy}"
        ) from None
    return booster
