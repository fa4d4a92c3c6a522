"""Decisions and their adverse impact: who a model's score declines (or flags) at the task's decision rule,
and the favourable-decision rate by city tier, age band and gender.

One home for both, because two stages read them: ``evaluate`` gates the challenger on the adverse-impact
ratio (the monitoring plan, :mod:`cardlab.modeling.monitoring`) and ``explain`` reports the same table and
writes reason codes for the same adverse decisions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cardlab import taskspec
from cardlab.config import Params

AGE_BANDS = (18, 25, 35, 45, 55, 200)


def decision_mask(
    task: str, params: Params, snapshots: pd.DataFrame, score: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, dict[str, float]]:
    """Rows (within ``rows``) the model decides adversely (the task's ``decision`` in cardlab.taskspec):
    "approve" declines above the approval cutoff (the lowest-PD ``approval_rate`` share is approved), "flag"
    flags the top-scored share (``Task.share``: churn's campaign capacity, else ``explain.flag_share``)."""
    ep, spec = params.explain, taskspec.get(task)
    if spec.decision == "approve":
        share = ep.approval_rate
        booked = spec.modelled_column
        if share is None:
            share = (
                float(snapshots.loc[rows, booked].astype(float).mean())
                if booked is not None and booked in snapshots
                else 0.6
            )
        cut = float(np.quantile(score[rows], share)) if rows.any() else float("nan")
        mask = _closest_share(rows, score, cut, 1.0 - share)
        return mask, {"approval_rate": share, "pd_cutoff": cut}
    share = spec.share(params)
    cut = float(np.quantile(score[rows], 1.0 - share)) if rows.any() else float("nan")
    return _closest_share(rows, score, cut, share), {"flag_share": share, "score_cutoff": cut}


def _closest_share(rows: np.ndarray, score: np.ndarray, cut: float, target: float) -> np.ndarray:
    """Rows scored above ``cut`` — or at or above it, when that is closer to the ``target`` share: a coarse
    score (a model on one or two features) puts many rows on the cutoff value itself, and "strictly above"
    could then decline nobody."""
    gt, ge = rows & (score > cut), rows & (score >= cut)
    n = max(int(rows.sum()), 1)
    return ge if abs(ge.sum() / n - target) < abs(gt.sum() / n - target) else gt


def fairness_table(
    snapshots: pd.DataFrame,
    score: np.ndarray,
    adverse: np.ndarray,
    rows: np.ndarray,
    points: np.ndarray | None,
) -> pd.DataFrame:
    """Favourable-decision rate and score by city tier, age band and gender on ``rows`` (OOT decisions).

    ``air`` = group favourable rate / the highest group's rate (adverse impact ratio; < 0.8 flags the
    four-fifths rule); ``score_diff`` = group mean score - overall mean score (points for credit).
    """
    df = snapshots.loc[rows].copy()
    df["_fav"] = ~adverse[rows]
    df["_score"] = points[rows] if points is not None else score[rows]
    attrs: dict[str, pd.Series] = {}
    if "cust_city_tier" in df:
        attrs["city_tier"] = df["cust_city_tier"].map(lambda v: "missing" if pd.isna(v) else f"tier {int(v)}")
    if "cust_age" in df:
        attrs["age_band"] = pd.cut(
            df["cust_age"], AGE_BANDS, right=False, labels=["18-24", "25-34", "35-44", "45-54", "55+"]
        ).astype(str)
    g_cols = [c for c in df.columns if c.startswith("cust_gender_")]
    if g_cols:
        attrs["gender"] = (
            df[g_cols].astype(float).idxmax(axis=1).str.replace("cust_gender_", "", regex=False).str.upper()
        )
        attrs["gender"] = attrs["gender"].where(df[g_cols].astype(float).max(axis=1) > 0, "missing")
    elif "cust_gender_code" in df:
        attrs["gender"] = df["cust_gender_code"].map(lambda v: "missing" if pd.isna(v) else f"code {int(v)}")
    has_label = "label" in df and df["label"].notna().any()
    out = []
    overall = float(df["_score"].mean()) if len(df) else float("nan")
    for attr, grp in attrs.items():
        t = df.groupby(grp.to_numpy(), sort=True)
        tab = pd.DataFrame(
            {"n": t.size(), "favourable_rate": t["_fav"].mean(), "mean_score": t["_score"].mean()}
        )
        if has_label:
            tab["observed_bad_rate"] = t["label"].mean()
        tab["air"] = tab["favourable_rate"] / tab["favourable_rate"].max()
        tab["score_diff"] = tab["mean_score"] - overall
        tab.insert(0, "group", tab.index.astype(str))
        tab.insert(0, "attribute", attr)
        out.append(tab.reset_index(drop=True))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["attribute", "group", "n"])


def min_air(table: pd.DataFrame) -> dict[str, float]:
    """``fairness_min_air_<attribute>``: the lowest adverse-impact ratio of each attribute's groups."""
    return {
        f"fairness_min_air_{attr}": float(t["air"].min()) for attr, t in table.groupby("attribute", sort=True)
    }
