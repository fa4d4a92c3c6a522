"""Faithfulness of the explanations against the world's truth (evaluation only: reads the sealed oracle).

``data/oracle/true_drivers.json`` names the raw columns that carry causal signal and their strength, plus
pure-noise decoys and proxies (columns correlated with a driver but without a causal path). Per section
(``default`` for credit/limit, ``churn``): ``customers`` maps profile columns to ``{"trait", "strength"}``;
``behaviour`` maps ``"<table>.<column>"`` to ``{"trait", "strength"}`` (a plain list of such names, without
strengths, in worlds before v2). Global SHAP importance is aggregated from features to their *source*: the
dictionary's ``source`` field (``"<table>.<column>"`` for a behavioural feature, the raw column for a profile
one; a list when a feature derives from several), else the raw column parsed from a profile feature's name or
definition, else the feature's family. The source importance is the mean |sum of the source's SHAP values|
on the explained sample (exact, since SHAP is additive).

Checks (:func:`truth_check`):

* ``n_drivers_used`` — drivers the model can see whose importance is not constant (> 0);
* ``shap_truth_spearman`` — Spearman of source importance and true strength over the drivers the model sees,
  only when at least :data:`MIN_DRIVERS` are used (with one used driver and the rest tied at 0 the coefficient
  says nothing; e.g. sqrt(0.3) = 0.548 for one of nine): ``None`` otherwise;
* ``decoys_below_drivers`` — ``True`` when every decoy ranks below every driver the model sees (a decoy with
  importance > 0 and >= a driver's is an *inversion*; a decoy the model ignores is below every driver),
  ``False`` on any inversion, ``"not assessable"`` when the model sees no decoy or uses fewer than
  :data:`MIN_DRIVERS` drivers. Run on a **control model** (explain/run.py: the task's tuned parameters, every
  candidate feature forced in, decoys included, no shadow screen), so the check tests SHAP and the learner,
  not the screen that removes decoys before they can be used;
* where each proxy lands (a proxy may legitimately carry predictive signal through its correlation with a
  driver, so it is reported, not failed).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from cardlab import taskspec
from cardlab.modeling.grading import ClusterBootstrap

PROFILE_PREFIX = "cust_"
MIN_DRIVERS = 3  # a rank correlation over fewer used drivers says nothing
NOT_ASSESSABLE = "not assessable"
_ENCODED = re.compile(r"^(?:1 if (\w+) ==|(\w+) as (?:nominal|ordinal))")


def _truth_section(task: str) -> str:
    """The oracle's true_drivers.json section of the task's label (cardlab.taskspec ``truth_section``); a name
    outside the registry (a synthetic test file) is its own section."""
    return taskspec.get(task).truth_section if task in taskspec.names() else task


def _name(item: Any) -> str | None:
    if isinstance(item, str):
        return item.split(".")[-1]
    if isinstance(item, dict):
        for key in ("column", "raw_column", "name", "feature", "source"):
            if key in item:
                return str(item[key]).split(".")[-1]
    return None


def _strength(item: dict) -> float | None:
    for key in ("strength", "weight", "importance", "effect", "coef", "abs_effect"):
        if key in item and isinstance(item[key], int | float):
            return abs(float(item[key]))
    return None


def _names(block: Any) -> list[str]:
    if isinstance(block, dict):
        return [str(k).split(".")[-1] for k in block]
    if isinstance(block, list):
        return [n for n in (_name(i) for i in block) if n]
    return []


def _profile_key(key: str) -> str:
    """Profile drivers are keyed by their raw column (``customers.age`` and ``age`` are the same source)."""
    return key.split(".", 1)[1] if key.startswith("customers.") else key


def load_truth(path: Path, task: str) -> dict[str, Any]:
    """Normalise ``true_drivers.json`` to ``{"drivers": {source: strength}, "decoys": [...], "proxies": [...],
    "behaviour": [...]}``.

    The world writes ``{"default"|"churn": {"customers": {column: {"trait", "strength"}}, "behaviour": ...},
    "proxies": {...}, "decoys": {...}}`` (src/cardlab/world/drivers.py); credit and limit read the ``default``
    section. ``behaviour`` as a mapping ``{"<table>.<column>": {"trait", "strength"}}`` adds behavioural
    drivers keyed ``"<table>.<column>"``; as a list (older worlds) it names behavioural sources without a
    strength, which take no part in the checks. Also accepted: a task-keyed file, drivers as
    ``column -> strength`` or a list of ``{"column", "strength"}`` records.
    """
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    block = raw
    for key in (_truth_section(task), task, "tasks"):
        if isinstance(block, dict) and isinstance(block.get(key), dict):
            block = block[key]
            if key == "tasks" and isinstance(block.get(task), dict):
                block = block[task]

    def find(keys: tuple[str, ...], default: Any) -> Any:
        for src in (block, raw):
            for k in keys:
                if isinstance(src, dict) and k in src:
                    return src[k]
        return default

    drivers_raw: Any = next(  # parsed JSON: a mapping or a list of driver entries
        (block[k] for k in ("drivers", "true_drivers", "causal", "customers") if k in block), {}
    )
    drivers: dict[str, float] = {}
    if isinstance(drivers_raw, dict):
        for k, v in drivers_raw.items():
            s = v if isinstance(v, int | float) else _strength(v) if isinstance(v, dict) else None
            if isinstance(v, dict) and isinstance(v.get(task), int | float):
                s = v[task]
            if s is not None:
                drivers[_profile_key(str(k))] = abs(float(s))
    else:
        for item in drivers_raw:
            n, s = _name(item), _strength(item) if isinstance(item, dict) else None
            if isinstance(item, dict) and isinstance(item.get("tasks"), list) and task not in item["tasks"]:
                continue
            if n and s is not None:
                drivers[n] = max(drivers.get(n, 0.0), s)
    behaviour_raw = find(("behaviour", "behavior"), [])
    behaviour: list[str] = []
    if isinstance(behaviour_raw, dict):
        for k, v in behaviour_raw.items():
            behaviour.append(str(k))
            s = v if isinstance(v, int | float) else _strength(v) if isinstance(v, dict) else None
            if s is not None:
                drivers[str(k)] = abs(float(s))
    elif isinstance(behaviour_raw, list):
        behaviour = [str(b) for b in behaviour_raw]
    decoys = _names(find(("decoys", "decoy"), []))
    proxies = _names(find(("proxies", "proxy"), []))
    return {
        "drivers": drivers,
        "decoys": sorted(set(decoys)),
        "proxies": sorted(set(proxies)),
        "behaviour": behaviour,
    }


def sources_of(feature: str, entry: dict, known_columns: set[str]) -> list[str]:
    """The sources a feature derives from: the dictionary's ``source`` (a string or a list) when present,
    else the raw column of a profile feature, else the feature's family."""
    src = entry.get("source")
    if isinstance(src, str) and src:
        return [_profile_key(src)]
    if isinstance(src, list | tuple) and src:
        return [_profile_key(str(s)) for s in src]
    return [_legacy_source(feature, entry, known_columns)]


def source_of(feature: str, entry: dict, known_columns: set[str]) -> str:
    """The (first) source of a feature; see :func:`sources_of`."""
    return sources_of(feature, entry, known_columns)[0]


def _legacy_source(feature: str, entry: dict, known_columns: set[str]) -> str:
    if feature.startswith(PROFILE_PREFIX) or entry.get("family") in {"profile", "decoy", "proxy"}:
        # the features stage writes the raw column into the definition of encoded columns
        m = _ENCODED.match(str(entry.get("definition", "")))
        if m:
            return m.group(1) or m.group(2)
        stem = feature[len(PROFILE_PREFIX) :] if feature.startswith(PROFILE_PREFIX) else feature
        if stem in known_columns:
            return stem
        parts = stem.split("_")
        for cut in range(len(parts) - 1, 0, -1):  # cust_gender_f -> gender, cust_province_code -> province
            cand = "_".join(parts[:cut])
            if cand in known_columns:
                return cand
        return stem[: -len("_code")] if stem.endswith("_code") else stem
    return str(entry.get("family") or feature)


def source_matrix(
    shap: np.ndarray, features: list[str], dictionary: dict[str, dict], known_columns: set[str]
) -> tuple[list[str], np.ndarray, dict[str, list[str]]]:
    """Per explained row and source, |sum of the source's SHAP values| (rows x sources, float64); the
    sources (sorted) and each source's features."""
    members: dict[str, list[int]] = {}
    for i, f in enumerate(features):
        for s in sources_of(f, dictionary.get(f, {}), known_columns):
            members.setdefault(s, []).append(i)
    names = sorted(members)
    mat = np.empty((shap.shape[0], len(names)))
    for j, s in enumerate(names):
        mat[:, j] = np.abs(shap[:, members[s]].sum(axis=1, dtype=np.float64))
    return names, mat, {s: [features[i] for i in members[s]] for s in names}


def source_importance(
    shap: np.ndarray, features: list[str], dictionary: dict[str, dict], known_columns: set[str]
) -> pd.DataFrame:
    """Per source: mean |sum of its features' SHAP| (margin units), its features, sorted descending."""
    names, mat, members = source_matrix(shap, features, dictionary, known_columns)
    df = pd.DataFrame(
        {
            "source": names,
            "mean_abs_shap": mat.mean(axis=0) if len(mat) else np.zeros(len(names)),
            "n_features": [len(members[s]) for s in names],
            "features": [members[s] for s in names],
        }
    )
    df = df.sort_values(["mean_abs_shap", "source"], ascending=[False, True], kind="mergesort")
    df["rank"] = np.arange(1, len(df) + 1)
    return df.reset_index(drop=True)


def rank_correlation(strength: list[float], importance: list[float]) -> float | None:
    """Spearman of true strength vs importance, or None when either side is constant (undefined: scipy would
    warn ``ConstantInputWarning`` and return NaN) or fewer than 3 pairs."""
    if len(strength) < 3 or np.ptp(strength) == 0 or np.ptp(importance) == 0:
        return None
    rho = float(spearmanr(strength, importance).statistic)
    return rho if math.isfinite(rho) else None


def truth_check(
    src_imp: pd.DataFrame, truth: dict[str, Any], *, min_drivers: int = MIN_DRIVERS
) -> dict[str, Any]:
    """Spearman of source importance vs true strength; decoys vs drivers; where proxies rank (module doc)."""
    imp = dict(zip(src_imp["source"], src_imp["mean_abs_shap"], strict=True))
    rank = dict(zip(src_imp["source"], src_imp["rank"], strict=True))
    drivers = {k: v for k, v in truth["drivers"].items() if k in imp}
    unseen = sorted(set(truth["drivers"]) - set(drivers))
    used = sorted(k for k in drivers if imp[k] > 0)
    table = [
        {"source": k, "role": "driver", "true_strength": v, "mean_abs_shap": imp[k], "rank": int(rank[k])}
        for k, v in sorted(drivers.items(), key=lambda kv: -kv[1])
    ]
    for role, names in (("decoy", truth["decoys"]), ("proxy", truth["proxies"])):
        table += [
            {"source": k, "role": role, "true_strength": 0.0, "mean_abs_shap": imp[k], "rank": int(rank[k])}
            for k in names
            if k in imp
        ]
    assessable = len(used) >= min_drivers
    rho = rank_correlation(list(drivers.values()), [imp[k] for k in drivers]) if assessable else None
    decoys = sorted(k for k in truth["decoys"] if k in imp)
    decoy_imp = [imp[k] for k in decoys]
    # a decoy "outranks" a driver when its importance is >= the driver's and it is used at all: a decoy the
    # model ignores (importance exactly 0) is below every driver, used or not
    inversions = [
        {"decoy": c, "driver": d, "decoy_importance": imp[c], "driver_importance": imp[d]}
        for c in decoys
        for d in sorted(drivers)
        if imp[c] > 0 and imp[c] >= imp[d]
    ]
    below: bool | str = NOT_ASSESSABLE if not decoys or not assessable else not inversions
    proxies = {
        k: {
            "rank": int(rank[k]),
            "mean_abs_shap": imp[k],
            "drivers_below": sum(imp[d] < imp[k] for d in drivers),
        }
        for k in truth["proxies"]
        if k in imp
    }
    total = sum(imp.values())
    return {
        "shap_truth_spearman": rho,
        "decoys_below_drivers": below,
        "n_drivers_seen": len(drivers),
        "n_drivers_used": len(used),
        "drivers_unseen": unseen,
        "n_decoys_seen": len(decoy_imp),
        "decoy_driver_inversions": inversions,
        # how much of the model's attribution the worst decoy takes (materiality of any inversion)
        "max_decoy_share": (max(decoy_imp) / total) if decoy_imp and total > 0 else 0.0,
        "drivers_unused": sorted(k for k in drivers if imp[k] == 0),
        "max_decoy_importance": max(decoy_imp) if decoy_imp else None,
        "min_driver_importance": min((imp[k] for k in drivers), default=None),
        "proxies": proxies,
        "table": table,
    }


def spearman_bounds(
    src_rows: np.ndarray,
    sources: list[str],
    truth: dict[str, Any],
    clusters: np.ndarray,
    *,
    n_boot: int,
    seed: int,
    level: float,
    min_drivers: int = MIN_DRIVERS,
) -> tuple[float | None, float | None]:
    """Customer-clustered bootstrap interval of ``shap_truth_spearman``: the explained rows are resampled by
    customer, source importance recomputed as the weighted mean of ``src_rows`` (rows x sources, from
    :func:`source_matrix`), the model fixed. (None, None) when the statistic is not assessable."""
    idx = [sources.index(k) for k in truth["drivers"] if k in sources]
    if len(idx) < 3 or len(src_rows) == 0:
        return None, None
    strength = [truth["drivers"][sources[j]] for j in idx]
    sub = src_rows[:, idx]

    def stat(w: np.ndarray) -> float:
        imp = (w @ sub) / w.sum()
        if int((imp > 0).sum()) < min_drivers:
            return float("nan")
        rho = rank_correlation(strength, list(imp))
        return float("nan") if rho is None else rho

    boot = ClusterBootstrap(np.asarray(clusters), n_boot, seed, level)
    lo, hi = boot.bounds(boot.replicates(stat))
    return (
        float(lo[0]) if np.isfinite(lo[0]) else None,
        float(hi[0]) if np.isfinite(hi[0]) else None,
    )
