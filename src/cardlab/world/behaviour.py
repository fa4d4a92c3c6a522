"""Structural equations of cardholder behaviour, shared by the factual simulation (card.py) and the oracle
(oracle.py) so both use exactly the same model. Money in fen, time in months.

Distress (the absorbing path to charge-off) starts with the monthly hazard :func:`default_hazard`, which
depends on the customer's default log-odds (risk factor plus the non-additive terms of traits.py), the macro
stress path, the line and whether an income shock is under way (a two-state Markov chain per customer:
:func:`shock_transition`). Transient delinquency (a missed payment that cures, rolls or is re-aged) never
reaches 90 DPD; only distress does, so the 12-month PD is the probability of a distress onset early enough
to reach 90+ DPD within 12 statements.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

DEFAULT_INTERCEPT = -7.05  # logit of the monthly distress hazard at risk 0, macro 1, reference line, no shock
RISK_COEF = 1.6  # log-odds of the distress hazard per unit of the risk factor
LINE_ELASTICITY = 0.5  # hazard ∝ (line / reference line) ** (LINE_ELASTICITY * mpb)
SHOCK_HAZARD_MULT = 4.5  # distress hazard multiplier while an income shock is under way
MAX_HAZARD = 0.9
CHURN_INTERCEPT = -4.9  # logit of the monthly churn-event hazard (closure or lapse into silence)
EARLY_TENURE_CHURN = 0.35  # extra log-odds of churn in the first 12 months on book
CLOSE_SHARE = 0.4  # share of churn events that are voluntary closures (the rest: the account goes silent)
LAPSED_CLOSE_HAZARD = 0.006  # monthly closure hazard of a silent account
LAPSED_ACTIVE = 0.03  # monthly probability a silent account still transacts
DRAWDOWN_SHARE = 0.95  # balance/line reached in the month a borrower enters distress
REVIEW_EVERY = 6  # months on book between line reviews
RETENTION_EFFECT_MONTHS = 3  # months a retention offer changes the churn hazard and the activity
OFFER_ACTIVITY_LIFT = 0.4  # most of an active account's idle months an offer turns into transacting months
BUILD_UP_SPEED = 0.75  # share of the gap to the revolving target a revolver spends per active month
SPEND_SIGMA = 0.7  # log-sd of monthly spend noise (mean-one log-normal)
SHOCK_SPEND = 0.75  # spend multiplier while an income shock is under way
# income shocks: a two-state (normal / shocked) monthly Markov chain per customer. Monthly entry probability
# expit(SHOCK_ENTRY_INTERCEPT + SHOCK_ENTRY_IVOL * income_vol + SHOCK_ENTRY_RISK * risk) (about 1.5 % a month on
# average; x macro stress), exit probability SHOCK_EXIT (mean spell 1 / SHOCK_EXIT months)
SHOCK_ENTRY_INTERCEPT, SHOCK_ENTRY_IVOL, SHOCK_ENTRY_RISK = -4.4, 0.8, 0.3
SHOCK_EXIT = 0.22

# ---- delinquency with day resolution (card.py) ------------------------------------------------------------
# statement m closes on the last day of month m; its minimum is due on day DUE_DAY of month m + 1. DPD at a
# statement = days from the due date of the oldest unpaid cycle to the statement's closing date, so a first
# missed payment shows as 8-11 DPD, the second as ~40, the third ~70, the fourth ~100; charge-off at 180+.
DUE_DAY = 20
CHARGE_OFF_DPD = 180
CHARGE_OFF_CYCLES = 7  # unpaid cycles at which DPD first reaches CHARGE_OFF_DPD (6 * 30 + 8..11 >= 180)
ONSET_TO_90DPD = 4  # statements from distress onset to 90+ DPD (misses at onset+1 .. onset+4)
PD_HORIZON = 12  # statements after the snapshot month covered by the 12-month PD and the credit label
PD_ONSET_WINDOW = PD_HORIZON - ONSET_TO_90DPD  # onset months within the horizon that reach 90+ DPD in it
# a transient episode (healthy account, k unpaid cycles): cure (pay all past due), roll flat (pay the current
# cycle only, k unchanged) or miss again (k + 1); a transient episode never rolls past 3 cycles (60-89 DPD)
TRANSIENT_CURE = (0.75, 0.45, 0.50)  # by k = 1, 2, 3
TRANSIENT_FLAT = (0.07, 0.20, 0.50)
REAGE_AFTER = 3  # consecutive flat (minimum) payments after which the bank re-ages the account to current
SHOCK_MISS_MULT = 4.0  # transient-miss probability multiplier during an income shock
SHOCK_LATE_MULT = 2.0  # late-payment probability multiplier during an income shock
SHOCK_CURE_MULT = 0.6  # cure-probability multiplier of a delinquent account during an income shock


def reference_line(spend_capacity_fen: np.ndarray) -> np.ndarray:
    """Line (fen) at which the line factor of the default hazard is 1: four months of spend capacity."""
    return 4.0 * spend_capacity_fen


def default_hazard(
    default_logit: np.ndarray,
    macro_t: np.ndarray | float,
    line_fen: np.ndarray,
    spend_capacity_fen: np.ndarray,
    mpb: np.ndarray,
    shocked: np.ndarray | bool,
) -> np.ndarray:
    """Monthly probability that an open, not yet distressed account enters distress (stops paying).

    h = min(expit(default_logit) * macro * (line / reference) ** (LINE_ELASTICITY * mpb) * shock, 0.9), with
    shock = SHOCK_HAZARD_MULT while an income shock is under way. Higher lines raise the hazard of high-MPB
    (riskier) borrowers: they borrow more out of extra limit.
    """
    ratio = np.maximum(line_fen, 1.0) / reference_line(spend_capacity_fen)
    mult = np.where(shocked, SHOCK_HAZARD_MULT, 1.0)
    h = expit(default_logit) * macro_t * ratio ** (LINE_ELASTICITY * mpb) * mult
    return np.minimum(h, MAX_HAZARD)


def shock_transition(
    shock_entry: np.ndarray, macro_t: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray | float]:
    """Monthly (entry, exit) probabilities of the income-shock chain: entry = shock_entry * macro (capped at
    0.5; macro stress starts more shocks), exit = SHOCK_EXIT (traits.py)."""
    return np.minimum(shock_entry * macro_t, 0.5), SHOCK_EXIT


def stationary_shock(shock_entry: np.ndarray) -> np.ndarray:
    """Long-run share of months in shock at macro 1: entry / (entry + exit)."""
    p_in, p_out = shock_transition(shock_entry, 1.0)
    return p_in / (p_in + p_out)


def spend_mean(spend_capacity_fen: np.ndarray, line_fen: np.ndarray) -> np.ndarray:
    """Expected monthly card spend (fen) of an active month at line ``line_fen``, before seasonality:
    capacity * (1 - exp(-line / (3 * capacity))) — spend rises with the line and saturates."""
    cap = np.maximum(spend_capacity_fen, 1.0)
    return cap * (1.0 - np.exp(-line_fen / (3.0 * cap)))


def revolve_target(line_fen: np.ndarray, mpb: np.ndarray, debt_need_fen: np.ndarray) -> np.ndarray:
    """Revolving balance (fen) a revolver keeps after paying: min(0.95 * line, need + mpb * line); 0 for
    transactors (need 0 and mpb ignored). d target / d line = mpb below the cap (Agarwal et al. 2018)."""
    return np.where(debt_need_fen > 0, np.minimum(0.95 * line_fen, debt_need_fen + mpb * line_fen), 0.0)


def churn_index(
    churn_propensity: np.ndarray, engagement: np.ndarray, reward_sensitivity: np.ndarray
) -> np.ndarray:
    """The customer's part of the churn-event log-odds (the churn drivers' strengths are measured against it)."""
    return 0.75 * churn_propensity - 0.3 * engagement + 0.15 * reward_sensitivity


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
        + churn_index(churn_propensity, engagement, reward_sensitivity)
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
