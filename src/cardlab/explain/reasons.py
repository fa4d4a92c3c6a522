"""Reason codes: the top factors pushing one decision towards the adverse outcome, in the bank's words.

Correlated features are grouped under one reason, so an applicant never reads "BNPL overdue in the last 3
months" and "... in the last 6 months" as two separate reasons:

1. features of the same family and base name across windows (``bnpl_overdue_months_3m`` / ``_6m`` / ``_12m``)
   form one group;
2. groups are then merged (single linkage) when any two members have |Spearman correlation| above
   ``group_corr_threshold`` on the explained sample.

A group's contribution for a row is the sum of its members' SHAP values (SHAP is additive, so this is the
exact contribution of the group). Reasons are the groups with a *positive* sum (towards the adverse outcome:
default for credit/limit, attrition for churn), largest first; ``feature`` names the member contributing most in that row and the reason text is that
member's own dictionary entry (a group's lead feature, the member with the largest global mean |SHAP|, names
the group; its text is not true of every member: online and offline spending shares are merged).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

_WINDOW = re.compile(r"_(\d+)m(?=_|$)")


def base_name(name: str) -> str:
    """Feature name without its window token: ``acct_util_mean_6m`` -> ``acct_util_mean``."""
    return _WINDOW.sub("", name)


@dataclass
class Groups:
    """feature -> group id; per group its lead feature and members (in model feature order)."""

    of: dict[str, str]
    lead: dict[str, str]
    members: dict[str, list[str]]

    def matrix(self, features: list[str]) -> tuple[np.ndarray, list[str]]:
        """One-hot (p, g) matrix mapping features to groups, and the group ids in column order."""
        ids = list(self.members)
        col = {g: j for j, g in enumerate(ids)}
        m = np.zeros((len(features), len(ids)), dtype=np.float32)
        for i, f in enumerate(features):
            m[i, col[self.of[f]]] = 1.0
        return m, ids


def _rank_corr(x: np.ndarray) -> np.ndarray:
    """|Spearman| between columns (missing values at the mid rank, constant columns uncorrelated)."""
    ranks = pd.DataFrame(x).rank(method="average")
    ranks = ranks.fillna(ranks.mean()).fillna(0.0).to_numpy()  # all-missing columns become constant
    ranks = np.nan_to_num(ranks - ranks.mean(axis=0))
    norm = np.sqrt((ranks**2).sum(axis=0))
    ok = norm > 0
    z = np.zeros_like(ranks)
    z[:, ok] = ranks[:, ok] / norm[ok]
    return np.abs(z.T @ z)


def group_features(
    features: list[str],
    dictionary: dict[str, dict],
    x_sample: np.ndarray,
    importance: pd.Series,
    corr_threshold: float,
) -> Groups:
    """Group features by family + base name, then merge groups with |Spearman| > ``corr_threshold``."""
    parent = list(range(len(features)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    first: dict[tuple[str, str], int] = {}
    for i, f in enumerate(features):
        key = (str(dictionary.get(f, {}).get("family", "")), base_name(f))
        if key in first:
            union(first[key], i)
        else:
            first[key] = i
    if corr_threshold < 1.0 and len(x_sample) > 2:
        corr = _rank_corr(x_sample)
        ii, jj = np.nonzero(np.triu(corr > corr_threshold, k=1))
        for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
            union(i, j)
    roots: dict[int, list[str]] = {}
    for i, f in enumerate(features):
        roots.setdefault(find(i), []).append(f)
    imp = importance.reindex(features).fillna(0.0)
    of, lead, members = {}, {}, {}
    for mem in roots.values():
        top = max(mem, key=lambda f: (imp[f], -features.index(f)))
        gid = base_name(top)
        if gid in members:  # two groups with the same base name in different families
            gid = f"{dictionary.get(top, {}).get('family', 'x')}:{gid}"
        members[gid] = mem
        lead[gid] = top
        for f in mem:
            of[f] = gid
    return Groups(of=of, lead=lead, members=members)


class ReasonCoder:
    """Reason codes for one model: the feature -> group matrix, each group's member columns and the texts,
    computed once. :func:`reason_table` builds one per batch; the decision service keeps one per loaded model,
    so a single decision pays only a (1, p) @ (p, g) product and a top-k sort."""

    def __init__(self, features: list[str], groups: Groups, dictionary: dict[str, dict], top_k: int) -> None:
        self.features = list(features)
        self.gm, self.ids = groups.matrix(self.features)
        self.top_k = top_k
        position = {f: i for i, f in enumerate(self.features)}
        self.member_cols = [np.array([position[f] for f in groups.members[g]]) for g in self.ids]
        self.texts = {
            f: (dictionary[f]["reason_zh"], dictionary[f]["reason_en"])
            for f in self.features
            if {"reason_zh", "reason_en"} <= set(dictionary.get(f, {}))
        }

    def top(self, shap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
        """Per row the positive groups, strongest first: (row index, rank - 1, group index, the member feature
        contributing most in that row, the group's SHAP sum). Raises when a stated feature has no text."""
        gsum = shap.astype(np.float64) @ self.gm  # (n, g)
        k = min(self.top_k, gsum.shape[1])
        # stable ordering: by contribution descending, ties by group order
        order = np.argsort(-gsum, axis=1, kind="stable")[:, :k]
        contrib = np.take_along_axis(gsum, order, axis=1)
        rows, ranks = np.nonzero(contrib > 0)
        gidx = order[rows, ranks]
        top_feature = []
        for r, g in zip(rows.tolist(), gidx.tolist(), strict=True):
            cols = self.member_cols[g]
            top_feature.append(self.features[int(cols[int(np.argmax(shap[r, cols]))])])
        untexted = sorted({f for f in top_feature if f not in self.texts})
        if untexted:
            raise ValueError(f"no reason text for {untexted[:5]}: add them to the feature dictionary")
        return rows, ranks, gidx, top_feature, contrib[rows, ranks].astype(np.float64)


def reason_table(
    shap: np.ndarray,
    features: list[str],
    keys: pd.DataFrame,
    groups: Groups,
    dictionary: dict[str, dict],
    top_k: int,
) -> pd.DataFrame:
    """Top ``top_k`` adverse reasons per row of ``keys`` (customer_id, snapshot_date, ...).

    Returns one row per (decision, rank): the ``keys`` columns, ``rank`` (1 = strongest), ``reason_group``,
    ``feature`` (the member contributing most in that row), ``contribution`` (the group's SHAP sum, log-odds,
    > 0), ``reason_zh``, ``reason_en``. Rows with fewer than ``top_k`` positive groups get fewer reasons.
    """
    coder = ReasonCoder(features, groups, dictionary, top_k)
    rows, ranks, gidx, top_feature, contribution = coder.top(shap)
    out = keys.iloc[rows].reset_index(drop=True).copy()
    out["rank"] = (ranks + 1).astype(np.int8)
    out["feature"] = top_feature
    out["contribution"] = contribution
    # the stated reason is the text of the feature that carries it in this row (a merged group's members
    # can mean opposite things: online vs offline spending share)
    out["reason_zh"] = [coder.texts[f][0] for f in top_feature]
    out["reason_en"] = [coder.texts[f][1] for f in top_feature]
    out["reason_group"] = [coder.ids[g] for g in gidx.tolist()]
    return out


def top_groups(shap: np.ndarray, features: list[str], groups: Groups, top_k: int) -> list[frozenset[str]]:
    """Per row, the set of up to ``top_k`` adverse reason groups (for stability comparisons)."""
    gm, ids = groups.matrix(features)
    gsum = shap.astype(np.float64) @ gm
    order = np.argsort(-gsum, axis=1, kind="stable")[:, :top_k]
    return [frozenset(ids[j] for j in row if gsum[i, j] > 0) for i, row in enumerate(order)]


def set_agreement(a: list[frozenset[str]], b: list[frozenset[str]], top_k: int) -> dict[str, float]:
    """Mean Jaccard and mean top-k overlap share (|A ∩ B| / k) between two lists of reason sets."""
    jac, ovl = [], []
    for x, y in zip(a, b, strict=True):
        union = x | y
        jac.append(len(x & y) / len(union) if union else 1.0)
        ovl.append(len(x & y) / top_k)
    return {
        "jaccard": float(np.mean(jac)) if jac else float("nan"),
        "overlap": float(np.mean(ovl)) if ovl else float("nan"),
    }
