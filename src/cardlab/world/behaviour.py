"""Structural equations of cardholder behaviour, shared by the factual simulation (card.py) and the oracle
(oracle.py) so both use exactly the same model. Money in fen, time in months.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

DEFAULT_INTERCEPT = -5.6  # logit of the monthly default-onset hazard at risk 0, macro 1, reference line
RISK_COEF = 1.75  # log-odds of the onset hazard per unit of the risk trait (sets the oracle AUC)
LINE_ELASTICITY = 0.5  # hazard ∝ (line / reference line) ** (LINE_ELASTICITY * mpb)
MAX_HAZARD = 0.9
CHURN_INTERCEPT = -4.9  # logit of the monthly churn-event hazard (closure or lapse into silence)
EARLY_TENURE_CHURN = 0.35  # extra log-odds of churn in the first 12 months on book
CLOSE_SHARE = 0.4  # share of churn events that are voluntary closures (the rest: the account goes silent)
LAPSED_CLOSE_HAZARD = 0.006  # monthly closure hazard of a silent account
LAPSED_ACTIVE = 0.03  # monthly probability a silent account still transacts
DRAWDOWN_SHARE = 0.95  # balance/line reached in the month a borrower enters distress
ONSET_TO_90DPD = 3  # statements from distress onset to 90 DPD (misses at onset+1, +2, +3)
PD_ONSET_WINDOW = 12 - ONSET_TO_90DPD  # onset months within a 12-month horizon that reach 90+ DPD in it
REVIEW_EVERY = 6  # months on book between line reviews
RETENTION_EFFECT_MONTHS = 3  # months a retention offer changes the churn hazard and the activity
OFFER_ACTIVITY_LIFT = 0.4  # most of an active account's idle months an offer turns into transacting months
BUILD_UP_SPEED = 0.75  # share of the gap to the revolving target a revolver spends per active month
SPEND_SIGMA = 0.7  # log-sd of monthly spend noise (mean-one log-normal)


def reference_line(spend_capacity_fen: np.ndarray) -> np.ndarray:
    """Line (fen) at which the line factor of the default hazard is 1: four months of spend capacity."""
    return 4.0 * spend_capacity_fen


def default_hazard(
    risk: np.ndarray,
    macro_t: np.ndarray | float,
    line_fen: np.ndarray,
    spend_capacity_fen: np.ndarray,
    mpb: np.ndarray,
) -> np.ndarray:
    """Monthly probability that an open, not yet distressed account enters distress (stops paying).

    h = min(expit(DEFAULT_INTERCEPT + RISK_COEF * risk) * macro * (line / reference) ** (LINE_ELASTICITY * mpb), 0.9).
    Higher lines raise the hazard of high-MPB (riskier) borrowers: they borrow more out of extra limit.
    """
    ratio = np.maximum(line_fen, 1.0) / reference_line(spend_capacity_fen)
    h = expit(DEFAULT_INTERCEPT + RISK_COEF * risk) * macro_t * ratio ** (LINE_ELASTICITY * mpb)
    return np.minimum(h, MAX_HAZARD)


def spend_mean(spend_capacity_fen: np.ndarray, line_fen: np.ndarray) -> np.ndarray:
    """Expected monthly card spend (fen) of an active month at line ``line_fen``, before seasonality:
    capacity * (1 - exp(-line / (3 * capacity))) — spend rises with the line and saturates."""
    cap = np.maximum(spend_capacity_fen, 1.0)
    return cap * (1.0 - np.exp(-line_fen / (3.0 * cap)))


def revolve_target(line_fen: np.ndarray, mpb: np.ndarray, debt_need_fen: np.ndarray) -> np.ndarray:
    """Revolving balance (fen) a revolver keeps after paying: min(0.95 * line, need + mpb * line); 0 for
    transactors (need 0 and mpb ignored). d target / d line = mpb below the cap (Agarwal et al. 2018)."""
    return np.where(debt_need_fen > 0, np.minimum(0.95 * line_fen, debt_need_fen + mpb * line_fen), 0.0)


def churn_hazard(
    churn_propensity: np.ndarray,
    engagement: np.ndarray,
    reward_sensitivity: np.ndarray,
    months_on_book: np.ndarray,
    treat_multiplier: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Monthly probability of a churn event (voluntary closure or lapse into silence) of an active account.
    ``treat_multiplier`` = exp(-retention_response) while a retention offer is in effect, else 1."""
    logit = (
        CHURN_INTERCEPT
        + 0.75 * churn_propensity
        - 0.3 * engagement
        + 0.15 * reward_sensitivity
        + EARLY_TENURE_CHURN * (months_on_book < 12)
    )
    return np.minimum(expit(logit) * treat_multiplier, 0.9)


def offer_activity_lift(reward_sensitivity: np.ndarray, retention_response: np.ndarray) -> np.ndarray:
    """Share ``s`` of an active account's idle months that a retention offer (bonus points for spending)
    fills while it is in effect: ``OFFER_ACTIVITY_LIFT * expit(2 * reward_sensitivity - 1)``, so reward-
    sensitive users respond most; "sleeping dogs" (``retention_response < 0``) do not respond with activity
    (the offer only reminds them to close, through the churn hazard)."""
    return np.where(retention_response > 0, OFFER_ACTIVITY_LIFT * expit(2.0 * reward_sensitivity - 1.0), 0.0)


def active_probability(p_active: np.ndarray, lift: np.ndarray, in_offer: np.ndarray | bool) -> np.ndarray:
    """Monthly probability that an active (not silent) account transacts: ``p_active``, raised to
    ``p_active + (1 - p_active) * lift`` in the months a retention offer is in effect."""
    return p_active + (1.0 - p_active) * lift * in_offer


def survival_product(hazards: np.ndarray) -> np.ndarray:
    """1 - prod(1 - h) along the last axis: probability of at least one event."""
    return 1.0 - np.prod(1.0 - hazards, axis=-1)
