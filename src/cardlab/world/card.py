"""Co-branded card lifecycle of one shard: invitations -> applications -> cards -> monthly statements,
with line reviews, retention campaigns, dormancy, voluntary closure, delinquency and charge-off.

Vectorised over customers; the only Python loop is over months. Money in fen (int64), months 0-based.

Statement month m of an open card (one row per card-month after the opening month, until close):
    closing_balance = opening_balance + purchases + cash_advance + interest + fees - payments
where ``payments`` (made during month m, on ``payment_date``) settle the previous statement, whose ``min_due``
fell due on day DUE_DAY of month m; ``interest`` = APR/12 on the part of the opening balance left unpaid,
``fees`` = late fee (share of the unpaid minimum, or of the minimum paid after its due date) + cash-advance fee.

Delinquency has day resolution (behaviour.py): DPD at a statement counts the days from the due date of the
oldest unpaid cycle to the statement's closing day, so a first missed payment shows as 8-11 DPD, then ~40,
~70, ~100, and the card is charged off at 180+ DPD (the 7th unpaid cycle). A healthy account misses now and
then (more often during an income shock): the episode then cures, rolls flat (the current minimum paid, the
arrears not) or rolls on, at most to 60-89 DPD; three flat payments in a row re-age it to current. Only
distress, absorbing, goes on to 90+ DPD and charge-off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit

from cardlab.config import SimulateParams
from cardlab.world import behaviour as bh
from cardlab.world import oracle, policies
from cardlab.world.calendar import macro, month_lengths, month_starts, random_day, season
from cardlab.world.population import Population
from cardlab.world.streams import Stream, rng_for
from cardlab.world.traits import Traits

INVITE_CHANNELS = np.array(["app_push", "sms", "checkout_banner", "live_stream"])
PAYMENT_TYPES = np.array(["none_due", "full", "minimum", "partial", "below_minimum", "missed"])
HORIZON = 12
CARD_OPEN, CARD_SILENT, CARD_DISTRESSED = 1, 2, 3  # CardWorld.card_state codes (0: no open card)


@dataclass
class CardWorld:
    """Tables produced by the card lifecycle of one shard (column name -> numpy array; None: no rows)."""

    raw: dict[str, dict[str, np.ndarray] | None] = field(default_factory=dict)
    oracle: dict[str, dict[str, np.ndarray] | None] = field(default_factory=dict)
    # (n, months) int64: the statement's purchases_platform of each customer-month (0 without a statement);
    # the card-paid orders of that month sum to it (ecommerce.card_orders)
    platform_spend: np.ndarray | None = None
    # (n, months) int8 at the end of each month: 0 no open card, 1 open, 2 open but silent (lapsed),
    # 3 in distress (onset this month or before, not yet charged off)
    card_state: np.ndarray | None = None
    activation_day: np.ndarray | None = None  # (n,) activation date (days since epoch), -1 when never


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray] | None:
    if not parts:
        return None
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class _Collector:
    def __init__(self) -> None:
        self.parts: dict[str, list[dict[str, np.ndarray]]] = {}

    def add(self, table: str, **cols: np.ndarray) -> None:
        self.parts.setdefault(table, []).append(cols)

    def get(self, table: str) -> dict[str, np.ndarray] | None:
        """All rows added to ``table`` (None when there are none)."""
        return _concat(self.parts.get(table, []))


@dataclass
class _Shard:
    """What the monthly loop shares with its helpers (booking potential, reviews, retention campaigns, churn
    oracle): the shard's inputs, calendar and random streams, the row collector, and the per-customer state
    arrays (length n), which the loop and the helpers update in place."""

    out: _Collector
    params: SimulateParams
    T: Traits
    cols: dict[str, np.ndarray]
    cid: np.ndarray
    starts: np.ndarray  # first day of each month (days since epoch)
    seas: np.ndarray  # festival factor per month
    mac: np.ndarray  # macro default-hazard multiplier per month
    shocked: np.ndarray  # (n, months) bool: income shock under way in the month
    r_lim: np.random.Generator
    r_camp: np.random.Generator
    open_month: np.ndarray
    act_month: np.ndarray
    L: np.ndarray  # current line (fen)
    score_c: np.ndarray  # legacy score at application
    B: np.ndarray  # balance at the last statement
    util6: np.ndarray  # utilisation summed since the last review
    miss6: np.ndarray  # misses since the last review
    onset: np.ndarray  # distress onset month, -1 when none
    cycles: np.ndarray  # unpaid cycles at the last statement
    lapsed: np.ndarray
    treat_mult: np.ndarray
    treat_until: np.ndarray
    offer_on: np.ndarray  # (n, months + horizon + 1) a retention offer is in effect
    line_path: np.ndarray  # (n, months + horizon + 1) the line held in each month
    # (n, months) uniforms of the hazard processes, shared by the factual path and the oracle's replays
    u_default: np.ndarray
    u_churn: np.ndarray
    u_lapsed_close: np.ndarray

    @property
    def eco(self):
        return self.params.economics


def shock_path(pop: Population, params: SimulateParams, shard: int) -> np.ndarray:
    """(n, months) bool: the income-shock chain of each customer (behaviour.shock_transition), started from its
    stationary distribution before the world's first month. Drawn from its own stream, before anything else
    that depends on it (platform behaviour, the card lifecycle, the oracle)."""
    M = params.size.months
    rng = rng_for(params.seed, Stream.SHOCKS, shard)
    mac = macro(M, params.shock_month, params.shock_size)
    z = rng.random(pop.n) < bh.stationary_shock(pop.traits.shock_entry)
    u = rng.random((pop.n, M))
    out = np.zeros((pop.n, M), bool)
    for m in range(M):
        p_in, p_out = bh.shock_transition(pop.traits.shock_entry, mac[m])
        z = np.where(z, u[:, m] >= p_out, u[:, m] < p_in)
        out[:, m] = z
    return out


def simulate_cards(
    pop: Population, params: SimulateParams, shard: int, shocked: np.ndarray, platform_score: np.ndarray
) -> CardWorld:
    """Run the card lifecycle for one shard's population, given its income-shock path and the platform's
    monthly credit scores ((n, months), -1 before sign-up)."""
    seed, M = params.seed, params.size.months
    eco = params.economics
    T = pop.traits
    cols = pop.columns
    n = pop.n
    cid = cols["customer_id"]
    starts, lengths = (
        month_starts(params.start_month, M + HORIZON + 1),
        month_lengths(params.start_month, M + HORIZON),
    )
    seas = season(params.start_month, M + HORIZON)
    mac = macro(M + HORIZON + 1, params.shock_month, params.shock_size)

    r_camp = rng_for(seed, Stream.CAMPAIGNS, shard)
    r_card = rng_for(seed, Stream.CARD, shard)
    r_lim = rng_for(seed, Stream.LIMITS, shard)
    r_pay = rng_for(seed, Stream.PAYMENTS, shard)
    # common random numbers of the two hazard processes, drawn up front so the oracle can reuse them
    u_default = rng_for(seed, Stream.DEFAULT, shard).random((n, M))
    r_churn = rng_for(seed, Stream.CHURN, shard)
    u_churn = r_churn.random((n, M))
    u_lapsed_close = r_churn.random((n, M))

    out = _Collector()

    # ---------------- invitations and applications -------------------------------------------------------
    # a user becomes eligible INVITE_MIN_TENURE months after sign-up (not before the programme's first month)
    p_inv = policies.invite_probability(
        cols["purchase_power"].astype(float), cols["membership_level"].astype(float)
    )
    eligible = np.maximum(pop.signup_month + policies.INVITE_MIN_TENURE, policies.INVITE_FIRST_MONTH)
    inv_month = eligible + r_camp.geometric(p_inv) - 1
    invited = inv_month <= M - 2
    inv_idx = np.flatnonzero(invited)
    inv_m = inv_month[inv_idx]
    inv_date = random_day(r_camp, inv_m, starts, lengths, 0, 18)
    inv_channel = INVITE_CHANNELS[r_camp.integers(0, len(INVITE_CHANNELS), len(inv_idx))]
    campaign_id = (
        np.array([f"INV-{m:02d}" for m in range(M)])[inv_m] if len(inv_m) else np.zeros(0, dtype=str)
    )
    out.add(
        "invitations",
        customer_id=cid[inv_idx],
        campaign_id=campaign_id,
        invite_date=inv_date,
        channel=inv_channel,
    )

    p_apply = expit(
        0.0 + 0.4 * T.reward_sensitivity[inv_idx] + 0.3 * T.engagement[inv_idx] + 0.35 * T.risk[inv_idx]
    )
    applies = r_camp.random(len(inv_idx)) < p_apply
    a_idx = inv_idx[applies]
    a_month = inv_m[applies]
    a_date = inv_date[applies] + r_camp.integers(0, 8, len(a_idx)).astype(np.int32)
    k_app = len(a_idx)
    bureau = cols["bureau_score"][a_idx]
    # the bank reads the platform's credit score of the last month end before the application
    score = policies.legacy_score(bureau, platform_score[a_idx, a_month - 1].astype(np.float64))
    approved = policies.approve(score, bureau, cols["age"][a_idx])
    legacy_idx = policies.legacy_initial_line(score, cols["income_band"][a_idx])
    grid = policies.INITIAL_LINE_GRID_FEN
    test_cell = r_lim.random(k_app) < params.limit_test_cell_share
    test_idx = r_lim.integers(0, len(grid), k_app)
    line_idx = np.where(test_cell, test_idx, legacy_idx)
    share = params.limit_test_cell_share
    propensity = share / len(grid) + (1 - share) * (line_idx == legacy_idx)
    line = grid[line_idx]
    app_id = cid[a_idx] * 10 + 1
    out.add(
        "applications",
        application_id=app_id,
        customer_id=cid[a_idx],
        application_date=a_date,
        approved=approved,
        initial_limit=np.where(approved, line, -1),
        legacy_score=score,
        limit_cell=np.where(test_cell, "test", "grid"),
        limit_propensity=np.where(approved, propensity, np.nan),
        partner_bank=cols["partner_bank"][a_idx],
    )

    # oracle pd at application: line = offered line (declined: the line the grid would have offered)
    app_open = np.zeros(n, dtype=np.int64)
    app_open[a_idx] = a_month
    h_app, q_app, z_app = _hazards(T, mac, shocked, a_idx, a_month + 1, line.astype(float), app_open)
    out.add(
        "pd_true",
        customer_id=cid[a_idx],
        snapshot_date=a_date,
        kind=np.full(k_app, "application"),
        pd_12m=oracle.pd_12m(h_app, q_app, np.ones(k_app, bool), z_app),
        line=line,
    )

    # ---------------- booking --------------------------------------------------------------------------------
    b = a_idx[approved]  # customer positions with a card
    open_month = np.full(n, 10**6, dtype=np.int64)
    open_month[b] = a_month[approved]
    open_date = np.minimum(
        a_date[approved] + r_card.integers(1, 6, len(b)).astype(np.int32), starts[open_month[b] + 1] - 1
    ).astype(np.int32)
    activates = r_card.random(len(b)) < T.p_activate[b]
    act_date = (open_date + r_card.geometric(0.12, len(b)).clip(max=90)).astype(np.int64)
    act_date = np.where(activates, act_date, -1)
    act_month = np.full(n, 10**6, dtype=np.int64)
    act_month[b] = np.where(activates, np.searchsorted(starts, act_date, side="right") - 1, 10**6)
    activation_date = np.full(n, -1, dtype=np.int64)
    activation_date[b] = act_date
    L = np.zeros(n, dtype=np.int64)
    L[b] = line[approved]
    score_c = np.zeros(n, dtype=np.int64)
    score_c[b] = score[approved]
    booked = np.zeros(n, bool)
    booked[b] = True

    # ---------------- monthly account loop -------------------------------------------------------------------
    B = np.zeros(n, np.int64)
    due_prev = np.zeros(n, np.int64)
    arrears_prev = np.zeros(n, np.int64)  # the past-due part of due_prev (unpaid minimums of older cycles)
    cycles = np.zeros(n, np.int64)  # unpaid cycles at the last statement (0 = current)
    flat_run = np.zeros(n, np.int64)  # consecutive flat payments of a delinquent account (re-age at 3)
    onset = np.full(n, -1, np.int64)
    lapsed = np.zeros(n, bool)
    closed = np.zeros(n, bool)
    close_date = np.full(n, -1, np.int64)
    close_reason = np.full(n, "", dtype=object)
    points = np.zeros(n, np.int64)
    util6 = np.zeros(n)
    miss6 = np.zeros(n, np.int64)
    act_hist = np.zeros((n, 3), bool)
    treat_mult = np.ones(n)
    treat_until = np.full(n, -1, np.int64)
    platform_spend = np.zeros((n, M), np.int64)
    card_state = np.zeros((n, M), np.int8)
    card_state[b[open_month[b] < M], open_month[b][open_month[b] < M]] = CARD_OPEN
    platform_share = 0.25 + 0.4 * expit(T.engagement)
    redeem_rate = 0.5 * expit(-1 + T.reward_sensitivity)
    offer_lift = bh.offer_activity_lift(T.reward_sensitivity, T.retention_response)
    campaigns: list[tuple[int, np.ndarray, np.ndarray]] = []

    # factual paths the churn oracle conditions on: the line held in each month (set by the reviews) and the
    # months a retention offer is in effect; the oracle rows are computed after the loop, once both are known
    line_path = np.zeros((n, M + HORIZON + 1), np.int64)
    offer_on = np.zeros((n, M + HORIZON + 1), bool)
    churn_rows: list[tuple[int, np.ndarray, np.ndarray]] = []
    s = _Shard(
        out=out,
        params=params,
        T=T,
        cols=cols,
        cid=cid,
        starts=starts,
        seas=seas,
        mac=mac,
        shocked=shocked,
        r_lim=r_lim,
        r_camp=r_camp,
        open_month=open_month,
        act_month=act_month,
        L=L,
        score_c=score_c,
        B=B,
        util6=util6,
        miss6=miss6,
        onset=onset,
        cycles=cycles,
        lapsed=lapsed,
        treat_mult=treat_mult,
        treat_until=treat_until,
        offer_on=offer_on,
        line_path=line_path,
        u_default=u_default,
        u_churn=u_churn,
        u_lapsed_close=u_lapsed_close,
    )
    _booking_potential(s, b, a_date[approved], a_month[approved], line[approved], activation=T.p_activate[b])

    def churn_oracle(m: int, pos: np.ndarray) -> None:
        o = onset[pos]
        state = np.where(o >= 0, oracle.DISTRESSED, np.where(lapsed[pos], oracle.SILENT, oracle.ACTIVE))
        churn_rows.append((m, pos, state))
        line_path[:, m + 1] = L

    for m in range(M):
        idx = np.flatnonzero(booked & (open_month < m) & ~closed)
        if len(idx) == 0:
            churn_oracle(m, np.flatnonzero(booked & (open_month == m)))
            continue
        k = len(idx)
        mob = m - open_month[idx]
        Li = L[idx].astype(float)
        cap, mpb = T.spend_capacity_fen[idx].astype(float), T.mpb[idx]
        z_m = shocked[idx, m]
        # 1. distress onset
        h = bh.default_hazard(T.default_logit[idx], mac[m], Li, cap, mpb, z_m)
        onset_now = (onset[idx] < 0) & (u_default[idx, m] < h)
        onset[idx[onset_now]] = m
        distressed = (onset[idx] >= 0) & (onset[idx] < m)
        # 2. churn events (active accounts) and closure of silent accounts
        tm = np.where(treat_until[idx] >= m, treat_mult[idx], 1.0)
        q = bh.churn_hazard(T.churn_propensity[idx], T.engagement[idx], T.reward_sensitivity[idx], mob, tm)
        healthy = onset[idx] < 0
        u = u_churn[idx, m]
        event = healthy & ~lapsed[idx] & (u < q)
        close_now = event & (u < q * bh.CLOSE_SHARE)
        lapse_now = event & ~close_now
        close_now |= healthy & lapsed[idx] & (u_lapsed_close[idx, m] < bh.LAPSED_CLOSE_HAZARD)
        lapsed[idx[lapse_now]] = True
        lap = lapsed[idx]
        # 3. payment against the previous statement (due on day DUE_DAY of this month)
        Bo, due, arr, k0 = B[idx], due_prev[idx], arrears_prev[idx], cycles[idx]
        P, late_paid, flat, reaged, k_new = _payments(
            r_pay, T, idx, Bo, due, arr, k0, Li, lap, z_m, mac[m], distressed, onset_now, close_now, flat_run
        )
        short = np.maximum(due - P, 0)
        interest = np.round((Bo - P) * eco.apr / 12).astype(np.int64)
        fee_base = np.where(short > 0, short, np.where(late_paid, due, 0))
        late_fee = np.round(fee_base * eco.late_fee_rate).astype(np.int64)
        pay_day = np.where(
            late_paid,
            bh.DUE_DAY + 1 + np.floor(r_pay.random(k) * (lengths[m] - bh.DUE_DAY)),
            1 + np.floor(r_pay.random(k) * bh.DUE_DAY),
        ).astype(np.int64)
        payment_date = np.where(P > 0, starts[m] + pay_day - 1, -1)
        # 4. spend
        activated = act_month[idx] <= m
        can_spend = ~distressed & ~close_now & (activated | onset_now)
        p_act = bh.active_probability(T.p_active[idx], offer_lift[idx], offer_on[idx, m])
        active = can_spend & (r_pay.random(k) < np.where(lap, bh.LAPSED_ACTIVE, p_act))
        noise = np.exp(bh.SPEND_SIGMA * r_pay.standard_normal(k) - bh.SPEND_SIGMA**2 / 2)
        want = bh.spend_mean(cap, Li) * seas[m] * noise * np.where(z_m, bh.SHOCK_SPEND, 1.0)
        carried = Bo - P + interest + late_fee
        avail = np.maximum(L[idx] - carried, 0)
        # revolvers below their target balance borrow to consume: half the gap is spent this month
        D = np.round(bh.revolve_target(Li, mpb, np.where(lap, 0.0, T.debt_need_fen[idx]))).astype(np.int64)
        gap = np.where(T.revolver[idx] & ~lap, np.maximum(D - carried, 0), 0)
        want = want + bh.BUILD_UP_SPEED * gap
        purch = np.where(active, np.minimum(np.round(want), avail), 0).astype(np.int64)
        cash_draw = (r_pay.random(k) < 0.04) & active & T.revolver[idx] & ~lap
        cash = np.where(cash_draw, (0.25 * (avail - purch)) // 10_000 * 10_000, 0).astype(np.int64)
        # distress drawdown: the line is run up to DRAWDOWN_SHARE in the onset month
        extra = np.where(
            onset_now, np.maximum(np.round(bh.DRAWDOWN_SHARE * Li) - (carried + purch + cash), 0), 0
        ).astype(np.int64)
        extra_cash = (extra * 0.4).astype(np.int64) // 10_000 * 10_000
        cash = cash + extra_cash
        p_plat = np.round(purch * platform_share[idx]).astype(np.int64)
        p_online = np.round((purch - p_plat) * 0.55).astype(np.int64) + (extra - extra_cash)
        p_off = purch - p_plat - np.round((purch - p_plat) * 0.55).astype(np.int64)
        purchases = p_plat + p_online + p_off
        cash_fee = np.round(cash * eco.cash_advance_fee_rate).astype(np.int64)
        fees = late_fee + cash_fee
        closing = Bo + purchases + cash + interest + fees - P
        carry = np.where(reaged, 0, short)  # re-ageing forgives the past-due status (not the balance)
        min_due = np.where(
            closing <= 0,
            0,
            np.minimum(
                closing,
                np.maximum(
                    np.round(closing * eco.min_due_rate).astype(np.int64) + carry, eco.min_due_floor_fen
                ),
            ),
        )
        # DPD at the closing day: from the due date of the oldest unpaid cycle (k_new cycles unpaid)
        oldest_due = starts[np.maximum(m - k_new + 1, 0)] + bh.DUE_DAY - 1
        dpd_new = np.where(k_new > 0, starts[m] + lengths[m] - 1 - oldest_due, 0)
        ptype = np.select([due == 0, Bo <= P, due == P, due < P, P > 0], [0, 1, 2, 3, 4], default=5)
        earned = np.round(purchases * eco.reward_rate + p_plat * eco.platform_reward_bonus).astype(np.int64)
        redeemed = np.round(points[idx] * redeem_rate[idx] * (r_pay.random(k) < 0.5)).astype(np.int64)
        points[idx] += earned - redeemed
        instal = np.where(T.revolver[idx] & (p_plat > 50_000), np.round(p_plat * 0.3), 0).astype(np.int64)
        newly_act = onset_now & ~activated
        if newly_act.any():
            j = idx[newly_act]
            act_month[j] = m
            activation_date[j] = random_day(r_card, np.full(len(j), m), starts, lengths)

        out.add(
            "statements",
            customer_id=cid[idx],
            card_id=cid[idx] * 10 + 2,
            statement_month=np.full(k, starts[m]),
            credit_limit=L[idx].copy(),
            opening_balance=Bo,
            purchases_platform=p_plat,
            purchases_online=p_online,
            purchases_offline=p_off,
            purchases=purchases,
            cash_advance=cash,
            instalment_fen=instal,
            interest=interest,
            fees=fees,
            rewards_earned=earned,
            rewards_redeemed=redeemed,
            min_due=min_due,
            due_date=np.where(min_due > 0, starts[m + 1] + bh.DUE_DAY - 1, -1),
            payments=P,
            payment_date=payment_date,
            closing_balance=closing,
            dpd=dpd_new.astype(np.int32),
            payment_type=PAYMENT_TYPES[ptype],
            reaged=reaged,
            _months_on_book=mob,
        )
        platform_spend[idx, m] = p_plat
        card_state[idx, m] = np.select([onset[idx] >= 0, lap], [CARD_DISTRESSED, CARD_SILENT], CARD_OPEN)

        B[idx], due_prev[idx], arrears_prev[idx], cycles[idx] = closing, min_due, carry, k_new
        flat_run[idx] = np.where(flat & ~reaged, flat_run[idx] + 1, 0)
        util6[idx] += closing / np.maximum(Li, 1)
        miss6[idx] += due > P
        act_hist[idx] = np.column_stack([act_hist[idx, 1:], active])
        # 5. closures
        co = dpd_new >= bh.CHARGE_OFF_DPD
        vol = close_now
        ci = idx[co | vol]
        closed[ci] = True
        close_reason[idx[co]] = "charge_off"
        close_reason[idx[vol]] = "voluntary"
        close_date[idx[vol]] = random_day(r_card, np.full(int(vol.sum()), m), starts, lengths)
        close_date[idx[co]] = starts[m] + lengths[m] - 1
        # 6. line review every REVIEW_EVERY months on book
        rev = ~(co | vol) & (mob % bh.REVIEW_EVERY == 0)
        if rev.any():
            _review(s, idx[rev], m, dpd_new[rev] > 0)
        # 7. retention campaign
        if (
            m >= policies.RETENTION_FIRST_MONTH
            and (m - policies.RETENTION_FIRST_MONTH) % policies.RETENTION_CAMPAIGN_EVERY == 0
            and m + bh.RETENTION_EFFECT_MONTHS < M
        ):
            elig = ~(co | vol) & ~lapsed[idx] & (dpd_new == 0) & (mob >= 3) & (act_hist[idx].sum(1) <= 2)
            if elig.any():
                campaigns.append(_retention(s, idx[elig], m, act_hist[idx[elig]].sum(1)))
        # 8. churn oracle: every card open at the end of this month (after its review and campaign)
        open_now = np.union1d(idx[~(co | vol)], np.flatnonzero(booked & (open_month == m)))
        churn_oracle(m, open_now)

    line_path[:, M + 1 :] = L[:, None]
    for m, pos, state in churn_rows:
        _churn_true(s, pos, m, state)

    # potential outcomes of campaigns use the same uniforms as the factual path
    for m, e_idx, q01 in campaigns:
        ys = []
        for arm in (0, 1):
            y = np.zeros(len(e_idx), bool)
            alive = np.ones(len(e_idx), bool)
            for j in range(bh.RETENTION_EFFECT_MONTHS):
                t = m + 1 + j
                ok = alive & ~((onset[e_idx] >= 0) & (onset[e_idx] <= t))
                ev = ok & (u_churn[e_idx, t] < q01[arm][:, j])
                y |= ev
                alive &= ~ev
            ys.append(y)
        out.add("retention_truth_y", y0=ys[0], y1=ys[1])

    world = CardWorld()
    world.platform_spend = platform_spend
    world.card_state = card_state
    world.activation_day = activation_date
    cb = b
    world.raw["cards"] = {
        "card_id": cid[cb] * 10 + 2,
        "customer_id": cid[cb],
        "application_id": cid[cb] * 10 + 1,
        "open_date": open_date,
        "activation_date": np.where(act_month[cb] < M, activation_date[cb], -1),
        "close_date": close_date[cb],
        "close_reason": close_reason[cb].astype(str),
    }
    for name in ("invitations", "applications", "statements", "limit_changes", "retention_offers"):
        world.raw[name] = out.get(name)
    for name in ("pd_true", "limit_potential", "retention_truth", "churn_true"):
        world.oracle[name] = out.get(name)
    truth = world.oracle["retention_truth"]
    if truth is not None:
        truth_y = out.get("retention_truth_y")
        if truth_y is None:  # every campaign adds rows to both tables
            raise RuntimeError("retention_truth has rows but retention_truth_y has none")
        truth.update(truth_y)
    return world


def _payments(r_pay, T, idx, Bo, due, arr, k0, line, lapsed, shocked, macro_m, distressed, onset_now, closing,
              flat_run):  # fmt: skip
    """This month's payment against the previous statement (minimum ``due``, of which ``arr`` past due, ``k0``
    unpaid cycles). Returns (payment, paid after the due date, flat payment, re-aged, unpaid cycles after it).

    A distressed account pays nothing. An account closing pays its balance off; one entering distress this
    month still pays in full (so its 90+ DPD comes exactly ONSET_TO_90DPD statements later). A current account
    misses with its transient-miss probability (x SHOCK_MISS_MULT in a shock, x macro stress); otherwise it pays
    at least the minimum (a revolver keeps its target balance), after the due date with its late-payment
    probability. A delinquent healthy account cures (pays all past due), rolls flat (pays the current cycle's
    minimum only; REAGE_AFTER flats in a row re-age it) or misses again, by TRANSIENT_CURE / TRANSIENT_FLAT of
    its cycle count (cures are rarer during a shock); a transient episode never rolls past 3 cycles."""
    k = len(idx)
    u1, u2 = r_pay.random(k), r_pay.random(k)
    healthy = ~distressed & ~onset_now & ~closing
    p_miss = np.minimum(T.p_miss[idx] * np.where(shocked, bh.SHOCK_MISS_MULT, 1.0) * macro_m, 0.9)
    miss_new = healthy & (k0 == 0) & (due > 0) & (u1 < p_miss)
    episode = healthy & (k0 > 0)
    kk = np.clip(k0, 1, 3) - 1
    cure_p = np.asarray(bh.TRANSIENT_CURE)[kk] * np.where(shocked, bh.SHOCK_CURE_MULT, 1.0)
    flat_p = np.where(k0 >= 3, 1.0 - cure_p, np.asarray(bh.TRANSIENT_FLAT)[kk])
    cure = episode & (u1 < cure_p)
    flat = episode & ~cure & (u1 < cure_p + flat_p)
    miss = miss_new | (episode & ~cure & ~flat)
    target = bh.revolve_target(line, T.mpb[idx], np.where(lapsed, 0.0, T.debt_need_fen[idx]))
    pay_rev = np.minimum(np.maximum(Bo - np.round(target).astype(np.int64), due), Bo)
    P = np.select([distressed | miss, closing, flat], [0, Bo, due - arr], pay_rev)
    p_late = np.minimum(T.p_late[idx] * np.where(shocked, bh.SHOCK_LATE_MULT, 1.0), 0.9)
    late_paid = (P > 0) & (due > 0) & ~closing & (u2 < p_late)
    reaged = flat & (flat_run[idx] + 1 >= bh.REAGE_AFTER)
    k_new = np.select([due == 0, due <= P, reaged, flat], [0, 0, 0, k0], k0 + 1)
    return P.astype(np.int64), late_paid, flat, reaged, k_new


def _hazards(
    T: Traits,
    mac: np.ndarray,
    shocked: np.ndarray,
    pos: np.ndarray,
    first_month: int | np.ndarray,
    line: np.ndarray,
    open_month: np.ndarray,
    treat: np.ndarray | None = None,
    horizon: int = HORIZON,
) -> tuple[np.ndarray, np.ndarray, oracle.ShockChain]:
    """Distress hazards (k x horizon x 2: normal / shocked), churn hazards (k x horizon) and the income-shock
    chain for months first_month .. first_month+horizon-1, starting from the factual shock state of month
    first_month - 1; ``line`` (k,) held over the horizon or (k x horizon) per month."""
    k = len(pos)
    h = np.empty((k, horizon, 2))
    q = np.empty((k, horizon))
    p_in = np.empty((k, horizon))
    for j in range(horizon):
        t = first_month + j
        line_t = line[:, j] if np.ndim(line) == 2 else line
        for z in (0, 1):
            h[:, j, z] = bh.default_hazard(
                T.default_logit[pos],
                mac[t],
                line_t,
                T.spend_capacity_fen[pos],
                T.mpb[pos],
                bool(z),
            )
        p_in[:, j] = bh.shock_transition(T.shock_entry[pos], mac[t])[0]
        tm = 1.0 if treat is None else treat[:, j]
        q[:, j] = bh.churn_hazard(
            T.churn_propensity[pos], T.engagement[pos], T.reward_sensitivity[pos], t - open_month[pos], tm
        )
    z0 = shocked[pos, np.asarray(first_month) - 1]
    return h, q, oracle.ShockChain(z0, p_in, bh.SHOCK_EXIT)


def _economics(
    s: _Shard,
    pos,
    kind,
    snap_date,
    option_line,
    multiple,
    chosen,
    m,
    start_active,
    activation,
    revolving_start,
    start_state=None,
    can_txn=None,
    start_cycles=None,
):
    """Expected 12-month outcomes of holding ``option_line`` from month m+1 (closed form, see oracle.py)."""
    T, seas, eco = s.T, s.seas, s.eco
    line = option_line.astype(float)
    h, q, chain = _hazards(T, s.mac, s.shocked, pos, np.asarray(m) + 1, line, s.open_month)
    k = len(pos)
    spend_base = bh.spend_mean(T.spend_capacity_fen[pos].astype(float), line)
    months = np.broadcast_to(np.asarray(m), (k,))
    spend_fen = spend_base[:, None] * seas[months[:, None] + 1 + np.arange(HORIZON)[None, :]]
    rev_target = bh.revolve_target(line, T.mpb[pos], T.debt_need_fen[pos])
    spend, rev = oracle.expected_path(
        h,
        q,
        chain,
        T.p_active[pos],
        activation,
        spend_fen,
        rev_target,
        revolving_start,
        line,
        start_state,
        can_txn,
        _miss_probability(T, s.mac, pos, np.asarray(m) + 1),
        start_cycles,
    )
    spend_12 = spend.sum(1)
    rev_avg = rev.mean(1)
    interest = rev.sum(1) * eco.apr / 12
    fees = (
        (T.p_miss + T.p_late)[pos][:, None]
        * eco.late_fee_rate
        * np.maximum(eco.min_due_rate * (rev + spend), 0)
    ).sum(1)
    plat = 0.25 + 0.4 * expit(T.engagement[pos])
    interchange = spend_12 * eco.interchange_rate
    rewards = spend_12 * (eco.reward_rate + eco.platform_reward_bonus * plat)
    funding = (rev + spend).sum(1) * eco.funding_rate_annual / 12
    pd = oracle.pd_12m(h, q, start_active, chain)
    default = _replay_default(s, pos, months, h, q, start_active)
    ead = bh.DRAWDOWN_SHARE * line
    loss = pd * eco.lgd * ead
    profit = interchange + interest + fees - funding - rewards - loss
    s.out.add(
        "limit_potential",
        customer_id=s.cid[pos],
        decision_date=snap_date,
        kind=np.full(k, kind),
        option_line=option_line.astype(np.int64),
        multiple=multiple,
        chosen=chosen,
        exp_spend_12m=spend_12,
        exp_avg_revolving=rev_avg,
        exp_interchange=interchange,
        exp_interest=interest,
        exp_fees=fees,
        exp_funding_cost=funding,
        exp_rewards=rewards,
        pd_12m=pd,
        default_12m=default,
        exp_ead=ead,
        exp_loss=loss,
        exp_profit=profit,
    )


def _miss_probability(T: Traits, mac: np.ndarray, pos: np.ndarray, first_month) -> np.ndarray:
    """(k x HORIZON x 2) transient-miss probability of a current account in each horizon month, normal /
    shocked (as card._payments draws it)."""
    months = np.asarray(first_month)[..., None] + np.arange(HORIZON)
    base = T.p_miss[pos][:, None] * np.broadcast_to(mac[months], (len(pos), HORIZON))
    return np.minimum(np.stack([base, base * bh.SHOCK_MISS_MULT], axis=-1), 0.9)


def _replay_default(s: _Shard, pos, months, h, q, start_active) -> np.ndarray:
    """Realised 90+ DPD within 12 statements (distress onset in the first PD_ONSET_WINDOW months after month
    ``months``) under the option's hazards ``h``/``q``, replayed with the factual uniforms (oracle.replay_onset):
    1.0/0.0, NaN where the onset window runs past the simulated months."""
    W = bh.PD_ONSET_WINDOW
    M = s.u_default.shape[1]
    cols = np.minimum(months[:, None] + 1 + np.arange(W)[None, :], M - 1)
    rows = pos[:, None]
    # the hazard at the factual shock state of each month (the shock path does not depend on the line)
    h_fact = np.take_along_axis(h[:, :W], s.shocked[rows, cols].astype(np.int64)[:, :, None], axis=2)[:, :, 0]
    onset = oracle.replay_onset(
        h_fact,
        q[:, :W],
        s.u_default[rows, cols],
        s.u_churn[rows, cols],
        s.u_lapsed_close[rows, cols],
        start_active,
    )
    return np.where(months + W < M, onset.astype(np.float64), np.nan)


def _booking_potential(s: _Shard, b, dates, months, chosen_line, activation):
    """limit_potential rows at booking: every grid line for the booked customers ``b`` (opened in ``months``)."""
    for g in policies.INITIAL_LINE_GRID_FEN:
        _economics(
            s,
            b,
            "booking",
            dates,
            np.full(len(b), g),
            np.full(len(b), np.nan),
            chosen_line == g,
            months,
            np.ones(len(b), bool),
            activation,
            np.zeros(len(b)),
        )


def _review(s: _Shard, pos, m, in_arrears):
    """Line review at the end of month m: legacy rule or test cell, limit_changes, pd_true and limit_potential."""
    out, T, cid, L, eco, starts = s.out, s.T, s.cid, s.L, s.eco, s.starts
    util6, miss6, onset, balance = s.util6, s.miss6, s.onset, s.B
    k = len(pos)
    # revolving balance carried into the horizon (the oracle knows the revolver type)
    revolving_now = np.where(T.debt_need_fen[pos] > 0, balance[pos], 0).astype(float)
    old = L[pos].copy()
    legacy = policies.legacy_review_multiple(
        in_arrears, miss6[pos], util6[pos] / bh.REVIEW_EVERY, s.score_c[pos]
    )
    share = s.params.review_test_cell_share
    mults = policies.REVIEW_MULTIPLES
    test = ~in_arrears & (s.r_lim.random(k) < share)
    choice = mults[s.r_lim.integers(0, len(mults), k)]
    mult = np.where(test, choice, legacy)
    prop = np.where(in_arrears, 1.0, (1 - share) * (mult == legacy) + share / len(mults))
    new = policies.round_line(old * mult)
    date = np.full(k, starts[m] + 27 if m >= 0 else 0)  # review on the 28th, after the statement
    date = np.minimum(date, starts[m + 1] - 1)
    out.add(
        "limit_changes",
        customer_id=cid[pos],
        card_id=cid[pos] * 10 + 2,
        review_date=date,
        old_limit=old,
        new_limit=new,
        cell=np.where(test, "test", "legacy"),
        propensity=prop,
    )
    already = onset[pos] >= 0
    active = ~s.lapsed[pos]
    state = np.where(already, oracle.DISTRESSED, np.where(active, oracle.ACTIVE, oracle.SILENT))
    can_txn = s.act_month[pos, None] <= m + 1 + np.arange(HORIZON)[None, :]
    h, q, chain = _hazards(T, s.mac, s.shocked, pos, m + 1, new.astype(float), s.open_month)
    pd = np.where(already, 1.0, oracle.pd_12m(h, q, active, chain))
    out.add(
        "pd_true", customer_id=cid[pos], snapshot_date=date, kind=np.full(k, "review"), pd_12m=pd, line=new
    )
    for mu in mults:
        opt = policies.round_line(old * mu)
        _economics(
            s,
            pos,
            "review",
            date,
            opt,
            np.full(k, mu),
            mu == mult,
            np.full(k, m),
            active,
            np.ones(k),
            revolving_now,
            state,
            can_txn,
            s.cycles[pos],
        )
        rows = out.parts["limit_potential"][-1]
        rows["pd_12m"] = np.where(already, 1.0, rows["pd_12m"])
        rows["default_12m"] = np.where(already, 1.0, rows["default_12m"])
        rows["exp_loss"] = rows["pd_12m"] * eco.lgd * rows["exp_ead"]
        rows["exp_profit"] = (
            rows["exp_interchange"]
            + rows["exp_interest"]
            + rows["exp_fees"]
            - rows["exp_funding_cost"]
            - rows["exp_rewards"]
            - rows["exp_loss"]
        )
    L[pos] = new
    util6[pos] = 0
    miss6[pos] = 0


def _churn_true(s: _Shard, pos, m, state):
    """Churn oracle at the end of month m for the open cards ``pos`` (snapshot month t = m+1), ``state`` their
    ACTIVE / SILENT / DISTRESSED state then. Computed after the simulation, conditioning on the *factual*
    line held in each month and the months a retention offer is in effect (offers decided later, e.g. in the
    snapshot's own action month, included), like the limit oracle conditions on the factual line.

    ``p_churn_3m``: first churn event in months m+2..m+4 of an active, healthy account (null otherwise).
    ``p_label_3m``: probability of the churn task's label given the account's state (oracle.churn_label_prob
    over the gap month m+1 and the window m+2..m+4); a distressed account (onset o <= m) never transacts
    again, so its label is 1, unless it is charged off (at o+6) by the window's end: then the row is excluded
    from the task and p_label_3m is null.
    """
    if len(pos) == 0:
        return
    T, offer_on = s.T, s.offer_on
    horizon = 4
    k = len(pos)
    months = m + 1 + np.arange(horizon)
    on = offer_on[pos[:, None], months[None, :]]
    treat = np.where(on, np.exp(-T.retention_response[pos])[:, None], 1.0)
    line = s.line_path[pos[:, None], months[None, :]].astype(float)
    h, q, chain = _hazards(T, s.mac, s.shocked, pos, m + 1, line, s.open_month, treat, horizon)
    o = s.onset[pos]
    can_txn = s.act_month[pos, None] <= months[None, :]
    lift = bh.offer_activity_lift(T.reward_sensitivity[pos], T.retention_response[pos])
    p_act = bh.active_probability(T.p_active[pos, None], lift[:, None], on)
    p_label, _ = oracle.churn_label_prob(h, q, chain, p_act, can_txn, state, gap=1)
    # a distressed account at m: onset o <= m (later onsets are part of the recursion)
    charged_off = (state == oracle.DISTRESSED) & (o + bh.CHARGE_OFF_CYCLES <= m + horizon)
    p_label = np.where(charged_off, np.nan, p_label)
    p_event = np.where(state == oracle.ACTIVE, oracle.churn_window(h, q, 1, chain), np.nan)
    s.out.add(
        "churn_true",
        customer_id=s.cid[pos],
        card_id=s.cid[pos] * 10 + 2,
        month=np.full(k, s.starts[m]),
        state=np.array(["active", "silent", "distressed"])[state],
        p_churn_3m=p_event,
        p_label_3m=p_label,
    )


def _retention(s: _Shard, pos, m, active3):
    """Assign arms of the retention campaign of month m, record offers and closed-form potential outcomes.

    Two potential-outcome pairs per row: the churn *event* (closure or lapse, ``p_churn_y0/y1``, with
    realised ``y0/y1`` from the same uniforms as the factual path) and the churn task's *label* over the
    effect months m+1..m+3 (``p_label_y0/y1``, exact recursion of oracle.churn_label_prob, with the offer's
    activity lift), ``tau_label = p_label_y0 - p_label_y1``."""
    out, T, cid = s.out, s.T, s.cid
    k = len(pos)
    c = s.params.retention_control_share
    u = s.r_camp.random(k)
    arm = np.where(u < c, 0, np.where(u < c + (1 - c) / 2, 1, 2))
    rule = policies.retention_targeting_rule(active3, s.cols["paid_member"][pos])
    treated = (arm == 1) | ((arm == 2) & rule)
    prop = (1 - c) / 2 + (1 - c) / 2 * rule
    date = np.full(k, s.starts[m])
    out.add(
        "retention_offers",
        customer_id=cid[pos],
        card_id=cid[pos] * 10 + 2,
        campaign_month=date,
        arm=np.array(["control", "random", "targeted"])[arm],
        treated=treated,
        propensity=prop,
    )
    mult1 = np.exp(-T.retention_response[pos])
    s.treat_mult[pos[treated]] = mult1[treated]
    s.treat_until[pos[treated]] = m + bh.RETENTION_EFFECT_MONTHS
    s.offer_on[pos[treated], m + 1 : m + 1 + bh.RETENTION_EFFECT_MONTHS] = True
    H = bh.RETENTION_EFFECT_MONTHS
    months = m + 1 + np.arange(H)
    state = np.where(s.onset[pos] >= 0, oracle.DISTRESSED, oracle.ACTIVE)
    can_txn = s.act_month[pos, None] <= months[None, :]
    lift = bh.offer_activity_lift(T.reward_sensitivity[pos], T.retention_response[pos])
    # per arm (no offer / offer): hazards over the effect months, then the churn event and the label
    qs, ps, pl_ = [], [], []
    for arm_on, a_mult in ((False, np.ones(k)), (True, mult1)):
        treat = np.repeat(a_mult[:, None], H, 1)
        h, q, chain = _hazards(
            T, s.mac, s.shocked, pos, m + 1, s.L[pos].astype(float), s.open_month, treat, H
        )
        qs.append(q)
        ps.append(oracle.churn_window(h, q, 0, chain))
        p_act = bh.active_probability(T.p_active[pos], lift, arm_on)
        pl_.append(oracle.churn_label_prob(h, q, chain, p_act, can_txn, state, gap=0)[0])
    out.add(
        "retention_truth",
        customer_id=cid[pos],
        card_id=cid[pos] * 10 + 2,
        campaign_month=date,
        treated=treated,
        p_churn_y0=ps[0],
        p_churn_y1=ps[1],
        tau=ps[0] - ps[1],
        p_label_y0=pl_[0],
        p_label_y1=pl_[1],
        tau_label=pl_[0] - pl_[1],
    )
    return m, pos, qs
