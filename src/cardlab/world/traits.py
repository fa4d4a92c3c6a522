"""Latent traits of platform users (oracle only).

Eight correlated standard-normal factors are drawn from a multivariate normal and transformed into the
behavioural parameters the rest of the world uses. City tier and age shift the risk factor (they are causal).
Nothing here is observable: the raw tables hold only noisy, partial *consequences* of these traits
(behaviour.py and ecommerce.py say which).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.special import expit, ndtr

from cardlab.world.behaviour import (
    DEFAULT_INTERCEPT,
    RISK_COEF,
    SHOCK_ENTRY_INTERCEPT,
    SHOCK_ENTRY_IVOL,
    SHOCK_ENTRY_RISK,
)

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

# ---- non-additive default risk (log-odds of the monthly distress hazard; docs/world.md "interactions") -------
LEVERAGE_X_VOLATILITY = 0.45  # x relu(borrowing factor) * relu(income volatility)
BNPL_X_LOW_INCOME = 0.45  # x heavy BNPL user * relu(-spending capacity)
THIN_FILE_X_CHANNEL = 0.55  # thin bureau file AND acquired through livestream / social referral
RISKY_THIN_CHANNELS = ("livestream", "social_referral")


@dataclass
class Traits:
    """Per-customer latent traits (arrays of length n). Units in the field comments."""

    risk: np.ndarray  # default-risk factor (sd units, includes tier/age shifts)
    default_logit: (
        np.ndarray
    )  # log-odds part of the monthly distress hazard owed to the customer (behaviour.py)
    income_volatility: np.ndarray  # sd units
    spend_capacity_fen: np.ndarray  # desired monthly card spend at an ample line, fen
    engagement: np.ndarray  # platform engagement, sd units
    reward_sensitivity: np.ndarray  # sd units
    borrow: np.ndarray  # propensity to borrow (sd units): sets mpb, the revolver type and the debt need
    mpb: np.ndarray  # marginal propensity to borrow out of extra limit, 0..~0.65 (Agarwal et al. 2018)
    revolver: np.ndarray  # bool: carries a revolving balance when the line allows it
    debt_need_fen: np.ndarray  # revolving balance a revolver wants regardless of the line, fen
    bnpl_user: np.ndarray  # bool: pays with buy-now-pay-later at checkout
    churn_propensity: np.ndarray  # sd units
    retention_response: np.ndarray  # log hazard reduction from a retention offer (<0: "sleeping dog")
    p_miss: np.ndarray  # monthly probability of a transient missed card payment (healthy, not shocked)
    p_late: np.ndarray  # monthly probability of paying the card after its due date (cured by the next bill)
    p_active: np.ndarray  # monthly probability of using an activated, non-lapsed card
    p_activate: np.ndarray  # probability of activating a new card
    shock_entry: np.ndarray  # monthly probability of an income shock starting (before macro stress)
    visit_propensity: np.ndarray  # multiplier of the card-page visit rate (0 for app-averse cardholders)

    @property
    def capacity_z(self) -> np.ndarray:
        """Spending capacity on the standard-normal scale."""
        return np.log(self.spend_capacity_fen / CAPACITY_MEDIAN_FEN) / CAPACITY_LOG_SD

    def columns(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def draw_traits(rng: np.random.Generator, city_tier: np.ndarray, age: np.ndarray) -> Traits:
    """Draw traits for customers with the given city tier (1..5) and age (years). ``default_logit`` holds the
    additive part only; :func:`add_interactions` adds the non-additive terms once the observables exist."""
    n = len(city_tier)
    z = rng.multivariate_normal(np.zeros(len(FACTORS)), CORR, size=n, method="cholesky")
    shift = np.vectorize(TIER_RISK_SHIFT.get)(city_tier) if n else np.zeros(0)
    risk = z[:, 0] + shift - 0.012 * (age - 32)
    capacity = np.round(np.exp(np.log(CAPACITY_MEDIAN_FEN) + CAPACITY_LOG_SD * z[:, 2])).astype(np.int64)
    borrow = z[:, 5]
    # Agarwal et al. (2018): riskiest borrow ~0.6 of extra limit, safest ~0
    mpb = MPB_MAX * ndtr(MPB_SLOPE * borrow - MPB_SHIFT) ** MPB_POWER
    revolver = rng.random(n) < expit(0.25 + 1.9 * borrow)
    # fixed revolving need of revolvers (fen): about 8 months of capacity, independent of the line
    debt_need = np.where(revolver, 8.0 * capacity * np.exp(0.5 * rng.standard_normal(n) - 0.125), 0.0)
    retention = 0.45 + 0.55 * z[:, 7]  # about 20 % negative: offers push them away
    bnpl_user = rng.random(n) < expit(-1.0 + 0.6 * risk + 0.4 * z[:, 4] + 0.3 * z[:, 1] + 0.3 * borrow)
    p_miss = expit(-3.8 + 0.6 * z[:, 1] + 0.5 * risk)
    p_late = expit(-2.9 + 0.4 * z[:, 1] + 0.35 * risk - 0.2 * z[:, 3])
    p_active = expit(0.05 + 0.9 * z[:, 3] + 0.3 * z[:, 4])
    p_activate = expit(1.6 + 0.8 * z[:, 3])
    shock_entry = expit(SHOCK_ENTRY_INTERCEPT + SHOCK_ENTRY_IVOL * z[:, 1] + SHOCK_ENTRY_RISK * risk)
    # card-page visits: heterogeneous taste for the app's card page, 15 % never open it
    visit = np.exp(0.9 * rng.standard_normal(n) - 0.405) * (rng.random(n) >= 0.15)
    return Traits(
        risk=risk,
        default_logit=DEFAULT_INTERCEPT + RISK_COEF * risk,
        income_volatility=z[:, 1],
        spend_capacity_fen=capacity,
        engagement=z[:, 3],
        reward_sensitivity=z[:, 4],
        borrow=borrow,
        mpb=mpb,
        revolver=revolver,
        debt_need_fen=np.round(debt_need),
        bnpl_user=bnpl_user,
        churn_propensity=z[:, 6],
        retention_response=retention,
        p_miss=p_miss,
        p_late=p_late,
        p_active=p_active,
        p_activate=p_activate,
        shock_entry=shock_entry,
        visit_propensity=visit,
    )


def interaction_terms(traits: Traits, thin_file: np.ndarray, channel: np.ndarray) -> dict[str, np.ndarray]:
    """The non-additive terms of the distress log-odds (each documented in docs/world.md): leverage x income
    volatility, BNPL load x low income, thin bureau file x acquisition channel. ``channel`` holds channel names."""
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    return {
        "leverage_x_volatility": LEVERAGE_X_VOLATILITY * relu(traits.borrow) * relu(traits.income_volatility),
        "bnpl_x_low_income": BNPL_X_LOW_INCOME * traits.bnpl_user * relu(-traits.capacity_z),
        "thin_file_x_channel": THIN_FILE_X_CHANNEL * (thin_file & np.isin(channel, RISKY_THIN_CHANNELS)),
    }


def add_interactions(traits: Traits, thin_file: np.ndarray, channel: np.ndarray) -> None:
    """Add :func:`interaction_terms` to ``traits.default_logit`` (in place)."""
    for term in interaction_terms(traits, thin_file, channel).values():
        traits.default_logit = traits.default_logit + term
