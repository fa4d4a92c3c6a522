"""Loading the served models from the MLflow registry (the service's only contact with MLflow).

``cardlab-credit`` and ``cardlab-limit`` are resolved by alias (``champion`` by default) or version number;
everything a decision needs comes from the registered version and its run:

- credit: the XGBoost booster (the registered MLflow model), and from the run's ``explain/`` artifacts the
  reason groups (``global_importance.json``) and the decision cutoff (``explain_metrics.json``:
  ``decision_pd_cutoff``, the PD above which the batch declines);
- limit: ``limit_models/`` (the spend, revolving and 90+ DPD response models, ``features.json``) and
  ``limit_models/decision_policy.json`` (the budgets' shadow prices, the line grid and the economics).

The lead may move :func:`resolve_version` and :func:`download_run_dir` into ``cardlab.tracking`` ("the only
module that imports mlflow"); they are here so the serve stream did not edit it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import xgboost as xgb

from cardlab import taskspec
from cardlab.config import EconomicsParams, LimitParams
from cardlab.explain.reasons import Groups

logging.getLogger("mlflow").setLevel(logging.WARNING)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
warnings.filterwarnings("ignore", module="mlflow")

# the service decides with the credit model and sets the first line with the limit models
REGISTERED = {task: taskspec.get(task).registered for task in ("credit", "limit")}


class ModelLoadError(RuntimeError):
    """A served model could not be loaded (the service stays not-ready and says why)."""


@dataclass(frozen=True)
class ModelRef:
    """Which registered version to serve: an alias (``champion``) or a version number."""

    name: str
    alias: str | None = None
    version: int | None = None

    @classmethod
    def parse(cls, name: str, text: str) -> ModelRef:
        """``champion`` / ``challenger`` / any alias, or ``3`` / ``v3`` for a version number."""
        t = text.strip()
        digits = t[1:] if t[:1] in ("v", "V") else t
        if digits.isdigit():
            return cls(name, version=int(digits))
        if not t:
            raise ValueError(f"{name}: empty model reference; give an alias (champion) or a version (3)")
        return cls(name, alias=t)

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}/{self.version}"


@dataclass
class CreditModel:
    booster: xgb.Booster
    features: list[str]
    groups: Groups
    pd_cutoff: float
    name: str
    version: int
    alias: str | None
    run_id: str


@dataclass
class LimitModel:
    models: dict[str, xgb.Booster]
    meta: dict
    policy: SimpleNamespace  # .limit (LimitParams), .simulate.economics (EconomicsParams)
    prices: dict[str, float]
    name: str
    version: int
    alias: str | None
    run_id: str


def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def resolve_version(tracking_uri: str, ref: ModelRef) -> Any:
    """The registry's ModelVersion for ``ref`` (raises :class:`ModelLoadError` naming what exists)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        if ref.alias:
            return client.get_model_version_by_alias(ref.name, ref.alias)
        return client.get_model_version(ref.name, str(ref.version))
    except MlflowException as err:
        try:
            aliases = client.get_registered_model(ref.name).aliases
        except MlflowException:
            raise ModelLoadError(
                f"{ref}: registered model {ref.name!r} not found in {tracking_uri} (run the pipeline: dvc repro)"
            ) from err
        raise ModelLoadError(
            f"{ref}: not in the registry at {tracking_uri}; aliases there: {aliases or 'none'} "
            "(the champion alias is set only by `cardlab promote <task>`)"
        ) from err


def download_run_dir(tracking_uri: str, run_id: str, artifact_path: str, dst: Path) -> Path:
    """Download one artifact folder of a run into ``dst``; raise :class:`ModelLoadError` if it is absent."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact_path, dst_path=str(dst), tracking_uri=tracking_uri
            )
        )
    except (MlflowException, OSError) as err:
        raise ModelLoadError(f"run {run_id} has no artifact {artifact_path!r}: {err}") from err


def _json(path: Path, what: str) -> dict:
    if not path.exists():
        raise ModelLoadError(f"{what}: {path.name} is missing from the run's artifacts")
    return json.loads(path.read_text())


def load_credit(tracking_uri: str, ref: ModelRef) -> CreditModel:
    import mlflow.xgboost

    mv = resolve_version(tracking_uri, ref)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        booster = mlflow.xgboost.load_model(f"models:/{ref.name}/{mv.version}")
    except Exception as err:  # any failure to deserialise leaves the service not ready
        raise ModelLoadError(f"{ref} (version {mv.version}): the booster does not load: {err}") from err
    if not isinstance(booster, xgb.Booster) or not booster.feature_names:
        raise ModelLoadError(f"{ref} (version {mv.version}) is not an XGBoost booster with feature names")
    with tempfile.TemporaryDirectory() as tmp:
        d = download_run_dir(tracking_uri, mv.run_id, "explain", Path(tmp))
        glob = _json(d / "global_importance.json", f"{ref} explain")
        metrics = _json(d / "explain_metrics.json", f"{ref} explain")
    groups = glob.get("reason_groups") or []
    features = list(booster.feature_names)
    of = {m: g["group"] for g in groups for m in g["members"]}
    missing = [f for f in features if f not in of]
    if missing:
        raise ModelLoadError(f"{ref}: the explain stage's reason groups do not cover features {missing[:5]}")
    # as explain's Groups hold them: groups in the order of their first member among the model's features
    # (ties between equal contributions break by this order), members in feature order
    first = {g["group"]: min(features.index(m) for m in g["members"]) for g in groups}
    members = {gid: [f for f in features if of[f] == gid] for gid in sorted(first, key=first.__getitem__)}
    cutoff = metrics.get("decision_pd_cutoff")
    if cutoff is None:
        raise ModelLoadError(
            f"{ref}: explain_metrics.json lacks decision_pd_cutoff (run `cardlab explain credit`)"
        )
    return CreditModel(
        booster=booster,
        features=features,
        groups=Groups(of=of, lead={g["group"]: g["lead"] for g in groups}, members=members),
        pd_cutoff=float(cutoff),
        name=ref.name,
        version=int(mv.version),
        alias=ref.alias,
        run_id=mv.run_id,
    )


def load_limit(tracking_uri: str, ref: ModelRef) -> LimitModel:
    from cardlab.tasks.limit import MODELS

    mv = resolve_version(tracking_uri, ref)
    with tempfile.TemporaryDirectory() as tmp:
        d = download_run_dir(tracking_uri, mv.run_id, "limit_models", Path(tmp))
        meta = _json(d / "features.json", f"{ref} limit_models")
        policy = _json(d / "decision_policy.json", f"{ref} limit_models (re-run `cardlab evaluate limit`)")
        models = {}
        for m in MODELS:
            path = d / f"{m}.ubj"
            if not path.exists():
                raise ModelLoadError(f"{ref}: limit_models/{m}.ubj is missing")
            booster = xgb.Booster()
            try:
                booster.load_model(str(path))
            except xgb.core.XGBoostError as err:
                raise ModelLoadError(f"{ref}: limit_models/{m}.ubj does not load: {err}") from err
            models[m] = booster
    prices = policy.get("prices")
    if not prices or not {"exposure", "expected_loss"} <= set(prices):
        raise ModelLoadError(
            f"{ref}: decision_policy.json has no shadow prices (re-run `cardlab evaluate limit`)"
        )
    ns = SimpleNamespace(
        limit=LimitParams(**policy["limit"]),
        simulate=SimpleNamespace(economics=EconomicsParams(**policy["economics"])),
    )
    return LimitModel(
        models=models,
        meta=meta,
        policy=ns,
        prices={k: float(v) for k, v in prices.items()},
        name=ref.name,
        version=int(mv.version),
        alias=ref.alias,
        run_id=mv.run_id,
    )
