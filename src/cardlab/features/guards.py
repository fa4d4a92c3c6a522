"""Leakage guards run inside every build."""

from __future__ import annotations

from typing import cast

import numpy as np
import polars as pl

CANARY_AUC = 0.95


def single_feature_auc(x: pl.Series, y: pl.Series) -> float:
    """Direction-free AUC (max(AUC, 1 - AUC)) of one feature against a 0/1 label; nulls rank lowest."""
    frame = pl.DataFrame({"x": x.cast(pl.Float64), "y": y.cast(pl.Int8)}).filter(pl.col("y").is_not_null())
    frame = frame.with_columns(pl.col("x").fill_nan(None))
    n1 = int(frame["y"].sum())
    n0 = frame.height - n1
    if n1 == 0 or n0 == 0:
        return 0.5
    lo = cast("float | None", frame["x"].min())  # polars types min() as any Python literal; x is Float64
    fill = (lo - 1.0) if lo is not None else 0.0
    ranks = frame.select(pl.col("x").fill_null(fill).rank("average")).to_series().to_numpy()
    r1 = float(np.sum(ranks[frame["y"].to_numpy() == 1]))
    auc = (r1 - n1 * (n1 + 1) / 2) / (n1 * n0)
    return max(auc, 1.0 - auc)


def leak_canary(
    df: pl.DataFrame,
    label: str | pl.Series = "label",
    features: list[str] | None = None,
    threshold: float = CANARY_AUC,
    max_rows: int | None = 20_000,
) -> list[str]:
    """Features whose single-feature AUC against ``label`` exceeds ``threshold`` (labelled rows only).

    ``label`` is a column name of ``df`` or a Series aligned with it; ``features`` defaults to every numeric
    column other than the label. AUC is direction-free (max(AUC, 1 - AUC)); nulls/NaN rank below all values.
    Above ``max_rows`` labelled rows an evenly spaced deterministic sample is used (AUC s.e. < 0.01 there).
    """
    y = df[label] if isinstance(label, str) else label
    if features is None:
        skip = {label} if isinstance(label, str) else set()
        features = [
            c for c, dt in df.schema.items() if c not in skip and (dt.is_numeric() or dt == pl.Boolean)
        ]
    if not features:
        return []
    frame = df.select(features).with_columns(__y=y.cast(pl.Int8)).filter(pl.col("__y").is_not_null())
    if max_rows and frame.height > max_rows:
        frame = frame.gather_every(-(-frame.height // max_rows))
    n1 = int(frame["__y"].sum())
    n0 = frame.height - n1
    if n1 == 0 or n0 == 0:
        return []
    x = [
        pl.col(f).cast(pl.Float64).fill_nan(None).fill_null(float("-inf")).rank("average").alias(f)
        for f in features
    ]
    r1 = frame.select(x + [pl.col("__y")]).filter(pl.col("__y") == 1).select(pl.col(features).sum()).row(0)
    out = []
    for f, r in zip(features, r1, strict=True):
        auc = (float(r) - n1 * (n1 + 1) / 2) / (n1 * n0)
        if max(auc, 1.0 - auc) > threshold:
            out.append(f)
    return out
