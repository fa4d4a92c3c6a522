"""A task is added through the interface alone (cardlab.taskspec): a toy task module outside the package runs
through tune -> train -> evaluate -> explain on the ci world, and every registry consumer sees it.

Consumers checked: the CLI's task argument, the modelling frame (read_snapshots / task_features: the toy's
monotone directions are the churn frame's, not all zero), the Optuna study and the training run, the MLflow
registry (``cardlab-toy``), explain's decision rule and truth section, and the report's model card (its own,
never credit's). Each would fail this test if it kept a hard-coded task list.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cardlab import taskspec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import toy_task

    taskspec.register(toy_task.SPEC)
    yield toy_task
    taskspec.unregister("toy")
    sys.modules.pop("toy_task", None)


def test_registry_refuses_what_it_cannot_run():
    spec = taskspec.get("credit")
    with pytest.raises(ValueError, match="already registered"):
        taskspec.register(spec)
    with pytest.raises(ValueError, match="frame 'acquisition' is not built"):
        taskspec.register(taskspec.Task(**{**spec.__dict__, "name": "acq", "frame": "acquisition"}))
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        taskspec.get("nope")


def test_cli_rejects_an_unregistered_task():
    from cardlab.cli import app

    result = CliRunner().invoke(app, ["tune", "toy"])
    assert result.exit_code != 0
    assert "unknown task 'toy'" in result.output


@pytest.mark.slow
def test_toy_task_runs_every_stage(pipeline_root, toy, tmp_path, monkeypatch):
    from cardlab.cli import app

    monkeypatch.setenv("CARDLAB_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    features, oracle, out = (
        pipeline_root / "data" / "features",
        pipeline_root / "data" / "oracle",
        tmp_path / "exp",
    )
    common = ["--features", str(features), "--out", str(out), "--params", str(REPO / "params.yaml")]
    small = ["--set", "tune.n_trials=2", "--set", "tune.screen_repeats=0", "--set", "tune.num_boost_round=60"]
    runner = CliRunner()
    for verb in ("tune", "train", "evaluate", "explain"):
        args = [verb, "toy", *common, *small]
        if verb in ("evaluate", "explain"):
            args += ["--oracle", str(oracle), "--set", "explain.bootstrap_refits=0"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"cardlab {verb} toy failed:\n{result.output}\n{result.exception!r}"

    toy_out = out / "toy"
    # modelling read the churn frame with its monotone directions (a consumer keyed by task name gives all 0)
    model_meta = json.loads((toy_out / "model" / "features.json").read_text())
    directions = model_meta.get("directions") or model_meta.get("monotone") or {}
    assert any(int(v) != 0 for v in directions.values()), f"toy model has no monotone direction: {model_meta}"
    metrics = json.loads((toy_out / "metrics.json").read_text())
    assert 0.5 < metrics["oot_auc"] <= 1.0
    assert metrics["shap_additivity_max_err"] < 1e-3  # explain's contract keys, handed in by the CLI
    # registered under the toy's own name, with the digest of the model on disk
    from mlflow.tracking import MlflowClient

    versions = MlflowClient().search_model_versions("name = 'cardlab-toy'")
    assert versions and all(v.tags.get("model_digest") for v in versions)
    # explain flagged the top share (decision "flag") and rendered the toy's own model card
    explain_metrics = json.loads((toy_out / "explain" / "explain_metrics.json").read_text())
    assert explain_metrics["reason_rows"] > 0 and "decision_flag_share" in explain_metrics
    report = (toy_out / "report.html").read_text(encoding="utf-8")
    assert toy.SPEC.card.title in report
    assert taskspec.get("credit").card.title not in report
