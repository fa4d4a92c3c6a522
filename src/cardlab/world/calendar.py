"""Calendar of the world: month grid, festival seasonality, macro stress path.

Months are 0-based indices from ``start_month``; dates are int32 days since 1970-01-01 (Arrow ``date32``).
"""

from __future__ import annotations

from datetime import date

import numpy as np

EPOCH = date(1970, 1, 1)

# Spend multipliers by calendar month (1..12): Spring Festival lull (Jan/Feb), 618 (June),
# 11.11 (November, the year's peak), Double 12 (December); October is a pre-11.11 wait-and-see month.
FESTIVAL_FACTOR = {
    1: 0.92,
    2: 0.78,
    3: 1.0,
    4: 1.0,
    5: 1.02,
    6: 1.35,
    7: 0.98,
    8: 0.98,
    9: 1.0,
    10: 0.93,
    11: 1.65,
    12: 1.18,
}


def add_months(d: date, k: int) -> date:
    y, m = divmod(d.month - 1 + k, 12)
    return date(d.year + y, m + 1, 1)


def month_starts(start: date, n_months: int) -> np.ndarray:
    """int32 days-since-epoch of the first day of months 0..n_months (one extra for month ends)."""
    return np.array([(add_months(start, k) - EPOCH).days for k in range(n_months + 1)], dtype=np.int32)


def month_lengths(start: date, n_months: int) -> np.ndarray:
    """Days in each month 0..n_months-1."""
    s = month_starts(start, n_months)
    return np.diff(s).astype(np.int32)


def calendar_months(start: date, n_months: int) -> np.ndarray:
    """Calendar month number (1..12) of months 0..n_months-1."""
    return np.array([add_months(start, k).month for k in range(n_months)], dtype=np.int8)


def season(start: date, n_months: int) -> np.ndarray:
    """Spend multiplier of months 0..n_months-1 (mean about 1)."""
    return np.array([FESTIVAL_FACTOR[m] for m in calendar_months(start, n_months)], dtype=np.float64)


def macro(n_months: int, shock_month: int, shock_size: float) -> np.ndarray:
    """Multiplier on the default hazard for months 0..n_months-1: 1 before ``shock_month``, ramping
    linearly over 3 months to ``shock_size`` and staying there."""
    t = np.arange(n_months, dtype=np.float64)
    ramp = np.clip((t - shock_month + 1) / 3.0, 0.0, 1.0)
    return 1.0 + (shock_size - 1.0) * ramp


def random_day(
    rng: np.random.Generator,
    month_idx: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    lo: int = 0,
    hi: int | None = None,
) -> np.ndarray:
    """A uniformly random date (days since epoch) within each given month, day offsets in [lo, hi)."""
    month_idx = np.asarray(month_idx)
    length = lengths[month_idx]
    top = length if hi is None else np.minimum(length, hi)
    off = lo + np.floor(rng.random(month_idx.shape) * (top - lo)).astype(np.int32)
    return (starts[month_idx] + off).astype(np.int32)
