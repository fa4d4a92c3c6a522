"""Off-policy estimators on a synthetic logged bandit whose policy values are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from cardlab.modeling import ope

K = 4


def _bandit(seed: int, n: int = 20_000):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    mean = np.stack([np.sin(x + a) + 0.3 * a for a in range(K)], axis=1)  # E[r | x, a]
    # logging: a legacy rule (argmax of a crude score) with a 20 % uniform test cell, like the world
    legacy = np.clip(np.round(1.5 + x), 0, K - 1).astype(int)
    test = rng.random(n) < 0.2
    a = np.where(test, rng.integers(0, K, n), legacy)
    p = 0.2 / K + 0.8 * (a == legacy)
    r = mean[np.arange(n), a] + rng.normal(0, 1.0, n)
    return x, mean, a, p, r


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ips_snips_dr_recover_known_policy_values(seed):
    x, mean, a, p, r = _bandit(seed)
    n = len(x)
    target = mean.argmax(axis=1)  # the optimal policy: disagrees with legacy on many rows
    truth = mean[np.arange(n), target].mean()
    # an imperfect outcome model (biased by 0.2 and noisy) for DR
    rng = np.random.default_rng(seed + 100)
    q = mean + 0.2 + rng.normal(0, 0.1, mean.shape)
    ips = ope.ips(r, a, target, p)
    sn = ope.snips(r, a, target, p)
    dr = ope.doubly_robust(r, a, target, p, q[np.arange(n), a], q[np.arange(n), target])
    for est in (ips, sn, dr):
        assert abs(est.value - truth) < 4 * est.se + 1e-9, (est, truth)
    assert dr.se < ips.se  # a decent outcome model reduces variance
    # the direct method alone is biased by the model error; DR corrects it
    assert abs(q[np.arange(n), target].mean() - truth) > abs(dr.value - truth)


def test_ips_is_unbiased_over_replications():
    """Mean of IPS over many small logged samples approaches the true value (unbiasedness, not luck)."""
    vals, truths = [], []
    for seed in range(60):
        x, mean, a, p, r = _bandit(1000 + seed, n=2_000)
        target = np.full(len(x), 3)
        vals.append(ope.ips(r, a, target, p).value)
        truths.append(mean[:, 3].mean())
    vals, truths = np.array(vals), np.array(truths)
    se = (vals - truths).std(ddof=1) / np.sqrt(len(vals))
    assert abs((vals - truths).mean()) < 4 * se


def test_agreement_counts():
    x, mean, a, p, r = _bandit(9)
    assert ope.ips(r, a, a, p).n_match == len(r)
    assert ope.doubly_robust(r, a, (a + 1) % K, p, r, r).n_match == 0


def test_bad_propensities_are_rejected():
    with pytest.raises(ValueError, match="propensities"):
        ope.ips([1.0], [0], [0], [0.0])
    with pytest.raises(ValueError, match="same length"):
        ope.ips([1.0, 2.0], [0], [0], [0.5])
