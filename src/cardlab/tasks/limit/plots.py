"""evaluate's figures and tables of ``experiments/limit/plots/``: the profit-vs-exposure frontier and
the line by risk grade per policy, their tables (:func:`frontier_table`, :func:`line_by_grade_table`) and
figures (deterministic PNG: Agg canvas, no Software metadata; CSVs rounded to 6
digits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cardlab.modeling.optimise import InfeasibleError
from cardlab.tasks.limit.data import _pick
from cardlab.tasks.limit.policy import Plan
from cardlab.tasks.limit.spec import POLICIES

_PNG_META = {"Software": None}
_COLORS = {"legacy": "#7f7f7f", "pd_only": "#ff7f0e", "policy": "#1f77b4", "oracle": "#2ca02c"}
_LABELS = {
    "legacy": "legacy (logged)",
    "pd_only": "PD-only optimiser",
    "policy": "response-model optimiser",
    "oracle": "oracle optimum",
}


def frontier_table(plan: Plan) -> pd.DataFrame:
    """The profit frontier (``frontier.csv``): per budget share of ``limit.frontier_budget_shares``, each optimised
    policy solved at that share of the legacy exposure (left out where infeasible) and the legacy lines, all
    graded by the oracle (yuan per account)."""
    lp = plan.params.limit
    n, legacy = len(plan.df), plan.grade(plan.legacy)
    frontier = []
    for share in lp.frontier_budget_shares:
        for name in ("policy", "pd_only", "oracle"):
            try:
                res = plan.solved[name] if share == lp.exposure_budget_share else plan.solve(name, share)
            except InfeasibleError:  # reviews cannot cut lines: very small budgets are out of reach
                continue
            g = plan.grade(res.choice)
            frontier.append(
                {
                    "budget_share": share,
                    "exposure_budget_yuan": share * plan.expo_legacy / n,
                    "policy": name,
                    "profit_yuan": g["profit"],
                    "exposure_used_yuan": g["exposure"],
                }
            )
        frontier.append(
            {
                "budget_share": share,
                "exposure_budget_yuan": share * plan.expo_legacy / n,
                "policy": "legacy",
                "profit_yuan": legacy["profit"],
                "exposure_used_yuan": legacy["exposure"],
            }
        )
    return pd.DataFrame(frontier)


def line_by_grade_table(plan: Plan) -> pd.DataFrame:
    """Mean line and true PD per risk grade (quantiles of the predicted PD at the logged line) and policy
    (``line_by_grade.csv``)."""
    lp, choice = plan.params.limit, plan.choice
    pd_legacy = _pick(plan.resp["default"], plan.legacy)
    grade_idx = _risk_grades(pd_legacy, lp.n_risk_grades)
    dist = []
    for gi in range(1, lp.n_risk_grades + 1):
        sel = grade_idx == gi
        for p in POLICIES:
            dist.append(
                {
                    "risk_grade": gi,
                    "policy": p,
                    "n": int(sel.sum()),
                    "mean_line_yuan": float(_pick(plan.lines, choice[p])[sel].mean()) if sel.any() else 0.0,
                    "mean_pd_true": float(_pick(plan.truth["pd"], choice[p])[sel].mean())
                    if sel.any()
                    else 0.0,
                }
            )
    return pd.DataFrame(dist)


def _figure(w: float = 7.0, h: float = 4.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def _plot_frontier(frontier: pd.DataFrame, metrics: dict, path: Path) -> None:
    fig = _figure()
    ax = fig.add_subplot(111)
    for p in ("oracle", "policy", "pd_only"):
        d = frontier[frontier["policy"] == p]
        ax.plot(d["exposure_budget_yuan"], d["profit_yuan"], marker="o", color=_COLORS[p], label=_LABELS[p])
    leg = frontier[frontier["policy"] == "legacy"].iloc[0]
    ax.scatter(
        [leg["exposure_used_yuan"]],
        [leg["profit_yuan"]],
        color=_COLORS["legacy"],
        marker="*",
        s=140,
        zorder=5,
        label=_LABELS["legacy"],
    )
    ax.set_xlabel("exposure budget (total line, yuan per account)")
    ax.set_ylabel("true expected 12-month profit (yuan per account)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("Limit allocation: profit vs exposure budget (OOT, oracle-graded)", fontsize=11)
    cap = metrics.get("profit_capture", float("nan"))
    ax.set_title(
        f"Takeaway: at the legacy budget the model policy captures {cap:.0%} of the oracle's gain over legacy.",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata=_PNG_META)


def _plot_lines(dist: pd.DataFrame, path: Path) -> None:
    fig = _figure()
    ax = fig.add_subplot(111)
    grades = sorted(dist["risk_grade"].unique())
    width = 0.8 / len(POLICIES)
    for i, p in enumerate(POLICIES):
        d = dist[dist["policy"] == p].set_index("risk_grade").reindex(grades)
        ax.bar(
            np.arange(len(grades)) + (i - (len(POLICIES) - 1) / 2) * width,
            d["mean_line_yuan"],
            width,
            color=_COLORS[p],
            label=_LABELS[p],
        )
    ax.set_xticks(np.arange(len(grades)), [f"G{g}" for g in grades])
    ax.set_xlabel("risk grade (quantiles of predicted PD at the logged line; G1 = safest)")
    ax.set_ylabel("mean assigned line (yuan)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.suptitle("Limit allocation: line by risk grade per policy (OOT)", fontsize=11)
    lo, hi = grades[0], grades[-1]

    def ratio(p: str) -> float:
        d = dist[dist["policy"] == p].set_index("risk_grade")["mean_line_yuan"]
        return float(d[hi] / d[lo]) if d[lo] > 0 else float("nan")

    ax.set_title(
        f"Takeaway: riskiest/safest grade line ratio: model {ratio('policy'):.2f}, oracle {ratio('oracle'):.2f},"
        f" legacy {ratio('legacy'):.2f}.",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata=_PNG_META)


def _risk_grades(pd_: np.ndarray, n_grades: int) -> np.ndarray:
    """Risk grade 1 (safest) .. n_grades by quantiles of the predicted PD at the logged line."""
    edges = np.quantile(pd_, np.linspace(0, 1, n_grades + 1)[1:-1]) if len(pd_) else np.zeros(n_grades - 1)
    return (np.searchsorted(edges, pd_, side="right") + 1).astype(np.int64)


def _round_df(df: pd.DataFrame) -> pd.DataFrame:
    return df.apply(lambda s: s.round(6) if s.dtype.kind == "f" else s)
