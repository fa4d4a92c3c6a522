"""Platform e-commerce of one shard, in two phases around the card lifecycle (card.py).

:func:`simulate_platform` (before the cards) draws what the platform sees of each signed-up customer, month by
month: orders (festival seasonality; cash-like goods, cancellations, returns, late-night ordering), app/web
sessions (with visits to the credit and loan pages and price comparisons), BNPL plans and their repayments
with day resolution (on time, paid late, partial, missed), profile changes (delivery address, phone number),
and the platform's own monthly credit score, computed by a documented rule over that observable history
(:func:`platform_score`). Latent traits and the income-shock state drive all of them, each noisily and
partially: nothing here is a trait in disguise.

:func:`finish_platform` (after the cards) replaces a share of the orders in months with card spend on the
platform by the card-paid orders behind each statement (they reconcile to the fen) and adds the visits to the
card's page in the app. Money in fen, months 0-based from the world's start month.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from cardlab.config import SimulateParams
from cardlab.world.behaviour import SHOCK_SPEND
from cardlab.world.calendar import macro, month_lengths, month_starts, season
from cardlab.world.population import Population
from cardlab.world.streams import Stream, rng_for

# regular categories first, then the cash-like ones (resellable or near-cash goods: a classic sign of a
# customer turning credit into cash)
REGULAR = (
    "apparel",
    "electronics",
    "grocery",
    "beauty",
    "home",
    "baby",
    "sports",
    "digital_goods",
    "travel",
    "other",
)
CASH_LIKE = ("gift_cards", "phone_topup", "game_credits")
CATEGORIES = np.array(REGULAR + CASH_LIKE)
REGULAR_WEIGHTS = np.array([0.2, 0.1, 0.2, 0.1, 0.1, 0.06, 0.06, 0.08, 0.04, 0.06])
CASH_LIKE_WEIGHTS = np.array([0.4, 0.35, 0.25])
CATEGORY_PRICE = np.array([1.0, 3.5, 0.5, 0.9, 1.5, 1.0, 1.2, 0.4, 4.0, 0.8, 1.5, 0.3, 0.4])  # relative level
CASH_LIKE_BASE = 0.05  # share of cash-like orders of an average customer outside a shock
PAID_WITH = np.array(["wallet", "bnpl", "card"])
CARD_VISITS_SILENT = 0.35  # card-page visit rate of a silent cardholder relative to an active one
CARD_ORDER_SHARE = 0.45  # share of a month's platform orders paid by card when the card has platform spend
INSTALMENTS = np.array([1, 3, 6, 12])
BNPL_DUE_DAY = 10  # BNPL instalments fall due on the 10th of each month
BNPL_BASE_INCIDENT = -3.6  # logit of a monthly BNPL repayment incident at risk 0, no shock, light load
PROFILE_CHANGE_KINDS = np.array(["delivery_address", "phone_number"])
FESTIVAL_DISCOUNT = {6: 0.12, 11: 0.15, 12: 0.10}  # extra discount share in festival months

# the platform credit score (points; higher = safer), recomputed at every month end from the customer's own
# observable history, each count exponentially weighted with SCORE_DECAY per month (docs/world.md)
SCORE_DECAY = 0.85
SCORE_RULE = {
    "base": 610.0,
    "per_tenure_month": 2.5,  # up to SCORE_TENURE_CAP months on the platform
    "per_bnpl_month": 6.0,  # months with a BNPL instalment due (a repayment history), up to 10
    "per_bnpl_late": -26.0,  # months with an instalment paid late
    "per_bnpl_arrears": -48.0,  # months ending with an instalment unpaid
    "per_overdue_day": -0.5,  # largest BNPL overdue days over the last 12 months, up to 120
    "per_profile_change": -10.0,  # delivery-address / phone-number changes
    "per_credit_page_visit": -1.5,  # visits to credit and loan pages, up to 20
    "cash_like_share": -160.0,  # cash-like orders / orders
    "cancelled_share": -120.0,  # cancelled orders / orders
    "late_night_share": -90.0,  # late-night orders / orders
    "paid_member": 18.0,
}
SCORE_TENURE_CAP = 36


@dataclass
class Platform:
    """The platform's side of one shard, before the card-paid orders are known."""

    orders: dict[str, np.ndarray]  # shop orders (customer position ``ci``, month ``mi``, ..., ``u`` uniform)
    sessions: dict[str, np.ndarray]  # one row per customer-month from sign-up, without card-page visits
    bnpl_plans: dict[str, np.ndarray]
    bnpl_monthly: dict[str, np.ndarray] | None
    profile_changes: dict[str, np.ndarray] | None
    score_inputs: dict[str, np.ndarray]  # (n, months) monthly counts the score reads, except the orders'
    score: np.ndarray  # (n, months) platform credit score at each month end, -1 before sign-up
    live: np.ndarray  # (n, months) bool: signed up by the end of the month


def _festival(params: SimulateParams, M: int) -> np.ndarray:
    return np.array(
        [FESTIVAL_DISCOUNT.get(int(x), 0.0) for x in ((np.arange(M) + params.start_month.month - 1) % 12 + 1)]
    )


def _live_share(pop: Population, starts: np.ndarray, lengths: np.ndarray, M: int) -> np.ndarray:
    """(n, M) share of each month after the sign-up day (1 after the sign-up month, 0 before it)."""
    signup = pop.columns["signup_date"].astype(np.int64)[:, None]
    first, end = starts[None, :M].astype(np.int64), (starts[None, :M] + lengths[None, :M]).astype(np.int64)
    return np.clip((end - np.maximum(signup, first)) / lengths[None, :M], 0.0, 1.0)


def simulate_platform(pop: Population, params: SimulateParams, shard: int, shocked: np.ndarray) -> Platform:
    """Orders, sessions, BNPL, profile changes and platform scores of one shard (``shocked``: (n, M) bool
    income-shock path)."""
    seed, M = params.seed, params.size.months
    T, cols, n = pop.traits, pop.columns, pop.n
    cid = cols["customer_id"]
    starts, lengths = month_starts(params.start_month, M), month_lengths(params.start_month, M)
    seas = season(params.start_month, M)
    fest = _festival(params, M)
    share = _live_share(pop, starts, lengths, M)
    live = share > 0
    z = shocked.astype(np.float64)

    # ---------------- orders ------------------------------------------------------------------------------
    rng = rng_for(seed, Stream.ECOMMERCE, shard)
    lam = np.exp(np.log(1.4) + 0.45 * T.engagement + 0.15 * T.capacity_z - 0.1)
    counts = rng.poisson(lam[:, None] * seas[None, :] ** 1.3 * share * np.where(shocked, 0.85, 1.0))
    flat = counts.ravel()
    cell = np.repeat(np.arange(n * M), flat)
    ci, mi = np.divmod(cell, M)
    lo = np.maximum(cols["signup_date"][ci].astype(np.int64) - starts[mi], 0)
    date = starts[mi] + lo + np.floor(rng.random(len(ci)) * (lengths[mi] - lo)).astype(np.int64)
    cat, amount, disc_share, returned, late_night = _order_draws(rng, T, ci, fest[mi], z[ci, mi])
    cancelled = rng.random(len(ci)) < expit(
        -3.3 + 0.35 * T.income_volatility[ci] + 0.25 * T.risk[ci] + 1.0 * z[ci, mi]
    )
    returned &= ~cancelled
    u = rng.random(len(ci))
    paid = np.where(T.bnpl_user[ci] & (u > 0.7) & ~cancelled, 1, 0)
    orders = {
        "ci": ci,
        "mi": mi,
        "date": date.astype(np.int32),
        "cat": cat,
        "amount": amount,
        "discount": np.round(amount * disc_share).astype(np.int64),
        "returned": returned,
        "cancelled": cancelled,
        "paid": paid,
        "late_night": late_night,
        "u": u,
    }

    # ---------------- sessions ----------------------------------------------------------------------------
    rs = rng_for(seed, Stream.SESSIONS, shard)
    sz = seas[None, :] ** 0.5 * share
    app = rs.poisson(np.exp(1.9 + 0.6 * T.engagement)[:, None] * sz)
    web = rs.poisson(np.exp(0.2 + 0.3 * T.engagement)[:, None] * sz)
    mini = rs.poisson(np.exp(0.9 + 0.4 * T.engagement + 0.3 * T.reward_sensitivity)[:, None] * sz)
    clicks = rs.poisson(6.0 * (app + web + mini) + 0.5 * live)
    # visits to the credit and loan pages (a sign of credit need: borrowing factor, risk, a shock under way)
    credit_rate = np.exp(-1.4 + 0.55 * T.borrow + 0.25 * T.risk + 0.3 * T.engagement)[:, None]
    credit_visits = rs.poisson(credit_rate * np.exp(1.3 * z) * sz)
    price_rate = np.exp(0.2 + 0.5 * T.reward_sensitivity - 0.2 * T.capacity_z + 0.3 * T.engagement)[:, None]
    price_compare = rs.poisson(price_rate * np.exp(0.35 * z) * sz)
    rows = np.flatnonzero(live.ravel())
    sessions = {
        "customer_id": np.repeat(cid, M)[rows],
        "month": np.tile(starts[:M], n)[rows],
        "app_sessions": app.ravel()[rows].astype(np.int32),
        "web_sessions": web.ravel()[rows].astype(np.int32),
        "mini_program_sessions": mini.ravel()[rows].astype(np.int32),
        "clicks": clicks.ravel()[rows].astype(np.int32),
        "credit_page_visits": credit_visits.ravel()[rows].astype(np.int32),
        "price_compare_sessions": price_compare.ravel()[rows].astype(np.int32),
    }

    # ---------------- BNPL --------------------------------------------------------------------------------
    rb = rng_for(seed, Stream.BNPL, shard)
    b = np.flatnonzero(paid == 1)
    k = INSTALMENTS[rb.choice(4, size=len(b), p=[0.3, 0.3, 0.25, 0.15])]
    principal = amount[b] - orders["discount"][b]
    plans = {
        "plan_id": cid[ci[b]] * 100_000 + np.arange(len(b)) % 100_000,  # replaced by the order id later
        "customer_id": cid[ci[b]],
        "order_pos": b,
        "start_date": date[b].astype(np.int32),
        "instalments": k.astype(np.int8),
        "principal_fen": principal,
    }
    due = _bnpl_schedule(ci[b], mi[b], k, principal, n, M)
    bnpl_monthly, arrears_m, late_m, overdue_m = _bnpl_repayments(rb, T, cid, due, z, starts, lengths, params)

    # ---------------- profile changes -----------------------------------------------------------------------
    rp = rng_for(seed, Stream.PROFILE, shard)
    age = cols["age"].astype(np.float64)
    change_rate = np.exp(-4.2 + 0.35 * T.risk + 0.3 * T.income_volatility - 0.015 * (age - 30))[:, None]
    n_changes = rp.poisson(change_rate * np.exp(0.9 * z) * share)
    pc_cell = np.repeat(np.arange(n * M), n_changes.ravel())
    pci, pmi = np.divmod(pc_cell, M)
    plo = np.maximum(cols["signup_date"][pci].astype(np.int64) - starts[pmi], 0)
    pdate = starts[pmi] + plo + np.floor(rp.random(len(pci)) * (lengths[pmi] - plo)).astype(np.int64)
    order = np.lexsort((pdate, pci))
    profile = (
        {
            "customer_id": cid[pci][order],
            "change_date": pdate[order].astype(np.int32),
            "kind": PROFILE_CHANGE_KINDS[(rp.random(len(pci)) < 0.4).astype(int)][order],
        }
        if len(pci)
        else None
    )

    # ---------------- the platform's credit score (of the months before any card exists, final) --------------
    inputs = {
        "live": live,
        "signup_month": pop.signup_month,
        "bnpl_due": due > 0,
        "bnpl_late": late_m,
        "bnpl_arrears": arrears_m,
        "bnpl_overdue_days": overdue_m,
        "profile_changes": n_changes,
        "credit_page_visits": credit_visits,
        "paid_member": cols["paid_member"],
    }
    score = platform_score(**inputs, **order_counts(ci, mi, cat, cancelled, late_night, n, M))
    return Platform(orders, sessions, plans, bnpl_monthly, profile, inputs, score, live)


def order_counts(ci, mi, cat, cancelled, late_night, n: int, M: int) -> dict[str, np.ndarray]:
    """(n, M) monthly counts of orders, cash-like orders, cancelled and late-night orders."""
    cell = ci * M + mi

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(cell[mask], minlength=n * M).reshape(n, M)

    return {
        "orders": count(np.ones(len(ci), bool)),
        "cash_like": count(cat >= len(REGULAR)),
        "cancelled": count(cancelled),
        "late_night": count(late_night),
    }


def _bnpl_schedule(ci, mi, k, principal, n: int, M: int) -> np.ndarray:
    """(n, M) BNPL amounts falling due per customer-month: equal instalments from the month after the purchase,
    the remainder on the last one."""
    H = M + 13
    due = np.zeros(n * H, dtype=np.int64)
    for kk in INSTALMENTS:
        sel = k == kk
        if not sel.any():
            continue
        part = principal[sel] // kk
        last = principal[sel] - part * (kk - 1)
        base = ci[sel] * H + mi[sel]
        for j in range(1, kk + 1):
            np.add.at(due, base + j, last if j == kk else part)
    return due.reshape(n, H)[:, :M]


def _bnpl_repayments(rb, T, cid, due, z, starts, lengths, params: SimulateParams):
    """Monthly BNPL repayments with day resolution. An instalment month without an incident pays everything
    owed (arrears included) on time; an incident (probability rising with risk, income volatility, the BNPL
    load relative to spending capacity and sharply during an income shock, x macro stress) is a late payment
    (paid in full 1-20 days after the due date: 55 %), a partial payment (20 %) or a miss (25 %). Unpaid
    amounts carry over as arrears; ``overdue_days`` at the month end counts from the due date of the oldest
    unpaid instalment. Returns the table and (n, M) arrays: arrears at month end, a late payment in the month,
    overdue days at month end."""
    n, M = due.shape
    mac = macro(M, params.shock_month, params.shock_size)
    load = np.minimum(due / np.maximum(T.spend_capacity_fen, 1)[:, None], 2.0)
    base = BNPL_BASE_INCIDENT + 0.9 * T.risk + 0.5 * T.income_volatility
    arrears = np.zeros(n, np.int64)
    overdue = np.zeros(n, np.int64)
    arrears_m = np.zeros((n, M), bool)
    late_m = np.zeros((n, M), bool)
    overdue_m = np.zeros((n, M), np.int32)
    parts = []
    for m in range(M):
        idx = np.flatnonzero((due[:, m] > 0) | (arrears > 0))
        if len(idx) == 0:
            continue
        p_inc = np.minimum(
            expit(base[idx] + 0.6 * load[idx, m] + 1.8 * z[idx, m]) * mac[m] * (1 + 1.5 * (arrears[idx] > 0)),
            0.95,
        )
        u = rb.random(len(idx))
        incident = u < p_inc
        kind = rb.random(len(idx))
        late = incident & (kind < 0.55)
        partial = incident & (kind >= 0.55) & (kind < 0.75)
        owed = due[idx, m] + arrears[idx]
        frac = rb.uniform(0.3, 0.7, len(idx))
        paid = np.where(~incident | late, owed, np.where(partial, np.floor(owed * frac), 0)).astype(np.int64)
        days_late = np.where(late, rb.integers(1, 21, len(idx)), 0)
        was = arrears[idx]
        arrears[idx] = owed - paid
        # overdue days at month end: from the 10th of the month for a new arrear, +month length for an old one
        month_end_days = lengths[m] - BNPL_DUE_DAY + 1
        overdue[idx] = np.where(
            arrears[idx] > 0, np.where(was > 0, overdue[idx] + lengths[m], month_end_days), 0
        )
        overdue[idx] = np.minimum(overdue[idx], 720)
        arrears_m[idx, m] = arrears[idx] > 0
        late_m[idx, m] = late
        overdue_m[idx, m] = overdue[idx]
        parts.append(
            {
                "customer_id": cid[idx],
                "month": np.full(len(idx), starts[m]),
                "due_fen": due[idx, m],
                "paid_fen": paid,
                "days_late": days_late.astype(np.int32),
                "overdue_days": overdue[idx].astype(np.int32),
            }
        )
    table = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]} if parts else None
    return table, arrears_m, late_m, overdue_m


def platform_score(
    *,
    live: np.ndarray,
    signup_month: np.ndarray,
    bnpl_due: np.ndarray,
    bnpl_late: np.ndarray,
    bnpl_arrears: np.ndarray,
    bnpl_overdue_days: np.ndarray,
    profile_changes: np.ndarray,
    credit_page_visits: np.ndarray,
    paid_member: np.ndarray,
    orders: np.ndarray,
    cash_like: np.ndarray,
    cancelled: np.ndarray,
    late_night: np.ndarray,
) -> np.ndarray:
    """The platform's credit score at each month end ((n, M) int; -1 before sign-up): SCORE_RULE's points over
    exponentially weighted (SCORE_DECAY a month) counts of the customer's own BNPL repayment history, profile
    changes, credit-page visits and order mix (cash-like, cancelled and late-night shares of the orders), plus
    tenure and paid membership; clipped to 350-950. Every input is a raw observable (``orders`` and the order
    mix count every order in the raw table, card-paid ones included), so anyone holding the raw tables can
    recompute it."""
    n, M = live.shape
    r = SCORE_RULE
    keys = ("due", "late", "arrears", "changes", "visits", "orders", "cash", "cancel", "night")
    ew = {k: np.zeros(n) for k in keys}
    out = np.full((n, M), -1, np.int32)
    for m in range(M):
        for k, x in (
            ("due", bnpl_due[:, m]),
            ("late", bnpl_late[:, m]),
            ("arrears", bnpl_arrears[:, m]),
            ("changes", profile_changes[:, m]),
            ("visits", credit_page_visits[:, m]),
            ("orders", orders[:, m]),
            ("cash", cash_like[:, m]),
            ("cancel", cancelled[:, m]),
            ("night", late_night[:, m]),
        ):
            ew[k] = SCORE_DECAY * ew[k] + x
        n_ord = np.maximum(ew["orders"], 1.0)
        worst = bnpl_overdue_days[:, max(0, m - 11) : m + 1].max(axis=1)
        tenure = np.clip(m - signup_month + 1, 0, SCORE_TENURE_CAP)
        s = (
            r["base"]
            + r["per_tenure_month"] * tenure
            + r["per_bnpl_month"] * np.minimum(ew["due"], 10.0)
            + r["per_bnpl_late"] * ew["late"]
            + r["per_bnpl_arrears"] * ew["arrears"]
            + r["per_overdue_day"] * np.minimum(worst, 120)
            + r["per_profile_change"] * ew["changes"]
            + r["per_credit_page_visit"] * np.minimum(ew["visits"], 20.0)
            + r["cash_like_share"] * ew["cash"] / n_ord
            + r["cancelled_share"] * ew["cancel"] / n_ord
            + r["late_night_share"] * ew["night"] / n_ord
            + r["paid_member"] * paid_member
        )
        out[:, m] = np.where(live[:, m], np.clip(np.round(s), 350, 950), -1)
    return out


def finish_platform(
    pf: Platform,
    pop: Population,
    params: SimulateParams,
    shard: int,
    shocked: np.ndarray,
    platform_spend: np.ndarray,
    activation_day: np.ndarray,
    card_state: np.ndarray,
) -> dict[str, dict[str, np.ndarray] | None]:
    """Raw tables ``orders``, ``sessions_monthly``, ``bnpl_plans``, ``bnpl_monthly``, ``profile_changes`` and
    ``platform_scores`` once the cards are known.

    ``platform_spend`` (n, months): each statement's ``purchases_platform``; the card-paid orders of a
    customer-month are drawn to sum to it exactly (:func:`card_orders`) and replace CARD_ORDER_SHARE of that
    month's other orders. ``card_state`` (n, months): 0 no open card, 1 open, 2 open but silent, 3 in distress;
    visits to the card's page in the app happen only with an open card, less often when it is silent (noisily:
    cardholders differ in how much they use the page, some never do)."""
    seed, M = params.seed, params.size.months
    T, cols, n = pop.traits, pop.columns, pop.n
    cid = cols["customer_id"]
    starts, lengths = month_starts(params.start_month, M), month_lengths(params.start_month, M)
    fest = _festival(params, M)
    o = pf.orders
    ci, mi = o["ci"], o["mi"]
    card_month = (platform_spend[ci, mi] > 0) & (o["date"] >= activation_day[ci])
    keep = ~(card_month & (o["u"] < CARD_ORDER_SHARE) & (o["paid"] == 0))
    names = ("ci", "mi", "date", "cat", "amount", "discount", "returned", "cancelled", "paid", "late_night")
    shop = [o[k][keep] for k in names]
    bnpl_pos = np.cumsum(keep) - 1  # new position of each kept shop order
    card = card_orders(
        rng_for(seed, Stream.CARD_ORDERS, shard),
        T,
        platform_spend,
        activation_day,
        starts,
        lengths,
        fest,
        shocked.astype(np.float64),
    )
    merged = [np.concatenate([a, b]) for a, b in zip(shop, card, strict=True)]
    ci, mi, date, cat, amount, discount, returned, cancelled, paid, late_night = merged
    origin = np.concatenate([bnpl_pos[keep], np.full(len(card[0]), -1)])  # shop position, -1 for card orders
    total = len(ci)
    order = np.lexsort((date, ci))
    ci, mi, date, cat, amount, discount, returned, cancelled, paid, late_night, origin = (
        x[order] for x in (ci, mi, date, cat, amount, discount, returned, cancelled, paid, late_night, origin)
    )
    first = np.concatenate([[0], np.cumsum(np.bincount(ci, minlength=n))[:-1]])
    seq = np.arange(total) - first[ci]
    order_id = cid[ci] * 100_000 + seq + 1
    orders = {
        "order_id": order_id,
        "customer_id": cid[ci],
        "order_date": date.astype(np.int32),
        "category": CATEGORIES[cat],
        "amount_fen": amount,
        "discount_fen": discount,
        "returned": returned,
        "cancelled": cancelled,
        "paid_with": PAID_WITH[paid],
        "late_night": late_night,
    }
    # BNPL plans point at their order's final id (BNPL orders are never replaced by card orders)
    id_of_kept = np.full(int(keep.sum()), -1, np.int64)
    shop_rows = origin >= 0
    id_of_kept[origin[shop_rows]] = order_id[shop_rows]
    plans = dict(pf.bnpl_plans)
    plan_order = id_of_kept[bnpl_pos[plans.pop("order_pos")]]
    plans["plan_id"], plans["order_id"] = plan_order, plan_order

    # card-page visits: only while a card is open; heterogeneous, fewer when silent (never zero by design)
    rs = rng_for(seed, Stream.CARD_PAGE, shard)
    sz = season(params.start_month, M)[None, :] ** 0.5
    visit_rate = (np.exp(1.7 + 0.4 * T.engagement) * T.visit_propensity)[:, None] * sz
    visits = rs.poisson(
        visit_rate * np.select([card_state == 2, card_state > 0], [CARD_VISITS_SILENT, 1.0], 0.0)
    )
    rows = np.flatnonzero(pf.live.ravel())
    sessions = dict(pf.sessions)
    sessions["card_page_visits"] = visits.ravel()[rows].astype(np.int32)
    # the score over the final order history: identical to pf.score before each customer's first card month
    # (no order is replaced before the card exists), which is what the bank read at the application
    score = platform_score(**pf.score_inputs, **order_counts(ci, mi, cat, cancelled, late_night, n, M))
    scores = {
        "customer_id": sessions["customer_id"],
        "month": sessions["month"],
        "platform_credit_score": score.ravel()[rows].astype(np.int16),
    }
    return {
        "orders": orders,
        "sessions_monthly": sessions,
        "bnpl_plans": plans,
        "bnpl_monthly": pf.bnpl_monthly,
        "profile_changes": pf.profile_changes,
        "platform_scores": scores,
    }


def _order_draws(rng: np.random.Generator, T, ci: np.ndarray, fest: np.ndarray, z: np.ndarray):
    """Category, log-normal list price (median ~3 % of monthly capacity x the category's price level, lower
    during an income shock), discount share (larger in festival months), return and late-night flags of the
    orders of customers ``ci``; ``fest`` is each order's festival discount, ``z`` 1.0 during an income shock.
    Cash-like goods take a share CASH_LIKE_BASE x exp(0.4 risk + 0.4 borrowing + 1.4 shock - 0.2) of the orders
    (capped at 0.6)."""
    k = len(ci)
    p_cash = np.minimum(CASH_LIKE_BASE * np.exp(0.4 * T.risk[ci] + 0.4 * T.borrow[ci] + 1.4 * z - 0.2), 0.6)
    is_cash = rng.random(k) < p_cash
    regular = rng.choice(len(REGULAR), size=k, p=REGULAR_WEIGHTS)
    cash = len(REGULAR) + rng.choice(len(CASH_LIKE), size=k, p=CASH_LIKE_WEIGHTS)
    cat = np.where(is_cash, cash, regular)
    amount = np.round(
        0.03
        * T.spend_capacity_fen[ci]
        * CATEGORY_PRICE[cat]
        * np.where(z > 0, SHOCK_SPEND, 1.0)
        * np.exp(0.8 * rng.standard_normal(k))
    )
    amount = np.maximum(amount, 100).astype(np.int64)
    disc_share = np.clip(0.03 + fest + 0.05 * rng.random(k) + 0.02 * T.reward_sensitivity[ci], 0, 0.5)
    returned = rng.random(k) < expit(-2.9 + 0.3 * T.reward_sensitivity[ci] + 0.4 * (cat == 0))
    late_night = rng.random(k) < expit(
        -2.3 + 0.4 * T.risk[ci] + 0.3 * T.income_volatility[ci] - 0.2 * T.capacity_z[ci] + 0.5 * z
    )
    return cat, amount, disc_share, returned, late_night


def card_orders(rng, T, platform_spend, activation_day, starts, lengths, fest, z):
    """The card-paid orders behind each statement's ``purchases_platform`` (fen), reconciled exactly.

    For a customer-month with platform spend S > 0: the number of orders is 1 + Poisson(S / typical order - 1)
    (at most S, so each order nets at least 1 fen), S is split over them by log-normal weights (largest
    remainder, integer fen), each order's net amount (amount - discount) is its share, and the list price is
    grossed up by the same discount rule as the other orders. Days are uniform over the month, from the
    activation day on in the activation month. Card orders are never cancelled. Returns the columns in
    :func:`finish_platform`'s order."""
    ci, mi = np.nonzero(platform_spend)
    S = platform_spend[ci, mi]
    typical = (
        0.03
        * T.spend_capacity_fen[ci]
        * float(CATEGORY_PRICE[: len(REGULAR)] @ REGULAR_WEIGHTS)
        * np.exp(0.32)
    )
    k = np.minimum(1 + rng.poisson(np.maximum(S / typical - 1.0, 0.0)), S)
    row = np.repeat(np.arange(len(S)), k)
    cat, _, disc_share, returned, late_night = _order_draws(
        rng, T, ci[row], fest[mi[row]], z[ci[row], mi[row]]
    )
    w = np.exp(0.8 * rng.standard_normal(len(row)))
    wsum = np.bincount(row, weights=w)
    spare = (S - k).astype(np.float64)  # after 1 fen per order
    exact = spare[row] * w / wsum[row]
    net = np.floor(exact).astype(np.int64)
    left = (S - k) - np.bincount(row, weights=net, minlength=len(S)).astype(np.int64)
    # largest remainder: the `left` orders of each statement with the largest fractional parts get 1 fen more
    frac_order = np.lexsort((-(exact - net), row))
    first = np.concatenate([[0], np.cumsum(k)[:-1]])
    rank = np.empty(len(row), np.int64)
    rank[frac_order] = np.arange(len(row)) - first[row[frac_order]]
    net = net + 1 + (rank < left[row])
    amount = np.round(net / (1.0 - disc_share)).astype(np.int64)
    lo = np.clip(activation_day[ci] - starts[mi], 0, lengths[mi] - 1)[row]
    date = starts[mi[row]] + lo + np.floor(rng.random(len(row)) * (lengths[mi[row]] - lo)).astype(np.int32)
    paid = np.full(len(row), 2)
    cancelled = np.zeros(len(row), bool)
    return ci[row], mi[row], date, cat, amount, amount - net, returned, cancelled, paid, late_night
