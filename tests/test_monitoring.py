"""The challenger gate applies the report's monitoring plan: industry bands (PSI 0.10 / 0.25, the four-fifths
rule's 0.80 adverse-impact ratio, actual/predicted within 0.75 - 1.30), red blocks unless waived, and a
typo in a waiver or a missing metric is an error, never a pass."""

from __future__ import annotations

import pytest

from cardlab.config import ParamsError
from cardlab.errors import InputDataError
from cardlab.modeling import monitoring

PLAN = monitoring.plan(max_psi=0.25, min_auc=0.70)
HEALTHY = {
    "oot_psi": 0.05,
    "oot_csi_max": 0.08,
    "oot_auc": 0.80,
    "oot_actual_to_predicted": 1.0,
    "jeffreys_grades_rejected": 0,
    "fairness_min_air": 0.95,
}


def test_a_healthy_model_passes_with_every_indicator_green():
    result = monitoring.gate(PLAN, HEALTHY, {})
    assert result["passed"] and not result["red"]
    assert {g["grade"] for g in result["grades"]} == {"green"}
    assert {g["indicator"] for g in result["grades"]} == {i.key for i in PLAN if i.metric}


@pytest.mark.parametrize(
    ("metric", "value", "grade"),
    [
        ("oot_psi", 0.10, "amber"),
        ("oot_psi", 0.26, "red"),
        ("fairness_min_air", 0.85, "amber"),
        ("fairness_min_air", 0.79, "red"),  # four-fifths rule
        ("oot_actual_to_predicted", 1.78, "red"),  # the credit challenger: 1.78x the predicted bads
        ("oot_actual_to_predicted", 0.80, "amber"),
        ("jeffreys_grades_rejected", 2, "red"),
        ("oot_auc", 0.72, "amber"),
        ("oot_auc", 0.69, "red"),
        ("oot_csi_max", 1.3, "red"),
    ],
)
def test_bands(metric, value, grade):
    result = monitoring.gate(PLAN, {**HEALTHY, metric: value}, {})
    (row,) = [g for g in result["grades"] if g["metric"] == metric]
    assert row["grade"] == grade
    assert result["passed"] == (grade != "red")


def test_a_red_indicator_passes_only_when_waived_and_the_waiver_is_recorded():
    metrics = {**HEALTHY, "fairness_min_air": 0.68}
    assert not monitoring.gate(PLAN, metrics, {})["passed"]
    waived = monitoring.gate(PLAN, metrics, {"approval_ratio": "age band 18-24: thin file, reviewed"})
    assert waived["passed"] and waived["waived"] == ["approval_ratio"]
    (row,) = [g for g in waived["grades"] if g["indicator"] == "approval_ratio"]
    assert row["waiver"].startswith("age band")


def test_typos_and_missing_metrics_fail_closed():
    with pytest.raises(ParamsError, match="unknown indicator"):
        monitoring.gate(PLAN, HEALTHY, {"aproval_ratio": "typo"})
    with pytest.raises(ParamsError, match="unknown indicator"):
        monitoring.check_waivers({"aproval_ratio": "typo"})
    with pytest.raises(InputDataError, match="missing"):
        monitoring.gate(PLAN, {k: v for k, v in HEALTHY.items() if k != "oot_psi"}, {})


def test_derived_metrics():
    d = monitoring.derived(
        {
            "oot_bad_rate": 0.0325,
            "oot_mean_pd": 0.0107,
            "fairness_min_air_age_band": 0.68,
            "fairness_min_air_x": 0.9,
        }
    )
    assert d["oot_actual_to_predicted"] == pytest.approx(0.0325 / 0.0107)
    assert d["fairness_min_air"] == 0.68
