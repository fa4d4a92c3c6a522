"""The feature dictionary: every output column's meaning, business direction and reason text.

``direction`` is a per-task map ``{task: +1 | -1 | 0}``: the *business direction with respect to that task's
label* (credit: 90+ DPD within 12 months of booking; limit: 90+ DPD within the outcome window after the
decision; churn: voluntary closure or silent attrition in the label window). +1 means a higher value is
expected to raise the adverse outcome, -1 to lower it, 0 unknown/no prior. It may feed XGBoost monotone
constraints, so it is deliberately conservative: 0 wherever the sign is not a well-established business prior.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import polars as pl

from cardlab.taskspec import FRAMES

DIRECTION_MEANING = (
    "business direction w.r.t. the task's label: +1 a higher value raises the adverse outcome risk "
    "(credit/limit: 90+ DPD; churn: attrition), -1 lowers it, 0 unknown (no monotone constraint)"
)


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    family: str
    window: int | None  # months before the snapshot; None for static / point-in-time values
    definition: str
    direction: dict[str, int]
    reason_en: str
    reason_zh: str
    tasks: tuple[str, ...]
    is_feature: bool = True
    role: str = "feature"  # feature | key | split | label | decision | treatment | outcome | extra
    # the raw observable it is computed from: "<table>.<column>" (the main column when several enter), or the
    # raw table for derived mixes; the explanation stage checks attributions against the truth by source
    source: str = ""

    def as_json(self) -> dict:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d


# the raw table behind each behavioural family (a feature's default source when it names no column)
FAMILY_SOURCE = {
    "platform_orders": "orders",
    "platform_engagement": "sessions_monthly",
    "bnpl": "bnpl_monthly",
    "profile_changes": "profile_changes",
    "platform_score": "platform_scores.platform_credit_score",
    "application_history": "applications",
    "account_tenure": "statements",
    "limit_history": "limit_changes",
    "utilisation": "statements.closing_balance",
    "delinquency": "statements.dpd",
    "repayment": "statements.payments",
    "spend": "statements.purchases",
    "cash_advance": "statements.cash_advance",
    "instalments": "statements.instalment_fen",
    "revenue": "statements.interest",
    "rewards": "statements.rewards_earned",
}


def dirs(credit: int = 0, limit: int = 0, churn: int = 0) -> dict[str, int]:
    return {"credit": credit, "limit": limit, "churn": churn}


@dataclass
class Catalog:
    """Feature expressions with their dictionary entries, for one group of tasks."""

    tasks: tuple[str, ...]
    items: list[tuple[pl.Expr, FeatureSpec]] = field(default_factory=list)

    def add(
        self,
        name: str,
        expr: pl.Expr,
        *,
        family: str,
        window: int | None,
        definition: str,
        en: str,
        zh: str,
        direction: dict[str, int] | None = None,
        tasks: tuple[str, ...] | None = None,
        source: str | None = None,
    ) -> None:
        """``tasks``: a subset of the catalog's tasks when the feature means nothing for the others (e.g.
        card-page visits at a credit application, before there is a card). ``source``: the raw
        ``table.column`` it is computed from (default: the family's table, FAMILY_SOURCE)."""
        tasks = tuple(t for t in self.tasks if t in (tasks or self.tasks))
        d = {t: 0 for t in FRAMES}
        d.update(direction or {})
        d = {t: v for t, v in d.items() if t in tasks}
        # float32: what XGBoost uses internally, and half the memory of float64
        self.items.append(
            (
                expr.cast(pl.Float32).alias(name),
                FeatureSpec(
                    name,
                    family,
                    window,
                    definition,
                    d,
                    en,
                    zh,
                    tasks,
                    source=source or FAMILY_SOURCE.get(family, family),
                ),
            )
        )

    def block(self, *, family: str, window: int | None) -> functools.partial[None]:
        """:meth:`add` with ``family`` and ``window`` bound, so a block of features states them once:
        ``spend = cat.block(family="spend", window=w)`` then ``spend(name, expr, definition=..., en=...,
        zh=...)``. Features are added when called, in call order (the column and dictionary order)."""
        return functools.partial(self.add, family=family, window=window)

    @property
    def exprs(self) -> list[pl.Expr]:
        return [e for e, _ in self.items]

    @property
    def specs(self) -> list[FeatureSpec]:
        return [s for _, s in self.items]


def non_feature(
    name: str, role: str, definition: str, en: str, zh: str, tasks: tuple[str, ...]
) -> FeatureSpec:
    return FeatureSpec(
        name, "non_feature", None, definition, {t: 0 for t in tasks}, en, zh, tasks, False, role, ""
    )


def merge_specs(specs: list[FeatureSpec]) -> list[FeatureSpec]:
    """One entry per column name; a column shared by several tasks lists all of them."""
    by_name: dict[str, FeatureSpec] = {}
    for s in specs:
        if s.name in by_name:
            old = by_name[s.name]
            tasks = tuple(t for t in FRAMES if t in set(old.tasks) | set(s.tasks))
            direction = {**old.direction, **s.direction}
            by_name[s.name] = FeatureSpec(
                old.name,
                old.family,
                old.window,
                old.definition,
                direction,
                old.reason_en,
                old.reason_zh,
                tasks,
                old.is_feature,
                old.role,
                old.source,
            )
        else:
            by_name[s.name] = s
    return list(by_name.values())
