"""The customer-level and account-level catalogs, assembled from the family modules. The call order is the
column order of the feature datasets and the entry order of the feature dictionary: keep it."""

from __future__ import annotations

from cardlab.features.dictionary import Catalog
from cardlab.features.families import (
    applications,
    bnpl,
    limit_changes,
    orders,
    platform_scores,
    profile_changes,
    sessions,
    statements,
)
from cardlab.features.families.common import ACCOUNT, ALL


def customer_catalog(windows: list[int], categories: list[str], invitations: bool = False) -> Catalog:
    cat = Catalog(ALL)
    orders.add_features(cat, windows, categories)
    sessions.add_features(cat, windows)
    bnpl.add_features(cat, windows)
    profile_changes.add_features(cat, windows)
    platform_scores.add_features(cat, windows)
    applications.add_features(cat, windows, invitations)
    return cat


def account_catalog(windows: list[int], payment_types: list[str]) -> Catalog:
    cat = Catalog(ACCOUNT)
    statements.add_snapshot_features(cat, windows)
    for w in windows:
        statements.add_window_features(cat, w, payment_types)
        limit_changes.add_window_features(cat, w)
    limit_changes.add_recency_features(cat)
    return cat
