"""The only module that talks to MLflow.

Default store: ``sqlite:///<repo>/mlflow.db`` with artifacts under ``<repo>/mlartifacts/`` (absolute paths,
never relative to the working directory, never the deprecated ``mlruns/`` file store).
``MLFLOW_TRACKING_URI`` overrides the store; a tracking *server* (``http(s)://``, e.g. ``make services``)
keeps the artifacts where it serves them (``--serve-artifacts``), and when it does not answer a stage stops
with :class:`~cardlab.errors.TrackingServerError` — at its start (:func:`check_server`, called by the verbs
that log) or at log time — instead of a traceback after minutes of retries. Nothing is queued: the stage
fails, and what it had not yet replaced stays as it was.

Every run gets a readable name, a description and tags that join it to git and DVC: git commit and dirty
flag, DVC stage name, params hash and input data digest; the datasets it read are logged with
``mlflow.log_input``. Metrics logged here are the same dicts the stage writes to
``experiments/<task>/metrics.json`` (one owner per fact).

Killed runs: a run is tagged with its process (``cardlab_process``, :mod:`cardlab.liveness`). Ctrl-C or
SIGTERM end it as KILLED on the way out; a run whose process died by SIGKILL is marked KILLED by the next
stage that opens a run in the same experiment. Registered versions carry the digest of the model files they
were scored from (``model_digest``); registering a digest again returns its existing version.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.tracking import MlflowClient

from cardlab import liveness, taskspec
from cardlab.artifacts import dir_digest
from cardlab.config import repo_root
from cardlab.errors import RegistryError, TrackingServerError

ALIASES = ("challenger", "champion")

logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", module="mlflow")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def artifact_root() -> str:
    return (repo_root() / "mlartifacts").as_uri()


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def check_server(uri: str | None = None, *, stage: str = "this stage") -> None:
    """Raise :class:`TrackingServerError` when the tracking URI is a server that does not answer ``/health``
    (a SQLite or file store is always there). Also bounds MLflow's own HTTP retries, so a server that goes
    down later fails a log call in seconds, not minutes."""
    import urllib.error
    import urllib.request

    uri = uri or tracking_uri()
    if not is_server(uri):
        return
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as r:  # noqa: S310
            if r.status == 200:
                return
            reason = f"HTTP {r.status}"
    except (urllib.error.URLError, OSError) as err:
        reason = str(getattr(err, "reason", err))
    raise TrackingServerError(
        f"MLflow tracking server {uri} (MLFLOW_TRACKING_URI) does not answer ({reason}): start it (`make "
        f"services`) or unset MLFLOW_TRACKING_URI to use the project's SQLite store, then re-run {stage}; "
        "nothing was logged"
    )


def _server_down(err: BaseException, stage: str) -> TrackingServerError | None:
    """The clear error to raise instead of ``err`` when the tracking server is what failed."""
    uri = tracking_uri()
    if not is_server(uri):
        return None
    try:
        check_server(uri, stage=stage)
    except TrackingServerError as down:
        return TrackingServerError(
            f"{down}; the MLflow call failed with {type(err).__name__} (outputs written before it are kept)"
        )
    return None


def configure() -> str:
    """Point mlflow at the project store; returns the tracking URI.

    Under ``mlflow run`` the MLproject's own run id arrives in ``MLFLOW_RUN_ID``; each stage still opens
    its own run (tagged ``mlproject_run_id``) instead of silently resuming that one.
    """
    parent = os.environ.pop("MLFLOW_RUN_ID", None)
    if parent:
        os.environ["CARDLAB_MLPROJECT_RUN_ID"] = parent
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def experiment_description(name: str) -> str:
    """What a reviewer reads on the experiment page (the ``mlflow.note.content`` tag)."""
    task = next((t for t in taskspec.names() if name.endswith(f"-{t}")), None)
    if task is None:
        return f"cardlab experiment {name}."
    card = taskspec.get(task).card
    return (
        f"{card.title}. {card.purpose}\n\n"
        f"Runs: `{task}-tune-<hash>` is one Optuna study (its trials are nested runs); `{task}-model-<digest>` is "
        f"one trained model: train logs it, evaluate adds the OOT metrics and plots, explain the SHAP report "
        f"(report.html). The registered model `{taskspec.get(task).registered}` has one version per model "
        f"digest (tag model_digest, the same on the run); alias challenger only when the monitoring plan has "
        f"no red indicator (tags gate_*)."
    )


def experiment(name: str) -> str:
    """Get or create an experiment whose artifacts live under ``<repo>/mlartifacts/<name>``, with its
    description (:func:`experiment_description`)."""
    configure()
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        exp_id = exp.experiment_id
    elif is_server(tracking_uri()):  # the server keeps artifacts where it serves them from (its S3 store)
        exp_id = client.create_experiment(name)
    else:
        exp_id = client.create_experiment(name, artifact_location=f"{artifact_root()}/{name}")
    if exp is None or "mlflow.note.content" not in (exp.tags or {}):
        client.set_experiment_tag(exp_id, "mlflow.note.content", experiment_description(name))
    return exp_id


def dvc_md5(path: Path) -> str | None:
    """The md5 dvc.lock records for ``path`` (an output of an earlier stage), so a run's input can be matched
    to the pipeline's lock file; None outside a DVC repo or for a path no stage outputs."""
    root = repo_root()
    lock = root / "dvc.lock"
    try:
        rel = str(Path(path).resolve().relative_to(root.resolve()))
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.exists() else {}
    except (ValueError, OSError, yaml.YAMLError):
        return None
    for stage in stages.values():
        for out in stage.get("outs") or []:
            if out.get("path") == rel:
                return out.get("md5")
    return None


PROCESS_TAG = "cardlab_process"


def mark_orphans_killed(experiment_id: str) -> list[str]:
    """End as KILLED every RUNNING run of the experiment whose process is gone; returns their ids."""
    client = MlflowClient()
    orphans = []
    for run in client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
    ):
        owner = run.data.tags.get(PROCESS_TAG)
        if owner is not None and not liveness.alive(owner):
            client.set_terminated(run.info.run_id, status="KILLED")
            orphans.append(run.info.run_id)
    return orphans


@contextlib.contextmanager
def _ended_as_killed_on_interrupt() -> Iterator[None]:
    """Ctrl-C / SIGTERM inside the block: end the active run as KILLED (not FAILED) before unwinding."""
    try:
        yield
    except KeyboardInterrupt:
        if mlflow.active_run() is not None:
            mlflow.end_run(status="KILLED")
        raise


def git_state() -> dict[str, str]:
    """Commit hash and dirty flag of the repo, or 'unknown' outside git."""
    root = repo_root()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return {"git_commit": commit, "git_dirty": str(bool(dirty)).lower()}
    except (subprocess.CalledProcessError, FileNotFoundError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}


def _dataset(path: Path, name: str) -> MetaDataset:
    digest = dir_digest(path)[:16] if path.exists() else "missing"
    # mlflow's Dataset marks `profile` @abstractmethod without being an ABC; MetaDataset is its concrete class
    source = resolve_dataset_source(str(path.resolve()))
    return MetaDataset(source=source, name=name, digest=digest)  # type: ignore[abstract]


@contextlib.contextmanager
def stage_run(
    *,
    experiment_name: str,
    run_name: str,
    description: str,
    stage: str,
    params_hash: str,
    inputs: dict[str, Path] | None = None,
    tags: dict[str, str] | None = None,
    nested: bool = False,
) -> Iterator[Any]:
    """Start an MLflow run joined to git/DVC; ``inputs`` maps dataset names to paths read by the stage.

    A tracking server that stops answering inside the block turns the failed call into
    :class:`TrackingServerError` naming the server and the stage."""
    import requests

    try:
        with _stage_run(
            experiment_name=experiment_name,
            run_name=run_name,
            description=description,
            stage=stage,
            params_hash=params_hash,
            inputs=inputs,
            tags=tags,
            nested=nested,
        ) as run:
            yield run
    except (mlflow.exceptions.MlflowException, requests.exceptions.ConnectionError) as err:
        down = _server_down(err, stage)
        if down is not None:
            raise down from None
        raise


@contextlib.contextmanager
def _stage_run(
    *,
    experiment_name: str,
    run_name: str,
    description: str,
    stage: str,
    params_hash: str,
    inputs: dict[str, Path] | None,
    tags: dict[str, str] | None,
    nested: bool,
) -> Iterator[Any]:
    exp_id = experiment(experiment_name)
    if not nested:
        mark_orphans_killed(exp_id)
    inputs = inputs or {}
    digest = "-".join(dir_digest(p)[:12] for p in inputs.values() if Path(p).exists()) or "none"
    # the md5 dvc.lock holds for each input (the same hash `dvc status` compares), beside cardlab's digest
    dvc_inputs = {f"dvc_md5_{name}": dvc_md5(Path(p)) for name, p in inputs.items()}
    all_tags = {
        **git_state(),
        "dvc_stage": stage,
        "params_hash": params_hash,
        "input_digest": digest,
        **{k: v for k, v in dvc_inputs.items() if v},
        PROCESS_TAG: liveness.token(),
        **(tags or {}),
    }
    if os.environ.get("CARDLAB_MLPROJECT_RUN_ID"):
        all_tags["mlproject_run_id"] = os.environ["CARDLAB_MLPROJECT_RUN_ID"]
    with (
        mlflow.start_run(
            experiment_id=exp_id, run_name=run_name, nested=nested, tags=all_tags, description=description
        ) as run,
        _ended_as_killed_on_interrupt(),
    ):
        for name, path in inputs.items():
            mlflow.log_input(_dataset(Path(path), name), context=stage)
        yield run


def log_params(params: dict[str, Any]) -> None:
    flat = {k: (str(v)[:500]) for k, v in params.items()}
    mlflow.log_params(flat)


def log_metrics(metrics: dict[str, Any], step: int | None = None) -> None:
    numeric = {
        k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    mlflow.log_metrics(numeric, step=step)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_artifacts(path: str | Path, artifact_path: str | None = None) -> None:
    mlflow.log_artifacts(str(path), artifact_path=artifact_path)


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


def active_run_id() -> str | None:
    run = mlflow.active_run()
    return run.info.run_id if run else None


# ---------------------------------------------------------------------------------------------------------
# models and the registry
# ---------------------------------------------------------------------------------------------------------
# what loading a logged booster needs, pinned to the installed (= uv.lock) versions: explicit requirements
# spare MLflow its requirement inference (a subprocess per model, ~10 s, and a warning when uv is absent)
MODEL_REQUIREMENTS = ("xgboost", "numpy", "pandas")


def log_xgboost_model(booster: Any, input_example: Any) -> str:
    """Log an XGBoost booster with signature inferred from ``input_example``; returns the model URI."""
    from importlib.metadata import version

    import mlflow.xgboost
    from mlflow.models import infer_signature

    signature = infer_signature(input_example, booster.inplace_predict(input_example))
    info = mlflow.xgboost.log_model(
        booster,
        name="model",
        signature=signature,
        input_example=input_example.head(5),
        pip_requirements=[f"{pkg}=={version(pkg)}" for pkg in MODEL_REQUIREMENTS],
    )
    return info.model_uri


def register_model(
    task: str,
    model_uri: str,
    *,
    challenger: bool,
    description: str,
    model_digest: str | None = None,
    version_tags: dict[str, str] | None = None,
) -> int:
    """Register ``model_uri`` as a version of ``cardlab-<task>`` tagged with ``model_digest``; when a version
    with that digest exists, return it instead of adding a duplicate. The ``challenger`` alias follows
    ``challenger``: set on this version when true, taken off it when false. ``version_tags`` (the monitoring
    gate's grades and waivers) are set on the version."""
    configure()
    spec = taskspec.get(task)
    name = spec.registered
    client = MlflowClient()
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        card = spec.card
        client.create_registered_model(
            name,
            description=f"{card.title}. {card.purpose} {card.bad} Intended use: {card.intended_use} "
            f"One version per model digest (tag model_digest); lineage tags git_commit, dvc_md5_*, run_id; "
            f"the monitoring gate's grades as gate_* (challenger only without an unwaived red). Method and "
            f"grading: {spec.docs} in the cardlab repository.",
        )
    existing = (
        client.search_model_versions(f"name = '{name}' and tags.model_digest = '{model_digest}'")
        if model_digest
        else []
    )
    if existing:
        version = min(int(v.version) for v in existing)
    else:
        tags = {"model_digest": model_digest} if model_digest else None
        version = int(mlflow.register_model(model_uri, name, tags=tags).version)
    client.update_model_version(name, str(version), description=description)
    for key, value in (version_tags or {}).items():
        client.set_model_version_tag(name, str(version), key, value)
    if challenger:
        client.set_registered_model_alias(name, "challenger", str(version))
    else:
        aliases = client.get_registered_model(name).aliases or {}
        if str(aliases.get("challenger")) == str(version):
            client.delete_registered_model_alias(name, "challenger")
    return version


def promote(task: str) -> tuple[str, int]:
    """Move the ``champion`` alias to the current ``challenger`` version; returns (name, version)."""
    configure()
    name = taskspec.get(task).registered
    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, "challenger")
    except mlflow.exceptions.MlflowException as err:
        raise RegistryError(
            f"{name} has no 'challenger' version to promote in {tracking_uri()} (run the pipeline first)"
        ) from err
    client.set_registered_model_alias(name, "champion", mv.version)
    return name, int(mv.version)


@contextlib.contextmanager
def resume_or_start(run_id: str | None, **stage_run_kwargs: Any) -> Iterator[Any]:
    """Re-open run ``run_id`` if it is in the store (e.g. evaluate adds to train's run), else start one."""
    configure()
    if run_id:
        try:
            MlflowClient().get_run(run_id)
        except mlflow.exceptions.MlflowException:
            run_id = None
    if run_id:
        exp_id = MlflowClient().get_run(run_id).info.experiment_id
        mark_orphans_killed(exp_id)
        with mlflow.start_run(run_id=run_id) as run, _ended_as_killed_on_interrupt():
            mlflow.set_tags(
                {
                    **(stage_run_kwargs.get("tags") or {}),
                    "dvc_stage_last": stage_run_kwargs.get("stage", ""),
                    PROCESS_TAG: liveness.token(),
                }
            )
            yield run
    else:
        with stage_run(**stage_run_kwargs) as run:
            yield run
