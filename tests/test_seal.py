"""The content seal (DESIGN contract) on the pipeline's world: no numeric raw column, nor its rank within its
month, has |Spearman| > 0.9 with a latent trait, the income-shock state or an oracle probability; the allow-list
(``cardlab.world.seal.ALLOWED``) is empty since World v2. A column-name check cannot see a trait in disguise; this
one does (World v1's ``customers.platform_credit_score`` was the latent risk at |Spearman| 0.99)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from cardlab.world import seal

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(pipeline_root: Path) -> pd.DataFrame:
    return seal.content_seal(pipeline_root / "data")


def test_no_raw_column_is_a_latent_trait_or_an_oracle_probability(report: pd.DataFrame):
    bad = seal.violations(report)
    assert bad.empty, (
        "raw columns that *are* a latent trait or oracle probability:\n" + bad.head(10).to_string()
    )


def test_the_seal_covers_every_raw_table_and_oracle_target(report: pd.DataFrame, pipeline_root: Path):
    raw_tables = {p.name for p in (pipeline_root / "data" / "raw").iterdir() if p.is_dir()}
    numeric = {
        t
        for t in raw_tables
        if any(
            c not in seal.KEYS and not c.endswith("_id") and (d.is_numeric() or d == pl.Boolean)
            for c, d in pl.scan_parquet(pipeline_root / "data" / "raw" / t).collect_schema().items()
        )
    }
    assert raw_tables <= set(seal.RAW_DATES), (
        f"tables the seal does not know: {raw_tables - set(seal.RAW_DATES)}"
    )
    assert set(report["raw_table"]) == numeric, "a raw table with numeric columns went unchecked"
    targets = set(zip(report["oracle_table"], report["oracle_column"], strict=True))
    assert {
        ("traits", "risk"),
        ("pd_true", "pd_12m"),
        ("churn_true", "p_label_3m"),
        ("retention_truth", "tau_label"),
        ("shock_path", "shocked"),
    } <= targets
    assert not seal.ALLOWED, "World v2 keeps the allow-list empty"
    # every allow-list entry is still needed: an entry the world no longer triggers must be deleted
    over = report[report["abs_spearman"] > seal.THRESHOLD]
    stale = {k for k in seal.ALLOWED if k not in set(zip(over["raw_table"], over["raw_column"], strict=True))}
    assert not stale, f"allow-list entries no longer needed (delete them): {sorted(stale)}"


def test_the_seal_catches_a_planted_disguise(pipeline_root: Path, tmp_path: Path):
    """A raw column computed from a latent trait with a little noise must trip the seal, under any name."""
    world = tmp_path / "world"
    (world / "raw" / "customers").mkdir(parents=True)
    (world / "oracle").mkdir()
    (world / "oracle" / "traits").symlink_to(pipeline_root / "data" / "oracle" / "traits")
    traits = pl.read_parquet(pipeline_root / "data" / "oracle" / "traits").sort("customer_id")
    rng = np.random.default_rng(0)
    customers = traits.select(
        "customer_id",
        (pl.col("engagement") * 50 + pl.Series(rng.normal(0, 5, traits.height))).alias("loyalty_points"),
        pl.Series("innocent", rng.normal(0, 1, traits.height)),
    )
    customers.write_parquet(world / "raw" / "customers" / "part-0.parquet")
    rep = seal.content_seal(world)
    bad = seal.violations(rep)
    assert set(bad["raw_column"]) == {"loyalty_points"}  # the noise column passes
    assert "engagement" in set(bad["oracle_column"])
