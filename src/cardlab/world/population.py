"""Platform users: demographics, sign-up month, latent traits, and the observable profile (raw ``customers``).

Observables are noisy measurements of the traits; ``signal_to_noise`` scales the loading, so at 1.0 a
measurement of a unit-variance trait with loading 1 has correlation 1/sqrt(2) with it. ``device_price_band`` is
a proxy (driven by the observable purchase power, not by any trait) and ``decoy_k`` columns are pure noise.

The platform grows: EXISTING_SHARE of the customers signed up before the world's first month (tenure log-normal,
longer for engaged users); the rest join during the world, more in shopping-festival months and a little more
each month (JOIN_GROWTH), so invitations keep flowing instead of exhausting a closed population. Profile columns
describe a customer as of sign-up (or the world's start for earlier users); nothing in them is updated later.

The bureau's record (``bureau_score``, the customer's other cards' revolving balance and utilisation) is the
file pulled when the customer joined the card programme's data sharing: a noisy reading of the risk and
borrowing factors, null for thin-file customers. The platform's own credit score is not a profile column: it is
recomputed every month from the customer's observable history (``platform_scores``, ecommerce.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from scipy.special import expit, ndtr

from cardlab.world.calendar import EPOCH, add_months, season
from cardlab.world.traits import Traits, add_interactions, draw_traits

PROVINCES = (
    "guangdong",
    "shandong",
    "henan",
    "jiangsu",
    "sichuan",
    "hebei",
    "hubei",
    "zhejiang",
    "hunan",
    "anhui",
    "yunnan",
    "guangxi",
    "fujian",
    "jiangxi",
    "liaoning",
    "shaanxi",
    "shanghai",
    "beijing",
    "chongqing",
    "other",
)
PROVINCE_WEIGHTS = np.array([9, 7, 7, 6, 6, 5, 4, 6, 4, 4, 3, 3, 3, 3, 3, 3, 3, 3, 3, 15], dtype=float)
TIER_WEIGHTS = np.array([0.07, 0.15, 0.22, 0.27, 0.29])  # lower tiers dominate the platform's users
OCCUPATIONS = ("salaried", "civil_servant", "self_employed", "gig_worker", "student", "freelancer")
EDUCATION = ("high_school", "associate", "bachelor", "master_plus")
CHANNELS = ("organic", "social_referral", "livestream", "search_ad", "offline_promoter")
BANKS = ("bank_a", "bank_b", "bank_c")
GENDERS = ("F", "M")
EXISTING_SHARE = 0.45  # customers who signed up before the world's first month
JOIN_GROWTH = 0.015  # monthly growth of the joining rate
BUREAU_LOADING = 1.4  # loading of the bureau score on the risk factor (times snr)


@dataclass
class Population:
    """One shard's customers: raw profile columns (numpy arrays / string arrays) and latent traits."""

    columns: dict[str, np.ndarray]
    traits: Traits
    signup_month: np.ndarray  # (n,) world month index of sign-up (negative: before the world's start)

    @property
    def n(self) -> int:
        return len(self.columns["customer_id"])


def measure(
    rng: np.random.Generator, z: np.ndarray, snr: float, loading: float | np.ndarray = 1.0
) -> np.ndarray:
    """Noisy standardised measurement of trait ``z``: (snr*loading*z + e) / sqrt((snr*loading)^2 + 1).
    ``loading`` may vary per customer (heteroscedastic measurement quality)."""
    a = snr * loading
    return (a * z + rng.standard_normal(len(z))) / np.sqrt(a * a + 1.0)


def _bands(x: np.ndarray, cuts: tuple[float, ...]) -> np.ndarray:
    return (np.searchsorted(np.array(cuts), x) + 1).astype(np.int8)


def join_weights(start: date, months: int) -> np.ndarray:
    """Share of the joiners who sign up in each world month: festival seasonality (sqrt of the spend factor)
    times a growth of JOIN_GROWTH a month, normalised."""
    w = np.sqrt(season(start, months)) * (1.0 + JOIN_GROWTH) ** np.arange(months)
    return w / w.sum()


def _signup_days(
    rng: np.random.Generator, n: int, m_eng: np.ndarray, start: date, months: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sign-up date (days since epoch) and sign-up month index (negative before the world's start)."""
    existing = rng.random(n) < EXISTING_SHARE
    tenure = np.clip(np.round(np.exp(2.6 + 0.35 * m_eng + 0.8 * rng.standard_normal(n))), 1, 180).astype(
        np.int64
    )
    join_month = rng.choice(months, size=n, p=join_weights(start, months))
    month = np.where(existing, -tenure, join_month)
    first = np.array([(add_months(start, int(k)) - EPOCH).days for k in range(-181, months + 1)])
    lengths = np.diff(first)
    pos = month + 181
    day = first[pos] + np.floor(rng.random(n) * lengths[pos]).astype(np.int64)
    return day.astype(np.int32), month


def draw_population(
    rng: np.random.Generator,
    rng_traits: np.random.Generator,
    first_id: int,
    n: int,
    start: date,
    months: int,
    snr: float,
    n_decoys: int,
) -> Population:
    """Draw ``n`` customers with ids ``first_id .. first_id + n - 1`` for a world of ``months`` months."""
    cid = np.arange(first_id, first_id + n, dtype=np.int64)
    city_tier = (rng.choice(5, size=n, p=TIER_WEIGHTS) + 1).astype(np.int8)
    age = np.clip(np.round(rng.gamma(6.0, 5.5, n) + 3), 18, 70).astype(np.int16)
    traits = draw_traits(rng_traits, city_tier, age)

    m_risk = measure(rng, traits.risk, snr, BUREAU_LOADING)
    m_cap = measure(rng, traits.capacity_z, snr, 1.2)
    m_vol = measure(rng, traits.income_volatility, snr, 0.8)
    m_eng = measure(rng, traits.engagement, snr, 1.0)
    m_rew = measure(rng, traits.reward_sensitivity, snr, 0.8)
    m_churn = measure(rng, traits.churn_propensity, snr, 0.6)

    signup, signup_month = _signup_days(rng, n, m_eng, start, months)
    thin = rng.random(n) < expit(-1.6 + 0.35 * (city_tier - 3) - 0.07 * (age - 30))
    bureau = np.clip(np.round(680 - 60 * m_risk), 350, 850).astype(np.float64)
    bureau[thin] = np.nan
    income_band = _bands(m_cap + 0.3 * (3 - city_tier) / 2, (-1.0, -0.3, 0.4, 1.1))
    occ_score = m_vol + 0.3 * rng.standard_normal(n)
    occupation = np.where(
        age < 23,
        4,
        np.select(
            [occ_score < -0.9, occ_score < 0.0, occ_score < 0.6, occ_score < 1.2], [1, 0, 2, 5], default=3
        ),
    )
    education = np.clip(np.round(1.3 + 0.8 * m_cap + 0.5 * rng.standard_normal(n)), 0, 3).astype(np.int8)
    membership = np.clip(np.round(2 + 0.9 * m_eng + 0.4 * m_cap + 0.5 * rng.standard_normal(n)), 0, 5).astype(
        np.int8
    )
    paid_member = rng.random(n) < expit(-1.2 + 0.8 * m_eng + 0.5 * m_rew - 0.4 * m_churn)
    purchase_power = np.clip(np.round(50 + 15 * m_cap + 5 * m_eng + 5 * rng.standard_normal(n)), 1, 100)
    channel = np.array(CHANNELS)[rng.choice(len(CHANNELS), size=n, p=[0.4, 0.2, 0.15, 0.15, 0.1])]
    bank = rng.choice(len(BANKS), size=n, p=[0.45, 0.35, 0.2])
    province = rng.choice(len(PROVINCES), size=n, p=PROVINCE_WEIGHTS / PROVINCE_WEIGHTS.sum())
    # proxy: correlated with spending capacity only through the observable purchase power, no causal path
    device_band = _bands((purchase_power - 50) / 17 + 0.6 * rng.standard_normal(n), (-1.0, -0.3, 0.4, 1.1))
    add_interactions(traits, thin, channel)

    cols: dict[str, np.ndarray] = {
        "customer_id": cid,
        "signup_date": signup,
        "age": age,
        "gender": np.array(GENDERS)[rng.integers(0, 2, n)],
        "province": np.array(PROVINCES)[province],
        "city_tier": city_tier,
        "income_band": income_band,
        "occupation": np.array(OCCUPATIONS)[occupation],
        "education": np.array(EDUCATION)[education],
        "membership_level": membership,
        "paid_member": paid_member,
        "purchase_power": purchase_power.astype(np.int16),
        "thin_file": thin,
        "bureau_score": bureau,
        "acquisition_channel": channel,
        "partner_bank": np.array(BANKS)[bank],
        "device_price_band": device_band,
    }
    for k in range(1, n_decoys + 1):
        cols[f"decoy_{k}"] = np.round(rng.standard_normal(n), 4)
    # the bureau's record of the customer's *other* credit cards (null without a bureau file): the revolving
    # balance carried there (part of a revolver's need, spread over other lenders; some transactors carry a
    # little too) and the utilisation of those cards (a noisy reading of the borrowing factor). What a bank
    # pulls from the bureau to set a line; neither is the latent need itself.
    share_elsewhere = rng.uniform(0.1, 1.0, n)
    small = (rng.random(n) < 0.5) * traits.spend_capacity_fen * 1.5 * np.exp(1.0 * rng.standard_normal(n))
    revolving = np.round(
        np.where(traits.revolver, traits.debt_need_fen * share_elsewhere, small)
        * np.exp(0.8 * rng.standard_normal(n) - 0.32)
    )
    cols["bureau_revolving_fen"] = np.where(thin, np.nan, revolving)
    util = np.round(ndtr(measure(rng, traits.borrow, snr, 0.9)), 3)
    cols["bureau_card_utilisation"] = np.where(thin, np.nan, util)
    return Population(columns=cols, traits=traits, signup_month=signup_month)
