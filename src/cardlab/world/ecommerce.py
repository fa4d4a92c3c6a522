"""Platform e-commerce of one shard: orders (with festival seasonality), app/web sessions, and BNPL plans
with their monthly repayments. Money in fen, months 0-based from the world's start month.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from cardlab.config import SimulateParams
from cardlab.world.calendar import macro, month_lengths, month_starts, season
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
INSTALMENTS = np.array([1, 3, 6, 12])
BNPL_BASE_MISS = -4.3  # logit of the monthly BNPL miss probability at risk 0
FESTIVAL_DISCOUNT = {6: 0.12, 11: 0.15, 12: 0.10}  # extra discount share in festival months


def simulate_ecommerce(
    pop: Population, params: SimulateParams, shard: int, card_usable: np.ndarray, activation_day: np.ndarray
):
    """Return raw tables ``orders``, ``sessions_monthly``, ``bnpl_plans``, ``bnpl_monthly`` (dicts of arrays)."""
    seed, M = params.seed, params.size.months
    rng = rng_for(seed, Stream.ECOMMERCE, shard)
    T, cols, n = pop.traits, pop.columns, pop.n
    cid = cols["customer_id"]
    starts, lengths = month_starts(params.start_month, M), month_lengths(params.start_month, M)
    seas = season(params.start_month, M)
    cap_z = T.capacity_z

    # ---------------- orders ------------------------------------------------------------------------------
    lam = np.exp(np.log(1.4) + 0.45 * T.engagement + 0.15 * cap_z - 0.1)
    counts = rng.poisson(lam[:, None] * seas[None, :] ** 1.3)  # (n, M)
    flat = counts.ravel()
    total = int(flat.sum())
    cell = np.repeat(np.arange(n * M), flat)
    ci, mi = np.divmod(cell, M)
    day = np.floor(rng.random(total) * lengths[mi]).astype(np.int32)
    date = starts[mi] + day
    cat = rng.choice(len(CATEGORIES), size=total, p=CATEGORY_WEIGHTS)
    # log-normal amounts: median ~ 3 % of monthly capacity times the category price level
    amount = np.round(
        0.03 * T.spend_capacity_fen[ci] * CATEGORY_PRICE[cat] * np.exp(0.8 * rng.standard_normal(total))
    )
    amount = np.maximum(amount, 100).astype(np.int64)
    fest = np.array(
        [FESTIVAL_DISCOUNT.get(int(x), 0.0) for x in ((np.arange(M) + params.start_month.month - 1) % 12 + 1)]
    )
    disc_share = np.clip(0.03 + fest[mi] + 0.05 * rng.random(total) + 0.02 * T.reward_sensitivity[ci], 0, 0.5)
    discount = np.round(amount * disc_share).astype(np.int64)
    returned = rng.random(total) < expit(-2.9 + 0.3 * T.reward_sensitivity[ci] + 0.4 * (cat == 0))
    bnpl_user = expit(-1.0 + 0.6 * T.risk + 0.4 * T.reward_sensitivity + 0.3 * T.income_volatility)
    is_bnpl_user = rng.random(n) < bnpl_user
    u = rng.random(total)
    card_ok = card_usable[ci, mi] & (date >= activation_day[ci])  # never paid with a card before activation
    paid = np.where(card_ok & (u < 0.45), 2, np.where(is_bnpl_user[ci] & (u > 0.7), 1, 0))
    late_night = rng.random(total) < expit(
        -2.2 + 0.5 * T.risk[ci] + 0.3 * T.income_volatility[ci] - 0.2 * cap_z[ci]
    )
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
    sessions = {
        "customer_id": np.repeat(cid, M),
        "month": np.tile(starts[:M], n),
        "app_sessions": app.ravel().astype(np.int32),
        "web_sessions": web.ravel().astype(np.int32),
        "mini_program_sessions": mini.ravel().astype(np.int32),
        "clicks": clicks.ravel().astype(np.int32),
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
    arrears = np.zeros(n, np.int64)
    overdue = np.zeros(n, np.int64)
    parts = []
    for m in range(M):
        idx = np.flatnonzero((due[:, m] > 0) | (arrears > 0))
        if len(idx) == 0:
            continue
        miss = rb.random(len(idx)) < np.minimum(p_miss[idx] * mac[m] * (1 + 2.0 * (overdue[idx] > 0)), 0.95)
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
