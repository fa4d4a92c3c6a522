"""A small synthetic credit task with known drivers, for tests, the benchmark and docs (no simulator needed).

Lays out exactly what the pipeline would: ``features/feature_dictionary.json``, ``features/credit/`` Parquet,
``oracle/true_drivers.json`` and ``experiments/credit/model/`` (booster + features.json). The label follows a
logistic model of ``bureau_score`` (strongest), BNPL overdue history (windows 3/6/12 m, strongly correlated),
``income_band`` and platform GMV; ``device_price_band`` is a proxy of income band; ``decoy_k`` are noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

from cardlab.artifacts import atomic_dir, write_json, write_parquet
from cardlab.modeling.xgb import save_booster

# drivers' strengths are measured on the generated data (std of each term of the true logit), see make_snapshots
TRUTH = {
    "credit": {"drivers": {}, "decoys": ["decoy_1", "decoy_2", "decoy_3"], "proxies": ["device_price_band"]}
}


def _entry(name, family, window, en, zh, direction=0):
    return {
        "name": name,
        "family": family,
        "window": window,
        "definition": en,
        "direction": {"credit": direction},
        "reason_en": en,
        "reason_zh": zh,
        "tasks": ["credit"],
    }


DICTIONARY = [
    _entry("cust_bureau_score", "profile", None, "low bureau score", "征信评分较低", -1),
    _entry("cust_income_band", "profile", None, "low income band", "收入档位较低"),
    _entry("cust_age", "profile", None, "age", "年龄"),
    _entry("cust_city_tier", "profile", None, "city tier", "城市等级"),
    _entry("cust_gender_f", "profile", None, "gender is F", "客户属性：性别为女"),
    _entry("cust_gender_m", "profile", None, "gender is M", "客户属性：性别为男"),
    _entry("cust_device_price_band", "proxy", None, "phone price band", "手机价格档位（代理变量）"),
    *[_entry(f"cust_decoy_{k}", "decoy", None, "pure-noise decoy", "噪声诱饵变量") for k in (1, 2, 3)],
    *[
        _entry(f"bnpl_overdue_months_{w}m", "bnpl", w, "overdue BNPL instalments", "先享后付逾期", 1)
        for w in (3, 6, 12)
    ],
    *[
        _entry(f"ord_gmv_avg_month_{w}m", "platform_orders", w, "low platform spending", "平台月均消费较低")
        for w in (3, 12)
    ],
]
FEATURES = [e["name"] for e in DICTIONARY]


def make_snapshots(n: int = 4000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    z_risk = rng.standard_normal(n)
    income = np.clip(np.round(3 + rng.standard_normal(n)), 1, 5)
    bureau = np.round(680 - 60 * (0.8 * z_risk + 0.6 * rng.standard_normal(n)))
    bureau[rng.random(n) < 0.1] = np.nan
    overdue_rate = 1 / (1 + np.exp(-(z_risk - 1.0)))
    b3 = rng.binomial(3, overdue_rate).astype(float)
    b6 = b3 + rng.binomial(3, overdue_rate)
    b12 = b6 + rng.binomial(6, overdue_rate)
    gmv3 = np.exp(8 + 0.3 * income + 0.5 * rng.standard_normal(n))
    gmv12 = gmv3 * np.exp(0.15 * rng.standard_normal(n))
    gender = rng.integers(0, 2, n)
    df = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1, dtype=np.int64),
            "snapshot_date": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 12, n) * 31, "D"),
            "cust_bureau_score": bureau,
            "cust_income_band": income,
            "cust_age": np.clip(np.round(rng.gamma(6.0, 5.5, n) + 3), 18, 70),
            "cust_city_tier": rng.integers(1, 6, n).astype(float),
            "cust_gender_f": (gender == 0).astype(float),
            "cust_gender_m": (gender == 1).astype(float),
            "cust_device_price_band": np.clip(np.round(income + 0.7 * rng.standard_normal(n)), 1, 5),
            "cust_decoy_1": rng.standard_normal(n),
            "cust_decoy_2": rng.standard_normal(n),
            "cust_decoy_3": rng.standard_normal(n),
            "bnpl_overdue_months_3m": b3,
            "bnpl_overdue_months_6m": b6,
            "bnpl_overdue_months_12m": b12,
            "ord_gmv_avg_month_3m": gmv3,
            "ord_gmv_avg_month_12m": gmv12,
        }
    )
    bz = np.nan_to_num((680 - bureau) / 60, nan=0.5)
    terms = {
        "bureau_score": 0.9 * bz,
        "bnpl": 0.35 * b12 / 4,
        "income_band": -0.3 * (income - 3),
        "platform_orders": -0.8 * (np.log(gmv3) - 8.9),
    }
    logit = -2.6 + sum(terms.values())
    # true strength of each driver = standard deviation of its term in the true logit
    df.attrs["strength"] = {k: round(float(np.std(v)), 4) for k, v in terms.items()}
    df["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    month = df["snapshot_date"].dt.month
    df["split"] = np.where(month <= 7, "train", np.where(month <= 9, "valid", "oot"))
    df["approved"] = rng.random(n) < 1 / (1 + np.exp(-(1.0 - 0.5 * bz)))
    df.loc[~df["approved"], "label"] = np.nan
    df["snapshot_date"] = df["snapshot_date"].dt.date
    out = df[["customer_id", "snapshot_date", "split", "label", "approved", *FEATURES]]
    out.attrs["strength"] = df.attrs["strength"]
    return out


def booster_params(nthread: int = 2) -> dict:
    return {
        "objective": "binary:logistic",
        "eval_metric": "auc",
        "tree_method": "hist",
        "nthread": nthread,
        "seed": 1,
        "verbosity": 0,
        "max_depth": 3,
        "learning_rate": 0.1,
        "min_child_weight": 30.0,
        "reg_lambda": 10.0,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
    }


def build(root: Path, n: int = 8000, rounds: int = 60, seed: int = 3) -> dict[str, Path]:
    """Write a synthetic credit task under ``root``; returns {features_root, oracle, out}."""
    root = Path(root)
    features_root, oracle, out = (
        root / "data" / "features",
        root / "data" / "oracle",
        root / "experiments" / "credit",
    )
    df = make_snapshots(n, seed)
    features_root.mkdir(parents=True, exist_ok=True)
    write_json({"features": DICTIONARY}, features_root / "feature_dictionary.json")
    with atomic_dir(features_root / "credit") as tmp:
        write_parquet(df, tmp / "part-0.parquet")
    oracle.mkdir(parents=True, exist_ok=True)
    truth = {"credit": {**TRUTH["credit"], "drivers": df.attrs["strength"]}}
    write_json(truth, oracle / "true_drivers.json")
    tr = df[(df["split"] == "train") & df["label"].notna()]
    params = booster_params()
    dtrain = xgb.DMatrix(tr[FEATURES].astype("float32"), label=tr["label"], feature_names=FEATURES)
    booster = xgb.train(params, dtrain, num_boost_round=rounds)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out / "model") as tmp:
        save_booster(booster, tmp / "model.ubj")
        write_json(
            {"features": FEATURES, "directions": {f: 0 for f in FEATURES}, "params": params},
            tmp / "features.json",
        )
    (out / "best_params.json").write_text(json.dumps({"n_trials": 1, "best_params": {}}))
    return {"features_root": features_root, "oracle": oracle, "out": out}
