"""Overhead of cardlab's training path vs a bare ``xgb.train`` on the same prepared matrix.

Peer: ``xgboost.train`` called directly with the same params, DMatrix, rounds and early stopping.
Ours: ``cardlab.modeling.xgb.fit_booster`` (the path every task uses), timed the same way.
Target: ours <= 1.1x the peer. Prints median wall time of each over repeats, the ratio, and peak RSS.

    .venv/bin/python benchmarks/bench_training.py [--rows 200000] [--features 60] [--repeats 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import xgboost as xgb

from cardlab.config import TuneParams
from cardlab.modeling.xgb import base_params, fit_booster


def make_data(rows: int, n_features: int, seed: int = 0) -> tuple[xgb.DMatrix, xgb.DMatrix]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, n_features)).astype("float32")
    logit = X[:, :5] @ np.array([0.8, -0.5, 0.4, 0.3, -0.2]) - 2.5
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("float32")
    cut = int(rows * 0.8)
    return xgb.DMatrix(X[:cut], label=y[:cut]), xgb.DMatrix(X[cut:], label=y[cut:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--features", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()

    dtrain, dvalid = make_data(args.rows, args.features)
    params = {**base_params(TuneParams()), "max_depth": 4, "learning_rate": 0.1}
    peer, ours = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        xgb.train(
            params,
            dtrain,
            num_boost_round=args.rounds,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=30,
            verbose_eval=False,
        )
        peer.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fit_booster(params, dtrain, dvalid, num_boost_round=args.rounds, early_stopping_rounds=30)
        ours.append(time.perf_counter() - t0)
    p, o = statistics.median(peer), statistics.median(ours)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows={args.rows} features={args.features} rounds<={args.rounds} repeats={args.repeats}")
    print(f"bare xgb.train  median {p:.3f} s")
    print(f"fit_booster     median {o:.3f} s")
    print(f"ratio ours/peer {o / p:.3f}  (target <= 1.10)")
    print(f"peak RSS        {peak_mb:.0f} MiB")


if __name__ == "__main__":
    main()
