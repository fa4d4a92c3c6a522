"""Closed-form oracle quantities of the card model (exact expectations of behaviour.py's equations).

Account states per month, given no distress yet: *active* or *silent* (lapsed). In month t, in this order:
distress onset with hazard h_t (any open account); then, if not distressed, an active account has a churn
event with hazard q_t (a closure with share CLOSE_SHARE, else it goes silent); a silent account closes with
LAPSED_CLOSE_HAZARD. Onset at month t means misses at t+1, t+2, t+3, i.e. 90 DPD at t+3. All formulas
below are forward recursions over these two states (the churn label's adds the distressed state and a
"transacted in the window" flag), so they are exact for the simulated process as long as the line and the
treatment path assumed over the horizon are the factual ones (see docs/world.md).
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


def replay_onset(
    h: np.ndarray,
    q: np.ndarray,
    u_default: np.ndarray,
    u_churn: np.ndarray,
    u_lapsed_close: np.ndarray,
    start_active: np.ndarray,
) -> np.ndarray:
    """Realised counterpart of :func:`pd_onset`: replays the same two-state process with the factual path's
    uniforms (common random numbers; all k x T like ``h``), so that a different line changes the outcome only
    through its hazards. True where distress starts within the horizon columns before a voluntary closure.
    Event order as in the monthly loop (card.py): onset if u_default < h; then an active healthy account has a
    churn event if u_churn < q (a closure if u_churn < q * CLOSE_SHARE, else it goes silent); a silent one
    closes if u_lapsed_close < LAPSED_CLOSE_HAZARD."""
    k = h.shape[0]
    open_ = np.ones(k, bool)
    silent = ~start_active.astype(bool)
    onset = np.zeros(k, bool)
    for t in range(h.shape[1]):
        now = open_ & (u_default[:, t] < h[:, t])
        onset |= now
        open_ &= ~now
        event = open_ & ~silent & (u_churn[:, t] < q[:, t])
        close = (event & (u_churn[:, t] < q[:, t] * CLOSE_SHARE)) | (
            open_ & silent & (u_lapsed_close[:, t] < LAPSED_CLOSE_HAZARD)
        )
        silent |= event & ~close
        open_ &= ~close
    return onset


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


ACTIVE, SILENT, DISTRESSED = 0, 1, 2  # account states of :func:`expected_path` and :func:`churn_label_prob`


def expected_path(
    h: np.ndarray,
    q: np.ndarray,
    p_active: np.ndarray,
    p_spend_ok: np.ndarray,
    spend_fen: np.ndarray,
    revolving_fen: np.ndarray,
    revolving_start: np.ndarray,
    line_fen: np.ndarray,
    start_state: np.ndarray | None = None,
    can_txn: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected monthly card spend and revolving balance (k x T, fen) over the horizon, from ``start_state``
    (ACTIVE / SILENT / DISTRESSED at the end of the month before the horizon; all ACTIVE when None).

    Per month: states evolve as in :func:`pd_onset`; an active account spends ``p_active * spend_fen`` plus
    the build-up towards its revolving target (BUILD_UP_SPEED of the gap per active month, starting from
    ``revolving_start``); a silent one spends LAPSED_ACTIVE * spend_fen and carries no revolving balance (it
    pays its balance off); a distressed one neither pays nor spends, and its balance is the loss term's
    exposure, not an interest-earning balance; an account entering distress draws its line up to
    DRAWDOWN_SHARE (60 % of the draw as purchases, the rest cash). ``can_txn`` (k x T, bool; all True when
    None) marks the months in which the card is activated: no spend and no build-up before. ``p_spend_ok``
    (k,) is the probability that the card is activated at all (at booking; the activation delay is
    ignored) and scales spend and balance. Ignored (small): the cap of spend at the available line and
    one-off missed payments."""
    k, T = h.shape
    st = np.full(k, ACTIVE) if start_state is None else np.asarray(start_state)
    ok = np.ones((k, T)) if can_txn is None else np.asarray(can_txn, dtype=np.float64)
    p_ok = np.broadcast_to(np.asarray(p_spend_ok, dtype=np.float64), (k,))
    a = (st == ACTIVE).astype(np.float64)
    s = (st == SILENT).astype(np.float64)
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
        build = speed * gap * ok[:, t]
        spend[:, t] = (
            a_next * (p_active * spend_fen[:, t] + build) + s_next * LAPSED_ACTIVE * spend_fen[:, t]
        ) * ok[:, t] * p_ok + drawdown
        level = np.where(revolving_fen >= level, level + build, revolving_fen)
        rev[:, t] = a_next * level * p_ok
        a, s = a_next, s_next
    return spend, rev


def churn_label_prob(
    h: np.ndarray,
    q: np.ndarray,
    p_active: np.ndarray,
    can_txn: np.ndarray,
    start_state: np.ndarray,
    gap: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Probability of the churn task's label and of the row's exclusion, by a forward recursion.

    Columns ``0 .. gap-1`` of ``h``/``q``/``can_txn`` (k x T) are the gap (action) months, ``gap .. T-1`` the
    label window. Label = a voluntary closure in the window, or no transaction in any window month; the row
    is excluded when the card closes in the gap. Per month, in the simulator's order: a healthy account
    (active or silent) enters distress with hazard ``h`` and then transacts (the drawdown); otherwise an
    active one has a churn event with hazard ``q`` (a closure with share CLOSE_SHARE, else it goes silent
    and transacts with LAPSED_ACTIVE that month), a silent one closes with LAPSED_CLOSE_HAZARD; an open
    healthy account transacts with probability ``p_active`` ((k,) or (k x T) when a retention offer raises it
    in some months; LAPSED_ACTIVE when silent) when ``can_txn``
    (activated), else not at all. A distressed account (onset before the month) never transacts nor closes
    voluntarily (its charge-off, 6 months after onset, is left to the caller). ``start_state`` (k,) holds
    ACTIVE / SILENT / DISTRESSED at the end of the month before column 0.

    Returns ``(p_label, p_excluded)``: p_label = P(label = 1 | not excluded), p_excluded = P(closed in gap).
    """
    k, T = h.shape
    st = np.asarray(start_state)
    pa = np.broadcast_to(p_active if np.ndim(p_active) == 2 else np.asarray(p_active)[:, None], (k, T))
    # mass per state, column 0: no window transaction so far, column 1: at least one
    A = np.zeros((k, 2))
    S = np.zeros((k, 2))
    D = np.zeros((k, 2))
    A[:, 0] = st == ACTIVE
    S[:, 0] = st == SILENT
    D[:, 0] = st == DISTRESSED
    closed_window = np.zeros(k)
    closed_gap = np.zeros(k)
    for t in range(T):
        win = t >= gap
        ht, qt = h[:, t, None], q[:, t, None]
        ok = can_txn[:, t, None].astype(np.float64)
        onset = (A + S) * ht
        a_surv = A * (1.0 - ht)
        s_surv = S * (1.0 - ht)
        closing = (a_surv * qt * CLOSE_SHARE + s_surv * LAPSED_CLOSE_HAZARD).sum(1)
        A = a_surv * (1.0 - qt)
        S = s_surv * (1.0 - LAPSED_CLOSE_HAZARD) + a_surv * qt * (1.0 - CLOSE_SHARE)
        if win:
            closed_window += closing
            for M, p in ((A, pa[:, t, None] * ok), (S, LAPSED_ACTIVE * ok)):
                moved = M[:, 0:1] * p
                M[:, 0:1] -= moved
                M[:, 1:2] += moved
            D[:, 1] += onset.sum(1)  # the onset month's drawdown is a transaction
        else:
            closed_gap += closing
            D += onset
    no_txn = A[:, 0] + S[:, 0] + D[:, 0]
    kept = 1.0 - closed_gap
    p = np.divide(closed_window + no_txn, kept, out=np.ones(k), where=kept > 0)
    return np.clip(p, 0.0, 1.0), closed_gap
