"""One credit decision: features -> PD -> approve / refer / decline -> reasons -> first line.

- **PD**: the credit booster on the float32 feature vector, exactly as ``cardlab evaluate credit`` scores.
- **Decision**: decline above the batch's cutoff (``decision_pd_cutoff`` of the explain stage: the PD above
  which the batch declines); refer inside the grey band ``(cutoff * (1 - refer_band), cutoff]`` (a human
  underwriter decides); approve below it.
- **Reasons**: exact tree SHAP of the one row (:func:`cardlab.explain.shap_values.tree_shap`) grouped into the
  top-``top_k`` reasons by :func:`cardlab.explain.reasons.reason_table` with the explain stage's groups and the
  dictionary's zh/en texts: for declines and referrals the adverse reasons (the batch's reason codes), for
  approvals the largest groups either way (``direction``: favourable or adverse).
- **Line** (approve / refer): the limit task's response models at every grid line
  (:func:`cardlab.tasks.limit.predict_responses`, :func:`~cardlab.tasks.limit.profit_and_loss`); the line
  maximising ``profit - exposure_price * line - loss_price * expected_loss``, with the shadow prices of the
  batch knapsack (``decision_policy.json``): the portfolio optimum's choice, one application at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import cast

import numpy as np
import pandas as pd

from cardlab.config import Params
from cardlab.explain import reasons as reason_codes
from cardlab.explain import shap_values
from cardlab.serve.features import OnlineFeatures
from cardlab.serve.registry import CreditModel, LimitModel
from cardlab.serve.store import FeatureStore
from cardlab.tasks import limit as limit_task

DECISIONS = ("approve", "refer", "decline")


class DecisionError(Exception):
    """A request the service understood but cannot decide (``status``: the HTTP status to answer with)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Application:
    customer_id: int
    application_date: date
    legacy_score: float | None = None
    partner_bank: str | None = None


def _nan_to_none(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


class DecisionEngine:
    """Stateless per request; holds the loaded models, the store and the merge plans."""

    def __init__(
        self,
        credit: CreditModel,
        limit: LimitModel,
        store: FeatureStore,
        *,
        refer_band: float = 0.1,
        top_k: int = 4,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        if not 0.0 <= refer_band < 1.0:
            raise ValueError(f"refer_band must be in [0, 1), got {refer_band}")
        self.credit, self.limit, self.store = credit, limit, store
        # one row per request: one thread each (an OpenMP team per call costs more than it saves, and its
        # spinning threads fight the server's other work for the cores)
        for booster in (credit.booster, *limit.models.values()):
            booster.set_param({"nthread": 1})
        self.refer_band, self.top_k = refer_band, top_k
        # the group matrix, member columns and texts of the credit model, built once (not per request)
        self.reason_coder = reason_codes.ReasonCoder(credit.features, credit.groups, store.dictionary, top_k)
        self.observe = observe or (lambda stage, seconds: None)
        self.online = OnlineFeatures(store)
        self.credit_plan = self.online.plan(credit.features, model=f"{credit.name} v{credit.version}")
        self.limit_names = [f for f in limit.meta["features"] if f not in limit_task.TREAT]
        self.limit_plan = self.online.plan(
            self.limit_names, model=f"{limit.name} v{limit.version}", allow_account=True
        )
        # the registry's policy stands in for Params: .limit and .simulate.economics, all these read
        self.limit_policy = cast(Params, limit.policy)
        booking = pd.DataFrame({"decision_type": ["initial"], "line_before_fen": [np.nan]})
        self.booking_lines = limit_task.line_options(booking, self.limit_policy)
        banks = set(store.partner_banks)
        self.partner_banks = banks

    # ------------------------------------------------------------------------------------------------------
    def features(self, app: Application) -> tuple[int, np.ndarray, np.ndarray]:
        """(as-of month index, credit feature vector, limit feature vector) of an application."""
        store = self.store
        t = store.month_index(app.application_date)
        row = store.get(app.customer_id, t)
        if row is None:
            if not store.has_customer(app.customer_id):
                raise DecisionError(
                    404, "unknown_customer", f"customer {app.customer_id} is not in the feature store"
                )
            replay = ", ".join(store.month_start(m).strftime("%Y-%m") for m in store.replay_months)
            raise DecisionError(
                404,
                "no_feature_snapshot",
                f"no feature snapshot for customer {app.customer_id} as of "
                f"{app.application_date.strftime('%Y-%m')}: the store holds every customer as of "
                f"{store.month_start(store.today).strftime('%Y-%m')} (today) and replay rows for the "
                f"applications of {replay}",
            )
        fields = {"legacy_score": app.legacy_score, "partner_bank": app.partner_bank}
        request = self.online.request_values(app.application_date, row, fields)
        x_credit = self.online.vector(self.credit_plan, row, request, t)
        x_limit = self.online.vector(self.limit_plan, row, request, t)
        return t, x_credit, x_limit

    def score(self, x_credit: np.ndarray) -> tuple[float, np.ndarray]:
        """PD (the float32 the batch writes, as a Python float) and its float32 input row."""
        x32 = x_credit.astype(np.float32)[None, :]
        return float(self.credit.booster.inplace_predict(x32)[0]), x32

    def decision(self, pd_: float) -> str:
        cut = self.credit.pd_cutoff
        if pd_ > cut:
            return "decline"
        if pd_ > cut * (1.0 - self.refer_band):
            return "refer"
        return "approve"

    def reasons(self, x32: np.ndarray, adverse: bool) -> list[dict]:
        """Top-k reason groups: adverse only (declines, referrals: the batch's reason codes), or for approvals
        the largest groups either way (favourable ones pushing the PD down, adverse ones up)."""
        sv = shap_values.tree_shap(self.credit.booster, x32, self.credit.features, nthread=1)
        # one pass: row 0 = the adverse reading, row 1 (approvals) = the favourable one
        values = sv.values if adverse else np.vstack([sv.values, -sv.values])
        rows, ranks, gidx, top_feature, contribution = self.reason_coder.top(values)
        found = []
        for source, rank, g, feature, c in zip(
            rows.tolist(), ranks.tolist(), gidx.tolist(), top_feature, contribution.tolist(), strict=True
        ):
            favourable = source == 1
            zh, en = self.reason_coder.texts[feature]
            found.append(
                {
                    "rank": rank + 1,
                    "group": self.reason_coder.ids[g],
                    "feature": feature,
                    "direction": "favourable" if favourable else "adverse",
                    "contribution": (-1.0 if favourable else 1.0) * c,
                    "zh": zh,
                    "en": en,
                }
            )
        if not adverse:
            found = sorted(found, key=lambda r: -abs(r["contribution"]))[: self.top_k]
            for i, r in enumerate(found, start=1):
                r["rank"] = i
        return found

    def line(self, x_limit: np.ndarray) -> dict:
        """The first line (yuan) by the shadow-price rule, with its predicted PD and profit."""
        lm = self.limit
        # booking options are the grid for every application: built once (self.booking_lines), and the
        # response models read the feature row as it is (no DataFrame per request)
        lines, allowed = self.booking_lines
        resp = limit_task.predict_response_matrix(
            lm.models, lm.meta, x_limit.astype(np.float32)[None, :], np.array([np.nan]), lines
        )
        profit, loss = limit_task.profit_and_loss(
            resp["spend"], resp["revolve"], resp["default"], lines, self.limit_policy
        )
        value = profit - lm.prices["exposure"] * lines - lm.prices["expected_loss"] * loss
        k = int(np.argmax(np.where(allowed, value, -np.inf)[0]))
        return {
            "line_yuan": float(lines[0, k]),
            "line_pd": float(resp["default"][0, k]),
            "line_expected_profit_yuan": float(profit[0, k]),
        }

    # ------------------------------------------------------------------------------------------------------
    def decide(self, app: Application, *, with_features: bool = False) -> dict:
        """The decision document (without id/timing: the service adds those)."""
        tick = time.perf_counter()
        t, x_credit, x_limit = self.features(app)
        tock = time.perf_counter()
        self.observe("features", tock - tick)
        pd_, x32 = self.score(x_credit)
        outcome = self.decision(pd_)
        tick = time.perf_counter()
        self.observe("score", tick - tock)
        reasons = self.reasons(x32, adverse=outcome != "approve")
        tock = time.perf_counter()
        self.observe("reasons", tock - tick)
        line = self.line(x_limit) if outcome != "decline" else None
        self.observe("line", time.perf_counter() - tock)
        doc = {
            "customer_id": app.customer_id,
            "application_date": app.application_date.isoformat(),
            "as_of_month": self.store.month_start(t).isoformat(),
            "decision": outcome,
            "pd": pd_,
            "pd_cutoff": self.credit.pd_cutoff,
            "line_yuan": line["line_yuan"] if line else None,
            "line_detail": line,
            "reasons": reasons,
            "models": self.models(),
        }
        if with_features:
            doc["features"] = {
                "credit": dict(zip(self.credit.features, map(_nan_to_none, x_credit), strict=True)),
                "limit": dict(zip(self.limit_names, map(_nan_to_none, x_limit), strict=True)),
            }
        return doc

    def models(self) -> dict:
        return {
            "credit": {"name": self.credit.name, "version": self.credit.version, "alias": self.credit.alias},
            "limit": {"name": self.limit.name, "version": self.limit.version, "alias": self.limit.alias},
        }

    def warm_up(self, n: int = 20) -> int:
        """Decide a few stored applications (today) so first requests pay no lazy initialisation."""
        ids = self.store.customers(self.store.today, n)
        day = self.store.month_start(self.store.today)
        bank = sorted(self.partner_banks)[0] if self.partner_banks else None
        for cid in ids:
            self.decide(Application(cid, day, 600.0, bank), with_features=True)
        return len(ids)
