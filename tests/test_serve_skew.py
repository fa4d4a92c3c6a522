"""No train/serve skew: OOT applications decided through the HTTP API equal the batch pipeline.

The service runs as a real process (``cardlab serve``) over the pipeline's own outputs: the registered
versions behind ``experiments/``, the feature store of the ``materialize`` stage. For a seeded sample of OOT
credit applications it must return the batch's feature values (``data/features/credit``: exactly), PD
(``experiments/credit/predictions.parquet``: to 1e-9), decline exactly the rows the batch explained as
declines and give the batch's reason codes for them (``experiments/credit/explain/reason_codes.parquet``).
For OOT bookings (``data/features/limit``, initial decisions) the limit model's inputs must equal the batch's
and the first line must agree with the batch knapsack's line (``experiments/limit/predictions.parquet``).
"""

from __future__ import annotations

import uuid

import httpx
import numpy as np
import polars as pl
import pytest

from cardlab.serve.harness import ServerProcess, pipeline_versions

pytestmark = pytest.mark.slow

N_CREDIT = 150
N_BOOKINGS = 150
# the batch line is the exact knapsack optimum; the per-application rule uses the LP relaxation's shadow
# prices, whose optimum differs from it on at most one decision per budget before integer rounding
MIN_LINE_AGREEMENT = 0.95


def _eq(a: float | None, b: float | None) -> bool:
    a = np.nan if a is None else float(a)
    b = np.nan if b is None else float(b)
    return (np.isnan(a) and np.isnan(b)) or a == b


@pytest.fixture(scope="module")
def server(pipeline_root, tmp_path_factory):
    versions = pipeline_versions(pipeline_root)
    log = tmp_path_factory.mktemp("skew") / "decisions.db"
    with ServerProcess(
        pipeline_root, log_url=f"sqlite:///{log}", credit=versions["credit"], limit=versions["limit"]
    ) as srv:
        yield srv


def _apply(client: httpx.Client, rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        body = {
            "customer_id": int(r["customer_id"]),
            "application_date": r["snapshot_date"].isoformat(),
            "legacy_score": int(r["legacy_score"]),
            "partner_bank": r["partner_bank"],
            "return_features": True,
        }
        resp = client.post("/v1/decisions", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert resp.status_code == 200, resp.text
        out.append(resp.json())
    return out


def _applications(root) -> pl.DataFrame:
    return pl.read_parquet(root / "data" / "raw" / "applications").select(
        "application_id", "legacy_score", "partner_bank"
    )


def test_oot_applications_match_the_batch(server, pipeline_root):
    root = pipeline_root
    credit = (
        pl.read_parquet(root / "data" / "features" / "credit")
        .filter(pl.col("split") == "oot")
        .with_columns(pl.col("snapshot_date").cast(pl.Date))
        .join(_applications(root), on="application_id")
    )
    sample = credit.sample(min(N_CREDIT, credit.height), seed=20240601)
    preds = pl.read_parquet(root / "experiments" / "credit" / "predictions.parquet").with_columns(
        pl.col("snapshot_date").cast(pl.Date)
    )
    reasons = pl.read_parquet(
        root / "experiments" / "credit" / "explain" / "reason_codes.parquet"
    ).with_columns(pl.col("snapshot_date").cast(pl.Date))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        got = _apply(client, sample.to_dicts())
    n_declined = 0
    for row, doc in zip(sample.to_dicts(), got, strict=True):
        who = f"customer {row['customer_id']} on {row['snapshot_date']}"
        feats = doc["features"]["credit"]
        bad = {f: (v, row[f]) for f, v in feats.items() if not _eq(v, row[f])}
        assert not bad, f"{who}: served features differ from data/features/credit: {bad}"
        batch = preds.filter(
            (pl.col("customer_id") == row["customer_id"]) & (pl.col("snapshot_date") == row["snapshot_date"])
        )
        assert batch.height >= 1, who
        assert abs(doc["pd"] - float(batch["pd"][0])) <= 1e-9, (
            f"{who}: PD {doc['pd']} vs batch {batch['pd'][0]}"
        )
        coded = reasons.filter(
            (pl.col("customer_id") == row["customer_id"]) & (pl.col("snapshot_date") == row["snapshot_date"])
        ).sort("rank")
        assert (doc["decision"] == "decline") == (coded.height > 0), (
            f"{who}: service says {doc['decision']} (PD {doc['pd']}), the batch "
            f"{'declined' if coded.height else 'approved'}"
        )
        if coded.height:
            n_declined += 1
            served = [(r["rank"], r["group"], r["feature"], r["zh"], r["en"]) for r in doc["reasons"]]
            batch_reasons = list(
                coded.select("rank", "reason_group", "feature", "reason_zh", "reason_en").iter_rows()
            )
            assert served == batch_reasons, f"{who}: reasons differ"
            np.testing.assert_allclose(
                [r["contribution"] for r in doc["reasons"]],
                coded["contribution"].to_numpy(),
                rtol=0,
                atol=1e-9,
            )
    assert n_declined > 0, "the sample holds no batch decline: the reason check did not run"


def test_every_stored_feature_matches_the_batch(pipeline_root):
    """Beyond the served models' inputs: every customer-level and application feature the store and the
    request merge produce equals the batch's, for every OOT application of the replay months."""
    from cardlab.serve.features import OnlineFeatures
    from cardlab.serve.store import FeatureStore

    root = pipeline_root
    store = FeatureStore(root / "data" / "online")
    online = OnlineFeatures(store)
    credit = (
        pl.read_parquet(root / "data" / "features" / "credit")
        .filter(pl.col("split") == "oot")
        .with_columns(pl.col("snapshot_date").cast(pl.Date))
        .join(_applications(root), on="application_id")
    )
    import json

    dictionary = json.loads((root / "data" / "features" / "feature_dictionary.json").read_text())
    names = dictionary["tasks"]["credit"]["feature_columns"]
    absent = set(names) - {*store.columns, *online.request_names}
    assert not absent, f"credit features the online path cannot produce: {sorted(absent)[:8]}"
    batch = credit.select(names).with_columns(pl.all().cast(pl.Float64)).to_numpy()
    served = []
    for row in credit.iter_rows(named=True):
        day = row["snapshot_date"]
        stored = store.get(row["customer_id"], store.month_index(day))
        assert stored is not None, f"customer {row['customer_id']} as of {day} is not in the store"
        req = online.request_values(
            day, stored, {"legacy_score": row["legacy_score"], "partner_bank": row["partner_bank"]}
        )
        values = dict(zip(store.columns, stored.values, strict=True)) | dict(
            zip(online.request_names, req, strict=True)
        )
        served.append([values[c] for c in names])
    served = np.asarray(served, dtype=np.float64)
    same = (served == batch) | (np.isnan(served) & np.isnan(batch))
    bad = [names[j] for j in np.flatnonzero(~same.all(axis=0))]
    assert not bad, (
        f"features differ between the store and the batch on {(~same).any(axis=1).sum()} rows: {bad[:8]}"
    )


def test_oot_bookings_limit_inputs_and_line(server, pipeline_root):
    root = pipeline_root
    limit = pl.read_parquet(root / "data" / "features" / "limit").with_columns(
        pl.col("snapshot_date").cast(pl.Date)
    )
    cards = pl.read_parquet(root / "data" / "raw" / "cards").select("card_id", "application_id")
    keys = ["customer_id", "snapshot_date", "decision_type"]
    preds = (
        pl.read_parquet(root / "experiments" / "limit" / "predictions.parquet")
        .with_columns(pl.col("snapshot_date").cast(pl.Date))
        .filter(pl.col("decision_type") == "initial")
        .select(*keys, "chosen_line")
    )
    assert preds.select(keys).is_duplicated().sum() == 0, "batch bookings are not unique by customer and date"
    bookings = (
        limit.filter((pl.col("split") == "oot") & (pl.col("decision_type") == "initial"))
        .join(cards, on="card_id")
        .join(_applications(root), on="application_id")
        .join(preds, on=keys)
    )
    sample = bookings.sample(min(N_BOOKINGS, bookings.height), seed=7)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        got = _apply(client, sample.to_dicts())
    agree = lined = 0
    for row, doc in zip(sample.to_dicts(), got, strict=True):
        who = f"customer {row['customer_id']} booked {row['snapshot_date']}"
        bad = {f: (v, row[f]) for f, v in doc["features"]["limit"].items() if not _eq(v, row[f])}
        assert not bad, f"{who}: served limit inputs differ from data/features/limit: {bad}"
        batch_line = float(row["chosen_line"])
        if doc["decision"] != "decline":
            lined += 1
            agree += doc["line_yuan"] == batch_line
    assert lined > 0
    share = agree / lined
    print(f"first-line agreement with the batch knapsack on OOT bookings: {share:.3f} ({agree}/{lined})")
    assert share >= MIN_LINE_AGREEMENT, f"online line agrees with the batch on {share:.3f} of OOT bookings"
