"""Platform users: demographics, latent traits, and the observable profile (raw ``customers``).

Observables are noisy measurements of the traits; ``signal_to_noise`` scales the loading, so at 1.0 a
measurement of a unit-variance trait has correlation 1/sqrt(2) with it. ``device_price_band`` is a proxy
(driven by the observable purchase power, not by any trait) and ``decoy_k`` columns are pure noise.

``platform_credit_score`` is the platform's own credit read-out (BNPL and payment history, like the scores
Chinese e-commerce platforms compute for their users): ``650 - 60 * (risk + e / a)`` with
``a = snr * PLATFORM_SCORE_LOADING * sqrt(clip(tenure / PLATFORM_SCORE_MATURE_MONTHS, MIN_QUALITY**2, 1))``.
It is the most precise measurement of risk for users with a long platform history and mostly noise for
brand-new users (it is *not* re-standardised), so how much to trust it depends on the tenure: an
interaction a tree model can learn and an additive scorecard cannot. The bank's legacy rule does not use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from scipy.special import expit, ndtr

from cardlab.world.calendar import EPOCH
from cardlab.world.traits import Traits, draw_traits

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
PLATFORM_SCORE_LOADING = 10.0  # loading of the platform score on risk for a mature user (times snr)
PLATFORM_SCORE_MATURE_MONTHS = 24  # platform tenure at which the platform score reaches full precision
MIN_QUALITY = 0.05  # precision floor of the platform score (share of the mature loading)


@dataclass
class Population:
    """One shard's customers: raw profile columns (numpy arrays / string arrays) and latent traits."""

    columns: dict[str, np.ndarray]
    traits: Traits

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


def draw_population(
    rng: np.random.Generator,
    rng_traits: np.random.Generator,
    first_id: int,
    n: int,
    start: date,
    snr: float,
    n_decoys: int,
) -> Population:
    """Draw ``n`` customers with ids ``first_id .. first_id + n - 1``."""
    cid = np.arange(first_id, first_id + n, dtype=np.int64)
    city_tier = (rng.choice(5, size=n, p=TIER_WEIGHTS) + 1).astype(np.int8)
    age = np.clip(np.round(rng.gamma(6.0, 5.5, n) + 3), 18, 70).astype(np.int16)
    traits = draw_traits(rng_traits, city_tier, age)

    m_risk = measure(rng, traits.risk, snr, 1.2)
    m_cap = measure(rng, traits.capacity_z, snr, 1.2)
    m_vol = measure(rng, traits.income_volatility, snr, 0.8)
    m_eng = measure(rng, traits.engagement, snr, 1.2)
    m_rew = measure(rng, traits.reward_sensitivity, snr, 0.8)
    m_churn = measure(rng, traits.churn_propensity, snr, 0.6)

    tenure = np.clip(np.round(np.exp(2.6 + 0.35 * m_eng + 0.8 * rng.standard_normal(n))), 1, 180).astype(
        np.int16
    )
    start_day = (start - EPOCH).days
    signup = (start_day - tenure.astype(np.int32) * 30 - rng.integers(0, 30, n)).astype(np.int32)
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
    membership = np.clip(np.round(2 + 1.1 * m_eng + 0.5 * m_cap), 0, 5).astype(np.int8)
    paid_member = rng.random(n) < expit(-1.2 + 0.8 * m_eng + 0.5 * m_rew - 0.4 * m_churn)
    purchase_power = np.clip(np.round(50 + 15 * m_cap + 5 * m_eng + 5 * rng.standard_normal(n)), 1, 100)
    channel = rng.choice(len(CHANNELS), size=n, p=[0.4, 0.2, 0.15, 0.15, 0.1])
    bank = rng.choice(len(BANKS), size=n, p=[0.45, 0.35, 0.2])
    province = rng.choice(len(PROVINCES), size=n, p=PROVINCE_WEIGHTS / PROVINCE_WEIGHTS.sum())
    # proxy: correlated with spending capacity only through the observable purchase power, no causal path
    device_band = _bands((purchase_power - 50) / 17 + 0.6 * rng.standard_normal(n), (-1.0, -0.3, 0.4, 1.1))

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
        "platform_tenure_months": tenure,
        "membership_level": membership,
        "paid_member": paid_member,
        "purchase_power": purchase_power.astype(np.int16),
        "thin_file": thin,
        "bureau_score": bureau,
        "acquisition_channel": np.array(CHANNELS)[channel],
        "partner_bank": np.array(BANKS)[bank],
        "device_price_band": device_band,
    }
    for k in range(1, n_decoys + 1):
        cols[f"decoy_{k}"] = np.round(rng.standard_normal(n), 4)
    # drawn last so every other column is unchanged by its presence
    quality = np.sqrt(np.clip(tenure / PLATFORM_SCORE_MATURE_MONTHS, MIN_QUALITY**2, 1.0))
    a = snr * PLATFORM_SCORE_LOADING * quality
    m_plat = (
        traits.risk + rng.standard_normal(n) / a
    )  # not re-standardised: a new user's score is mostly noise
    cols["platform_credit_score"] = np.clip(np.round(650 - 60 * m_plat), 300, 900).astype(np.int16)
    # the bureau's record of the customer's *other* credit cards (null without a bureau file), drawn after
    # everything else: the revolving balance carried there (a revolver's need, log-normal noise 0.5/snr; 0 for
    # a transactor) and the utilisation of those cards (a noisy measurement of the borrowing factor behind the
    # revolver type and the marginal propensity to borrow). What a bank pulls from the bureau for line setting.
    sigma = 0.5 / snr
    revolving = np.round(traits.debt_need_fen * np.exp(sigma * rng.standard_normal(n) - sigma * sigma / 2))
    cols["bureau_revolving_fen"] = np.where(thin, np.nan, revolving)
    util = np.round(ndtr(measure(rng, traits.borrow_z, snr)), 3)
    cols["bureau_card_utilisation"] = np.where(thin, np.nan, util)
    return Population(columns=cols, traits=traits)
