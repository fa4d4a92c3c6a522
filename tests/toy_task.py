"""A toy task written only against the task interface (cardlab.taskspec + modeling.workflow), for
tests/test_task_interface.py: attrition on the churn frame, one booster, an OOT AUC as its only grade.

It touches no file of the package: if a stage still needs a per-task edit somewhere, the interface test fails.
"""

from __future__ import annotations

from pathlib import Path

from cardlab import taskspec
from cardlab.artifacts import write_json
from cardlab.config import Params
from cardlab.modeling import metrics as model_metrics
from cardlab.modeling.workflow import (
    ContractMetrics,
    load_model,
    load_task_data,
    log_evaluation,
    read_snapshots,
    train_task,
    tune_task,
)

TASK = "toy"
METRIC = "logloss"
DESCRIPTION = "Toy attrition model (interface test): XGBoost on the churn frame."
SPEC = taskspec.Task(
    name=TASK,
    module=__name__,
    frame="churn",
    registered="cardlab-toy",
    boosters=("model",),
    truth_section="churn",
    headline=("oot_auc",),
    docs="tests/toy_task.py",
    card=taskspec.ModelCard(
        title="Toy attrition model (task-interface test)",
        purpose="Prove that a task added through cardlab.taskspec runs through every stage.",
        intended_use="Tests only.",
        owner="cardlab maintainers",
        bad="Adverse = the churn frame's label.",
        decision="flagged (toy)",
    ),
)


def tune(params: Params, features_root: Path, out: Path) -> dict:
    return tune_task(params, TASK, load_task_data(features_root, TASK), features_root, out, metric=METRIC)


def train(params: Params, features_root: Path, out: Path) -> Path:
    data = load_task_data(features_root, TASK)
    return train_task(params, TASK, data, features_root, out, metric=METRIC, description=DESCRIPTION)


def evaluate(
    params: Params, features_root: Path, oracle: Path, out: Path, *, contract: ContractMetrics
) -> dict:
    booster, features, _ = load_model(out)
    rows = read_snapshots(features_root, TASK)
    rows = rows[rows["label"].notna() & (rows["split"] == "oot")]
    score = booster.inplace_predict(rows[features].astype("float32"))
    metrics = {"oot_auc": model_metrics.auc(rows["label"].astype(int).to_numpy(), score), "oot_n": len(rows)}
    metrics.update(contract(params, TASK, features_root, oracle, out))
    write_json(metrics, out / "metrics.json")
    log_evaluation(
        params,
        TASK,
        out,
        metrics,
        passed=True,
        description=DESCRIPTION,
        params_slice=params.tune,
        artifacts={},
        registry_note=f"OOT AUC {metrics['oot_auc']:.3f}",
    )
    return metrics
