"""Closed-form oracle quantities of the card model (exact expectations of behaviour.py's equations).

Account states per month, given no distress yet: *active* or *silent* (lapsed), each crossed with the income-
shock state z (normal / shocked, a two-state Markov chain per customer). In month t, in this order: the shock
chain moves (entry ``p_in[t]``, exit ``p_out``); distress onset with hazard h_t(z) (any open account); then, if
not distressed, an active account has a churn event with hazard q_t (a closure with share CLOSE_SHARE, else it
goes silent); a silent account closes with LAPSED_CLOSE_HAZARD. Onset at month t means missed payments from
t+1 on, i.e. 90+ DPD at t+ONSET_TO_90DPD. All formulas below are forward recursions over these states (the
churn label's adds the distressed state and a "transacted in the window" flag), so they are exact for the
simulated process as long as the line and the treatment path assumed over the horizon are the factual ones
(see docs/world.md).

Shapes: ``h`` is (k, T, 2) — the distress hazard in month t of the horizon when normal (``[..., 0]``) or
shocked (``[..., 1]``); ``q`` (k, T); ``shock`` a :class:`ShockChain` with the state at the end of the month
before column 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cardlab.world.behaviour import (
    BUILD_UP_SPEED,
    CLOSE_SHARE,
    DRAWDOWN_SHARE,
    LAPSED_ACTIVE,
    LAPSED_CLOSE_HAZARD,
    PD_ONSET_WINDOW,
    SHOCK_CURE_MULT,
    SHOCK_SPEND,
    TRANSIENT_CURE,
    TRANSIENT_FLAT,
)

TRANSIENT_CYCLES = 4  # transient delinquency states of a healthy account: 0 (current) .. 3 unpaid cycles


@dataclass(frozen=True)
class ShockChain:
    """The income-shock chain over a horizon: ``z0`` (k,) state at the start (0 normal, 1 shocked), ``p_in``
    (k, T) entry probability in each horizon month, ``p_out`` the exit probability."""

    z0: np.ndarray
    p_in: np.ndarray
    p_out: float

    def start(self, mass: np.ndarray) -> np.ndarray:
        """(k,) mass -> (k, 2): all of it in the known starting state."""
        out = np.zeros((len(mass), 2))
        out[np.arange(len(mass)), self.z0.astype(np.int64)] = mass
        return out

    def step(self, m: np.ndarray, t: int) -> np.ndarray:
        """Move masses ``m`` (k, 2[, ...]) one month along the chain (month ``t`` of the horizon)."""
        p_in = self.p_in[:, t].reshape((-1,) + (1,) * (m.ndim - 2))
        m0, m1 = m[:, 0], m[:, 1]
        return np.stack([m0 * (1.0 - p_in) + m1 * self.p_out, m0 * p_in + m1 * (1.0 - self.p_out)], axis=1)

    def cut(self, T: int) -> ShockChain:
        """The chain over the first ``T`` horizon months."""
        return ShockChain(self.z0, self.p_in[:, :T], self.p_out)


def pd_onset(h: np.ndarray, q: np.ndarray, start_active: np.ndarray, shock: ShockChain) -> np.ndarray:
    """Probability of distress onset within the horizon columns of ``h`` (k x T x 2) before a voluntary
    closure; ``q`` (k x T) churn hazards of an active account; ``start_active`` bool (else silent)."""
    act = start_active.astype(np.float64)
    a, s = shock.start(act), shock.start(1.0 - act)
    pd = np.zeros(len(act))
    for t in range(h.shape[1]):
        a, s = shock.step(a, t), shock.step(s, t)
        ht = h[:, t, :]
        pd += ((a + s) * ht).sum(axis=1)
        surv = 1.0 - ht
        qt = q[:, t, None]
        a, s = (
            a * surv * (1.0 - qt),
            s * surv * (1.0 - LAPSED_CLOSE_HAZARD) + a * surv * qt * (1 - CLOSE_SHARE),
        )
    return pd


def pd_12m(h: np.ndarray, q: np.ndarray, start_active: np.ndarray, shock: ShockChain) -> np.ndarray:
    """True probability of reaching 90+ DPD within 12 statements of the snapshot: onset in the first
    PD_ONSET_WINDOW (8) months of the horizon, before any voluntary closure."""
    W = PD_ONSET_WINDOW
    return pd_onset(h[:, :W], q[:, :W], start_active, shock.cut(W))


def replay_onset(
    h: np.ndarray,
    q: np.ndarray,
    u_default: np.ndarray,
    u_churn: np.ndarray,
    u_lapsed_close: np.ndarray,
    start_active: np.ndarray,
) -> np.ndarray:
    """Realised counterpart of :func:`pd_onset`: replays the same process with the factual path's uniforms
    (common random numbers; all k x T like ``h``, which here holds the hazard at the *factual* shock state of
    each month), so that a different line changes the outcome only through its hazards. True where distress
    starts within the horizon columns before a voluntary closure. Event order as in the monthly loop
    (card.py): onset if u_default < h; then an active healthy account has a churn event if u_churn < q (a
    closure if u_churn < q * CLOSE_SHARE, else it goes silent); a silent one closes if u_lapsed_close <
    LAPSED_CLOSE_HAZARD."""
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


def churn_window(h: np.ndarray, q: np.ndarray, first: int, shock: ShockChain) -> np.ndarray:
    """Probability that an active, not distressed account has its first churn event in horizon months
    ``first .. T-1`` (0-based columns of ``h`` (k x T x 2) / ``q`` (k x T))."""
    a = shock.start(np.ones(h.shape[0]))
    p = np.zeros(h.shape[0])
    for t in range(h.shape[1]):
        a = shock.step(a, t)
        a_surv = a * (1.0 - h[:, t, :])
        if t >= first:
            p += (a_surv * q[:, t, None]).sum(axis=1)
        a = a_surv * (1.0 - q[:, t, None])
    return p


ACTIVE, SILENT, DISTRESSED = 0, 1, 2  # account states of :func:`expected_path` and :func:`churn_label_prob`


def transient_step(a: np.ndarray, miss: np.ndarray) -> np.ndarray:
    """One month of transient delinquency for active masses ``a`` (k, 2 z, TRANSIENT_CYCLES): a current
    account misses with ``miss`` (k, 2), a delinquent one cures (TRANSIENT_CURE, x SHOCK_CURE_MULT when shocked),
    rolls flat (TRANSIENT_FLAT; at 3 cycles every non-cure) or misses again. Re-ageing (three flats in a row)
    is not tracked, so the chain runs a little more delinquent than the simulator."""
    out = np.zeros_like(a)
    shock_scale = np.array([1.0, SHOCK_CURE_MULT])[None, :]
    out[:, :, 0] += a[:, :, 0] * (1.0 - miss)
    out[:, :, 1] += a[:, :, 0] * miss
    for k in (1, 2, 3):
        cure = TRANSIENT_CURE[k - 1] * shock_scale
        flat = (1.0 - cure) if k == 3 else TRANSIENT_FLAT[k - 1]
        out[:, :, 0] += a[:, :, k] * cure
        out[:, :, k] += a[:, :, k] * flat
        if k < 3:
            out[:, :, k + 1] += a[:, :, k] * (1.0 - cure - flat)
    return out


def expected_path(
    h: np.ndarray,
    q: np.ndarray,
    shock: ShockChain,
    p_active: np.ndarray,
    p_spend_ok: np.ndarray,
    spend_fen: np.ndarray,
    revolving_fen: np.ndarray,
    revolving_start: np.ndarray,
    line_fen: np.ndarray,
    start_state: np.ndarray | None = None,
    can_txn: np.ndarray | None = None,
    miss: np.ndarray | None = None,
    start_cycles: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected monthly card spend and revolving balance (k x T, fen) over the horizon, from ``start_state``
    (ACTIVE / SILENT / DISTRESSED at the end of the month before the horizon; all ACTIVE when None).

    The revolving balance is the *performing* one: an active account counts it only in months it ends current
    (no unpaid cycle), tracked by the transient-delinquency chain (:func:`transient_step`, with the monthly
    miss probability ``miss`` (k x T x 2, normal / shocked; none when None) and ``start_cycles`` (k,) unpaid
    cycles at the start).

    Per month: states evolve as in :func:`pd_onset`; an active account spends ``p_active * spend_fen`` (times
    SHOCK_SPEND while shocked) plus the build-up towards its revolving target (BUILD_UP_SPEED of the gap per
    active month, starting from ``revolving_start``); a silent one spends LAPSED_ACTIVE * spend_fen (likewise
    reduced when shocked) and carries no revolving balance (it pays its balance off); a distressed one neither
    pays nor spends, and its balance is the loss term's exposure, not an interest-earning balance; an account
    entering distress draws its line up to DRAWDOWN_SHARE (60 % of the draw as purchases, the rest cash).
    ``can_txn`` (k x T, bool; all True when None) marks the months in which the card is activated: no spend and
    no build-up before. ``p_spend_ok`` (k,) is the probability that the card is activated at all (at booking;
    the activation delay is ignored) and scales spend and balance. Ignored (small): the cap of spend at the
    available line and transient missed payments."""
    k, T = q.shape
    st = np.full(k, ACTIVE) if start_state is None else np.asarray(start_state)
    ok = np.ones((k, T)) if can_txn is None else np.asarray(can_txn, dtype=np.float64)
    p_ok = np.broadcast_to(np.asarray(p_spend_ok, dtype=np.float64), (k,))
    a = shock.start((st == ACTIVE).astype(np.float64))
    s = shock.start((st == SILENT).astype(np.float64))
    # the active mass split by unpaid cycles (k, z, cycles)
    cyc = np.zeros((k, 2, TRANSIENT_CYCLES))
    k0 = np.zeros(k, np.int64) if start_cycles is None else np.clip(start_cycles, 0, TRANSIENT_CYCLES - 1)
    cyc[np.arange(k), :, k0] = a
    consume = np.array([1.0, SHOCK_SPEND])
    level = revolving_start.astype(np.float64).copy()
    spend = np.zeros((k, T))
    rev = np.zeros((k, T))
    speed = BUILD_UP_SPEED * p_active
    for t in range(T):
        a, s = shock.step(a, t), shock.step(s, t)
        ht = h[:, t, :]
        surv = 1.0 - ht
        drawdown = ((a + s) * ht).sum(1) * np.maximum(DRAWDOWN_SHARE * line_fen - level, 0.0) * 0.6
        qt = q[:, t, None]
        a_next = a * surv * (1.0 - qt)
        s_next = s * surv * (1.0 - LAPSED_CLOSE_HAZARD) + a * surv * qt * (1 - CLOSE_SHARE)
        cyc = shock.step(cyc, t) * (surv * (1.0 - qt))[:, :, None]
        if miss is not None:
            cyc = transient_step(cyc, miss[:, t, :])
        gap = np.maximum(revolving_fen - level, 0.0)
        build = speed * gap * ok[:, t]
        active_spend = (a_next * consume).sum(1) * p_active * spend_fen[:, t] + a_next.sum(1) * build
        silent_spend = (s_next * consume).sum(1) * LAPSED_ACTIVE * spend_fen[:, t]
        spend[:, t] = (active_spend + silent_spend) * ok[:, t] * p_ok + drawdown
        level = np.where(revolving_fen >= level, level + build, revolving_fen)
        rev[:, t] = cyc[:, :, 0].sum(1) * level * p_ok
        a, s = a_next, s_next
    return spend, rev


def churn_label_prob(
    h: np.ndarray,
    q: np.ndarray,
    shock: ShockChain,
    p_active: np.ndarray,
    can_txn: np.ndarray,
    start_state: np.ndarray,
    gap: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Probability of the churn task's label and of the row's exclusion, by a forward recursion.

    Columns ``0 .. gap-1`` of ``h``/``q``/``can_txn`` (k x T[ x 2]) are the gap (action) months, ``gap .. T-1``
    the label window. Label = a voluntary closure in the window, or no transaction in any window month; the row
    is excluded when the card closes in the gap. Per month, in the simulator's order: the shock chain moves; a
    healthy account (active or silent) enters distress with hazard ``h`` and then transacts (the drawdown);
    otherwise an active one has a churn event with hazard ``q`` (a closure with share CLOSE_SHARE, else it goes
    silent and transacts with LAPSED_ACTIVE that month), a silent one closes with LAPSED_CLOSE_HAZARD; an open
    healthy account transacts with probability ``p_active`` ((k,) or (k x T) when a retention offer raises it
    in some months; LAPSED_ACTIVE when silent) when ``can_txn`` (activated), else not at all. A distressed
    account (onset before the month) never transacts nor closes voluntarily (its charge-off is left to the
    caller). ``start_state`` (k,) holds ACTIVE / SILENT / DISTRESSED at the end of the month before column 0.

    Returns ``(p_label, p_excluded)``: p_label = P(label = 1 | not excluded), p_excluded = P(closed in gap).
    """
    k, T = q.shape
    st = np.asarray(start_state)
    pa = np.broadcast_to(p_active if np.ndim(p_active) == 2 else np.asarray(p_active)[:, None], (k, T))
    # mass per state: (k, z, flag) with flag 0: no window transaction so far, 1: at least one
    A = np.zeros((k, 2, 2))
    S = np.zeros((k, 2, 2))
    A[:, :, 0] = shock.start((st == ACTIVE).astype(np.float64))
    S[:, :, 0] = shock.start((st == SILENT).astype(np.float64))
    D = np.zeros((k, 2))
    D[:, 0] = st == DISTRESSED
    closed_window = np.zeros(k)
    closed_gap = np.zeros(k)
    for t in range(T):
        win = t >= gap
        A, S = shock.step(A, t), shock.step(S, t)
        ht, qt = h[:, t, :, None], q[:, t, None, None]
        ok = can_txn[:, t, None, None].astype(np.float64)
        onset = ((A + S) * ht).sum(axis=1)  # (k, flag)
        a_surv = A * (1.0 - ht)
        s_surv = S * (1.0 - ht)
        closing = (a_surv * qt * CLOSE_SHARE + s_surv * LAPSED_CLOSE_HAZARD).sum(axis=(1, 2))
        A = a_surv * (1.0 - qt)
        S = s_surv * (1.0 - LAPSED_CLOSE_HAZARD) + a_surv * qt * (1.0 - CLOSE_SHARE)
        if win:
            closed_window += closing
            for M, p in ((A, pa[:, t, None] * ok[:, :, 0]), (S, LAPSED_ACTIVE * ok[:, :, 0])):
                moved = M[:, :, 0] * p
                M[:, :, 0] -= moved
                M[:, :, 1] += moved
            D[:, 1] += onset.sum(1)  # the onset month's drawdown is a transaction
        else:
            closed_gap += closing
            D += onset
    no_txn = A[:, :, 0].sum(1) + S[:, :, 0].sum(1) + D[:, 0]
    kept = 1.0 - closed_gap
    p = np.divide(closed_window + no_txn, kept, out=np.ones(k), where=kept > 0)
    return np.clip(p, 0.0, 1.0), closed_gap
