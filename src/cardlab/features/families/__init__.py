"""Feature families: monthly base tables (what happened in each complete month) and the windowed features
computed from them. Customer-level families serve all tasks; account-level families serve limit and churn.

Amounts are fen unless a name says otherwise; windows are complete calendar months strictly before the
snapshot month; ratios are null when their denominator is zero.

The package has one module per raw source table (its monthly family and the features computed from it), plus
``common`` (shared helpers) and ``catalogs`` (the customer and account catalogs, assembled in a fixed order).
"""

from __future__ import annotations

from cardlab.features.families.applications import applications_family, invitations_family
from cardlab.features.families.bnpl import bnpl_plans_family, bnpl_repay_family
from cardlab.features.families.catalogs import account_catalog, customer_catalog
from cardlab.features.families.common import ACCOUNT, ALL, ident
from cardlab.features.families.limit_changes import limit_changes_family
from cardlab.features.families.orders import CASH_LIKE_CATEGORIES, festival_expr, orders_family
from cardlab.features.families.platform_scores import platform_scores_family
from cardlab.features.families.profile_changes import profile_changes_family
from cardlab.features.families.sessions import sessions_family
from cardlab.features.families.statements import statements_family

__all__ = [
    "ACCOUNT",
    "ALL",
    "CASH_LIKE_CATEGORIES",
    "account_catalog",
    "applications_family",
    "bnpl_plans_family",
    "bnpl_repay_family",
    "customer_catalog",
    "festival_expr",
    "ident",
    "invitations_family",
    "limit_changes_family",
    "orders_family",
    "platform_scores_family",
    "profile_changes_family",
    "sessions_family",
    "statements_family",
]
