"""Random streams: one independent generator per (concern, shard).

Each shard's streams come from ``SeedSequence(seed, spawn_key=(stream_id, shard))`` so the output does not
depend on how shards are scheduled over workers (docs/world.md: byte-identical for any worker count).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """Fixed small ids, one per concern. Never renumber: it would change every world."""

    POPULATION = 1
    TRAITS = 2
    ECOMMERCE = 3
    BNPL = 4
    SESSIONS = 5
    CARD = 6
    CAMPAIGNS = 7
    CHURN = 8
    DEFAULT = 9
    LIMITS = 10
    PAYMENTS = 11
    CARD_ORDERS = 12
    SHOCKS = 13
    PROFILE = 14
    CARD_PAGE = 15


def rng_for(seed: int, stream: Stream, shard: int) -> np.random.Generator:
    """The generator of ``stream`` for ``shard`` under world seed ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(stream), int(shard))))
