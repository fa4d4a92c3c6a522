"""The bank's and the platform's legacy decision rules, and the randomised test cells around them.

All rules use only observable information (raw columns or the account's own statement history).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

# initial-line grid (fen); equals LimitParams.line_grid_yuan * 100 so the limit task shares the options
INITIAL_LINE_GRID_FEN = np.array([2_000, 5_000, 10_000, 20_000, 30_000, 50_000], dtype=np.int64) * 100
# line-review options: multiples of the current line (1.0 = no change)
REVIEW_MULTIPLES = np.array([1.0, 1.25, 1.5, 2.0])
MAX_LINE_FEN = 100_000 * 100
LEGACY_SCORE_CUTOFF = 630
BUREAU_CUTOFF = 560
SCORE_BAND_CUTS = (620, 660, 700, 740)  # legacy score bands 0..4
RETENTION_CAMPAIGN_EVERY = 3  # months between retention campaigns
RETENTION_FIRST_MONTH = 6
INVITE_MIN_TENURE = 3  # months on the platform before a user can be invited
INVITE_FIRST_MONTH = 3  # the programme's first invitations (the platform score needs some in-world history)
PLATFORM_SCORE_CENTER, PLATFORM_SCORE_SCALE = 645.0, 55.0  # how the bank standardises the platform score


def invite_probability(purchase_power: np.ndarray, membership_level: np.ndarray) -> np.ndarray:
    """Monthly probability the platform invites a not-yet-invited user (pre-screen on observables)."""
    return 0.09 * expit(-0.3 + 0.04 * (purchase_power - 50) + 0.3 * (membership_level - 2))


def legacy_score(bureau_score: np.ndarray, platform_score: np.ndarray) -> np.ndarray:
    """The partner bank's application score (int, higher = safer) from the bureau score and the platform's
    credit score of the last month end (both observable). Thin-file applicants are scored on the platform
    score only."""
    bureau_z = (680.0 - bureau_score) / 60.0
    platform_z = (PLATFORM_SCORE_CENTER - platform_score) / PLATFORM_SCORE_SCALE
    z = np.where(np.isnan(bureau_z), platform_z, 0.6 * np.nan_to_num(bureau_z) + 0.4 * platform_z)
    return np.clip(np.round(660 - 50 * z), 300, 900).astype(np.int32)


def approve(score: np.ndarray, bureau_score: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Legacy approval: score cutoff, bureau floor when a bureau file exists, adults 20+."""
    bureau_ok = np.isnan(bureau_score) | (np.nan_to_num(bureau_score, nan=0.0) >= BUREAU_CUTOFF)
    return (score >= LEGACY_SCORE_CUTOFF) & bureau_ok & (age >= 20)


def legacy_initial_line(score: np.ndarray, income_band: np.ndarray) -> np.ndarray:
    """Score-band x income-band grid -> index into INITIAL_LINE_GRID_FEN."""
    band = np.searchsorted(np.array(SCORE_BAND_CUTS), score, side="right")
    return np.clip(band + income_band.astype(np.int64) - 3, 0, len(INITIAL_LINE_GRID_FEN) - 1)


def round_line(line: np.ndarray) -> np.ndarray:
    """Lines are whole hundreds of yuan, capped at MAX_LINE_FEN."""
    return np.minimum(np.round(line / 10_000) * 10_000, MAX_LINE_FEN).astype(np.int64)


def legacy_review_multiple(
    in_arrears: np.ndarray, missed_6m: np.ndarray, util_6m: np.ndarray, score: np.ndarray
) -> np.ndarray:
    """Legacy line-increase rule at a periodic review: never in arrears or after a miss; x1.5 for
    high-score heavy users, x1.25 for moderate users, else no change."""
    clean = ~in_arrears & (missed_6m == 0)
    mult = np.where(
        clean & (score >= 680) & (util_6m >= 0.25), 1.5, np.where(clean & (util_6m >= 0.12), 1.25, 1.0)
    )
    return mult


def retention_targeting_rule(active_months_3m: np.ndarray, paid_member: np.ndarray) -> np.ndarray:
    """The platform's legacy targeting: offer to near-silent accounts or non-paying members."""
    return (active_months_3m <= 1) | ~paid_member
