"""Benchmark: explaining an OOT sample with cardlab's SHAP path vs a bare ``booster.predict(pred_contribs=True)``.

    .venv/bin/python benchmarks/bench_explain.py [--out experiments/credit] [--features data/features] [--rows N]

Uses the trained model in ``--out`` when it exists (its OOT rows from ``--features``), else the synthetic credit
task of ``cardlab.explain.synthetic``. Both paths start from the same pandas frame; repeats alternate the two and
report medians, the ratio (target <= 1.15x) and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

from cardlab.explain import shap_values as S
from cardlab.modeling.workflow import load_model


def _load(out: Path, features_root: Path, rows: int):
    if (out / "model" / "model.ubj").exists() and (features_root / out.name).exists():
        booster, features, _ = load_model(out)
        df = pd.read_parquet(features_root / out.name)
        df = df[df["split"] == "oot"]
        source = f"{out} (OOT of {features_root / out.name})"
    else:
        from cardlab.explain import synthetic

        tmp = Path(tempfile.mkdtemp(prefix="bench_explain_"))
        paths = synthetic.build(tmp, n=max(rows, 8000))
        booster, features, _ = load_model(paths["out"])
        df = synthetic.make_snapshots(max(rows, 8000))
        source = "synthetic credit task"
    if len(df) < rows:  # tile to the requested size
        df = pd.concat([df] * int(np.ceil(rows / max(len(df), 1))), ignore_index=True)
    return booster, features, df.head(rows).reset_index(drop=True), source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("experiments/credit"))
    ap.add_argument("--features", type=Path, default=Path("data/features"))
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    booster, features, frame, source = _load(args.out, args.features, args.rows)

    def ours() -> np.ndarray:
        return S.tree_shap(booster, frame, features).values

    def raw() -> np.ndarray:
        dm = xgb.DMatrix(frame[features], feature_names=features)
        return booster.predict(dm, pred_contribs=True)[:, :-1]

    np.testing.assert_allclose(ours(), raw(), atol=1e-6)  # warm-up and correctness
    t_ours, t_raw = [], []
    for _ in range(args.repeats):
        for fn, acc in ((raw, t_raw), (ours, t_ours)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    m_ours, m_raw = statistics.median(t_ours), statistics.median(t_raw)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"model: {source}; rows {len(frame):,}, features {len(features)}, trees {booster.num_boosted_rounds()}"
    )
    print(f"cardlab tree_shap   median {m_ours:8.3f} s")
    print(f"raw pred_contribs   median {m_raw:8.3f} s  (peer)")
    print(f"ratio ours/raw      {m_ours / m_raw:8.3f}x  (target <= 1.15x)")
    print(f"peak RSS            {peak_mb:8.0f} MiB")


if __name__ == "__main__":
    main()
