"""The monitoring plan of a PD model, and the challenger gate that applies it (one home for both).

The bank-facing report prints the plan (indicator, green, amber, red / action); ``evaluate`` grades the model
it registers against the same plan, on the OOT window: a model becomes ``challenger`` only when no gated
indicator is red, or when each red one is waived in params.yaml (``<task>.gate_waivers``: indicator key ->
the reviewer's reason). The grades, the waivers and the verdict are written to ``metrics.json`` (``gate``)
and tagged on the model version, so "thresholds passed" can never contradict the report's own evidence.

Indicators without a metric at evaluate time (reason-code stability, overrides) are in the plan for the bank
but not gated here; they say when they are checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cardlab.config import ParamsError
from cardlab.errors import InputDataError

GREEN, AMBER, RED = "green", "amber", "red"


@dataclass(frozen=True)
class Indicator:
    key: str  # the name waivers and tags use
    name: str  # as the report shows it
    green: str
    amber: str
    red: str  # the red band and its action
    metric: str | None  # metrics.json key the gate reads (None: not gated at evaluate)
    grade: Callable[[float], str] | None = None


def _bands(value: float, green: Callable[[float], bool], amber: Callable[[float], bool]) -> str:
    return GREEN if green(value) else AMBER if amber(value) else RED


def plan(max_psi: float, min_auc: float, *, approvals: bool = True) -> list[Indicator]:
    """The plan for a PD model with the task's PSI and AUC limits (params ``credit.max_oot_psi`` etc.).
    ``approvals``: the model decides approvals (credit), so the approval-rate ratio is gated; a line-review
    model (limit) has no approve/decline decision at evaluate, and the indicator is left to explain's table."""
    indicators = [
        Indicator(
            "psi",
            "Score PSI vs development (monthly)",
            "< 0.10",
            f"0.10 – {max_psi:.2f}",
            f"> {max_psi:.2f}: revalidate",
            "oot_psi",
            lambda v: _bands(v, lambda x: x < 0.10, lambda x: x <= max_psi),
        ),
        Indicator(
            "csi",
            "Feature CSI, top-20 features (monthly)",
            "< 0.10",
            "0.10 – 0.25",
            "> 0.25: investigate source data",
            "oot_csi_max",
            lambda v: _bands(v, lambda x: x < 0.10, lambda x: x <= 0.25),
        ),
        Indicator(
            "auc",
            "AUC on matured cohorts (quarterly)",
            f">= {min_auc + 0.05:.2f}",
            f"{min_auc:.2f} – {min_auc + 0.05:.2f}",
            f"< {min_auc:.2f}: challenger / redevelop",
            "oot_auc",
            lambda v: _bands(v, lambda x: x >= min_auc + 0.05, lambda x: x >= min_auc),
        ),
        Indicator(
            "actual_to_predicted",
            "Actual / predicted bad rate (quarterly)",
            "0.85 – 1.15",
            "0.75 – 0.85 or 1.15 – 1.30",
            "outside 0.75 – 1.30: recalibrate",
            "oot_actual_to_predicted",
            lambda v: _bands(v, lambda x: 0.85 <= x <= 1.15, lambda x: 0.75 <= x <= 1.30),
        ),
        Indicator(
            "jeffreys",
            "Jeffreys test by grade (annual back-test)",
            "0 grades rejected",
            "1 grade",
            ">= 2 grades: recalibrate",
            "jeffreys_grades_rejected",
            lambda v: _bands(v, lambda x: x == 0, lambda x: x <= 1),
        ),
        Indicator(
            "approval_ratio",
            "Approval-rate ratio by city tier / age band / gender",
            ">= 0.90",
            "0.80 – 0.90",
            "< 0.80 (four-fifths rule): fair-lending review",
            "fairness_min_air" if approvals else None,
            (lambda v: _bands(v, lambda x: x >= 0.90, lambda x: x >= 0.80)) if approvals else None,
        ),
        Indicator(
            "reason_stability",
            "Reason-code stability (Jaccard, at redevelopment)",
            ">= 0.70",
            "0.50 – 0.70",
            "< 0.50: review grouping",
            None,
        ),
        Indicator(
            "overrides",
            "Override and manual-review rate (monthly)",
            "< 5 %",
            "5 – 10 %",
            "> 10 %: policy review",
            None,
        ),
    ]
    return indicators


def derived(metrics: dict[str, Any]) -> dict[str, float]:
    """Metrics the plan reads that evaluate's own keys imply: the OOT actual/predicted bad-rate ratio and the
    lowest adverse-impact ratio over the attributes."""
    out: dict[str, float] = {}
    bad, mean_pd = metrics.get("oot_bad_rate"), metrics.get("oot_mean_pd")
    if isinstance(bad, int | float) and isinstance(mean_pd, int | float) and mean_pd > 0:
        out["oot_actual_to_predicted"] = float(bad) / float(mean_pd)
    airs = [float(v) for k, v in metrics.items() if k.startswith("fairness_min_air_") and v is not None]
    if airs:
        out["fairness_min_air"] = min(airs)
    return out


def check_waivers(waivers: dict[str, str], indicators: list[Indicator] | None = None) -> None:
    """A waiver must name an indicator of the plan: a typo is a params error (one line at the CLI), raised
    by evaluate before it writes anything, never a silent pass."""
    keys = {i.key for i in (indicators or plan(0.25, 0.7))}
    unknown = sorted(set(waivers) - keys)
    if unknown:
        raise ParamsError(f"gate_waivers: unknown indicator(s) {unknown}; the plan's keys are {sorted(keys)}")


def gate(indicators: list[Indicator], metrics: dict[str, Any], waivers: dict[str, str]) -> dict[str, Any]:
    """Grade every gated indicator on ``metrics``; the gate passes when each red one is waived.

    Returns ``{"passed", "grades": [{indicator, metric, value, grade, waiver}], "red", "waived"}``. An
    unknown waiver key is an error (a typo must not pass a model), as is a gated metric that is missing."""
    check_waivers(waivers, indicators)
    grades: list[dict[str, Any]] = []
    red: list[str] = []
    waived: list[str] = []
    for ind in indicators:
        if ind.metric is None or ind.grade is None:
            continue
        value = metrics.get(ind.metric)
        if value is None:
            raise InputDataError(
                f"monitoring gate: metric {ind.metric!r} ({ind.name}) is missing from the metrics"
            )
        grade = ind.grade(float(value))
        waiver = waivers.get(ind.key)
        grades.append(
            {
                "indicator": ind.key,
                "metric": ind.metric,
                "value": float(value),
                "grade": grade,
                "waiver": waiver,
            }
        )
        if grade == RED:
            (waived if waiver else red).append(ind.key)
    return {"passed": not red, "grades": grades, "red": red, "waived": waived}


def tags(result: dict[str, Any]) -> dict[str, str]:
    """Run / model-version tags of a gate verdict: each graded indicator, and the red and waived lists."""
    out = {f"gate_{g['indicator']}": g["grade"] for g in result["grades"]}
    out["gate_red"] = ",".join(result["red"]) or "none"
    out["gate_waived"] = ",".join(result["waived"]) or "none"
    return out


def summary(result: dict[str, Any]) -> str:
    """One sentence for the registry description."""
    red = ", ".join(result["red"]) or "none"
    waived = ", ".join(f"{g['indicator']} ({g['waiver']})" for g in result["grades"] if g["waiver"]) or "none"
    verdict = "passed" if result["passed"] else "NOT passed"
    return f"Monitoring plan on OOT: {verdict}; red: {red}; waived: {waived}."
