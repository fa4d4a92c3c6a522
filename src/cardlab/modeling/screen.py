"""Feature screening against shadow features: the Boruta idea (Kursa & Rudnicki 2010), one fit per repeat.

Each repeat appends a *shadow* of every candidate feature — its column permuted (seeded) — so a shadow keeps
the feature's distribution and missing values but has no link to the label. One booster with fixed
moderate parameters (the same monotone constraint on a feature and its shadow) is fit on the train split; a
feature passes the repeat when its total split gain is above the largest total gain of any shadow, i.e. above
what the best pure-noise column earns by chance. Features passing at least ``screen_min_pass`` of the repeats
are kept (default: every repeat — a noise column that happens to be associated with the label in the training
sample beats the best shadow about half the time, and on dev so does a real driver whose signal another column
already carries; both are dropped). Snapshot panels repeat a customer over months, so a feature constant
per customer (the profile) is shadowed by permuting customers, not rows (a row-permuted copy cannot memorise
customers the way a profile column can).

Why: with a few hundred bads a booster spends a few splits on noise, and an explanation then ranks pure-noise
columns above weak real drivers (docs/explain.md). Dropping every feature that cannot beat its own noise copy
is what a bank's model developer does to keep the variable list defensible; it uses no knowledge of which
columns are the world's decoys. Written here, not taken from ``boruta``/``BorutaShap``: those iterate a
scikit-learn estimator dozens of times, while one ``xgb.train`` per repeat fits the 2-core budget.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import xgboost as xgb
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cardlab.config import TuneParams
from cardlab.modeling.xgb import SEED, TaskData

SHADOW = "shadow__"
GROUP = "customer_id"
FIXED = {"max_depth": 3, "eta": 0.1, "subsample": 0.8, "colsample_bytree": 0.5, "min_child_weight": 1.0}


def shadow_screen(
    data: TaskData,
    tune: TuneParams,
    seed: int,
    *,
    objective: str = "binary:logistic",
    keep_always: tuple[str, ...] = (),
) -> tuple[list[str], dict[str, float]]:
    """Features of ``data`` (in order) that beat the best shadow in at least ``tune.screen_min_pass`` of the
    ``tune.screen_repeats`` repeats, plus ``keep_always``; and each feature's pass rate. With
    ``screen_repeats == 0`` all are kept."""
    feats = list(data.features)
    if tune.screen_repeats == 0:
        return feats, {f: 1.0 for f in feats}
    candidates = [f for f in feats if f not in keep_always]
    train = data.frames["train"]
    x = train[candidates].to_numpy(dtype=np.float32, na_value=np.nan)
    y = train[data.label].to_numpy(dtype=np.float32)
    names = [*candidates, *(SHADOW + f for f in candidates)]
    mono = [int(data.directions.get(f, 0)) for f in candidates] * 2
    params = {
        **FIXED,
        "objective": objective,
        "tree_method": "hist",
        "nthread": tune.nthread,
        "seed": SEED,
        "verbosity": 0,
        "monotone_constraints": "(" + ",".join(map(str, mono)) + ")",
    }
    # panel data (several snapshots per customer): a feature constant within a customer gets a shadow that is
    # constant within a customer too (customers permuted), else a row-permuted noise copy could not memorise
    # customers the way a noise column of the profile can, and every profile decoy would beat its shadow
    groups = train[GROUP].to_numpy() if GROUP in train.columns else np.arange(len(train))
    _, gidx = np.unique(groups, return_inverse=True)
    per_customer = _constant_within(x, gidx)
    passes = np.zeros(len(candidates))
    with Progress(
        TextColumn(f"[bold]screen {len(candidates)} features"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    ) as progress:
        bar = progress.add_task("repeats", total=tune.screen_repeats)
        for r in range(tune.screen_repeats):
            passes += _one_repeat(x, y, gidx, per_customer, names, params, tune, [seed, r])
            progress.advance(bar)
    rate = dict(zip(candidates, (passes / tune.screen_repeats).round(6).tolist(), strict=True))
    kept = {f for f, p in rate.items() if p >= tune.screen_min_pass - 1e-9} | set(keep_always)
    if not kept - set(keep_always) and candidates:  # nothing beats noise: keep the strongest candidate
        kept.add(max(candidates, key=lambda f: (rate[f], f)))
    return [f for f in feats if f in kept], rate


def _one_repeat(x, y, gidx, per_customer, names, params, tune: TuneParams, seed: list[int]) -> np.ndarray:
    """One repeat: fit on the features plus fresh shadows; 1 where a feature's gain beats every shadow's."""
    rng = np.random.default_rng(seed)
    shadow = np.empty_like(x)
    perm_groups = rng.permutation(gidx.max() + 1 if len(gidx) else 0)
    for j in range(x.shape[1]):
        if per_customer[j]:
            first = np.full(perm_groups.size, np.nan, np.float32)
            first[gidx[::-1]] = x[::-1, j]  # one value per customer
            shadow[:, j] = first[perm_groups[gidx]]
        else:
            shadow[:, j] = x[rng.permutation(len(x)), j]
    dm = xgb.DMatrix(np.hstack([x, shadow]), label=y, feature_names=names, nthread=tune.nthread)
    booster = xgb.train(params, dm, num_boost_round=tune.screen_rounds)
    # get_score is typed float | list[float] per feature; a tree booster's total_gain is always a float
    gain = cast(dict[str, float], booster.get_score(importance_type="total_gain"))
    n = x.shape[1]
    bar = max((gain.get(f, 0.0) for f in names[n:]), default=0.0)
    return np.array([gain.get(f, 0.0) > bar for f in names[:n]], dtype=float)


def _constant_within(x: np.ndarray, gidx: np.ndarray) -> np.ndarray:
    """Per column: True when every group (customer) has a single value (NaN counts as a value)."""
    if len(x) == 0:
        return np.zeros(x.shape[1], bool)
    order = np.argsort(gidx, kind="stable")
    xs, gs = x[order], gidx[order]
    same_group = gs[1:] == gs[:-1]
    a, b = xs[1:], xs[:-1]
    equal = (a == b) | (np.isnan(a) & np.isnan(b))
    return ~np.any(same_group[:, None] & ~equal, axis=0)
