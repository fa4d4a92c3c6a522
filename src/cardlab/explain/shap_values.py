"""Exact tree SHAP in log-odds (margin) space.

XGBoost's own ``pred_contribs=True`` computes exact path-dependent tree SHAP (Lundberg et al. 2020) in C++,
multithreaded; it is the production path here. Its values are in the booster's *margin* space (log-odds for
``binary:logistic``): for every row ``sum(values) + base_value == predict(output_margin=True)``.
shap's ``TreeExplainer`` is the cross-check (same algorithm, independent implementation); both agree to float32
rounding with the pinned versions (tests/test_explain.py).

Optional interventional SHAP (``feature_perturbation="interventional"``) explains the margin against a fixed
reference population (a seeded sample of the reference split, documented in docs/explain.md); it answers
"why does this applicant differ from a typical applicant" rather than "from the training-data tree paths".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb


@dataclass
class ShapValues:
    """SHAP values of ``n`` rows over ``features`` (margin units; positive = towards label 1, the adverse
    outcome), the expected margin ``base_value`` and each row's model ``margin``."""

    values: np.ndarray  # (n, p) float32
    base_value: float
    features: list[str]

    @property
    def margin(self) -> np.ndarray:
        return self.values.sum(axis=1, dtype=np.float64) + self.base_value


def as_matrix(frame: pd.DataFrame | np.ndarray, features: list[str]) -> np.ndarray:
    """Feature matrix in model order as contiguous float32 (NaN = missing, as in training)."""
    if isinstance(frame, pd.DataFrame):
        frame = frame[features].to_numpy(dtype=np.float32, na_value=np.nan)
    return np.ascontiguousarray(frame, dtype=np.float32)


def tree_shap(
    booster: xgb.Booster, frame: pd.DataFrame | np.ndarray, features: list[str], *, nthread: int = 0
) -> ShapValues:
    """Exact path-dependent tree SHAP via ``booster.predict(pred_contribs=True)``.

    ``nthread=0`` uses every core (the benchmark compares against the same raw call).
    """
    if isinstance(frame, pd.DataFrame) and all(
        pd.api.types.is_numeric_dtype(t) for t in frame[features].dtypes
    ):
        data = frame[features]  # XGBoost reads numeric columns without an extra float32 copy
    else:
        data = as_matrix(frame, features)
    if len(data) == 0:  # e.g. no adverse decision in the period: nothing to explain
        return ShapValues(np.zeros((0, len(features)), np.float32), 0.0, list(features))
    dm = xgb.DMatrix(data, feature_names=features, nthread=nthread or -1)
    contribs = booster.predict(dm, pred_contribs=True, validate_features=False)
    if contribs.ndim != 2:  # multi-class / multi-target boosters: not used by cardlab's tasks
        raise ValueError(f"expected one output per row, got contributions of shape {contribs.shape}")
    bias = contribs[:, -1]
    return ShapValues(
        values=contribs[:, :-1], base_value=float(bias[0]) if len(bias) else 0.0, features=list(features)
    )


def margin(booster: xgb.Booster, frame: pd.DataFrame | np.ndarray, features: list[str]) -> np.ndarray:
    """The model's raw output (log-odds for logistic objectives)."""
    dm = xgb.DMatrix(as_matrix(frame, features), feature_names=features)
    return booster.predict(dm, output_margin=True, validate_features=False).astype(np.float64)


def additivity_error(booster: xgb.Booster, frame: pd.DataFrame | np.ndarray, sv: ShapValues) -> float:
    """max |sum(SHAP) + base - margin| over the rows (margin units)."""
    return float(np.max(np.abs(sv.margin - margin(booster, frame, sv.features)))) if len(sv.values) else 0.0


def shap_tree_explainer(
    booster: xgb.Booster, frame: pd.DataFrame | np.ndarray, features: list[str]
) -> np.ndarray:
    """The same SHAP values from shap's ``TreeExplainer`` (path-dependent, raw/margin output) for cross-checks."""
    import shap

    explainer = shap.TreeExplainer(booster, feature_perturbation="tree_path_dependent", model_output="raw")
    # shap would delegate XGBoost models back to ``pred_contribs``; "internal" forces shap's own C++ tree walk
    # over the trees it parsed from the booster's JSON, so the comparison is between two implementations.
    explainer.model.model_type = "internal"
    x = as_matrix(frame, features).astype(np.float64)
    return np.asarray(explainer.shap_values(x, check_additivity=False), dtype=np.float64)


def interventional_shap(
    booster: xgb.Booster,
    frame: pd.DataFrame | np.ndarray,
    background: pd.DataFrame | np.ndarray,
    features: list[str],
) -> ShapValues:
    """Interventional tree SHAP against ``background`` (the reference population), margin space."""
    import shap

    bg = pd.DataFrame(as_matrix(background, features), columns=features)
    explainer = shap.TreeExplainer(
        booster, data=bg, feature_perturbation="interventional", model_output="raw"
    )
    x = pd.DataFrame(as_matrix(frame, features), columns=features)
    vals = np.asarray(explainer.shap_values(x, check_additivity=False), dtype=np.float32)
    ev = explainer.expected_value
    return ShapValues(values=vals, base_value=float(np.ravel(ev)[0]), features=list(features))


def mean_abs(sv: ShapValues) -> pd.Series:
    """Global importance: mean |SHAP| per feature (margin units), sorted descending (ties by name)."""
    imp = pd.Series(np.abs(sv.values).mean(axis=0, dtype=np.float64), index=sv.features, name="mean_abs_shap")
    return imp.sort_index().sort_values(ascending=False, kind="mergesort")
