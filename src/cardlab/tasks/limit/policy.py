"""From responses to lines: the economics of a line (:func:`profit_and_loss`, the realised profit of
the logged line), the multiple-choice knapsack under the exposure budget and the expected-loss cap
(:func:`optimise`), its shadow prices for the online service (:func:`decision_prices`), and the policies
of one split solved under the same constraints (:class:`Plan`, :func:`plan_decisions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cardlab.config import Params
from cardlab.modeling.optimise import InfeasibleError, MCKPResult, solve_mckp
from cardlab.tasks.limit.data import _annualise, _pick, oot_decisions, read_potential
from cardlab.tasks.limit.responses import predict_responses


def unit_margins(params: Params) -> dict[str, float]:
    eco, lp = params.simulate.economics, params.limit
    return {
        "spend": eco.interchange_rate
        - eco.reward_rate
        - eco.platform_reward_bonus * lp.platform_spend_share
        - lp.funding_rate_annual / 12.0,
        "revolve": eco.apr - lp.funding_rate_annual,
        "loss": lp.lgd * lp.ead_line_share,
    }


def profit_and_loss(
    spend: np.ndarray, revolve: np.ndarray, pd_: np.ndarray, line: np.ndarray, params: Params
) -> tuple[np.ndarray, np.ndarray]:
    """Expected 12-month profit and expected credit loss (yuan) of holding ``line``."""
    u = unit_margins(params)
    loss = pd_ * u["loss"] * line
    return spend * u["spend"] + revolve * u["revolve"] - loss, loss


def realised_profit(df: pd.DataFrame, params: Params) -> np.ndarray:
    """Realised 12-month profit (yuan) of the logged line from the ``y_*`` outcomes (spend and interest
    annualised when fewer than 12 months are observed; loss = LGD * EAD if 90+ DPD was reached)."""
    eco, lp = params.simulate.economics, params.limit
    ann = _annualise(df)
    spend = df["y_spend_fen"].astype("float64").fillna(0.0).to_numpy() / 100.0 * ann
    intfee = (
        df["y_interest_fees_fen"].astype("float64").fillna(0.0).to_numpy() / 100.0 * ann
        if "y_interest_fees_fen" in df
        else 0.0
    )
    rev = df["y_avg_revolving_fen"].astype("float64").fillna(0.0).to_numpy() / 100.0
    line = df["line_after_fen"].to_numpy(dtype=np.float64) / 100.0
    bad = df["y_dpd90"].astype("float64").fillna(0.0).to_numpy()
    margin = eco.interchange_rate - eco.reward_rate - eco.platform_reward_bonus * lp.platform_spend_share
    return (
        spend * margin
        + intfee
        - lp.funding_rate_annual * (rev + spend / 12.0)
        - bad * lp.lgd * lp.ead_line_share * line
    )


def optimise(
    profit: np.ndarray,
    loss: np.ndarray,
    lines: np.ndarray,
    allowed: np.ndarray,
    exposure_budget: float,
    loss_cap: float,
    *,
    start: np.ndarray | None = None,
    time_limit_s: float = 30.0,
) -> MCKPResult:
    """Profit-maximising line per decision under total-exposure and expected-loss budgets."""
    weights = np.stack([np.where(allowed, lines, 0.0), np.where(allowed, loss, 0.0)])
    return solve_mckp(
        np.where(allowed, profit, 0.0),
        weights,
        np.array([exposure_budget, loss_cap]),
        allowed,
        time_limit_s=time_limit_s,
        start=start,
    )


def decision_prices(
    profit: np.ndarray,
    loss: np.ndarray,
    lines: np.ndarray,
    allowed: np.ndarray,
    exposure_budget: float,
    loss_cap: float,
) -> dict[str, float]:
    """Shadow prices of the portfolio budgets: ``exposure`` (yuan of profit per yuan of line) and
    ``expected_loss`` (yuan of profit per yuan of expected loss), the duals of the knapsack's LP relaxation
    (HiGHS). The LP optimum picks, for every decision but at most two (one per budget), the option with the
    largest ``profit - exposure * line - expected_loss * loss``; so one application at a time, with these
    prices, gets the line the portfolio optimum would give it (the online rule of :mod:`cardlab.serve`)."""
    from scipy import sparse
    from scipy.optimize import linprog

    ii, kk = np.nonzero(allowed)
    n = lines.shape[0]
    caps = np.array([exposure_budget, loss_cap], dtype=np.float64)
    scale = np.where(np.abs(caps) > 0, np.abs(caps), 1.0)
    knap = sparse.csr_matrix(np.stack([lines[ii, kk], loss[ii, kk]]) / scale[:, None])
    assign = sparse.csr_matrix((np.ones(len(ii)), (ii, np.arange(len(ii)))), shape=(n, len(ii)))
    res = linprog(
        -profit[ii, kk],
        A_ub=knap,
        b_ub=caps / scale,
        A_eq=assign,
        b_eq=np.ones(n),
        bounds=(0, 1),
        method="highs",
    )
    if res.status != 0:
        raise InfeasibleError(f"LP relaxation of the limit knapsack failed: {res.message}")
    duals = -np.asarray(res.ineqlin.marginals, dtype=np.float64) / scale
    return {"exposure": float(max(duals[0], 0.0)), "expected_loss": float(max(duals[1], 0.0))}


@dataclass
class Plan:
    """The decisions of one split, our response predictions, the oracle's potential outcomes at every option,
    and the policies solved under the same constraints (legacy = logged lines; policy = our responses;
    pd_only = our responses frozen at the logged line; oracle = the oracle's expectations)."""

    params: Params
    df: pd.DataFrame
    lines: np.ndarray
    base_allowed: np.ndarray
    legacy: np.ndarray
    arrears: np.ndarray
    allowed: np.ndarray
    resp: dict[str, np.ndarray]
    truth: dict[str, np.ndarray]
    value: dict[str, np.ndarray]
    losses: dict[str, np.ndarray]
    solved: dict[str, MCKPResult] = field(default_factory=dict)

    @property
    def expo_legacy(self) -> float:
        return float(_pick(self.lines, self.legacy).sum())

    def cap(self, name: str) -> float:
        """Expected-loss cap of a policy: its own loss model's loss of the logged lines (x the cap share)."""
        return self.params.limit.expected_loss_cap_share * float(_pick(self.losses[name], self.legacy).sum())

    def solve(self, name: str, budget_share: float) -> MCKPResult:
        lp = self.params.limit
        return optimise(
            self.value[name],
            self.losses[name],
            self.lines,
            self.allowed,
            budget_share * self.expo_legacy,
            self.cap(name),
            start=self.legacy if budget_share >= 1.0 and lp.expected_loss_cap_share >= 1.0 else None,
            time_limit_s=lp.solver_time_limit_s,
        )

    @property
    def choice(self) -> dict[str, np.ndarray]:
        return {"legacy": self.legacy, **{k: v.choice for k, v in self.solved.items()}}

    def profit_of(self, choice: np.ndarray) -> np.ndarray:
        """The oracle's expected 12-month profit (yuan) of each decision under ``choice``."""
        return _pick(self.truth["profit"], choice)

    def grade(self, c: np.ndarray) -> dict[str, float]:
        return {
            "profit": float(_pick(self.truth["profit"], c).mean()),
            "loss": float(_pick(self.truth["loss"], c).mean()),
            "exposure": float(_pick(self.lines, c).mean()),
        }


def plan_decisions(
    params: Params,
    models: dict,
    meta: dict,
    df_all: pd.DataFrame,
    oracle: Path,
    split: str = "oot",
    *,
    logit_shift: float | None = None,
    policies: tuple[str, ...] = ("policy", "pd_only", "oracle"),
) -> Plan:
    """Predict the responses at every option of ``split``'s decisions, read the oracle's potential outcomes
    and solve ``policies`` at the exposure budget (``logit_shift``: see :func:`predict_responses`)."""
    df, lines, base_allowed, legacy, arrears, allowed = oot_decisions(df_all, params, split)
    resp = predict_responses(models, meta, df, lines, logit_shift=logit_shift)
    profit_hat, loss_hat = profit_and_loss(resp["spend"], resp["revolve"], resp["default"], lines, params)
    # PD-only: behaviour (spend, revolving, PD) stays as at the logged line; only the loss scales with the line
    fixed = {m: np.repeat(_pick(resp[m], legacy)[:, None], lines.shape[1], axis=1) for m in resp}
    profit_pdo, loss_pdo = profit_and_loss(fixed["spend"], fixed["revolve"], fixed["default"], lines, params)
    truth = read_potential(oracle, df, lines, base_allowed)
    plan = Plan(
        params,
        df,
        lines,
        base_allowed,
        legacy,
        arrears,
        allowed,
        resp,
        truth,
        value={"policy": profit_hat, "pd_only": profit_pdo, "oracle": truth["profit"]},
        losses={"policy": loss_hat, "pd_only": loss_pdo, "oracle": truth["loss"]},
    )
    plan.solved = {name: plan.solve(name, params.limit.exposure_budget_share) for name in policies}
    return plan
