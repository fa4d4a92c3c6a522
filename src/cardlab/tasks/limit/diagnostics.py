"""Diagnostics that are not pipeline stages: :func:`response_swap` (which response model costs
the policy its profit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cardlab.config import Params
from cardlab.tasks.limit.data import _load, _pick, oot_decisions, read_potential
from cardlab.tasks.limit.policy import optimise, profit_and_loss
from cardlab.tasks.limit.responses import load_models, predict_responses


def response_swap(params: Params, features_root: Path, oracle: Path, out: Path) -> dict[str, float]:
    """Diagnostic, not a pipeline stage: which response model costs the policy its profit.

    Replaces one trained response (spend, revolving balance, PD) at a time by the oracle's expectation at
    every option and re-solves the same knapsack; ``true_<m>`` swaps the whole response, ``true_<m>_change``
    keeps our prediction at the logged line and takes only the oracle's change with the line (its uplift).
    Every value is the oracle-graded ``profit_capture``; ``model`` is our policy (as in evaluate), and all
    three swapped together give the oracle policy (1.0).
    """
    lp = params.limit
    models, meta = load_models(Path(out))
    df_all, _, _ = _load(features_root)
    df, lines, base_allowed, legacy, _, allowed = oot_decisions(df_all, params)
    ours = predict_responses(models, meta, df, lines)
    truth = read_potential(oracle, df, lines, base_allowed)
    true = {"spend": truth["spend"], "revolve": truth["revolve"], "default": truth["pd"]}
    budget = lp.exposure_budget_share * float(_pick(lines, legacy).sum())
    start = legacy if lp.exposure_budget_share >= 1.0 and lp.expected_loss_cap_share >= 1.0 else None

    def graded(profit: np.ndarray, loss: np.ndarray) -> float:
        cap = lp.expected_loss_cap_share * float(_pick(loss, legacy).sum())
        res = optimise(
            profit, loss, lines, allowed, budget, cap, start=start, time_limit_s=lp.solver_time_limit_s
        )
        return float(_pick(truth["profit"], res.choice).mean())

    base, best = float(_pick(truth["profit"], legacy).mean()), graded(truth["profit"], truth["loss"])

    def capture(resp: dict[str, np.ndarray]) -> float:
        return (
            graded(*profit_and_loss(resp["spend"], resp["revolve"], resp["default"], lines, params)) - base
        ) / (best - base)

    result = {"model": capture(ours), "all_true": capture(true)}
    for m in ours:
        result[f"true_{m}"] = capture({**ours, m: true[m]})
        change = true[m] - _pick(true[m], legacy)[:, None] + _pick(ours[m], legacy)[:, None]
        result[f"true_{m}_change"] = capture(
            {**ours, m: np.clip(change, 0.0, 1.0 if m == "default" else None)}
        )
    return result
