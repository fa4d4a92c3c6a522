"""Latent traits of platform users (oracle only).

Eight correlated standard-normal factors are drawn from a multivariate normal and transformed into the
behavioural parameters the rest of the world uses. City tier and age shift the risk factor (they are causal).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.special import expit, ndtr, ndtri

# factor order of the correlation matrix
FACTORS = ("risk", "income_vol", "capacity", "engagement", "reward_sens", "borrow", "churn", "retention")
CORR = np.array(
    [
        # risk  ivol   cap    eng    rew    borrow churn  ret
        [1.00, 0.40, -0.30, -0.10, 0.10, 0.75, 0.10, 0.00],  # risk
        [0.40, 1.00, -0.15, 0.00, 0.05, 0.30, 0.10, 0.00],  # income volatility
        [-0.30, -0.15, 1.00, 0.30, -0.10, -0.20, -0.10, 0.00],  # spending capacity
        [-0.10, 0.00, 0.30, 1.00, 0.20, 0.00, -0.40, 0.20],  # engagement
        [0.10, 0.05, -0.10, 0.20, 1.00, 0.10, 0.20, 0.30],  # reward / price sensitivity
        [0.75, 0.30, -0.20, 0.00, 0.10, 1.00, 0.05, 0.00],  # propensity to borrow
        [0.10, 0.10, -0.10, -0.40, 0.20, 0.05, 1.00, -0.10],  # churn propensity
        [0.00, 0.00, 0.00, 0.20, 0.30, 0.00, -0.10, 1.00],  # retention-offer response
    ]
)

TIER_RISK_SHIFT = {1: -0.40, 2: -0.20, 3: 0.0, 4: 0.20, 5: 0.40}  # added to the risk factor (sd units)
CAPACITY_MEDIAN_FEN = 300_000  # median desired monthly card spend, fen (3,000 yuan)
CAPACITY_LOG_SD = 0.65
# mpb = MPB_MAX * ndtr(MPB_SLOPE * borrow - MPB_SHIFT) ** MPB_POWER: riskiest ~0.6, safest ~0
MPB_MAX, MPB_SLOPE, MPB_SHIFT, MPB_POWER = 0.75, 1.8, 0.3, 1.2
RISK_DISPERSION = 1.0  # scale of the risk factor inside the default hazard (tuned for oracle AUC ~0.8)


@dataclass
class Traits:
    """Per-customer latent traits (arrays of length n). Units in the field comments."""

    risk: np.ndarray  # default-risk index (sd units, includes tier/age shifts)
    income_volatility: np.ndarray  # sd units
    spend_capacity_fen: np.ndarray  # desired monthly card spend at an ample line, fen
    engagement: np.ndarray  # platform engagement, sd units
    reward_sensitivity: np.ndarray  # sd units
    mpb: np.ndarray  # marginal propensity to borrow out of extra limit, 0..~0.65 (Agarwal et al. 2018)
    revolver: np.ndarray  # bool: carries a revolving balance when the line allows it
    debt_need_fen: np.ndarray  # revolving balance a revolver wants regardless of the line, fen
    churn_propensity: np.ndarray  # sd units
    retention_response: np.ndarray  # log hazard reduction from a retention offer (<0: "sleeping dog")
    p_miss: np.ndarray  # monthly probability of a one-off missed payment (cured next month)
    p_active: np.ndarray  # monthly probability of using an activated, non-lapsed card
    p_activate: np.ndarray  # probability of activating a new card

    @property
    def capacity_z(self) -> np.ndarray:
        """Spending capacity on the standard-normal scale."""
        return np.log(self.spend_capacity_fen / CAPACITY_MEDIAN_FEN) / CAPACITY_LOG_SD

    @property
    def borrow_z(self) -> np.ndarray:
        """The standard-normal borrowing factor behind ``mpb`` and the revolver type (inverse of the mpb map)."""
        q = np.clip((self.mpb / MPB_MAX) ** (1.0 / MPB_POWER), 1e-12, 1.0 - 1e-12)
        return (ndtri(q) + MPB_SHIFT) / MPB_SLOPE

    def columns(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def draw_traits(rng: np.random.Generator, city_tier: np.ndarray, age: np.ndarray) -> Traits:
    """Draw traits for customers with the given city tier (1..5) and age (years)."""
    n = len(city_tier)
    z = rng.multivariate_normal(np.zeros(len(FACTORS)), CORR, size=n, method="cholesky")
    shift = np.vectorize(TIER_RISK_SHIFT.get)(city_tier) if n else np.zeros(0)
    risk = RISK_DISPERSION * (z[:, 0] + shift - 0.012 * (age - 32))
    capacity = np.round(np.exp(np.log(CAPACITY_MEDIAN_FEN) + CAPACITY_LOG_SD * z[:, 2])).astype(np.int64)
    # Agarwal et al. (2018): riskiest borrow ~0.6 of extra limit, safest ~0
    mpb = MPB_MAX * ndtr(MPB_SLOPE * z[:, 5] - MPB_SHIFT) ** MPB_POWER
    revolver = rng.random(n) < expit(0.25 + 1.9 * z[:, 5])
    # fixed revolving need of revolvers (fen): about 8 months of capacity, independent of the line
    debt_need = np.where(revolver, 8.0 * capacity * np.exp(0.5 * rng.standard_normal(n) - 0.125), 0.0)
    retention = 0.45 + 0.55 * z[:, 7]  # about 20 % negative: offers push them away
    p_miss = expit(-4.6 + 0.6 * z[:, 1] + 0.5 * risk)
    p_active = expit(0.05 + 0.9 * z[:, 3] + 0.3 * z[:, 4])
    p_activate = expit(1.6 + 0.8 * z[:, 3])
    return Traits(
        risk=risk,
        income_volatility=z[:, 1],
        spend_capacity_fen=capacity,
        engagement=z[:, 3],
        reward_sensitivity=z[:, 4],
        mpb=mpb,
        revolver=revolver,
        debt_need_fen=np.round(debt_need),
        churn_propensity=z[:, 6],
        retention_response=retention,
        p_miss=p_miss,
        p_active=p_active,
        p_activate=p_activate,
    )
