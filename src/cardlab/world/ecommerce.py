"""Platform e-commerce of one shard: orders (with festival seasonality), app/web sessions, and BNPL plans
with their monthly repayments. Money in fen, months 0-based from the world's start month.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from cardlab.config import SimulateParams
from cardlab.world.calendar import macro, month_lengths, month_starts, season
from cardlab.world.card import CARD_DISTRESSED, CARD_SILENT
from cardlab.world.population import Population
from cardlab.world.streams import Stream, rng_for

CATEGORIES = np.array(
    [
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
    ]
)
CATEGORY_WEIGHTS = np.array([0.2, 0.1, 0.2, 0.1, 0.1, 0.06, 0.06, 0.08, 0.04, 0.06])
CATEGORY_PRICE = np.array([1.0, 3.5, 0.5, 0.9, 1.5, 1.0, 1.2, 0.4, 4.0, 0.8])  # relative price level
PAID_WITH = np.array(["wallet", "bnpl", "card"])
CARD_VISITS_SILENT = 0.03  # card-page visit rate of a silent cardholder relative to an active one
CARD_ORDER_SHARE = 0.45  # share of a month's platform orders paid by card when the card has platform spend
INSTALMENTS = np.array([1, 3, 6, 12])
BNPL_BASE_MISS = -4.3  # logit of the monthly BNPL miss probability at risk 0
FESTIVAL_DISCOUNT = {6: 0.12, 11: 0.15, 12: 0.10}  # extra discount share in festival months


def simulate_ecommerce(
    pop: Population,
    params: SimulateParams,
    shard: int,
    platform_spend: np.ndarray,
    activation_day: np.ndarray,
    card_state: np.ndarray,
):
    """Return raw tables ``orders``, ``sessions_monthly``, ``bnpl_plans``, ``bnpl_monthly`` (dicts of arrays).

    ``platform_spend`` (n, months): each statement's ``purchases_platform``; the card-paid orders of a
    customer-month are drawn to sum to it exactly (``card_orders``). ``card_state`` (n, months): 0 no open
    card, 1 open, 2 open but silent, 3 in distress; it drives the visits to the card's page in the app and
    the BNPL repayments of a cardholder in distress."""
    seed, M = params.seed, params.size.months
    rng = rng_for(seed, Stream.ECOMMERCE, shard)
    T, cols, n = pop.traits, pop.columns, pop.n
    cid = cols["customer_id"]
    starts, lengths = month_starts(params.start_month, M), month_lengths(params.start_month, M)
    seas = season(params.start_month, M)
    fest = np.array(
        [FESTIVAL_DISCOUNT.get(int(x), 0.0) for x in ((np.arange(M) + params.start_month.month - 1) % 12 + 1)]
    )

    # ---------------- orders ------------------------------------------------------------------------------
    lam = np.exp(np.log(1.4) + 0.45 * T.engagement + 0.15 * T.capacity_z - 0.1)
    counts = rng.poisson(lam[:, None] * seas[None, :] ** 1.3)  # (n, M)
    flat = counts.ravel()
    total = int(flat.sum())
    cell = np.repeat(np.arange(n * M), flat)
    ci, mi = np.divmod(cell, M)
    date = starts[mi] + np.floor(rng.random(total) * lengths[mi]).astype(np.int32)
    cat, amount, disc_share, returned, late_night = _order_draws(rng, T, ci, fest[mi])
    discount = np.round(amount * disc_share).astype(np.int64)
    is_bnpl_user = rng.random(n) < expit(
        -1.0 + 0.6 * T.risk + 0.4 * T.reward_sensitivity + 0.3 * T.income_volatility
    )
    u = rng.random(total)
    # in a month with card spend on the platform, the card takes 45 % of the orders: those are replaced by the
    # card orders drawn from the statement (below), so that they add up to it
    card_month = (platform_spend[ci, mi] > 0) & (date >= activation_day[ci])
    keep = ~(card_month & (u < CARD_ORDER_SHARE))
    paid = np.where(is_bnpl_user[ci] & (u > 0.7), 1, 0)
    shop = [x[keep] for x in (ci, mi, date, cat, amount, discount, returned, paid, late_night)]
    card = card_orders(
        rng_for(seed, Stream.CARD_ORDERS, shard), T, platform_spend, activation_day, starts, lengths, fest
    )
    ci, mi, date, cat, amount, discount, returned, paid, late_night = (
        np.concatenate([a, b]) for a, b in zip(shop, card, strict=True)
    )
    total = len(ci)
    order = np.lexsort((date, ci))
    ci, mi, date, cat, amount, discount, returned, paid, late_night = (
        x[order] for x in (ci, mi, date, cat, amount, discount, returned, paid, late_night)
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
        "paid_with": PAID_WITH[paid],
        "late_night": late_night,
    }

    # ---------------- sessions ----------------------------------------------------------------------------
    rs = rng_for(seed, Stream.SESSIONS, shard)
    sz = seas[None, :] ** 0.5
    app = rs.poisson(np.exp(1.9 + 0.6 * T.engagement)[:, None] * sz)
    web = rs.poisson(np.exp(0.2 + 0.3 * T.engagement)[:, None] * sz)
    mini = rs.poisson(np.exp(0.9 + 0.4 * T.engagement + 0.3 * T.reward_sensitivity)[:, None] * sz)
    clicks = rs.poisson(6.0 * (app + web + mini) + 0.5)
    # visits to the card's page in the app (bill, points): only while a card is open; a silent cardholder
    # (CARD_SILENT) has stopped caring about the card and visits at CARD_VISITS_SILENT of the rate
    visit_rate = np.exp(2.0 + 0.4 * T.engagement)[:, None] * sz
    visits = rs.poisson(
        visit_rate * np.select([card_state == CARD_SILENT, card_state > 0], [CARD_VISITS_SILENT, 1.0], 0.0)
    )
    sessions = {
        "customer_id": np.repeat(cid, M),
        "month": np.tile(starts[:M], n),
        "app_sessions": app.ravel().astype(np.int32),
        "web_sessions": web.ravel().astype(np.int32),
        "mini_program_sessions": mini.ravel().astype(np.int32),
        "clicks": clicks.ravel().astype(np.int32),
        "card_page_visits": visits.ravel().astype(np.int32),
    }

    # ---------------- BNPL --------------------------------------------------------------------------------
    rb = rng_for(seed, Stream.BNPL, shard)
    b = np.flatnonzero(paid == 1)
    k = INSTALMENTS[rb.choice(4, size=len(b), p=[0.3, 0.3, 0.25, 0.15])]
    principal = amount[b] - discount[b]
    plans = {
        "plan_id": order_id[b],
        "customer_id": cid[ci[b]],
        "order_id": order_id[b],
        "start_date": date[b].astype(np.int32),
        "instalments": k.astype(np.int8),
        "principal_fen": principal,
    }
    H = M + 13
    due = np.zeros(n * H, dtype=np.int64)
    for kk in INSTALMENTS:
        sel = k == kk
        if not sel.any():
            continue
        part = principal[sel] // kk
        last = principal[sel] - part * (kk - 1)
        base = ci[b][sel] * H + mi[b][sel]
        for j in range(1, kk + 1):
            np.add.at(due, base + j, last if j == kk else part)
    due = due.reshape(n, H)[:, :M]
    mac = macro(M, params.shock_month, params.shock_size)
    p_miss = expit(BNPL_BASE_MISS + 1.0 * T.risk + 0.4 * T.income_volatility)
    # a cardholder in distress (CARD_DISTRESSED, from the onset month on, also after the charge-off) stops
    # paying the platform too: BNPL instalments are missed with probability 0.95
    in_distress = np.maximum.accumulate(card_state == CARD_DISTRESSED, axis=1)
    arrears = np.zeros(n, np.int64)
    overdue = np.zeros(n, np.int64)
    parts = []
    for m in range(M):
        idx = np.flatnonzero((due[:, m] > 0) | (arrears > 0))
        if len(idx) == 0:
            continue
        miss = rb.random(len(idx)) < np.where(
            in_distress[idx, m], 0.95, np.minimum(p_miss[idx] * mac[m] * (1 + 2.0 * (overdue[idx] > 0)), 0.95)
        )
        owed = due[idx, m] + arrears[idx]
        paid_m = np.where(miss, 0, owed)
        arrears[idx] = owed - paid_m
        overdue[idx] = np.where(miss, np.minimum(overdue[idx] + 30, 360), 0)
        parts.append(
            {
                "customer_id": cid[idx],
                "month": np.full(len(idx), starts[m]),
                "due_fen": due[idx, m],
                "paid_fen": paid_m,
                "overdue_days": overdue[idx].astype(np.int32),
            }
        )
    bnpl_monthly = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]} if parts else None
    return {"orders": orders, "sessions_monthly": sessions, "bnpl_plans": plans, "bnpl_monthly": bnpl_monthly}


def _order_draws(rng: np.random.Generator, T, ci: np.ndarray, fest: np.ndarray):
    """Category, log-normal list price (median ~3 % of monthly capacity x the category's price level),
    discount share (larger in festival months), return and late-night flags of the orders of customers
    ``ci``; ``fest`` is each order's festival discount."""
    k = len(ci)
    cat = rng.choice(len(CATEGORIES), size=k, p=CATEGORY_WEIGHTS)
    amount = np.round(
        0.03 * T.spend_capacity_fen[ci] * CATEGORY_PRICE[cat] * np.exp(0.8 * rng.standard_normal(k))
    )
    amount = np.maximum(amount, 100).astype(np.int64)
    disc_share = np.clip(0.03 + fest + 0.05 * rng.random(k) + 0.02 * T.reward_sensitivity[ci], 0, 0.5)
    returned = rng.random(k) < expit(-2.9 + 0.3 * T.reward_sensitivity[ci] + 0.4 * (cat == 0))
    late_night = rng.random(k) < expit(
        -2.2 + 0.5 * T.risk[ci] + 0.3 * T.income_volatility[ci] - 0.2 * T.capacity_z[ci]
    )
    return cat, amount, disc_share, returned, late_night


def card_orders(rng, T, platform_spend, activation_day, starts, lengths, fest):
    """The card-paid orders behind each statement's ``purchases_platform`` (fen), reconciled exactly.

    For a customer-month with platform spend S > 0: the number of orders is 1 + Poisson(S / typical order - 1)
    (at most S, so each order nets at least 1 fen), S is split over them by log-normal weights (largest
    remainder, integer fen), each order's net amount (amount - discount) is its share, and the list price is
    grossed up by the same discount rule as the other orders. Days are uniform over the month, from the
    activation day on in the activation month. Returns the columns in ``simulate_ecommerce``'s order."""
    ci, mi = np.nonzero(platform_spend)
    S = platform_spend[ci, mi]
    typical = 0.03 * T.spend_capacity_fen[ci] * float(CATEGORY_PRICE @ CATEGORY_WEIGHTS) * np.exp(0.32)
    k = np.minimum(1 + rng.poisson(np.maximum(S / typical - 1.0, 0.0)), S)
    row = np.repeat(np.arange(len(S)), k)
    cat, _, disc_share, returned, late_night = _order_draws(rng, T, ci[row], fest[mi[row]])
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
    return ci[row], mi[row], date, cat, amount, amount - net, returned, paid, late_night
