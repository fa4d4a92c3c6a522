"""Honest grading: the observable ceiling, customer-clustered bootstrap bounds and the bars (docs/grading.md).

Three reference points per graded metric, on the same rows:

* **model** — what the task's fitted model reaches;
* **observable ceiling** — the best any model could reach *from the task's features*, estimated by a learner
  fitted to the oracle's own probability (or true effect, or expected profit) instead of the noisy label,
  cross-fitted over customer folds so that no customer is scored by a learner that saw it
  (:func:`cross_fit_ceiling`). It is an *estimate*: a finite learner with fixed settings on a finite world, so
  it sits below the true ceiling by an estimation error; its learning curve (the same learner on 25 % / 50 % of
  the training customers) shows how far from converged it is, and its sampling error has its own bootstrap
  interval. The ceiling is fitted on every row with an oracle value, OOT rows of the other folds included: it
  knows the OOT period's relationships, so the model-to-ceiling gap also holds what the shift in time costs;
* **latent oracle** — the world's true probability (Bayes-optimal; the *information* limit).

``learning loss`` = ceiling - model (what better learning could still win from these features) and
``information loss`` = oracle - ceiling (what the features do not reveal).

Bounds: a customer-clustered bootstrap (:class:`ClusterBootstrap`; customers resampled with replacement, all
their rows kept together, fixed seed) evaluates every statistic on the same replicate weights, so ratios and
differences are *paired*. Decisions (policy choices, fitted scores) are held fixed; only the evaluation sample
is resampled. A bar (:func:`bar`) is ``met`` when its lower bound clears the threshold, ``not met`` when its upper
bound is below it, ``inconclusive`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xgboost as xgb

from cardlab.config import CeilingParams, GradingParams

__all__ = [
    "ClusterBootstrap",
    "WeightedAUC",
    "weighted_lift",
    "customer_folds",
    "CeilingFit",
    "cross_fit_ceiling",
    "grade_auc",
    "bar",
    "count_bar",
    "flag_bar",
    "VERDICTS",
]

VERDICTS = ("met", "not met", "inconclusive")
CEILING_SEED = (
    20240917  # XGBoost's own sampling seed in the ceiling learner (folds come from GradingParams.seed)
)


# --------------------------------------------------------------------------------------------- bootstrap
@dataclass
class ClusterBootstrap:
    """Customer-clustered bootstrap: each replicate draws as many clusters as there are, with replacement, and
    weights every row by its cluster's draw count. Deterministic for a fixed ``seed`` and cluster labelling."""

    clusters: np.ndarray
    n_boot: int = 200
    seed: int = 0
    level: float = 0.95
    _codes: np.ndarray = field(init=False, repr=False)
    _k: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        codes, uniques = pd.factorize(pd.Series(np.asarray(self.clusters)), sort=True)
        if (codes < 0).any():
            raise ValueError("cluster labels must not be missing")
        self._codes = codes
        self._k = len(uniques)
        if self._k < 2:
            raise ValueError(f"a clustered bootstrap needs at least 2 clusters, got {self._k}")

    @property
    def n_clusters(self) -> int:
        return self._k

    def weights(self) -> Iterator[np.ndarray]:
        """Row weights (float64 counts) of each replicate."""
        rng = np.random.default_rng(self.seed)
        for _ in range(self.n_boot):
            counts = np.bincount(rng.integers(0, self._k, self._k), minlength=self._k)
            yield counts[self._codes].astype(np.float64)

    def indices(self) -> Iterator[np.ndarray]:
        """Row indices of each replicate (rows repeated by their cluster's draw count; same draws as
        :meth:`weights`), for statistics that need an explicit resampled sample."""
        base = np.arange(len(self._codes))
        for w in self.weights():
            yield np.repeat(base, w.astype(np.int64))

    def replicates(self, stat: Callable[[np.ndarray], Sequence[float] | float], *, by_index: bool = False):
        """``stat`` evaluated on every replicate (weights, or indices when ``by_index``): array (n_boot, m)."""
        draws = self.indices() if by_index else self.weights()
        return np.array([np.atleast_1d(np.asarray(stat(d), dtype=np.float64)) for d in draws])

    def bounds(self, reps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval at ``level`` per column, ignoring replicates where a statistic is undefined."""
        a = (1.0 - self.level) / 2.0
        reps = np.atleast_2d(reps)
        lo = np.full(reps.shape[1], np.nan)
        hi = np.full(reps.shape[1], np.nan)
        for j in range(reps.shape[1]):
            col = reps[:, j][np.isfinite(reps[:, j])]
            if len(col) >= max(10, reps.shape[0] // 2):
                lo[j], hi[j] = np.quantile(col, [a, 1.0 - a])
        return lo, hi

    @classmethod
    def from_params(cls, clusters: np.ndarray, gp: GradingParams) -> ClusterBootstrap:
        return cls(np.asarray(clusters), gp.bootstrap, gp.seed, gp.ci_level)


class WeightedAUC:
    """AUC of ``score`` for ``y`` (1 = event ranked high; ties count one half) under row weights, precomputed
    once so each bootstrap replicate costs two ``bincount`` passes.

    ``y`` may also be a probability (soft label): each row then counts as ``y`` of an event and ``1 - y`` of a
    non-event, which gives the AUC expected when every row's outcome is drawn from ``y`` (pairs of a row with
    itself included, an O(1/n) term). With the oracle's probability as ``y`` this *expected AUC* is free of the
    label noise of the graded sample: the precise yardstick for the ceiling's learning curve."""

    def __init__(self, y: np.ndarray, score: np.ndarray) -> None:
        y = np.asarray(y, dtype=np.float64)
        score = np.asarray(score, dtype=np.float64)
        if y.shape != score.shape or y.ndim != 1:
            raise ValueError("y and score must be 1-d arrays of the same length")
        if not np.isfinite(score).all():
            raise ValueError("score contains NaN or infinite values")
        if not ((y >= 0.0) & (y <= 1.0)).all():
            raise ValueError("y must be 0/1 labels or probabilities in [0, 1]")
        _, self._inv = np.unique(score, return_inverse=True)
        self._g = int(self._inv.max()) + 1 if len(self._inv) else 0
        self._y = y

    def __call__(self, w: np.ndarray | None = None) -> float:
        w = np.ones_like(self._y) if w is None else w
        pos = np.bincount(self._inv, weights=w * self._y, minlength=self._g)
        neg = np.bincount(self._inv, weights=w * (1.0 - self._y), minlength=self._g)
        n_pos, n_neg = pos.sum(), neg.sum()
        if n_pos <= 0 or n_neg <= 0:
            return float("nan")
        below = np.cumsum(neg) - neg
        return float(np.sum(pos * (below + 0.5 * neg)) / (n_pos * n_neg))


def weighted_lift(y: np.ndarray, score: np.ndarray, share: float, w: np.ndarray | None = None) -> float:
    """Event rate among the top ``share`` of the (weighted) population by ``score`` over the overall rate; with
    unit weights the top ``ceil(share * n)`` rows in stable order, as :func:`cardlab.modeling.metrics.lift_at`."""
    y = np.asarray(y, dtype=np.float64)
    w = np.ones_like(y) if w is None else np.asarray(w, dtype=np.float64)
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    cw = np.cumsum(w[order])
    total = cw[-1]
    k = max(1, math.ceil(share * total - 1e-9))
    top = order[cw <= k + 1e-9]
    rate = np.sum(w * y) / total
    if rate <= 0 or w[top].sum() <= 0:
        return float("nan")
    return float(np.sum(w[top] * y[top]) / w[top].sum() / rate)


# ------------------------------------------------------------------------------------------------ ceiling
def customer_folds(groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold (0..k-1) of every row: customers are shuffled with ``seed`` and dealt round-robin, so all rows of a
    customer share a fold and folds hold about equal numbers of customers."""
    codes, uniques = pd.factorize(pd.Series(np.asarray(groups)), sort=True)
    order = np.random.default_rng(seed).permutation(len(uniques))
    fold_of = np.empty(len(uniques), dtype=np.int64)
    fold_of[order] = np.arange(len(uniques)) % k
    return fold_of[codes]


def _customer_uniform(groups: np.ndarray, seed: int) -> np.ndarray:
    """One seeded uniform per customer, broadcast to its rows: nested learning-curve subsets (u < fraction)."""
    codes, uniques = pd.factorize(pd.Series(np.asarray(groups)), sort=True)
    return np.random.default_rng([seed, 1]).random(len(uniques))[codes]


@dataclass
class CeilingFit:
    """Out-of-fold ceiling predictions (NaN outside the predicted rows) per training fraction (1.0 = all; the
    smaller fractions cover the learning-curve fold only)."""

    predictions: dict[float, np.ndarray]
    train_rows: int  # mean training rows per fold at fraction 1.0

    @property
    def full(self) -> np.ndarray:
        return self.predictions[1.0]

    def curve(self, mask: np.ndarray | None = None) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        """Rows of the learning curve (where every fraction predicted; within ``mask`` when given) and each
        fraction's predictions there, 1.0 included."""
        rows = np.ones(len(self.full), bool) if mask is None else np.asarray(mask, bool).copy()
        for v in self.predictions.values():
            rows &= np.isfinite(v)
        return rows, {f: v[rows] for f, v in self.predictions.items()}


def ceiling_booster_params(cfg: CeilingParams, objective: str, nthread: int) -> dict:
    return {
        "objective": objective,
        "tree_method": "hist",
        "max_depth": cfg.max_depth,
        "learning_rate": cfg.learning_rate,
        "min_child_weight": cfg.min_child_weight,
        "subsample": cfg.subsample,
        "colsample_bytree": cfg.colsample_bytree,
        "max_bin": cfg.max_bin,
        "nthread": nthread,
        "seed": CEILING_SEED,
        "verbosity": 0,
    }


def cross_fit_ceiling(
    X: np.ndarray | pd.DataFrame,
    target: np.ndarray,
    groups: np.ndarray,
    predict: np.ndarray,
    cfg: CeilingParams,
    *,
    objective: str,
    seed: int,
    nthread: int = 2,
    fractions: Sequence[float] | None = None,
) -> CeilingFit:
    """Fit the ceiling learner on the oracle's ``target`` (a probability with ``binary:logistic`` soft labels,
    or any real value with ``reg:squarederror``), cross-fitted over ``cfg.folds`` customer folds, and predict the
    rows where ``predict`` is True from the fold that excludes their customer. Every row with a finite target
    trains (all splits): the learner never sees a label, only the oracle's value. Each fold trains on at most
    ``cfg.max_train_rows`` rows (a seeded sample). The learning curve: ``fractions`` (default
    ``cfg.fractions``) refit the first fold on that share of its training customers (nested subsets) and
    predict the first fold's rows only (NaN elsewhere), to be compared with the full fit on the same rows —
    one fold keeps its cost at a fraction of the cross-fit's."""
    X = np.asarray(X, dtype=np.float32)
    target = np.asarray(target, dtype=np.float64)
    predict = np.asarray(predict, dtype=bool)
    if not (len(X) == len(target) == len(groups) == len(predict)):
        raise ValueError("X, target, groups and predict must have the same number of rows")
    usable = np.isfinite(target)
    fracs = sorted({1.0, *(cfg.fractions if fractions is None else fractions)})
    folds = customer_folds(groups, cfg.folds, seed)
    u = _customer_uniform(groups, seed)
    rng = np.random.default_rng([seed, 2])
    params = ceiling_booster_params(cfg, objective, nthread)
    preds = {f: np.full(len(X), np.nan) for f in fracs}
    n_train = []
    curve_fold = min(int(k) for k in np.unique(folds[predict])) if predict.any() else 0
    for k in range(cfg.folds):
        test = np.flatnonzero(predict & (folds == k))
        if len(test) == 0:
            continue
        pool = np.flatnonzero(usable & (folds != k))
        for f in fracs if k == curve_fold else [1.0]:
            rows = pool[u[pool] < f] if f < 1.0 else pool
            if len(rows) > cfg.max_train_rows:
                rows = np.sort(rng.choice(rows, cfg.max_train_rows, replace=False))
            if f == 1.0:
                n_train.append(len(rows))
            dtrain = xgb.DMatrix(X[rows], label=target[rows], nthread=nthread)
            booster = xgb.train(params, dtrain, num_boost_round=cfg.num_boost_round)
            preds[f][test] = booster.inplace_predict(X[test])
    if not n_train:
        raise ValueError("cross_fit_ceiling: no row to predict")
    return CeilingFit(preds, int(round(float(np.mean(n_train)))))


def pct(f: float) -> str:
    return f"{round(f * 100):d}pct"


def learning_curve(values: dict[float, float], prefix: str, convergence: str) -> dict[str, float]:
    """``<prefix>_at_<p>pct`` for every fraction (100 % included, on the same rows) and ``convergence``: the
    last step, 100 % minus the largest smaller fraction."""
    out = {f"{prefix}_at_{pct(f)}": float(v) for f, v in sorted(values.items())}
    fracs = sorted(f for f in values if f < 1.0)
    if fracs and 1.0 in values:
        out[convergence] = float(values[1.0] - values[fracs[-1]])
    return out


def grade_auc(
    y: np.ndarray,
    model: np.ndarray,
    ceiling: CeilingFit,
    oracle: np.ndarray,
    clusters: np.ndarray,
    gp: GradingParams,
    *,
    rows: np.ndarray | None = None,
    prefix: str = "oot_auc",
) -> dict[str, float]:
    """AUC of the model, the observable ceiling and the latent oracle on the same graded rows, with paired
    customer-clustered bootstrap bounds (``_lo``/``_hi``) on each, on the ratios model/ceiling
    (``<prefix>_ceiling_ratio``) and model/oracle, and on the learning loss (ceiling - model) and information
    loss (oracle - ceiling). The same in *expected* AUC (labels drawn from the oracle's probability, see
    :class:`WeightedAUC`; ``..._expected``), and the ceiling's learning curve in expected AUC on the
    learning-curve fold's graded rows (``<prefix>_ceiling_expected_at_<p>pct``, 100 % included) with its last
    step ``<prefix>_ceiling_convergence``. ``rows`` (a mask over the ceiling's rows) selects the graded rows
    that ``y``, ``model``, ``oracle`` and ``clusters`` hold; default all. The model's and the oracle's realised
    AUC keep their task keys (``oot_auc``, ``oot_oracle_auc``); only their bounds are added here."""
    rows = np.ones(len(ceiling.full), bool) if rows is None else np.asarray(rows, bool)
    y = np.asarray(y, dtype=np.float64)
    oracle = np.asarray(oracle, dtype=np.float64)
    scores = {"model": model, "ceiling": ceiling.full[rows], "oracle": oracle}
    for name, s in scores.items():
        if not np.isfinite(np.asarray(s, dtype=np.float64)).all():
            raise ValueError(f"grade_auc: the {name} score has NaN on graded rows")
    real = {name: WeightedAUC(y, s) for name, s in scores.items()}
    soft = {name: WeightedAUC(oracle, s) for name, s in scores.items()}

    def trio(aucs: dict[str, WeightedAUC], w: np.ndarray | None) -> list[float]:
        m, c, o = aucs["model"](w), aucs["ceiling"](w), aucs["oracle"](w)
        return [m, c, o, m / c, m / o, c - m, o - c]

    names = [
        "",
        "_ceiling",
        "_oracle",
        "_ceiling_ratio",
        "_oracle_ratio",
        "_learning_loss",
        "_information_loss",
    ]
    boot = ClusterBootstrap.from_params(clusters, gp)
    reps = boot.replicates(lambda w: trio(real, w) + trio(soft, w))
    lo, hi = boot.bounds(reps)
    point = trio(real, None) + trio(soft, None)
    out: dict[str, float] = {}
    for i, (suffix, kind) in enumerate([(n, "") for n in names] + [(n, "_expected") for n in names]):
        key = f"{prefix}{suffix}{kind}"
        if key not in (prefix, f"{prefix}_oracle"):  # the task writes these two itself
            out[key] = float(point[i])
        out[f"{key}_lo"], out[f"{key}_hi"] = float(lo[i]), float(hi[i])
    if len(ceiling.predictions) > 1:
        curve_rows, curve = ceiling.curve(rows)
        o = np.full(len(rows), np.nan)
        o[rows] = oracle
        values = {f: WeightedAUC(o[curve_rows], v)() for f, v in curve.items()}
        out.update(learning_curve(values, f"{prefix}_ceiling_expected", f"{prefix}_ceiling_convergence"))
        out[f"{prefix}_ceiling_curve_rows"] = int(curve_rows.sum())
    out[f"{prefix}_graded_rows"] = int(len(y))
    out[f"{prefix}_graded_customers"] = boot.n_clusters
    return out


# ---------------------------------------------------------------------------------------------------- bars
def _finite(v) -> float | None:
    return float(v) if v is not None and isinstance(v, int | float) and math.isfinite(float(v)) else None


def verdict(lower: float | None, upper: float | None, threshold: float) -> str:
    """``met`` when the lower bound clears the threshold, ``not met`` when the upper bound is below it, else
    ``inconclusive`` (also when a bound is undefined)."""
    if lower is not None and lower >= threshold:
        return "met"
    if upper is not None and upper < threshold:
        return "not met"
    return "inconclusive"


def bar(name: str, value, lower, upper, threshold: float) -> dict:
    """One entry of ``metrics.json["bars"]``: ``{"name", "value", "lower", "upper", "threshold", "verdict"}``."""
    v, lo, hi = _finite(value), _finite(lower), _finite(upper)
    return {
        "name": name,
        "value": v,
        "lower": lo,
        "upper": hi,
        "threshold": float(threshold),
        "verdict": verdict(lo, hi, threshold) if v is not None else "inconclusive",
    }


def count_bar(name: str, value: float | None, threshold: float) -> dict:
    """A bar on an exact count or fact (no sampling error): lower = upper = value."""
    return bar(name, value, value, value, threshold)


def flag_bar(name: str, passed: bool | str | None) -> dict:
    """A pass/fail check as a bar with threshold 1: True -> met, False -> not met, anything else (e.g.
    ``"not assessable"``) -> inconclusive with no value."""
    if passed is True or passed is False:
        return count_bar(name, float(passed), 1.0)
    return bar(name, None, None, None, 1.0)


def metric_bar(metrics: dict, name: str, threshold: float, *, key: str | None = None) -> dict:
    """A bar on ``metrics[key]`` with its ``_lo``/``_hi`` bounds (key defaults to ``name``)."""
    key = key or name
    return bar(name, metrics.get(key), metrics.get(f"{key}_lo"), metrics.get(f"{key}_hi"), threshold)


def explain_bars(metrics: dict, thresholds) -> list[dict]:
    """The faithfulness bars every task carries (thresholds: ``GradingParams.bars.explain``): the control
    model's decoy check, ``shap_truth_spearman`` (inconclusive when fewer than 3 drivers are used) and the
    number of drivers the registered model uses."""
    return [
        flag_bar("decoys_below_drivers", metrics.get("decoys_below_drivers")),
        metric_bar(metrics, "shap_truth_spearman", thresholds.shap_truth_spearman),
        count_bar("n_drivers_used", metrics.get("n_drivers_used"), thresholds.n_drivers_used),
    ]


# families and source tables of the platform's behavioural data (orders, sessions, BNPL)
BEHAVIOURAL_FAMILIES = frozenset({"platform_orders", "platform_engagement", "bnpl"})
BEHAVIOURAL_TABLES = ("orders", "sessions", "bnpl")


def is_behavioural(entry: dict) -> bool:
    """A feature-dictionary entry built from orders, sessions or BNPL: by its ``source`` table
    (``"<table>.<column>"``) when given, else by its family."""
    src = entry.get("source")
    srcs = [src] if isinstance(src, str) else list(src) if isinstance(src, list | tuple) else []
    tables = [s.split(".", 1)[0] for s in srcs if isinstance(s, str) and "." in s]
    if tables:
        return any(t.startswith(BEHAVIOURAL_TABLES) for t in tables)
    return entry.get("family") in BEHAVIOURAL_FAMILIES
