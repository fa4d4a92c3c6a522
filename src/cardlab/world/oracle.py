"""Closed-form oracle quantities of the card model (exact expectations of behaviour.py's equations).

Account states per month, given no distress yet: *active* or *silent* (lapsed). In month t, in this order:
distress onset with hazard h_t (any open account); then, if not distressed, an active account has a churn
event with hazard q_t (a closure with share CLOSE_SHARE, else it goes silent); a silent account closes with
LAPSED_CLOSE_HAZARD. Onset at month t means misses at t+1, t+2, t+3, i.e. 90 DPD at t+3. All formulas
below are forward recursions over these two states, so they are exact for the simulated process as long as
the line and the treatment path assumed over the horizon are the factual ones (see docs/world.md).
"""

from __future__ import annotations

import numpy as np

from cardlab.world.behaviour import (
    BUILD_UP_SPEED,
    CLOSE_SHARE,
    DRAWDOWN_SHARE,
    LAPSED_ACTIVE,
    LAPSED_CLOSE_HAZARD,
    PD_ONSET_WINDOW,
)


def pd_onset(h: np.ndarray, q: np.ndarray, start_active: np.ndarray) -> np.ndarray:
    """Probability of distress onset within the horizon columns of ``h`` (k x T) before a voluntary
    closure; ``q`` (k x T) churn hazards of an active account; ``start_active`` bool (else silent)."""
    a = start_active.astype(np.float64)
    s = 1.0 - a
    pd = np.zeros(len(a))
    for t in range(h.shape[1]):
        pd += (a + s) * h[:, t]
        surv = 1.0 - h[:, t]
        a, s = (
            a * surv * (1.0 - q[:, t]),
            s * surv * (1.0 - LAPSED_CLOSE_HAZARD) + a * surv * q[:, t] * (1 - CLOSE_SHARE),
        )
    return pd


def pd_12m(h: np.ndarray, q: np.ndarray, start_active: np.ndarray) -> np.ndarray:
    """True probability of reaching 90+ DPD within 12 statements of the snapshot: onset in the first
    PD_ONSET_WINDOW (9) months of the horizon, before any voluntary closure."""
    return pd_onset(h[:, :PD_ONSET_WINDOW], q[:, :PD_ONSET_WINDOW], start_active)


def churn_window(h: np.ndarray, q: np.ndarray, first: int) -> np.ndarray:
    """Probability that an active, not distressed account has its first churn event in horizon months
    ``first .. T-1`` (0-based columns of ``h``/``q``, k x T)."""
    a = np.ones(h.shape[0])
    p = np.zeros(h.shape[0])
    for t in range(h.shape[1]):
        ev = a * (1.0 - h[:, t]) * q[:, t]
        if t >= first:
            p += ev
        a = a * (1.0 - h[:, t]) * (1.0 - q[:, t])
    return p


def expected_path(
    h: np.ndarray,
    q: np.ndarray,
    p_active: np.ndarray,
    p_spend_ok: np.ndarray,
    spend_fen: np.ndarray,
    revolving_fen: np.ndarray,
    revolving_start: np.ndarray,
    line_fen: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected monthly card spend and revolving balance (k x T, fen) over the horizon, starting active.

    Per month: states evolve as in :func:`pd_onset`; an active account spends ``p_active * spend_fen`` plus
    the build-up towards its revolving target (BUILD_UP_SPEED of the gap per active month, starting from
    ``revolving_start``); a silent one spends LAPSED_ACTIVE * spend_fen; an account entering distress draws
    its line up to DRAWDOWN_SHARE (60 % of the draw as purchases, the rest cash). ``p_spend_ok`` scales
    spend for cards not yet activated. Ignored (small): the cap of spend at the available line and one-off
    missed payments."""
    k, T = h.shape
    a = np.ones(k)
    s = np.zeros(k)
    level = revolving_start.astype(np.float64).copy()
    spend = np.zeros((k, T))
    rev = np.zeros((k, T))
    speed = BUILD_UP_SPEED * p_active
    for t in range(T):
        surv = 1.0 - h[:, t]
        drawdown = (a + s) * h[:, t] * np.maximum(DRAWDOWN_SHARE * line_fen - level, 0.0) * 0.6
        a_next = a * surv * (1.0 - q[:, t])
        s_next = s * surv * (1.0 - LAPSED_CLOSE_HAZARD) + a * surv * q[:, t] * (1 - CLOSE_SHARE)
        gap = np.maximum(revolving_fen - level, 0.0)
        build = speed * gap
        spend[:, t] = (
            a_next * (p_active * spend_fen[:, t] + build) + s_next * LAPSED_ACTIVE * spend_fen[:, t]
        ) * p_spend_ok + drawdown
        level = np.where(revolving_fen >= level, level + build, revolving_fen)
        rev[:, t] = a_next * level
        a, s = a_next, s_next
    return spend, rev
