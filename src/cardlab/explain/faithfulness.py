"""Faithfulness of the explanations against the world's truth (evaluation only: reads the sealed oracle).

``data/oracle/true_drivers.json`` lists the raw columns that carry causal signal and their strength, plus
pure-noise decoys and proxies (columns correlated with a driver but without a causal path). Global SHAP
importance is aggregated from features to their *source*: a profile feature ``cust_<column>[_<code>]`` to its
raw column, every behavioural feature to its family (orders, BNPL, ...). The source importance is the mean
|sum of the source's SHAP values| on the explained sample (exact, since SHAP is additive).

Checks: Spearman rank correlation between source importance and true strength over the drivers the model can
see; every decoy ranks below every true driver (a decoy the model never uses, importance exactly 0, ties with a
driver it never uses: that is not an inversion; each inversion is listed); where each proxy lands (a proxy may legitimately carry
predictive signal through its correlation with a driver, so it is reported, not failed).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

PROFILE_PREFIX = "cust_"
_ENCODED = re.compile(r"^(?:1 if (\w+) ==|(\w+) as (?:nominal|ordinal))")


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


TRUTH_SECTION = {"credit": "default", "limit": "default", "churn": "churn"}


def load_truth(path: Path, task: str) -> dict[str, Any]:
    """Normalise ``true_drivers.json`` to ``{"drivers": {column: strength}, "decoys": [...], "proxies": [...],
    "behaviour": [...]}``.

    The world writes ``{"default"|"churn": {"customers": {column: {"trait", "strength"}}, "behaviour": [...]},
    "proxies": {...}, "decoys": {...}}`` (src/cardlab/world/drivers.py); credit and limit read the ``default``
    section. Also accepted: a task-keyed file, drivers as ``column -> strength`` or a list of
    ``{"column", "strength"}`` records.
    """
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    block = raw
    for key in (TRUTH_SECTION.get(task, task), task, "tasks"):
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

    drivers_raw = next(
        (block[k] for k in ("drivers", "true_drivers", "causal", "customers") if k in block), {}
    )
    drivers: dict[str, float] = {}
    if isinstance(drivers_raw, dict):
        for k, v in drivers_raw.items():
            s = v if isinstance(v, int | float) else _strength(v) if isinstance(v, dict) else None
            if isinstance(v, dict) and isinstance(v.get(task), int | float):
                s = v[task]
            if s is not None:
                drivers[str(k).split(".")[-1]] = abs(float(s))
    else:
        for item in drivers_raw:
            n, s = _name(item), _strength(item) if isinstance(item, dict) else None
            if isinstance(item, dict) and isinstance(item.get("tasks"), list) and task not in item["tasks"]:
                continue
            if n and s is not None:
                drivers[n] = max(drivers.get(n, 0.0), s)
    decoys = _names(find(("decoys", "decoy"), []))
    proxies = _names(find(("proxies", "proxy"), []))
    behaviour = (
        [str(b) for b in find(("behaviour", "behavior"), [])]
        if isinstance(find(("behaviour",), []), list)
        else []
    )
    return {
        "drivers": drivers,
        "decoys": sorted(set(decoys)),
        "proxies": sorted(set(proxies)),
        "behaviour": behaviour,
    }


def source_of(feature: str, entry: dict, known_columns: set[str]) -> str:
    """The raw column (profile features) or family (behavioural features) a feature derives from."""
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


def source_importance(
    shap: np.ndarray, features: list[str], dictionary: dict[str, dict], known_columns: set[str]
) -> pd.DataFrame:
    """Per source: mean |sum of its features' SHAP| (margin units), its features, sorted descending."""
    src = [source_of(f, dictionary.get(f, {}), known_columns) for f in features]
    rows = []
    for s in sorted(set(src)):
        idx = [i for i, x in enumerate(src) if x == s]
        rows.append(
            {
                "source": s,
                "mean_abs_shap": float(np.abs(shap[:, idx].sum(axis=1, dtype=np.float64)).mean()),
                "n_features": len(idx),
                "features": [features[i] for i in idx],
            }
        )
    df = pd.DataFrame(rows)
    df = df.sort_values(["mean_abs_shap", "source"], ascending=[False, True], kind="mergesort")
    df["rank"] = np.arange(1, len(df) + 1)
    return df.reset_index(drop=True)


def truth_check(src_imp: pd.DataFrame, truth: dict[str, Any]) -> dict[str, Any]:
    """Spearman of source importance vs true strength; decoys vs drivers; where proxies rank."""
    imp = dict(zip(src_imp["source"], src_imp["mean_abs_shap"], strict=True))
    rank = dict(zip(src_imp["source"], src_imp["rank"], strict=True))
    drivers = {k: v for k, v in truth["drivers"].items() if k in imp}
    unseen = sorted(set(truth["drivers"]) - set(drivers))
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
    rho = float("nan")
    if len(drivers) >= 3:
        rho = float(spearmanr(list(drivers.values()), [imp[k] for k in drivers]).statistic)
    decoy_imp = [imp[k] for k in truth["decoys"] if k in imp]
    min_driver = min((imp[k] for k in drivers), default=float("nan"))
    # a decoy "outranks" a driver when its importance is >= the driver's and it is used at all: a decoy and a
    # driver that the model both ignore (importance exactly 0) are tied, and the explanation says nothing false
    inversions = [
        {"decoy": c, "driver": d, "decoy_importance": imp[c], "driver_importance": imp[d]}
        for c in sorted(k for k in truth["decoys"] if k in imp)
        for d in sorted(drivers)
        if imp[c] > 0 and imp[c] >= imp[d]
    ]
    below = bool(decoy_imp and drivers and not inversions)
    proxies = {
        k: {
            "rank": int(rank[k]),
            "mean_abs_shap": imp[k],
            "drivers_below": sum(imp[d] < imp[k] for d in drivers),
        }
        for k in truth["proxies"]
        if k in imp
    }
    return {
        "shap_truth_spearman": rho,
        "decoys_below_drivers": below,
        "n_drivers_seen": len(drivers),
        "drivers_unseen": unseen,
        "n_decoys_seen": len(decoy_imp),
        "decoy_driver_inversions": inversions,
        # how much of the model's attribution the worst decoy takes (materiality of any inversion)
        "max_decoy_share": (max(decoy_imp) / total)
        if decoy_imp and (total := sum(imp.values())) > 0
        else 0.0,
        "drivers_unused": sorted(k for k in drivers if imp[k] == 0),
        "max_decoy_importance": max(decoy_imp) if decoy_imp else None,
        "min_driver_importance": min_driver if drivers else None,
        "proxies": proxies,
        "table": table,
    }
