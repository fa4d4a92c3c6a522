"""Off-policy evaluation of deterministic decision policies from logged bandit data.

Logged rows carry the action taken ``a_i``, the probability ``p_i`` with which the logging policy took it
(known by design in the randomised test cells) and the realised reward ``r_i``. The value of a target policy
``pi`` (one action per row) is estimated by

* IPS (inverse propensity scoring): ``mean_i 1[pi_i = a_i] r_i / p_i`` — unbiased when every action ``pi``
  takes has ``p > 0``; high variance when ``p`` is small.
* SNIPS (self-normalised IPS): the same sum divided by ``sum_i 1[pi_i = a_i] / p_i`` instead of ``n``.
* DR (doubly robust, Dudik et al. 2011): ``mean_i q(x_i, pi_i) + 1[pi_i = a_i] (r_i - q(x_i, a_i)) / p_i`` —
  unbiased if either the propensities or the outcome model ``q`` are right, and lower variance than IPS
  when ``q`` is good.

Each estimate comes with its standard error (the per-row terms are i.i.d. given the logging design).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    value: float
    se: float
    n: int
    n_match: int  # rows where the target policy agrees with the logged action

    def as_dict(self, prefix: str) -> dict[str, float | int]:
        return {prefix: self.value, f"{prefix}_se": self.se, f"{prefix}_n_match": self.n_match}


def _prep(reward, logged_action, target_action, propensity):
    r = np.asarray(reward, dtype=np.float64)
    a = np.asarray(logged_action)
    t = np.asarray(target_action)
    p = np.asarray(propensity, dtype=np.float64)
    if not (len(r) == len(a) == len(t) == len(p)):
        raise ValueError("reward, logged_action, target_action and propensity must have the same length")
    if len(p) and (not np.isfinite(p).all() or (p <= 0).any() or (p > 1).any()):
        raise ValueError("propensities must lie in (0, 1]")
    return r, (a == t).astype(np.float64), p


def _se(terms: np.ndarray) -> float:
    n = len(terms)
    return float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def ips(reward, logged_action, target_action, propensity) -> Estimate:
    r, match, p = _prep(reward, logged_action, target_action, propensity)
    if len(r) == 0:
        return Estimate(float("nan"), float("nan"), 0, 0)
    terms = match * r / p
    return Estimate(float(terms.mean()), _se(terms), len(r), int(match.sum()))


def snips(reward, logged_action, target_action, propensity) -> Estimate:
    r, match, p = _prep(reward, logged_action, target_action, propensity)
    w = match / p if len(p) else np.zeros(0)
    if w.sum() <= 0:
        return Estimate(float("nan"), float("nan"), len(r), 0)
    value = float((w * r).sum() / w.sum())
    # delta-method standard error of a ratio estimator
    terms = w * (r - value) / w.mean()
    return Estimate(value, _se(terms), len(r), int(match.sum()))


def doubly_robust(reward, logged_action, target_action, propensity, q_logged, q_target) -> Estimate:
    """``q_logged``: model's expected reward of the logged action; ``q_target``: of the target action."""
    r, match, p = _prep(reward, logged_action, target_action, propensity)
    ql = np.asarray(q_logged, dtype=np.float64)
    qt = np.asarray(q_target, dtype=np.float64)
    if not (len(ql) == len(qt) == len(r)):
        raise ValueError("q_logged and q_target must have one entry per logged row")
    if len(r) == 0:
        return Estimate(float("nan"), float("nan"), 0, 0)
    terms = qt + match * (r - ql) / p
    return Estimate(float(terms.mean()), _se(terms), len(r), int(match.sum()))
