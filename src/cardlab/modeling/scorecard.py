"""The classic WOE logistic scorecard baseline, built with optbinning (monotone bins per feature).

Bins are fitted on the training split only; features with IV < 0.02 are dropped (the usual industry rule),
and each kept feature's bins follow a monotone WOE trend chosen by optbinning ("auto_asc_desc"), which is
what a bank's scorecard developer would do by hand. The scorecard is refitted deterministically whenever
it is needed (it takes seconds), so no pickle is stored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from optbinning import BinningProcess, Scorecard
from sklearn.linear_model import LogisticRegression


def fit_scorecard(train: pd.DataFrame, features: list[str], label: str = "label") -> Scorecard:
    """Fit a WOE logistic scorecard on ``train``; returns the fitted optbinning ``Scorecard``."""
    # a feature with no variation on train (e.g. all null for booked applicants) cannot be binned
    features = [f for f in features if train[f].nunique(dropna=True) > 1]
    X = train[features].astype("float64")
    y = train[label].astype(int).to_numpy()
    process = BinningProcess(
        variable_names=features,
        max_n_prebins=20,
        min_prebin_size=0.05,
        selection_criteria={"iv": {"min": 0.02}},
        binning_fit_params={f: {"monotonic_trend": "auto_asc_desc"} for f in features},
    )
    card = Scorecard(
        binning_process=process,
        estimator=LogisticRegression(C=1.0, max_iter=1000, solver="lbfgs"),
        scaling_method="pdo_odds",
        scaling_method_params={"pdo": 20, "odds": 50, "scorecard_points": 600},
    )
    card.fit(X, y)
    return card


def scorecard_pd(card: Scorecard, frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    """Probability of the bad outcome (label 1) for each row of ``frame``."""
    used = list(card.binning_process_.variable_names)
    return card.predict_proba(frame[used].astype("float64"))[:, 1]
