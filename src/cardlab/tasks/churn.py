"""Churn early warning, customer value and retention uplift: whom to contact within the campaign budget.

Three models on the monthly churn snapshots of open cards (``data/features/churn``, docs/tasks/churn.md):

1. **Churn early warning** — P(voluntary closure or silent attrition in months t+1..t+3 | history before t).
   Monotone Optuna-tuned XGBoost (shared tune/train workflow), registered as ``cardlab-churn``.
2. **Customer value** — realised margin of the account over the next ``value_horizon_months`` statement months
   (interchange + interest + fees - funding - rewards - loss at 90+ DPD, yuan), annualised when the window is
   cut by the world's end. Zero-heavy (idle cards earn exactly nothing) and signed (losses), so Tweedie does
   not apply; a **hurdle** model: P(margin != 0) (logistic) x E[margin | != 0] (squared error). The target is
   derived from raw statements, never from the oracle.
3. **Retention uplift** — on the randomised retention campaign rows (control / random / rule-targeted arms,
   known propensity): T-, X- and DR-learners (``cardlab.modeling.uplift``) fitted on the train split, selected
   on the valid split by a score that needs no oracle (DR score, R-loss or observed Qini), refitted on
   train + valid and graded out of time against the oracle's true effect on the label, ``tau_label = p_label_y0 - p_label_y1``.

The decision: contact the top ``campaign_capacity_share`` of the campaign population under four rules —
churn risk, value at risk (risk x value), uplift, uplift x value — graded by their true incremental retained
value ``sum(tau x value) - contacts x offer cost`` against the oracle rule (ranking by true tau x value).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import xgboost as xgb
from scipy import stats

from cardlab.artifacts import atomic_dir, rounded, save_figure, write_csv, write_json, write_parquet
from cardlab.config import ChurnParams, Params
from cardlab.errors import MissingInputError
from cardlab.modeling import grading as oracle_grading
from cardlab.modeling import metrics as model_metrics
from cardlab.modeling import uplift as uplift_models
from cardlab.modeling.validation import top_gain_features, validation_pack
from cardlab.modeling.workflow import (
    SPLITS,
    ContractMetrics,
    load_model,
    load_task_data,
    log_evaluation,
    read_snapshots,
    train_task,
    tune_task,
)
from cardlab.modeling.xgb import SEED, TaskData, read_dictionary, task_features

TASK = "churn"
RAW_TABLES = ("statements",)  # raw tables train/evaluate read (verified against the manifest first)
DESCRIPTION = (
    "Churn early-warning model for the co-branded card: probability of voluntary closure or silent attrition "
    "in months t+1..t+3 after a monthly snapshot (1-month gap). Monotone XGBoost tuned with Optuna on the "
    "time-based validation split; graded out-of-time against the true churn probability of the synthetic world. "
    "Companion customer-value (hurdle XGBoost) and retention-uplift (T/X/DR learners) models decide whom the "
    "retention campaign contacts."
)
KEYS = ["customer_id", "snapshot_date", "split", "label"]


# ----------------------------------------------------------------------------------------------- inputs
def _data(features_root: Path) -> TaskData:
    return load_task_data(features_root, TASK)


def _raw_root(features_root: Path, raw: Path | None) -> Path:
    """Raw tables sit beside the features folder (``data/raw`` next to ``data/features``) unless given."""
    path = Path(raw) if raw is not None else Path(features_root).parent / "raw"
    if not (path / "statements").exists():
        raise MissingInputError(
            f"{path / 'statements'} is missing: the value target needs raw statements "
            "(run `dvc repro simulate`, or pass raw=...)"
        )
    return path


def _as_datetime(s: pd.Series) -> pd.Series:
    """One join type for dates read from Parquet by polars or pandas (date objects or datetime64)."""
    return pd.to_datetime(s).astype("datetime64[ns]")


def _month_index(col: str) -> pl.Expr:
    return pl.col(col).dt.year().cast(pl.Int32) * 12 + pl.col(col).dt.month().cast(pl.Int32)


def realised_value(snapshots: pd.DataFrame, raw: Path, params: Params, *, observable_until=None) -> pd.Series:
    """Realised account margin (yuan) over ``value_horizon_months`` statements from the snapshot month.

    Per statement (fen): interchange_rate x purchases + interest + fees - funding_rate/12 x max(closing, 0)
    - rewards_earned - lgd x closing balance at the first statement reaching 90+ DPD (the loss).
    Months after closure contribute 0. When the window runs past the world's last statement month (or past
    ``observable_until``, a date: only statement months before its month count) but at least
    ``value_min_months`` of it are inside, the sum is annualised (x horizon / months inside); else NaN.
    The value model trains on windows cut at the first OOT month, so it reads no OOT-period outcome.
    """
    eco = params.simulate.economics
    cp = params.churn
    st = pl.read_parquet(Path(raw) / "statements").lazy()
    last_m = st.select(_month_index("statement_month").max()).collect().item()
    if observable_until is not None:
        cut = pd.Timestamp(observable_until)
        last_m = min(last_m, cut.year * 12 + cut.month - 1)
    bal = pl.col("closing_balance").cast(pl.Float64)
    margin = (
        st.sort("card_id", "statement_month")
        .with_columns(
            _month_index("statement_month").alias("m"),
            ((pl.col("dpd") >= 90) & (pl.col("dpd").shift(1).over("card_id").fill_null(0) < 90)).alias(
                "_d90"
            ),
        )
        .select(
            "card_id",
            "m",
            (
                eco.interchange_rate * pl.col("purchases").cast(pl.Float64)
                + pl.col("interest").cast(pl.Float64)
                + pl.col("fees").cast(pl.Float64)
                - eco.funding_rate_annual / 12.0 * bal.clip(lower_bound=0)
                - pl.col("rewards_earned").cast(pl.Float64)
                - pl.when(pl.col("_d90")).then(eco.lgd * bal.clip(lower_bound=0)).otherwise(0.0)
            )
            # whole fen: sums of integer-valued floats are exact, so the parallel group-by below gives
            # the same bits whatever order it adds in (byte-identical outputs)
            .round(0)
            .alias("margin_fen"),
        )
    )
    keys = pl.from_pandas(snapshots[["card_id", "snapshot_date"]].reset_index(drop=True)).with_row_index(
        "_row"
    )
    keys = keys.with_columns(pl.col("snapshot_date").cast(pl.Date)).with_columns(
        _month_index("snapshot_date").alias("t")
    )
    h = cp.value_horizon_months
    summed = (
        keys.lazy()
        .join(margin, on="card_id", how="inner")
        .filter((pl.col("m") >= pl.col("t")) & (pl.col("m") < pl.col("t") + h) & (pl.col("m") <= last_m))
        .group_by("_row")
        .agg(pl.col("margin_fen").sum())
    )
    out = (
        keys.lazy()
        .join(summed, on="_row", how="left")
        .with_columns(
            pl.min_horizontal(pl.lit(h), pl.lit(last_m) - pl.col("t") + 1).alias("_obs"),
            pl.col("margin_fen").fill_null(0.0),
        )
        .with_columns(
            pl.when(pl.col("_obs") >= cp.value_min_months)
            .then(pl.col("margin_fen") / 100.0 * h / pl.col("_obs"))
            .otherwise(None)
            .alias("value_yuan")
        )
        .sort("_row")
        .collect()
    )
    return pd.Series(out["value_yuan"].to_numpy(), index=snapshots.index, name="value_yuan")


def value_training_target(snapshots: pd.DataFrame, raw: Path, params: Params) -> pd.Series:
    """The value model's target: :func:`realised_value` cut at the first OOT month (the first snapshot month
    of the ``oot`` split), so no train/valid target reads an outcome of the OOT period."""
    first_oot = pd.to_datetime(snapshots.loc[snapshots["split"] == "oot", "snapshot_date"]).min()
    return realised_value(snapshots, raw, params, observable_until=None if pd.isna(first_oot) else first_oot)


def _campaign_rows(df: pd.DataFrame) -> pd.Series:
    """Rows of the randomised retention campaign with an observed outcome."""
    if "in_campaign" not in df.columns or "treatment" not in df.columns:
        return pd.Series(False, index=df.index)
    return (
        df["in_campaign"].astype(bool)
        & df["treatment"].notna()
        & df["label"].notna()
        & df["propensity"].notna()
    )


def _uplift_cfg(cp: ChurnParams, nthread: int) -> uplift_models.XGBConfig:
    return uplift_models.XGBConfig(
        max_depth=cp.uplift_max_depth,
        learning_rate=cp.uplift_learning_rate,
        num_boost_round=cp.uplift_num_boost_round,
        min_child_weight=cp.uplift_min_child_weight,
        reg_lambda=cp.uplift_reg_lambda,
        nthread=nthread,
    )


def _xywe(df: pd.DataFrame, features: list[str]):
    """Uplift arrays: y = retained (1 - churn label), so a positive effect means the offer retains."""
    X = df[features].to_numpy(dtype=np.float32)
    y = 1.0 - df["label"].to_numpy(dtype=np.float64)
    w = df["treatment"].to_numpy(dtype=np.float64)
    e = df["propensity"].to_numpy(dtype=np.float64)
    return X, y, w, e


# ------------------------------------------------------------------------------------------------ stages
def tune(params: Params, features_root: Path, out: Path) -> dict:
    """Optuna study of the churn classifier (validation AUC); writes ``best_params.json``."""
    return tune_task(params, TASK, _data(features_root), features_root, out)


def train(params: Params, features_root: Path, out: Path, raw: Path | None = None) -> Path:
    """Fit the churn classifier (``model/``), the value hurdle (``model/value/``) and the uplift learners
    (``model/uplift/``: train-split fits for selection, train+valid refits for scoring)."""
    features_root, out = Path(features_root), Path(out)
    data = _data(features_root)
    snaps = read_snapshots(features_root, TASK)
    raw_root = _raw_root(features_root, raw)

    def companions(model_dir: Path) -> None:  # written into the new model/ before it replaces the old one
        _train_value(params, snaps, data.features, raw_root, model_dir)
        _train_uplift(params, snaps, data.features, model_dir)

    return train_task(
        params, TASK, data, features_root, out, description=DESCRIPTION, extra_models=companions
    )


def _train_value(
    params: Params, snaps: pd.DataFrame, features: list[str], raw: Path, model_dir: Path
) -> None:
    cp = params.churn
    snaps = snaps.assign(value_yuan=value_training_target(snaps, raw, params))
    cfg = uplift_models.XGBConfig(
        max_depth=4,
        learning_rate=0.05,
        num_boost_round=cp.value_num_boost_round,
        min_child_weight=20.0,
        nthread=params.tune.nthread,
    )
    fit = snaps[snaps["value_yuan"].notna()]
    tr, va = fit[fit["split"] == "train"], fit[fit["split"] == "valid"]
    if tr.empty or va.empty:
        raise ValueError("churn value model: no train/valid rows with an observable value window")

    def matrix(df: pd.DataFrame, y: np.ndarray) -> xgb.DMatrix:
        return xgb.DMatrix(
            df[features].to_numpy(np.float32), label=y, feature_names=features, nthread=cfg.nthread
        )

    nz_tr, nz_va = (tr["value_yuan"].abs() > 0.005), (va["value_yuan"].abs() > 0.005)
    hurdle = xgb.train(
        {**cfg.params("binary:logistic"), "eval_metric": "logloss"},
        matrix(tr, nz_tr.to_numpy(np.float32)),
        cfg.num_boost_round,
        evals=[(matrix(va, nz_va.to_numpy(np.float32)), "valid")],
        early_stopping_rounds=30,
        verbose_eval=False,
    )
    hurdle = hurdle[: hurdle.best_iteration + 1]
    amount = xgb.train(
        {**cfg.params("reg:squarederror"), "eval_metric": "rmse"},
        matrix(tr[nz_tr], tr.loc[nz_tr, "value_yuan"].to_numpy(np.float32)),
        cfg.num_boost_round,
        evals=[(matrix(va[nz_va], va.loc[nz_va, "value_yuan"].to_numpy(np.float32)), "valid")],
        early_stopping_rounds=30,
        verbose_eval=False,
    )
    amount = amount[: amount.best_iteration + 1]
    with atomic_dir(model_dir / "value") as tmp:
        hurdle.save_model(str(tmp / "nonzero.ubj"))
        amount.save_model(str(tmp / "amount.ubj"))
        write_json(
            {
                "features": features,
                "target": "value_yuan",
                "horizon_months": cp.value_horizon_months,
                "zero_share_train": round(float(1 - nz_tr.mean()), 6),
                "model": "hurdle: P(|margin| > 0) x E[margin | != 0]",
            },
            tmp / "value.json",
        )


def predict_value(out: Path, df: pd.DataFrame) -> np.ndarray:
    meta = json.loads((Path(out) / "model" / "value" / "value.json").read_text())
    X = df[meta["features"]].to_numpy(np.float32)
    boosters = {}
    for name in ("nonzero", "amount"):
        b = xgb.Booster()
        b.load_model(str(Path(out) / "model" / "value" / f"{name}.ubj"))
        boosters[name] = b
    return np.asarray(boosters["nonzero"].inplace_predict(X), float) * np.asarray(
        boosters["amount"].inplace_predict(X), float
    )


def _train_uplift(params: Params, snaps: pd.DataFrame, features: list[str], model_dir: Path) -> None:
    cp = params.churn
    cfg = _uplift_cfg(cp, params.tune.nthread)
    camp = snaps[_campaign_rows(snaps)].reset_index(drop=True)
    tr, va = camp[camp["split"] == "train"], camp[camp["split"] == "valid"]
    if len(tr) < 50 or len(va) < 50:
        raise ValueError(f"churn uplift: too few campaign rows (train {len(tr)}, valid {len(va)})")
    Xt, yt, wt, et = _xywe(tr, features)
    Xv, yv, wv, ev = _xywe(va, features)
    # oracle-free validation scores: nuisances cross-fitted on the valid rows themselves
    mu0, mu1, m = uplift_models.cross_fit_outcomes(
        Xv, yv, wv, cfg, n_folds=cp.uplift_folds, seed=SEED, with_m=True
    )
    phi = uplift_models.dr_pseudo_outcome(Xv, yv, wv, ev, nuisance=(mu0, mu1))
    Xa, ya, wa, ea = _xywe(pd.concat([tr, va]), features)  # the refit for scoring uses train + valid
    valid_pred = va[["customer_id", "card_id", "snapshot_date"]].copy()
    scores = {}
    with atomic_dir(model_dir / "uplift") as tmp:
        for name in cp.uplift_learners:
            stage1 = uplift_models.make_learner(name, cfg).fit(Xt, yt, wt, et)
            tau_v = stage1.predict(Xv)
            valid_pred[name] = tau_v
            scores[name] = {
                "qini": uplift_models.qini_score(yv, wv, tau_v, normalize=True),
                "dr_score": uplift_models.dr_score(tau_v, phi),
                "r_loss": uplift_models.r_loss(tau_v, yv, wv, ev, m),
            }
            uplift_models.save_learner(uplift_models.make_learner(name, cfg).fit(Xa, ya, wa, ea), tmp / name)
        picks = {
            "qini": max(scores, key=lambda k: scores[k]["qini"]),
            "dr_score": min(scores, key=lambda k: scores[k]["dr_score"]),
            "r_loss": min(scores, key=lambda k: scores[k]["r_loss"]),
        }
        write_parquet(valid_pred.reset_index(drop=True), tmp / "valid_predictions.parquet")
        write_json(
            {
                "features": features,
                "selection_score": cp.uplift_selection,
                # "ensemble": the mean of every learner's CATE, no selection (docs/tasks/churn.md)
                "selected": picks.get(cp.uplift_selection, cp.uplift_selection),
                "picks": picks,
                "valid_scores": {k: {s: round(v, 8) for s, v in d.items()} for k, d in scores.items()},
                "n_train": len(tr),
                "n_valid": len(va),
                "valid_dr_ate": round(float(phi.mean()), 6),
            },
            tmp / "selection.json",
        )


def _uplift_selection(out: Path) -> dict:
    return json.loads((Path(out) / "model" / "uplift" / "selection.json").read_text())


# ----------------------------------------------------------------------------------------------- oracle
def read_churn_true(oracle: Path) -> pd.DataFrame:
    """True probability of the churn label keyed to churn snapshots.

    The oracle's ``month`` is the end of month m; its ``p_label_3m`` = P(label = 1 | the account's state at the
    end of month m, row not excluded) for the snapshot on the first day of month t = m+1 (gap month t, label
    window t+1..t+3). Rows the task excludes (distressed accounts charged off before the window ends) have a
    null p_label_3m and are dropped. ``p_event_true`` = ``p_churn_3m`` (first churn *event* in the window;
    active accounts only, else NaN), kept for comparison.
    """
    path = Path(oracle) / "churn_true"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro simulate`")
    ct = pl.read_parquet(path)
    if "p_label_3m" not in ct.columns:
        raise ValueError(
            f"{path} has no p_label_3m (a world simulated before it existed): rerun the simulation"
        )
    ct = (
        ct.filter(pl.col("p_label_3m").is_not_null())
        .select(
            "card_id",
            pl.col("month").dt.offset_by("1mo").alias("snapshot_date"),
            pl.col("p_label_3m").alias("p_churn_true"),
            pl.col("p_churn_3m").alias("p_event_true"),
        )
        .unique(["card_id", "snapshot_date"], keep="first", maintain_order=True)
        .to_pandas()
    )
    return ct.assign(snapshot_date=_as_datetime(ct["snapshot_date"]))


def read_retention_truth(oracle: Path) -> pd.DataFrame:
    """True potential outcomes of every campaign row for the task's own label (churned = closed or silent
    through the 3 effect months): ``tau_true`` = p_label_y0 - p_label_y1, the churn-label reduction the
    offer buys (the oracle's ``tau_label``; its ``tau`` is the same for churn *events* only)."""
    path = Path(oracle) / "retention_truth"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro simulate`")
    rt = pl.read_parquet(path)
    if "tau_label" not in rt.columns:
        raise ValueError(
            f"{path} has no tau_label column: it predates the label oracle, re-run `dvc repro simulate`"
        )
    rt = rt.select(
        "card_id",
        pl.col("campaign_month").alias("snapshot_date"),
        pl.col("p_label_y0").alias("p_churn_y0"),
        pl.col("p_label_y1").alias("p_churn_y1"),
        pl.col("tau_label").alias("tau_true"),
    )
    rt = rt.unique(["card_id", "snapshot_date"], keep="first").to_pandas()
    return rt.assign(snapshot_date=_as_datetime(rt["snapshot_date"]))


# -------------------------------------------------------------------------------------------- evaluation
def _k(n: int, share: float) -> int:
    return max(1, int(math.ceil(share * n - 1e-9)))


def value_gini(actual: np.ndarray, pred: np.ndarray) -> float:
    """Normalised Gini of a value ranking: Gini of realised value ordered by ``pred`` over the Gini of the
    ideal order (by realised value). 1 = perfect ranking, 0 = random. Unitless."""

    def g(order_by: np.ndarray) -> float:
        a = actual[np.argsort(-order_by, kind="mergesort")]
        cum = np.cumsum(a) / a.sum()
        return float(np.mean(cum - np.arange(1, len(a) + 1) / len(a)))

    return g(pred) / g(actual)


def top_share_capture(actual: np.ndarray, pred: np.ndarray, share: float) -> float:
    """Realised value in the top ``share`` by ``pred`` as a fraction of the value in the true top ``share``
    (ranked by realised value itself): 1 = the best possible pick of that size. Values can be negative
    (losses), so a share of the *total* would not be bounded."""
    k = _k(len(actual), share)
    best = float(actual[uplift_models.top_k_mask(actual, k)].sum())
    return float(actual[uplift_models.top_k_mask(pred, k)].sum() / best) if best > 0 else float("nan")


def evaluate(
    params: Params,
    features_root: Path,
    oracle: Path,
    out: Path,
    raw: Path | None = None,
    *,
    contract: ContractMetrics,
) -> dict:
    """Score every snapshot, grade the three models and the targeting rules against the oracle, write
    ``metrics.json``, ``predictions.parquet/part-0.parquet`` and ``plots/``; register the churn model."""
    cp = params.churn
    features_root, out, oracle = Path(features_root), Path(out), Path(oracle)
    booster, features, _ = load_model(out)
    snaps = read_snapshots(features_root, TASK)
    snaps["snapshot_date"] = _as_datetime(snaps["snapshot_date"])
    X = snaps[features].astype("float32")
    snaps["churn_p"] = np.asarray(booster.inplace_predict(X), float)
    snaps["value"] = predict_value(out, snaps)
    snaps["value_realised"] = realised_value(snaps, _raw_root(features_root, raw), params)
    sel = _uplift_selection(out)
    learners = {n: uplift_models.load_learner(out / "model" / "uplift" / n) for n in sel["valid_scores"]}
    # the uplift learners use every dictionary feature (the shadow screen is the classifier's, in tune)
    Xn = snaps[sel.get("features", features)].astype("float32").to_numpy()
    for n, lrn in learners.items():
        snaps[f"uplift_{n}"] = lrn.predict(Xn)
    snaps["uplift_ensemble"] = snaps[[f"uplift_{n}" for n in learners]].mean(axis=1)
    snaps["uplift"] = snaps[f"uplift_{sel['selected']}"]

    metrics: dict[str, Any] = {}  # numbers, then the bars (a list)
    tables: dict[str, pd.DataFrame] = {}
    metrics.update(_churn_metrics(snaps, oracle, cp, tables))
    metrics.update(_value_metrics(snaps, cp, tables))
    camp = snaps[_campaign_rows(snaps)].merge(
        read_retention_truth(oracle), on=["card_id", "snapshot_date"], how="left"
    )
    if camp["tau_true"].isna().any():
        raise ValueError(
            "oracle retention_truth is missing for some campaign rows: world and features disagree"
        )
    metrics.update(_uplift_metrics(camp, sel, learners, out, tables, cp.campaign_capacity_share))
    metrics.update(_targeting_metrics(camp[camp["split"] == "oot"], cp, tables))
    best = json.loads((out / "best_params.json").read_text())
    metrics["n_trials"] = int(best["n_trials"])
    graded, ceilings = grade(params, snaps, camp, oracle, features_root, sel.get("features", features))
    metrics.update(graded)
    snaps["churn_p_ceiling"] = ceilings["churn_p"]
    snaps = snaps.merge(ceilings["uplift"], on=["card_id", "snapshot_date"], how="left")
    metrics.update(contract(params, TASK, features_root, oracle, out))
    metrics["bars"] = bars(metrics, params)

    pred_cols = [
        *KEYS,
        "card_id",
        "churn_p",
        "value",
        "uplift",
        *(f"uplift_{n}" for n in [*learners, "ensemble"]),
        "value_realised",
        "churn_p_ceiling",
        "uplift_ceiling",
    ]
    with atomic_dir(out / "predictions.parquet") as tmp:
        pred = snaps[pred_cols].reset_index(drop=True)
        pred["snapshot_date"] = pred["snapshot_date"].dt.date  # dates are dates in every output table
        write_parquet(pred, tmp / "part-0.parquet")
    with atomic_dir(out / "plots") as tmp:
        # the validation pack credit and limit's PD model get (ROC, reliability, Hosmer-Lemeshow, PSI / CSI,
        # Jeffreys by grade, gains) on the labelled rows the oracle covers; churn's own keys take precedence
        truth = read_churn_true(oracle)[["card_id", "snapshot_date", "p_churn_true"]]
        truth["snapshot_date"] = _as_datetime(truth["snapshot_date"])
        lab = snaps[snaps["label"].notna()].merge(truth, on=["card_id", "snapshot_date"], how="inner")
        frames = {
            s: lab[lab["split"] == s].reset_index(drop=True).assign(label=lambda d: d["label"].astype(int))
            for s in SPLITS
        }
        pack = validation_pack(
            frames,
            score_col="churn_p",
            month_col="snapshot_date",
            oracle_col="p_churn_true",
            features=top_gain_features(booster, 15),
            out_dir=tmp / "validation",
            n_boot=params.credit.bootstrap,
            seed=params.tune.seed,
            n_grades=params.credit.n_grades,
        )
        metrics.update({k: v for k, v in pack.items() if k not in metrics})
        metrics = rounded(dict(sorted(metrics.items())))
        write_json(metrics, out / "metrics.json")
        _write_plots(tables, metrics, tmp)

    passed = bool(
        metrics["oot_auc"] >= cp.min_oot_auc and metrics["lift_at_capacity"] >= cp.min_lift_at_capacity
    )
    log_evaluation(
        params,
        TASK,
        out,
        metrics,
        passed=passed,
        description=DESCRIPTION,
        params_slice=params.churn,
        artifacts={
            "plots": out / "plots",
            "uplift_model": out / "model" / "uplift",
            "value_model": out / "model" / "value",
        },
        registry_note=f"OOT AUC {metrics['oot_auc']:.3f} (oracle {metrics['oot_oracle_auc']:.3f}), "
        f"lift@{cp.campaign_capacity_share:.0%} {metrics['lift_at_capacity']:.2f}",
        extra_params={f"churn_{k}": v for k, v in cp.model_dump().items()},
    )
    return metrics


def _churn_metrics(snaps: pd.DataFrame, oracle: Path, cp: ChurnParams, tables: dict) -> dict:
    m: dict[str, float] = {}
    lab = snaps[snaps["label"].notna()]
    for split in ("valid", "oot"):
        d = lab[lab["split"] == split]
        y, p = d["label"].to_numpy(int), d["churn_p"].to_numpy()
        m[f"{split}_auc"] = model_metrics.auc(y, p)
        m[f"{split}_n"] = int(len(d))
    oot = lab[lab["split"] == "oot"]
    y, p = oot["label"].to_numpy(int), oot["churn_p"].to_numpy()
    m["oot_pr_auc"] = model_metrics.pr_auc(y, p)
    m["oot_event_rate"] = float(y.mean())
    m["oot_mean_churn_p"] = float(p.mean())
    m["oot_brier"] = model_metrics.brier(y, p)
    m["lift_at_capacity"] = model_metrics.lift_at(y, p, cp.campaign_capacity_share)
    m["recall_at_capacity"] = model_metrics.recall_at(y, p, cp.campaign_capacity_share)
    rel = model_metrics.reliability_curve(y, p, n_bins=10)
    m["oot_calibration_error"] = float(
        np.sum(rel["n"] * (rel["obs_rate"] - rel["mean_pred"]).abs()) / rel["n"].sum()
    )
    tables["churn_calibration"] = rel
    # the oracle: true probability of the label on the same rows (every open card has one)
    o = oot.merge(read_churn_true(oracle), on=["card_id", "snapshot_date"], how="inner")
    m["oot_oracle_coverage"] = float(len(o) / len(oot))
    if len(o) and 0 < o["label"].sum() < len(o):
        yo = o["label"].to_numpy(int)
        m["oot_oracle_auc"] = model_metrics.auc(yo, o["p_churn_true"].to_numpy())
        m["oot_oracle_brier"] = model_metrics.brier(yo, o["p_churn_true"].to_numpy())
        m["oot_oracle_mean_p"] = float(o["p_churn_true"].mean())
        ev = o[o["p_event_true"].notna()]
        if 0 < ev["label"].sum() < len(ev):
            # the old oracle (churn-event probability of active accounts) on its own rows, for comparison
            m["oot_oracle_event_auc"] = model_metrics.auc(
                ev["label"].to_numpy(int), ev["p_event_true"].to_numpy()
            )
        m["oot_auc_oracle_rows"] = model_metrics.auc(yo, o["churn_p"].to_numpy())
        m["oot_oracle_pr_auc"] = model_metrics.pr_auc(yo, o["p_churn_true"].to_numpy())
        m["lift_at_capacity_oracle"] = model_metrics.lift_at(
            yo, o["p_churn_true"].to_numpy(), cp.campaign_capacity_share
        )
        m["oot_churn_p_corr_true"] = float(stats.spearmanr(o["churn_p"], o["p_churn_true"]).statistic)
    return m


def _value_metrics(snaps: pd.DataFrame, cp: ChurnParams, tables: dict) -> dict:
    m: dict[str, float] = {}
    d = snaps[(snaps["split"] == "oot") & snaps["value_realised"].notna()]
    a, p = d["value_realised"].to_numpy(), d["value"].to_numpy()
    m["value_n"] = int(len(d))
    m["value_spearman"] = float(stats.spearmanr(p, a).statistic)
    m["value_gini"] = value_gini(a, p)
    m["value_top_decile_capture"] = top_share_capture(a, p, 0.1)
    m["value_top_decile_share_of_total"] = float(
        a[uplift_models.top_k_mask(p, _k(len(a), 0.1))].sum() / a.sum()
    )
    m["value_mean_realised_yuan"] = float(a.mean())
    m["value_mean_pred_yuan"] = float(p.mean())
    m["value_zero_share"] = float(np.mean(np.abs(a) <= 0.005))
    dec = pd.qcut(pd.Series(p).rank(method="first"), 10, labels=False) + 1
    tab = (
        pd.DataFrame({"decile": dec.to_numpy(), "pred": p, "realised": a})
        .groupby("decile", as_index=False)
        .agg(n=("pred", "size"), mean_pred_yuan=("pred", "mean"), mean_realised_yuan=("realised", "mean"))
    )
    tables["value_deciles"] = tab
    m["value_decile_calibration_mae_yuan"] = float(
        np.mean(np.abs(tab["mean_pred_yuan"] - tab["mean_realised_yuan"]))
    )
    return m


def _uplift_metrics(
    camp: pd.DataFrame, sel: dict, learners: dict, out: Path, tables: dict, capacity_share: float
) -> dict:
    m: dict[str, float] = {}
    # model selection: which oracle-free score picks the learner that is truly best on the valid rows?
    vp = pd.read_parquet(out / "model" / "uplift" / "valid_predictions.parquet")
    vp["snapshot_date"] = _as_datetime(vp["snapshot_date"])
    vt = vp.merge(camp[["card_id", "snapshot_date", "tau_true"]], on=["card_id", "snapshot_date"], how="left")
    valid_pehe = {n: uplift_models.pehe(vt[n], vt["tau_true"]) for n in learners}
    truly_best = min(valid_pehe, key=valid_pehe.__getitem__)
    for n in learners:
        m[f"valid_pehe_{n}"] = valid_pehe[n]
        for s, v in sel["valid_scores"][n].items():
            m[f"valid_{s}_{n}"] = v
    for s, pick in sel["picks"].items():
        m[f"selection_correct_{s}"] = int(pick == truly_best)
        m[f"selection_pehe_regret_{s}"] = valid_pehe[pick] - valid_pehe[truly_best]
    # out-of-time grading of the refitted learners against the true effect
    d = camp[camp["split"] == "oot"]
    y = 1.0 - d["label"].to_numpy(float)
    w = d["treatment"].to_numpy(float)
    e = d["propensity"].to_numpy(float)
    tau = d["tau_true"].to_numpy()
    m["uplift_n_oot"] = int(len(d))
    m["ate_true"] = float(tau.mean())
    # Hajek (self-normalised) IPW with the logged propensity: the design-based ATE on the observed label
    m["ate_ipw"] = float(
        np.sum(w * y / e) / np.sum(w / e) - np.sum((1 - w) * y / (1 - e)) / np.sum((1 - w) / (1 - e))
    )
    m["oracle_qini"] = uplift_models.qini_score(y, w, tau, normalize=True)
    m["oracle_qini_true"] = uplift_models.true_qini(tau, tau)
    curves = {"share": np.linspace(0, 1, 101)}
    idx = np.round(curves["share"] * len(d)).astype(int)
    curves["gain_true_oracle"] = uplift_models.true_gain_curve(tau, tau)[idx]
    curves["gain_true_random"] = curves["share"] * tau.sum()
    for n in [*learners, "ensemble"]:
        th = d[f"uplift_{n}"].to_numpy()
        m[f"pehe_{n}"] = uplift_models.pehe(th, tau)
        m[f"ate_est_{n}"] = float(th.mean())
        m[f"qini_{n}"] = uplift_models.qini_score(y, w, th, normalize=True)
        m[f"qini_capture_{n}"] = uplift_models.qini_capture(tau, th)
        curves[f"gain_true_{n}"] = uplift_models.true_gain_curve(tau, th)[idx]
        curves[f"qini_observed_{n}"] = uplift_models.qini_curve(y, w, th)[idx]
    th = d["uplift"].to_numpy()
    m["pehe"] = uplift_models.pehe(th, tau)
    m["pehe_constant_ate"] = uplift_models.pehe(
        np.full(len(tau), tau.mean()), tau
    )  # floor any useful model must beat
    m["tau_sd"] = float(tau.std())
    m["ate_est"] = float(th.mean())
    m["ate_abs_error"] = abs(m["ate_est"] - m["ate_true"])
    m["qini"] = uplift_models.qini_score(y, w, th, normalize=True)
    m["qini_true"] = uplift_models.true_qini(tau, th)
    m["qini_capture"] = uplift_models.qini_capture(tau, th)
    m["auuc"] = uplift_models.auuc_score(y, w, th, normalize=True)
    m["uplift_at_capacity"] = uplift_models.uplift_at(y, w, th, capacity_share)
    m["qini_capture_churn_risk"] = uplift_models.qini_capture(tau, d["churn_p"].to_numpy())
    # which learner is reported: index in alphabetical order (dr, t, x); one past the last = the ensemble mean
    names = list(sel["valid_scores"])
    m["uplift_selected_index"] = names.index(sel["selected"]) if sel["selected"] in names else len(names)
    curves["gain_true_churn_risk"] = uplift_models.true_gain_curve(tau, d["churn_p"].to_numpy())[idx]
    tables["qini_curves"] = pd.DataFrame(curves)
    return m


def _targeting_metrics(d: pd.DataFrame, cp: ChurnParams, tables: dict) -> dict:
    """Four rules at capacity k = ceil(share x campaign rows), graded with true tau x realised value."""
    d = d[d["value_realised"].notna()]
    tau, value = d["tau_true"].to_numpy(), d["value_realised"].to_numpy()
    k = _k(len(d), cp.campaign_capacity_share)
    rules = {
        "risk": d["churn_p"].to_numpy(),
        "value_at_risk": d["churn_p"].to_numpy() * d["value"].to_numpy(),
        "uplift": d["uplift"].to_numpy(),
        "uplift_value": d["uplift"].to_numpy() * d["value"].to_numpy(),
        "random": np.random.default_rng(SEED).random(len(d)),
    }
    tab = uplift_models.targeting_value(tau, value, rules, k=k, cost=cp.offer_cost_yuan)
    tables["targeting"] = tab
    m: dict[str, float] = {"targeting_n": int(len(d)), "targeting_k": int(k)}
    for _, r in tab.iterrows():
        m[f"value_{r['rule']}_targeting"] = float(r["incremental_value"])
        m[f"retained_{r['rule']}_targeting"] = float(r["incremental_retained"])
        if r["rule"] != "oracle":
            m[f"share_of_oracle_{r['rule']}"] = float(r["share_of_oracle"])
    m["value_gross_oracle_targeting"] = m["value_oracle_targeting"] + k * cp.offer_cost_yuan
    return m


# ------------------------------------------------------------------------------------------------ grading
def grade(
    params: Params,
    snaps: pd.DataFrame,
    camp: pd.DataFrame,
    oracle: Path,
    features_root: Path,
    uplift_features: list[str],
) -> tuple[dict, dict]:
    """Observable ceilings and customer-clustered bootstrap bounds (modeling/grading.py).

    * OOT AUC: XGBoost fitted to the oracle's ``p_label_3m`` (soft labels) on every snapshot with one, all
      splits, all candidate features, cross-fitted over customer folds; graded on the labelled OOT rows.
    * ``qini_capture``: XGBoost regression of the true effect ``tau_label`` on the uplift learners' features
      over every campaign row, cross-fitted the same way; its out-of-fold ranking of the OOT campaign rows.
    * bounds on ``lift_at_capacity`` and ``qini_capture`` (and the ratio to the ceiling).

    Returns the metrics and the ceilings' scores: ``churn_p`` per snapshot row (NaN outside the graded rows) and
    ``uplift`` (card_id, snapshot_date, uplift_ceiling) for the OOT campaign rows."""
    gp, cp = params.grading, params.churn
    candidates, _ = task_features(read_dictionary(features_root), TASK)
    truth = read_churn_true(oracle)[["card_id", "snapshot_date", "p_churn_true"]]
    rows = snaps[["card_id", "snapshot_date"]].merge(truth, on=["card_id", "snapshot_date"], how="left")
    p_true = rows["p_churn_true"].to_numpy()
    has = np.isfinite(p_true)
    graded = has & (snaps["split"] == "oot").to_numpy() & snaps["label"].notna().to_numpy()
    fit = oracle_grading.cross_fit_ceiling(
        snaps.loc[has, candidates],
        p_true[has],
        snaps.loc[has, "customer_id"].to_numpy(),
        graded[has],
        gp.ceiling,
        objective="binary:logistic",
        seed=gp.seed,
        nthread=params.tune.nthread,
    )
    g = snaps[graded]
    y = g["label"].to_numpy(dtype=float)
    out = oracle_grading.grade_auc(
        y, g["churn_p"].to_numpy(), fit, p_true[graded], g["customer_id"].to_numpy(), gp, rows=graded[has]
    )
    out["oot_auc_ceiling_train_rows"] = fit.train_rows
    boot = oracle_grading.ClusterBootstrap.from_params(g["customer_id"].to_numpy(), gp)
    lo, hi = boot.bounds(
        boot.replicates(
            lambda w: oracle_grading.weighted_lift(y, g["churn_p"].to_numpy(), cp.campaign_capacity_share, w)
        )
    )
    out["lift_at_capacity_lo"], out["lift_at_capacity_hi"] = float(lo[0]), float(hi[0])

    camp = camp.reset_index(drop=True)
    oot = (camp["split"] == "oot").to_numpy()
    qfit = oracle_grading.cross_fit_ceiling(
        camp[uplift_features],
        camp["tau_true"].to_numpy(),
        camp["customer_id"].to_numpy(),
        oot,
        gp.ceiling,
        objective="reg:squarederror",
        seed=gp.seed,
        nthread=params.tune.nthread,
    )
    d = camp[oot]
    tau, model = d["tau_true"].to_numpy(), d["uplift"].to_numpy()
    ceiling = {1.0: qfit.full[oot]}

    def stat(idx: np.ndarray) -> list[float]:
        m, c = (
            uplift_models.qini_capture(tau[idx], model[idx]),
            uplift_models.qini_capture(tau[idx], ceiling[1.0][idx]),
        )
        return [m, c, m / c if c else float("nan"), c - m, 1.0 - c]

    qboot = oracle_grading.ClusterBootstrap.from_params(d["customer_id"].to_numpy(), gp)
    qlo, qhi = qboot.bounds(qboot.replicates(stat, by_index=True))
    point = stat(np.arange(len(d)))
    keys = [
        "qini_capture",
        "qini_capture_ceiling",
        "qini_capture_ceiling_ratio",
        "qini_capture_learning_loss",
        "qini_capture_information_loss",
    ]
    for i, key in enumerate(keys):
        if key != "qini_capture":  # written by _uplift_metrics
            out[key] = point[i]
        out[f"{key}_lo"], out[f"{key}_hi"] = float(qlo[i]), float(qhi[i])
    if len(qfit.predictions) > 1:
        curve_rows, curve = qfit.curve(oot)
        tau_c = camp["tau_true"].to_numpy()[curve_rows]
        values = {f: uplift_models.qini_capture(tau_c, v) for f, v in curve.items()}
        out.update(
            oracle_grading.learning_curve(values, "qini_capture_ceiling", "qini_capture_ceiling_convergence")
        )
        out["qini_capture_ceiling_curve_rows"] = int(curve_rows.sum())
    out["qini_capture_ceiling_train_rows"] = qfit.train_rows
    churn_p = np.full(len(snaps), np.nan)
    churn_p[has] = fit.full
    uplift = d[["card_id", "snapshot_date"]].assign(uplift_ceiling=ceiling[1.0])
    return out, {"churn_p": churn_p, "uplift": uplift}


def bars(metrics: dict, params: Params) -> list[dict]:
    """The churn bars (params ``grading.bars.churn`` and ``.explain``; docs/grading.md)."""
    b = params.grading.bars.churn
    return [
        oracle_grading.metric_bar(metrics, "oot_auc_ceiling_ratio", b.oot_auc_ceiling_ratio),
        oracle_grading.metric_bar(metrics, "qini_capture", b.qini_capture),
        *oracle_grading.explain_bars(metrics, params.grading.bars.explain),
    ]


# --------------------------------------------------------------------------------------------------- plots
def _write_plots(tables: dict[str, pd.DataFrame], metrics: dict, folder: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    for name, tab in tables.items():
        write_csv(tab.round(6), folder / f"{name}.csv", float_format=None)

    # qini curves (true effect): cumulative expected retained accounts vs share contacted
    q = tables["qini_curves"]
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for col in [c for c in q.columns if c.startswith("gain_true_")]:
        ax.plot(
            q["share"] * 100,
            q[col],
            label=col.removeprefix("gain_true_"),
            lw=2 if col.endswith(("oracle", "random")) else 1.2,
            ls="--" if col.endswith("random") else "-",
        )
    ax.set_xlabel("campaign population contacted, ranked by score (%)")
    ax.set_ylabel("true incremental retained accounts (sum of tau)")
    ax.set_title(
        f"Retention uplift, OOT: true gain curves\nqini_capture of the reported uplift "
        f"{metrics['qini_capture']:.2f} (1 = oracle, 0 = random)"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, folder / "qini_curves.png")

    t = tables["targeting"]
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.bar(t["rule"], t["incremental_value"], color=["#777" if r != "oracle" else "#2a7" for r in t["rule"]])
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("true incremental retained value, net of offer cost (yuan)")
    best = t[t["rule"] != "oracle"].sort_values("incremental_value").iloc[-1]
    ax.set_title(
        f"Whom to contact (k = {metrics['targeting_k']} offers)\nbest feasible rule '{best['rule']}': "
        f"{best['incremental_value']:,.0f} yuan vs oracle {metrics['value_oracle_targeting']:,.0f} yuan"
    )
    fig.tight_layout()
    save_figure(fig, folder / "targeting.png")

    c = tables["churn_calibration"]
    fig = Figure(figsize=(5, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lim = float(max(c["mean_pred"].max(), c["obs_rate"].max()) * 1.05)
    ax.plot([0, lim], [0, lim], "k--", lw=0.8)
    ax.plot(c["mean_pred"], c["obs_rate"], "o-")
    ax.set_xlabel("mean predicted 3-month churn probability")
    ax.set_ylabel("observed churn rate")
    ax.set_title(
        f"Churn calibration, OOT deciles\nweighted abs. error {metrics['oot_calibration_error']:.3f}"
    )
    fig.tight_layout()
    save_figure(fig, folder / "churn_calibration.png")

    v = tables["value_deciles"]
    fig = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(v["decile"], v["mean_pred_yuan"], "o-", label="predicted")
    ax.plot(v["decile"], v["mean_realised_yuan"], "s-", label="realised")
    ax.set_xlabel("decile of predicted value (10 = highest)")
    ax.set_ylabel("12-month account margin (yuan)")
    ax.set_title(
        f"Customer value, OOT: Spearman {metrics['value_spearman']:.2f}\n"
        f"top decile captures {metrics['value_top_decile_capture']:.0%} of the best decile's value"
    )
    ax.legend()
    fig.tight_layout()
    save_figure(fig, folder / "value_deciles.png")
