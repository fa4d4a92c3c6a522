"""MLflow wiring: absolute store paths, tags joining runs to git and DVC, datasets logged as inputs."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from cardlab import tracking


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("CARDLAB_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield tmp_path
    mlflow.set_tracking_uri(None)


def test_default_store_is_absolute_sqlite_under_repo(store, monkeypatch):
    monkeypatch.chdir("/")
    assert tracking.tracking_uri() == f"sqlite:///{store / 'mlflow.db'}"
    assert tracking.artifact_root() == (store / "mlartifacts").as_uri()


def test_env_overrides_store(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'other.db'}")
    assert tracking.configure().endswith("other.db")


def test_stage_run_tags_and_inputs(store):
    data = store / "features"
    data.mkdir()
    (data / "part.parquet").write_bytes(b"abc")
    with tracking.stage_run(
        experiment_name="cardlab-test",
        run_name="credit-model",
        description="a readable description",
        stage="train@credit",
        params_hash="abc123",
        inputs={"features_credit": data},
    ) as run:
        tracking.log_metrics({"oot_auc": 0.8, "flag": True})
    got = mlflow.get_run(run.info.run_id)
    tags = got.data.tags
    assert got.info.run_name == "credit-model"
    assert tags["mlflow.note.content"] == "a readable description"
    for key in ("git_commit", "git_dirty", "dvc_stage", "params_hash", "input_digest"):
        assert key in tags
    assert tags["dvc_stage"] == "train@credit"
    assert got.data.metrics == {"oot_auc": 0.8}
    assert [d.dataset.name for d in got.inputs.dataset_inputs] == ["features_credit"]
    exp = mlflow.get_experiment(got.info.experiment_id)
    assert exp.artifact_location.startswith((store / "mlartifacts").as_uri())
    assert not (Path.cwd() / "mlruns").exists()
