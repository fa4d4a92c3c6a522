"""Uplift (heterogeneous treatment effect) learners on XGBoost, and the metrics that grade them.

Conventions (stated once, relied on everywhere):

* ``y`` is the outcome whose *increase* is good (for retention: ``y = 1`` when the account is retained, i.e.
  ``1 - churned``), ``w`` the binary treatment (1 = offer made), ``e`` the probability of treatment
  (known in a randomised campaign; passed in, never estimated here unless absent).
* ``tau(x) = E[Y(1) - Y(0) | x]``: the uplift. For retention it is the *reduction* in churn probability an
  offer buys (a probability difference; negative for "sleeping dogs" whom the offer pushes away).
* A ranking ``score``: higher = contact first. Ties are broken by original row order (stable sort).

Learners (all fit ``(X, y, w, e)`` and ``predict(X) -> tau_hat``; small, transparent implementations —
``causalml`` serves as the cross-check reference in the tests):

* :class:`TLearner` — separate outcome models on treated and control; ``tau = mu1 - mu0``.
* :class:`XLearner` — Künzel et al. (2019): imputed effects regressed on X per arm, blended by ``e``.
* :class:`DRLearner` — Kennedy (2020): cross-fitted AIPW pseudo-outcomes regressed on X.

Metrics (definitions follow ``causalml.metrics`` so the numbers agree; tests check it):

* Qini curve (Radcliffe 2007), observed outcomes, rows sorted by score, k = 0..n:
  ``Q(k) = Y_T(k) - Y_C(k) * N_T(k) / N_C(k)`` (cumulative outcome sums and counts in the top k); points where
  ``N_C(k) = 0`` are linearly interpolated. **Qini score** = ``(sum_k Q(k) - sum_k R(k)) / (n + 1)`` with ``R``
  the straight line from ``Q(0) = 0`` to ``Q(n)`` (random targeting). With ``normalize=True`` (causalml's
  default) the curve is first divided by ``|Q(n)|``, so the score is unitless (area between the model and
  random curves in units of "total incremental outcome", per row of the x-axis).
* Cumulative gain / **AUUC**: ``G(k) = k * (ybar_T(k) - ybar_C(k))``; AUUC = ``sum_k G(k) / (n + 1)``,
  divided by ``|G(n)|`` when normalised. Random targeting scores about 0.5 when normalised.
* With the true effect known (the oracle): ``G*(k) = sum of tau over the top k``; the **true Qini**
  = ``(sum_k G*(k) - sum_k R*(k)) / (n + 1)`` (units: tau per row, e.g. expected retained accounts),
  and ``qini_capture`` = true Qini of a ranking / true Qini of the oracle ranking (by tau itself): 1 = as good as
  knowing tau, 0 = random, < 0 = worse than random. Normalisation cancels in the ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from cardlab.modeling.xgb import SEED

__all__ = [
    "XGBConfig",
    "TLearner",
    "XLearner",
    "DRLearner",
    "make_learner",
    "qini_curve",
    "qini_score",
    "gain_curve",
    "auuc_score",
    "true_gain_curve",
    "true_qini",
    "qini_capture",
    "uplift_at",
    "top_k_mask",
    "policy_value",
    "targeting_value",
    "dr_pseudo_outcome",
    "cross_fit_outcomes",
    "dr_score",
    "r_loss",
    "pehe",
    "save_learner",
    "load_learner",
]

PROPENSITY_CLIP = (0.02, 0.98)


# ---------------------------------------------------------------------------------------------- learners
@dataclass
class XGBConfig:
    """Hyper-parameters of every base model inside a learner (small, regularised defaults)."""

    max_depth: int = 3
    learning_rate: float = 0.05
    num_boost_round: int = 200
    min_child_weight: float = 20.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 5.0
    nthread: int = 2
    extra: dict[str, Any] = field(default_factory=dict)

    def params(self, objective: str) -> dict[str, Any]:
        return {
            "objective": objective,
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "learning_rate": self.learning_rate,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "reg_lambda": self.reg_lambda,
            "nthread": self.nthread,
            "seed": SEED,
            "verbosity": 0,
            **self.extra,
        }


def _as_2d(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"X must be two-dimensional (rows x features), got shape {X.shape}")
    return X


def _check_yw(X, y, w, e=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X = _as_2d(X)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(w).astype(np.float64)
    if not (len(X) == len(y) == len(w)):
        raise ValueError(f"X, y and w have different lengths ({len(X)}, {len(y)}, {len(w)})")
    if not np.all((w == 0) | (w == 1)):
        raise ValueError("w must be binary 0/1 (1 = treated)")
    if w.sum() < 2 or (1 - w).sum() < 2:
        raise ValueError("need at least two treated and two control rows")
    if e is None:
        e = np.full(len(w), w.mean())
    e = np.clip(np.asarray(e, dtype=np.float64), *PROPENSITY_CLIP)
    if len(e) != len(w):
        raise ValueError("propensity e must have one value per row")
    return X, y, w, e


def _is_binary(y: np.ndarray) -> bool:
    return bool(np.all((y == 0) | (y == 1)))


def _fit(X: np.ndarray, y: np.ndarray, cfg: XGBConfig, objective: str, weight=None) -> xgb.Booster:
    d = xgb.DMatrix(X, label=y.astype(np.float32), weight=weight, nthread=cfg.nthread)
    return xgb.train(cfg.params(objective), d, num_boost_round=cfg.num_boost_round)


def _predict(b: xgb.Booster, X: np.ndarray) -> np.ndarray:
    return np.asarray(b.inplace_predict(X), dtype=np.float64)


def _outcome_objective(y: np.ndarray) -> str:
    return "binary:logistic" if _is_binary(y) else "reg:squarederror"


def _folds(n: int, n_folds: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(n) % n_folds)


class TLearner:
    """Two outcome models: ``mu1`` on treated rows, ``mu0`` on control rows; ``tau = mu1 - mu0``."""

    name = "t_learner"

    def __init__(self, cfg: XGBConfig | None = None):
        self.cfg = cfg or XGBConfig()

    def fit(self, X, y, w, e=None) -> TLearner:
        X, y, w, _ = _check_yw(X, y, w, e)
        obj = _outcome_objective(y)
        self.mu1_ = _fit(X[w == 1], y[w == 1], self.cfg, obj)
        self.mu0_ = _fit(X[w == 0], y[w == 0], self.cfg, obj)
        return self

    def predict_outcomes(self, X) -> tuple[np.ndarray, np.ndarray]:
        X = _as_2d(X)
        return _predict(self.mu0_, X), _predict(self.mu1_, X)

    def predict(self, X) -> np.ndarray:
        mu0, mu1 = self.predict_outcomes(X)
        return mu1 - mu0


class XLearner:
    """Künzel et al. (2019). Stage 1: T-learner outcome models. Stage 2: regress the imputed effects
    ``D1 = Y - mu0(X)`` (treated) and ``D0 = mu1(X) - Y`` (control) on X, giving ``tau1`` and ``tau0``;
    ``tau = e(x) * tau0 + (1 - e(x)) * tau1`` (weights the arm whose imputation rests on the larger group).
    With a constant propensity (a randomised campaign) ``e`` is that share; pass ``e_predict`` otherwise."""

    name = "x_learner"

    def __init__(self, cfg: XGBConfig | None = None):
        self.cfg = cfg or XGBConfig()

    def fit(self, X, y, w, e=None) -> XLearner:
        X, y, w, e = _check_yw(X, y, w, e)
        t = TLearner(self.cfg).fit(X, y, w)
        mu0, mu1 = t.predict_outcomes(X)
        d1 = y[w == 1] - mu0[w == 1]
        d0 = mu1[w == 0] - y[w == 0]
        self.tau1_ = _fit(X[w == 1], d1, self.cfg, "reg:squarederror")
        self.tau0_ = _fit(X[w == 0], d0, self.cfg, "reg:squarederror")
        self.e_mean_ = float(np.mean(e))
        return self

    def predict(self, X, e=None) -> np.ndarray:
        X = _as_2d(X)
        g = self.e_mean_ if e is None else np.clip(np.asarray(e, dtype=np.float64), *PROPENSITY_CLIP)
        return g * _predict(self.tau0_, X) + (1.0 - g) * _predict(self.tau1_, X)


class DRLearner:
    """Kennedy (2020) DR-learner. Cross-fitting over ``n_folds``: outcome models ``mu0, mu1`` fitted out of
    fold, AIPW pseudo-outcome ``phi = mu1 - mu0 + w (y - mu1) / e - (1 - w)(y - mu0) / (1 - e)`` with the
    given (known) propensity, then one final regression of ``phi`` on X."""

    name = "dr_learner"

    def __init__(self, cfg: XGBConfig | None = None, n_folds: int = 3, seed: int = SEED):
        self.cfg = cfg or XGBConfig()
        self.n_folds = n_folds
        self.seed = seed

    def fit(self, X, y, w, e=None) -> DRLearner:
        X, y, w, e = _check_yw(X, y, w, e)
        phi = dr_pseudo_outcome(X, y, w, e, cfg=self.cfg, n_folds=self.n_folds, seed=self.seed)
        # the pseudo-outcome has heavy tails (1/e weights): a stronger leaf floor keeps the final stage stable
        final = XGBConfig(**{**self.cfg.__dict__, "min_child_weight": max(self.cfg.min_child_weight, 50.0)})
        self.tau_ = _fit(X, phi, final, "reg:squarederror")
        return self

    def predict(self, X) -> np.ndarray:
        return _predict(self.tau_, _as_2d(X))


LEARNERS = {"t_learner": TLearner, "x_learner": XLearner, "dr_learner": DRLearner}


def make_learner(name: str, cfg: XGBConfig | None = None):
    if name not in LEARNERS:
        raise ValueError(f"unknown uplift learner {name!r}; choose one of {sorted(LEARNERS)}")
    return LEARNERS[name](cfg)


# ------------------------------------------------------------------------------------ nuisance-based scores
def cross_fit_outcomes(
    X, y, w, cfg: XGBConfig | None = None, n_folds: int = 3, seed: int = SEED, with_m: bool = False
):
    """Out-of-fold ``mu0``, ``mu1`` (and ``m = E[y | x]`` when ``with_m``, else zeros) for every row."""
    X, y, w = _as_2d(X), np.asarray(y, dtype=np.float64), np.asarray(w).astype(np.float64)
    cfg = cfg or XGBConfig()
    obj = _outcome_objective(y)
    fold = _folds(len(y), n_folds, seed)
    mu0, mu1, m = (np.zeros(len(y)) for _ in range(3))
    for f in range(n_folds):
        tr, te = fold != f, fold == f
        mu1[te] = _predict(_fit(X[tr & (w == 1)], y[tr & (w == 1)], cfg, obj), X[te])
        mu0[te] = _predict(_fit(X[tr & (w == 0)], y[tr & (w == 0)], cfg, obj), X[te])
        if with_m:
            m[te] = _predict(_fit(X[tr], y[tr], cfg, obj), X[te])
    return mu0, mu1, m


def dr_pseudo_outcome(
    X,
    y,
    w,
    e,
    *,
    cfg: XGBConfig | None = None,
    n_folds: int = 3,
    seed: int = SEED,
    nuisance: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """AIPW pseudo-outcome per row (its mean is the doubly-robust ATE estimate)."""
    X, y, w, e = _check_yw(X, y, w, e)
    if nuisance is None:
        mu0, mu1, _ = cross_fit_outcomes(X, y, w, cfg, n_folds, seed)
    else:
        mu0, mu1 = nuisance
    return mu1 - mu0 + w * (y - mu1) / e - (1 - w) * (y - mu0) / (1 - e)


def dr_score(tau_hat, phi) -> float:
    """DR validation loss: mean squared error of ``tau_hat`` against the AIPW pseudo-outcome ``phi``
    (lower = better; equals PEHE plus a constant that does not depend on the model, in expectation)."""
    tau_hat, phi = np.asarray(tau_hat, float), np.asarray(phi, float)
    return float(np.mean((phi - tau_hat) ** 2))


def r_loss(tau_hat, y, w, e, m) -> float:
    """Nie & Wager (2021) R-loss: ``mean(((y - m) - (w - e) * tau_hat) ** 2)`` with ``m = E[y | x]`` fitted
    out of fold (lower = better)."""
    tau_hat, y, w, e, m = (np.asarray(a, dtype=np.float64) for a in (tau_hat, y, w, e, m))
    return float(np.mean(((y - m) - (w - e) * tau_hat) ** 2))


def pehe(tau_hat, tau_true) -> float:
    """Precision in estimating heterogeneous effects: root mean squared error of ``tau_hat`` vs the truth."""
    tau_hat, tau_true = np.asarray(tau_hat, float), np.asarray(tau_true, float)
    return float(np.sqrt(np.mean((tau_hat - tau_true) ** 2)))


# ------------------------------------------------------------------------------------------- uplift curves
def _order(score) -> np.ndarray:
    score = np.asarray(score, dtype=np.float64)
    if not np.all(np.isfinite(score)):
        raise ValueError("score contains NaN or infinite values")
    return np.argsort(-score, kind="mergesort")


def _interpolate_nan(curve: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(curve)
    if bad.any():
        idx = np.arange(len(curve))
        curve = curve.copy()
        curve[bad] = np.interp(idx[bad], idx[~bad], curve[~bad])
    return curve


def _cumulative(y, w, score):
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(w).astype(np.float64)
    o = _order(score)
    y, w = y[o], w[o]
    n_t = np.r_[0.0, np.cumsum(w)]
    n_c = np.r_[0.0, np.cumsum(1 - w)]
    y_t = np.r_[0.0, np.cumsum(y * w)]
    y_c = np.r_[0.0, np.cumsum(y * (1 - w))]
    return n_t, n_c, y_t, y_c


def qini_curve(y, w, score, normalize: bool = False) -> np.ndarray:
    """Qini curve, length n + 1 (k = 0..n rows targeted): ``Y_T(k) - Y_C(k) N_T(k) / N_C(k)``.
    Units: outcome units (e.g. incremental retained accounts) unless ``normalize``."""
    n_t, n_c, y_t, y_c = _cumulative(y, w, score)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = y_t - y_c * n_t / n_c
    q[0] = 0.0
    q = _interpolate_nan(q)
    if normalize:
        q = q / abs(q[-1])
    return q


def _area_over_random(curve: np.ndarray) -> float:
    random = np.linspace(curve[0], curve[-1], len(curve))
    return float((curve.sum() - random.sum()) / len(curve))


def qini_score(y, w, score, normalize: bool = True) -> float:
    """Area between the Qini curve and the random line, per point of the curve (see module docstring);
    identical to ``causalml.metrics.qini_score`` with the same ``normalize``."""
    return _area_over_random(qini_curve(y, w, score, normalize))


def gain_curve(y, w, score, normalize: bool = False) -> np.ndarray:
    """Cumulative gain ``k * (ybar_T(k) - ybar_C(k))``, length n + 1."""
    n_t, n_c, y_t, y_c = _cumulative(y, w, score)
    k = np.arange(len(n_t), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = y_t / n_t - y_c / n_c
    lift[0] = 0.0
    g = _interpolate_nan(lift) * k  # causalml interpolates the average lift, then scales by k
    if normalize:
        g = g / abs(g[-1])
    return g


def auuc_score(y, w, score, normalize: bool = True) -> float:
    """Area under the cumulative gain curve per point (``causalml.metrics.auuc_score``); random ≈ 0.5
    when normalised."""
    g = gain_curve(y, w, score, normalize)
    return float(g.sum() / len(g))


def true_gain_curve(tau, score) -> np.ndarray:
    """``G*(k)`` = sum of the true effect over the top k rows by ``score`` (k = 0..n)."""
    tau = np.asarray(tau, dtype=np.float64)
    return np.r_[0.0, np.cumsum(tau[_order(score)])]


def true_qini(tau, score) -> float:
    """Area between the true gain curve and random targeting, per point (units of tau)."""
    return _area_over_random(true_gain_curve(tau, score))


def qini_capture(tau, score) -> float:
    """True Qini of ``score``'s ranking as a share of the oracle ranking's (by tau itself)."""
    best = true_qini(tau, tau)
    return float(true_qini(tau, score) / best) if best > 0 else float("nan")


def top_k_mask(score, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` highest-scored rows (ties: original order)."""
    score = np.asarray(score, dtype=np.float64)
    k = int(min(max(k, 0), len(score)))
    mask = np.zeros(len(score), dtype=bool)
    mask[_order(score)[:k]] = True
    return mask


def _k_of(n: int, share: float) -> int:
    if not 0.0 < share <= 1.0:
        raise ValueError("share must be in (0, 1]")
    return max(1, int(math.ceil(share * n - 1e-9)))


def uplift_at(y, w, score, share: float) -> float:
    """Observed uplift in the top ``share`` by score: treated mean outcome minus control mean outcome."""
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(w).astype(bool)
    m = top_k_mask(score, _k_of(len(y), share))
    if (m & w).sum() == 0 or (m & ~w).sum() == 0:
        return float("nan")
    return float(y[m & w].mean() - y[m & ~w].mean())


def policy_value(tau, value, score, k: int, cost: float = 0.0) -> float:
    """Net incremental value of contacting the top ``k`` by ``score``: ``sum(tau * value) - k * cost`` over
    the contacted rows (``tau`` the true, or estimated, effect on retention; ``value`` what a retained
    account is worth, in the caller's money unit)."""
    tau, value = np.asarray(tau, float), np.asarray(value, float)
    m = top_k_mask(score, k)
    return float(np.sum(tau[m] * value[m]) - m.sum() * cost)


def targeting_value(tau, value, rules: dict[str, Any], k: int, cost: float = 0.0) -> pd.DataFrame:
    """Compare targeting rules at capacity ``k`` by their *true* incremental value.

    ``rules`` maps a rule name to its ranking score. An ``oracle`` row (ranking by ``tau * value``, the best
    any rule can do at capacity k) is always added. Columns: rule, contacted, incremental_retained
    (sum of tau), incremental_value (sum tau*value - k*cost), share_of_oracle."""
    tau, value = np.asarray(tau, float), np.asarray(value, float)
    all_rules = {**rules, "oracle": tau * value}
    best = policy_value(tau, value, tau * value, k, cost)
    rows = []
    for name, score in all_rules.items():
        m = top_k_mask(score, k)
        v = policy_value(tau, value, score, k, cost)
        rows.append(
            {
                "rule": name,
                "contacted": int(m.sum()),
                "incremental_retained": float(tau[m].sum()),
                "incremental_value": v,
                "share_of_oracle": float(v / best) if best > 0 else float("nan"),
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------- persistence
def save_learner(learner, folder) -> None:
    """Write a fitted learner as one UBJSON file per booster plus ``learner.json`` (name, config, scalars)."""
    import json
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scalars = {}
    for attr, val in sorted(vars(learner).items()):
        if isinstance(val, xgb.Booster):
            val.save_model(str(folder / f"{attr}.ubj"))
        elif attr.endswith("_") and isinstance(val, int | float):
            scalars[attr] = float(val)
    cfg = {k: v for k, v in learner.cfg.__dict__.items()}
    meta = {"name": learner.name, "cfg": cfg, "scalars": scalars}
    (folder / "learner.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_learner(folder):
    """Inverse of :func:`save_learner`."""
    import json
    from pathlib import Path

    folder = Path(folder)
    meta_path = folder / "learner.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} is missing: run the train stage first")
    meta = json.loads(meta_path.read_text())
    learner = make_learner(meta["name"], XGBConfig(**meta["cfg"]))
    for f in sorted(folder.glob("*.ubj")):
        b = xgb.Booster()
        b.load_model(str(f))
        setattr(learner, f.stem, b)
    for k, v in meta["scalars"].items():
        setattr(learner, k, v)
    return learner
