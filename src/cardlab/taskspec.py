"""What a research task is, and the registry every stage reads it from (docs/architecture.md).

A :class:`Task` is plain data: its name, the feature frame it reads (``data/features/<frame>/``, which fixes
its snapshot rows, label and split), the module that implements its ``tune``/``train``/``evaluate`` stages,
the registered model name, the boosters it trains, the model card of its report, how its decisions are made
(approve below a PD cutoff, or flag the top share) and the metrics its summary leads with.

This module sits below every stage package and imports nothing from cardlab: ``config`` (task names, frames),
``tracking`` (registered names), ``features`` (frames and directions), ``modeling`` (which frame a task
reads), ``explain`` (decision rule, model card, hooks) and the CLI all read the same :data:`REGISTRY`, so a
task missing from one of them cannot exist. Task code is reached through dotted paths (``module``, hooks)
and imported only when a stage runs, which keeps ``explain`` and ``tasks`` from importing each other.

Adding a task: write its module (``tasks/<name>.py``: ``tune``, ``train``, ``evaluate``), :func:`register` a
:class:`Task` here (built-in) or from a plugin, add its stages' ``foreach`` item in ``dvc.yaml`` and its doc.
A task with a new label also needs its frame built by the features stage (``features/build.py``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

# the snapshot frames the features stage builds (data/features/<frame>/): one label and split each
FRAMES = ("credit", "limit", "churn")


@dataclass(frozen=True)
class ModelCard:
    """The model card at the head of the task's bank-facing report (explain/report.py)."""

    title: str
    purpose: str
    intended_use: str
    owner: str
    bad: str  # the label's definition, as the reviewer reads it
    decision: str  # what an adverse decision is called in the report ("decline", "flagged for retention")
    oracle_score: str = "oracle (true PD)"  # how the report names the oracle's probability


@dataclass(frozen=True)
class Task:
    """Everything a stage needs to know about a task, and nothing it computes."""

    name: str
    module: str  # dotted path: tune(params, features_root, out), train(...), evaluate(..., contract=)
    frame: str  # one of FRAMES: the snapshot rows, label and split the task fits on
    registered: str  # MLflow registered model name
    boosters: tuple[str, ...]  # model files the task trains (model/<booster>.ubj or model/model.ubj)
    card: ModelCard
    truth_section: str  # the section of the oracle's true_drivers.json that drives the task's label
    # explain: "approve" = the lowest-PD share is approved, the rest declined; "flag" = the top share flagged
    decision: Literal["approve", "flag"] = "flag"
    # dotted path into Params of the share flagged (None: explain.flag_share)
    flag_share: str | None = None
    modelled_column: str | None = None  # rows are modelled only where this column is true ("approved")
    score_points: bool = False  # show PDs on the scorecard points scale (credit.base_points, pdo)
    # "module:function" returning the explained model's pieces when it is not model/model.ubj alone
    explain_model_hook: str | None = None
    # "module:NAME": dictionary texts of columns the task adds to the frame (e.g. limit's treatment columns)
    extra_texts: str | None = None
    headline: tuple[str, ...] = ()  # metrics.json keys the summary and report lead with
    docs: str = ""  # docs/tasks/<name>.md

    def implementation(self) -> ModuleType:
        try:
            return importlib.import_module(self.module)
        except ModuleNotFoundError as err:
            if err.name == self.module:
                raise LookupError(f"task {self.name!r}: module {self.module} is not importable") from None
            raise

    def hook(self, path: str | None) -> Any:
        """Resolve a ``module:attribute`` hook of this task (None stays None)."""
        if path is None:
            return None
        module, _, attr = path.partition(":")
        return getattr(importlib.import_module(module), attr)

    def share(self, params: Any) -> float:
        """The flagged share for a "flag" decision: the Params value at ``flag_share``, or explain.flag_share."""
        if self.flag_share is None:
            return float(params.explain.flag_share)
        value = params
        for part in self.flag_share.split("."):
            value = getattr(value, part)
        return float(value)


REGISTRY: dict[str, Task] = {}


def register(task: Task, *, replace: bool = False) -> Task:
    """Add ``task`` to the registry; its frame must be one the features stage builds."""
    if task.frame not in FRAMES:
        raise ValueError(
            f"task {task.name!r}: frame {task.frame!r} is not built (one of {', '.join(FRAMES)})"
        )
    if task.name in REGISTRY and not replace:
        raise ValueError(f"task {task.name!r} is already registered")
    REGISTRY[task.name] = task
    return task


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get(name: str) -> Task:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(REGISTRY)}") from None


def frame_of(name: str) -> str:
    """The frame a task reads; a frame's own name maps to itself (the features stage speaks in frames)."""
    return name if name in FRAMES and name not in REGISTRY else get(name).frame


BUILT_IN = (
    Task(
        name="credit",
        module="cardlab.tasks.credit",
        frame="credit",
        registered="cardlab-credit",
        truth_section="default",
        boosters=("model",),
        decision="approve",
        modelled_column="approved",
        score_points=True,
        headline=("oot_auc", "oot_auc_ceiling_ratio", "oot_auc_ceiling_ratio_lo", "oot_psi"),
        docs="docs/tasks/credit.md",
        card=ModelCard(
            title="Application PD model (co-branded card)",
            purpose="Estimate the probability that an applicant reaches 90+ days past due within 12 months of "
            "booking, to rank applications and set the approve/decline cutoff.",
            intended_use="Application decisioning for the co-branded card and input to initial limit and "
            "pricing. Not for account management, collections or marketing eligibility without revalidation.",
            owner="Partner bank (credit decision and model owner, accountable to its model-risk function). "
            "The e-commerce platform supplies behavioural data and develops the model as a service; it does "
            "not make or override credit decisions.",
            bad="Bad = 90+ DPD at any statement within 12 months of booking (label window fully observed). 90+ "
            "DPD is the Basel default definition and the bank's charge-off trigger path, so the model ranks "
            "the loss event that drives pricing and capital; 30+ DPD would mostly capture self-curing late "
            "payers, and a 12-month window matches the annual PD horizon of IFRS 9 stage 1.",
            decision="decline",
        ),
    ),
    Task(
        name="limit",
        module="cardlab.tasks.limit",
        frame="limit",
        registered="cardlab-limit",
        truth_section="default",
        boosters=("spend", "revolve", "default"),
        score_points=True,
        explain_model_hook="cardlab.tasks.limit.responses:explained_model_parts",
        extra_texts="cardlab.tasks.limit.spec:TREAT_TEXT",
        headline=("profit_capture", "profit_capture_lo", "constraints_hold", "oot_auc"),
        docs="docs/tasks/limit.md",
        card=ModelCard(
            title="Line-management risk model (co-branded card)",
            purpose="Estimate 90+ DPD risk in the outcome window after a credit-line review, for line "
            "increase/decrease decisions.",
            intended_use="Periodic limit reviews of open accounts. Not for application decisions.",
            owner="Partner bank (limit decision owner); platform as data provider and model developer.",
            bad="Bad = 90+ DPD within the outcome window after the review decision (see docs/tasks/limit.md).",
            decision="flagged (highest risk)",
        ),
    ),
    Task(
        name="churn",
        module="cardlab.tasks.churn",
        frame="churn",
        registered="cardlab-churn",
        truth_section="churn",
        boosters=("model",),
        flag_share="churn.campaign_capacity_share",
        headline=("oot_auc_ceiling_ratio", "oot_auc_ceiling_ratio_lo", "qini_capture", "qini_capture_lo"),
        docs="docs/tasks/churn.md",
        card=ModelCard(
            title="Attrition / retention model (co-branded card)",
            purpose="Rank open accounts by the probability of voluntary closure or silent attrition in the "
            "label window, to target retention offers.",
            intended_use="Retention campaign targeting within campaign capacity. Not a credit decision.",
            owner="Platform (campaign owner) jointly with the partner bank (card product owner).",
            bad="Adverse = voluntary closure or silent attrition in the label window (see docs/tasks/churn.md).",
            decision="flagged for retention",
            oracle_score="oracle (true P(label))",
        ),
    ),
)
for _task in BUILT_IN:
    register(_task)
BUILT_IN_NAMES = tuple(t.name for t in BUILT_IN)
__all__ = ["BUILT_IN_NAMES", "FRAMES", "REGISTRY", "ModelCard", "Task", "frame_of", "get", "names"]
