"""Credit-limit allocation: choose a line per limit decision to maximise the bank's expected 12-month profit
under portfolio constraints, graded against the oracle's potential outcomes (docs/tasks/limit.md).

Decisions (``data/features/limit``): the initial line at booking (options: ``line_grid_yuan``) and each
periodic review (options: the current line times ``review_multiples``, rounded to 100 yuan, capped at
``max_line_yuan``). Profit of a line over 12 months (yuan)::

    interchange * spend + APR * avg revolving - funding * (avg revolving + spend / 12)
    - (reward_rate + platform_bonus * platform_share) * spend - PD * LGD * EAD,   EAD = ead_line_share * line

Method: three monotone XGBoost response models (12-month spend, average revolving balance, 90+ DPD) are
S-learners with the line as treatment features (log line and log line ratio), tuned with Optuna on the
time-based validation split. The revolving model predicts utilisation (balance / line, a log-line offset,
non-increasing in the line); the default model gets a pooled log-line slope estimated on the randomised test
cells and an intercept recalibrated on the latest validation months; every response is made non-decreasing
in the line per decision. Per-option profit predictions feed a multiple-choice
knapsack (exposure budget, expected-loss cap, no increase in arrears) solved with a proven gap
(:mod:`cardlab.modeling.optimise`). Baselines: the legacy (logged) lines and a "PD-only" optimiser whose
spend/revolving stay as at the logged line and whose PD does not move with the line. Off-policy estimates
(IPS, SNIPS, DR; :mod:`cardlab.modeling.ope`) of each policy come from the logged propensities, beside the
exact value from the oracle (``limit_potential``).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import xgboost as xgb
from scipy.special import expit

from cardlab import tracking
from cardlab.artifacts import atomic_dir, dir_digest, fault_point, read_json, write_json, write_parquet
from cardlab.config import Params, params_hash
from cardlab.explain.run import contract_metrics
from cardlab.modeling import grading as G
from cardlab.modeling import ope
from cardlab.modeling.optimise import InfeasibleError, MCKPResult, solve_mckp
from cardlab.modeling.screen import shadow_screen
from cardlab.modeling.tuning import run_study
from cardlab.modeling.validation import top_gain_features, validation_pack
from cardlab.modeling.workflow import (
    SPLITS,
    clear_run_pointer,
    experiment_name,
    model_digest,
    read_best_params,
    read_snapshots,
    remember_scored,
    scored_digest,
    verified_run,
    write_run_pointer,
)
from cardlab.modeling.xgb import (
    TaskData,
    base_params,
    fit_booster,
    load_booster,
    read_dictionary,
    save_booster,
    task_features,
)

TASK = "limit"
DESCRIPTION = (
    "Credit-line response models for the co-branded card: 12-month spend, average revolving balance and "
    "90+ DPD as functions of the customer and the line (S-learners, line monotone increasing), tuned with "
    "Optuna; their per-line profit feeds a multiple-choice knapsack over accounts x lines under an exposure "
    "budget and an expected-loss cap. Graded out-of-time against the oracle's potential outcomes."
)
TREAT = ("treat_log_line", "treat_log_ratio")
# the treatment columns' reason texts (they are model inputs, not features of the dictionary)
TREAT_TEXT = {
    "treat_log_line": {"reason_zh": "信用额度水平", "reason_en": "the level of the credit line"},
    "treat_log_ratio": {"reason_zh": "本次额度调整幅度", "reason_en": "the size of this line change"},
}
ACTION_COLS = ("line_before_fen", "line_after_fen", "line_increase_fen", "cell", "propensity")
MODELS: dict[str, dict[str, str]] = {
    "spend": {"target": "t_spend", "objective": "reg:tweedie", "metric": "rmse"},
    "revolve": {"target": "t_revolve", "objective": "reg:tweedie", "metric": "rmse"},
    "default": {"target": "label", "objective": "binary:logistic", "metric": "logloss"},
}
POLICIES = ("legacy", "pd_only", "policy", "oracle")
_PNG_META = {"Software": None}


# ---------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------
def treatment_columns(line_yuan: np.ndarray, line_before_yuan: np.ndarray) -> dict[str, np.ndarray]:
    """Treatment features of the S-learners: log line, and log(line / line before) (NaN at booking)."""
    line = np.asarray(line_yuan, dtype=np.float64)
    before = np.asarray(line_before_yuan, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(before > 0, np.log(line / before), np.nan)
    return {"treat_log_line": np.log(np.maximum(line, 1.0)), "treat_log_ratio": ratio}


def _annualise(df: pd.DataFrame) -> np.ndarray:
    months = df["y_months_observed"].to_numpy(dtype=np.float64)
    return 12.0 / np.clip(months, 1.0, None)


def _prepare(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    line = df["line_after_fen"].to_numpy(dtype=np.float64) / 100.0
    before = df["line_before_fen"].astype("float64").to_numpy() / 100.0
    for k, v in treatment_columns(line, before).items():
        df[k] = v
    ann = _annualise(df)
    df["t_spend"] = df["y_spend_fen"].astype("float64").fillna(0.0) / 100.0 * ann
    df["t_revolve"] = df["y_avg_revolving_fen"].astype("float64").fillna(0.0) / 100.0
    return df


def _load(features_root: Path) -> tuple[pd.DataFrame, list[str], dict[str, int]]:
    df = read_snapshots(features_root, TASK)
    missing = {
        "decision_type",
        *ACTION_COLS,
        "y_spend_fen",
        "y_avg_revolving_fen",
        "y_months_observed",
    } - set(df.columns)
    if missing:
        raise ValueError(f"{features_root}/{TASK}: columns missing: {sorted(missing)}")
    names, directions = task_features(read_dictionary(features_root), TASK)
    clash = set(names) & {*ACTION_COLS, *TREAT}
    if clash:
        raise ValueError(f"action columns must not be features of the limit task: {sorted(clash)}")
    df = df.sort_values(["snapshot_date", "customer_id", "decision_type"], kind="stable").reset_index(
        drop=True
    )
    return _prepare(df), names, directions


def _treat_sign(model: str, params: Params) -> int:
    """Monotone direction of the treatment features: responses rise with the line, except utilisation
    (balance / line), which does not rise with it (the balance grows less than in proportion)."""
    return -1 if model == "revolve" and params.limit.revolve_model == "utilisation" else 1


def _line_offset(model: str, params: Params) -> float:
    """Coefficient c of the log-line offset (XGBoost base margin c * log(line)) a model trains with before
    any estimated slope: 1 for the utilisation model (prediction = line * utilisation), else 0."""
    return 1.0 if model == "revolve" and params.limit.revolve_model == "utilisation" else 0.0


def _offset_params(coef: float, objective: str) -> dict:
    """With a base margin the booster's own intercept is unused; base_score = the identity margin keeps its
    prediction without the offset meaningful (utilisation for the revolving model)."""
    if not coef:
        return {}
    return {"base_score": 0.5 if objective == "binary:logistic" else 1.0}


def _log_line(frame: pd.DataFrame) -> np.ndarray:
    return np.log(np.maximum(frame["line_after_fen"].to_numpy(dtype=np.float64) / 100.0, 1.0))


def _offset_intercept(data: TaskData, coef: float) -> float:
    """Constant of the PD model's base margin ``coef * log(line) + b``: with a base margin XGBoost ignores its
    own intercept, so b = logit(train default rate) - coef * mean train log line starts boosting at the train
    rate instead of at ``expit(coef * log line)`` (about 0.99 for a 10,000-yuan line at slope 0.58), which
    early stopping leaves far from the data."""
    frame = data.frames["train"]
    if frame.empty:
        return 0.0
    rate = float(np.clip(frame["label"].to_numpy(dtype=np.float64).mean(), 1e-4, 1 - 1e-4))
    return float(np.log(rate / (1 - rate)) - coef * _log_line(frame).mean())


def _matrix(
    data: TaskData, split: str, test_cell_weight: float, coef: float, intercept: float = 0.0
) -> xgb.DMatrix:
    frame = data.frames[split]
    dm = data.matrix(split, weight=_weights(frame, test_cell_weight))
    if coef:
        dm.set_base_margin((coef * _log_line(frame) + intercept).astype("float32"))
    return dm


def _task_data(
    df: pd.DataFrame, names: list[str], directions: dict[str, int], model: str, params: Params
) -> TaskData:
    spec = MODELS[model]
    features = [*names, *TREAT]
    dirs = {t: _treat_sign(model, params) for t in TREAT}
    if model == "default":
        dirs = {**{n: directions.get(n, 0) for n in names}, **dirs}
    labelled = df[df["label"].notna()]
    # response models learn from complete 12-month windows only (OOT rows are graded, never fitted)
    frames = {s: labelled[labelled["split"] == s].reset_index(drop=True) for s in SPLITS}
    for s in ("train", "valid"):
        if frames[s].empty:
            raise ValueError(f"limit: split {s!r} has no labelled rows; check features.split in params.yaml")
    return TaskData(frames=frames, features=features, directions=dirs, label=spec["target"])


def _weights(frame: pd.DataFrame, test_cell_weight: float) -> np.ndarray:
    return np.where(frame["cell"].astype(str) == "test", test_cell_weight, 1.0).astype("float32")


# ---------------------------------------------------------------------------------------------------------
# tune / train
# ---------------------------------------------------------------------------------------------------------
def tune(params: Params, features_root: Path, out: Path) -> dict:
    """One Optuna study per response model (shared journal ``optuna.journal``); writes best_params.json."""
    df, names, directions = _load(features_root)
    digest = dir_digest(Path(features_root) / TASK)[:16]
    # feature screen (modeling/screen.py) per response on its own target; the three models share the union
    candidates, kept, pass_rate = len(names), set(), {}
    for model, spec in MODELS.items():
        data = _task_data(df, names, directions, model, params)
        k, rate = shadow_screen(
            data, params.tune, params.simulate.seed, objective=spec["objective"], keep_always=TREAT
        )
        kept |= set(k)
        pass_rate[model] = rate
    names = [n for n in names if n in kept]
    result: dict[str, dict] = {}
    for model, spec in MODELS.items():
        data = _task_data(df, names, directions, model, params)
        w = params.limit.test_cell_weight
        coef = _line_offset(model, params)
        study = run_study(
            task=f"{TASK}-{model}",
            tune=params.tune,
            seed=params.simulate.seed,
            out_dir=out,
            data_digest=digest,
            base=base_params(params.tune, objective=spec["objective"], eval_metric=spec["metric"]),
            dtrain=_matrix(data, "train", w, coef),
            dvalid=_matrix(data, "valid", w, coef),
            fixed={"monotone_constraints": data.monotone, **_offset_params(coef, spec["objective"])},
            direction="minimize",
            metric=spec["metric"],
            experiment_name=experiment_name(params, TASK),
            code_roots=(__name__,),
            identity={"features": data.features},
        )
        best = study.best_trial
        result[model] = {
            "best_value": round(float(best.value), 6),
            "metric": f"valid_{spec['metric']}",
            "n_trials": sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials),
            "n_pruned": sum(t.state.name == "PRUNED" for t in study.trials),
            "best_params": best.params,
        }
    out_json = {
        "models": result,
        "n_trials": sum(r["n_trials"] for r in result.values()),
        "features": names,
        "screen": {"candidates": candidates, "kept": len(names), "pass_rate": pass_rate},
    }
    write_json(out_json, Path(out) / "best_params.json")
    return out_json


def train(params: Params, features_root: Path, out: Path) -> Path:
    """Fit the three response models with the tuned params; write ``model/`` and log them to MLflow."""
    out = Path(out)
    tuned = read_best_params(out, TASK)
    best = tuned["models"]
    df, names, directions = _load(features_root)
    names = [n for n in names if n in set(tuned.get("features", names))]  # the screened features
    boosters, meta = {}, {"features": [*names, *TREAT], "treatment": list(TREAT), "models": {}}
    lp = params.limit
    for model, spec in MODELS.items():
        data = _task_data(df, names, directions, model, params)
        coef = _line_offset(model, params)

        def fit(
            coef: float, intercept: float = 0.0, data=data, spec=spec, model=model
        ) -> tuple[xgb.Booster, dict]:
            bp = {
                **base_params(params.tune, objective=spec["objective"], eval_metric=spec["metric"]),
                "monotone_constraints": data.monotone,
                **_offset_params(coef, spec["objective"]),
                **best[model]["best_params"],
            }
            booster = fit_booster(
                bp,
                _matrix(data, "train", lp.test_cell_weight, coef, intercept),
                _matrix(data, "valid", lp.test_cell_weight, coef, intercept),
                num_boost_round=params.tune.num_boost_round,
                early_stopping_rounds=params.tune.early_stopping_rounds,
            )
            return booster, bp

        boosters[model], bp = fit(coef)
        info: dict = {
            "target": spec["target"],
            "params": bp,
            "directions": data.directions,
            "line_offset": coef,
        }
        if model == "default":
            if lp.estimate_pd_line_slope:
                slope, se, n_rows = pd_line_slope(boosters[model], data, coef)
                info.update(
                    line_slope_raw=slope if np.isfinite(slope) else None,
                    line_slope_se=se if np.isfinite(se) else None,
                    line_slope_rows=n_rows,
                )
                coef = float(np.clip(slope, 0.0, 1.0)) if np.isfinite(slope) else 0.0
                if coef > 0:  # refit with the slope as an offset: the trees learn the rest around it
                    intercept = _offset_intercept(data, coef)
                    boosters[model], bp = fit(coef, intercept)
                    info.update(params=bp, line_offset=coef, line_offset_intercept=intercept)
            info["logit_shift"] = recalibration_shift(
                boosters[model],
                data,
                coef,
                lp.pd_recalibration_months,
                info.get("line_offset_intercept", 0.0),
            )
        meta["models"][model] = info
    model_dir = out / "model"
    clear_run_pointer(out)  # the train -> evaluate handoff of modeling/workflow.py
    with atomic_dir(model_dir) as tmp:
        for model, booster in boosters.items():
            save_booster(booster, tmp / f"{model}.ubj")
        write_json(meta, tmp / "features.json")
        digest = dir_digest(tmp)  # of the files this process wrote
    fault_point("train.model_written")
    with tracking.stage_run(
        experiment_name=experiment_name(params, TASK),
        run_name=f"{TASK}-model",
        description=DESCRIPTION,
        stage=f"train@{TASK}",
        params_hash=params_hash(params.tune),
        inputs={f"features_{TASK}": Path(features_root) / TASK},
        tags={"task": TASK, "model_digest": digest},
    ) as run:
        tracking.log_params(
            {f"{m}_{k}": v for m, d in meta["models"].items() for k, v in d["params"].items()}
        )
        tracking.log_metrics({f"{m}_best_iteration": b.num_boosted_rounds() for m, b in boosters.items()})
        tracking.log_metrics(
            {
                "pd_line_offset": meta["models"]["default"]["line_offset"],
                "pd_logit_shift": meta["models"]["default"]["logit_shift"],
            }
        )
        example = df[df["split"] == "train"][meta["features"]].astype("float32").head(20)
        uris = {m: tracking.log_xgboost_model(b, example) for m, b in boosters.items()}
        write_run_pointer(out, run.info.run_id, uris, digest)
    return model_dir


def _margin(
    booster: xgb.Booster, frame: pd.DataFrame, features: list[str], coef: float, intercept: float = 0.0
) -> np.ndarray:
    """Logit (margin) of ``booster`` at each row's logged line, offset included."""
    dm = xgb.DMatrix(frame[features].astype("float32"), feature_names=features, nthread=2)
    if coef:
        dm.set_base_margin((coef * _log_line(frame) + intercept).astype("float32"))
    return np.asarray(booster.predict(dm, output_margin=True), dtype=np.float64)


def _logistic_offset_fit(y: np.ndarray, offset: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood (a, b) of P(y) = expit(offset + a + b * x) by Newton steps; returns (coef, se)."""
    X = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    cov = np.full((2, 2), np.nan)
    for _ in range(50):
        p = expit(offset + X @ beta)
        hess = X.T @ (X * (p * (1 - p))[:, None])
        try:
            cov = np.linalg.inv(hess)
        except np.linalg.LinAlgError:
            return np.full(2, np.nan), np.full(2, np.nan)
        step = cov @ (X.T @ (y - p))
        beta = beta + step
        if np.abs(step).max() < 1e-10:
            break
    return beta, np.sqrt(np.clip(np.diag(cov), 0.0, None))


def pd_line_slope(booster: xgb.Booster, data: TaskData, coef: float = 0.0) -> tuple[float, float, int]:
    """Pooled slope of the default logit in log(line) that the trees leave out, estimated where the line is
    randomised: the test-cell rows of the train and valid splits. Fit P(default) = expit(m + a + b * x) with
    m the model's logit at the logged line and x the log line centred within its randomisation stratum (the
    booking grid; the multiples of the line before a review). Trees split on the line rarely, because its
    effect is small next to the customer's risk, so their response to the line is too flat; b restores it.
    Returns (b, its standard error, rows used); b is NaN when there are fewer than 50 rows or 5 defaults."""
    frame = pd.concat([data.frames[s] for s in ("train", "valid")], ignore_index=True)
    frame = frame[(frame["cell"].astype(str) == "test") & frame["label"].notna()].reset_index(drop=True)
    y = frame["label"].to_numpy(dtype=np.float64)
    if len(frame) < 50 or y.sum() < 5:
        return float("nan"), float("nan"), len(frame)
    x = _log_line(frame)
    stratum = (
        frame["decision_type"].astype(str)
        + ":"
        + frame["line_before_fen"].astype("float64").fillna(0).astype(str)
    )
    x = x - pd.Series(x).groupby(stratum.to_numpy()).transform("mean").to_numpy()
    beta, se = _logistic_offset_fit(y, _margin(booster, frame, data.features, coef), x)
    return float(beta[1]), float(se[1]), len(frame)


def recalibration_shift(
    booster: xgb.Booster, data: TaskData, coef: float, months: int, intercept: float = 0.0
) -> float:
    """Logit shift that makes the mean predicted PD equal the realised default rate of the valid split's
    latest ``months`` decision months (0: no shift): the most recent vintages whose outcomes are *matured*
    before the first OOT decision. The split's performance-window gap (``features.limit_split.gap_months`` >=
    ``limit_outcome_months``, enforced by config.py) ends every valid outcome window before the first OOT month,
    so the shift reads no OOT-period outcome. evaluate publishes the capture with and without it."""
    frame = data.frames["valid"]
    if not months or frame.empty:
        return 0.0
    month = pd.to_datetime(frame["snapshot_date"]).dt.to_period("M")
    recent = frame[month > month.max() - months].reset_index(drop=True)
    y = recent["label"].to_numpy(dtype=np.float64)
    if len(recent) < 50 or y.sum() < 5:
        return 0.0
    m = _margin(booster, recent, data.features, coef, intercept)
    lo, hi = -5.0, 5.0
    for _ in range(60):  # the mean of expit(m + d) is increasing in d
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expit(m + mid).mean() < y.mean() else (lo, mid)
    return float(round((lo + hi) / 2, 9))


def load_models(out: Path) -> tuple[dict[str, object], dict]:
    """The three response boosters and their metadata; remembers their digest for registration."""
    digest = model_digest(Path(out))
    remedy = f"re-run `cardlab train {TASK}` (or `dvc repro train@{TASK}`)"
    meta = read_json(Path(out) / "model" / "features.json", what="the models' metadata", remedy=remedy)
    models = {m: load_booster(Path(out) / "model" / f"{m}.ubj", remedy=remedy) for m in MODELS}
    remember_scored(Path(out), digest)
    return models, meta


# ---------------------------------------------------------------------------------------------------------
# options, responses, profit
# ---------------------------------------------------------------------------------------------------------
def line_options(df: pd.DataFrame, params: Params) -> tuple[np.ndarray, np.ndarray]:
    """Line options (yuan, n x K) and their mask. Booking: the grid; review: current line x multiples,
    rounded to 100 yuan and capped (duplicates after the cap are masked)."""
    lp = params.limit
    grid = np.asarray(lp.line_grid_yuan, dtype=np.float64)
    mults = np.asarray(lp.review_multiples, dtype=np.float64)
    k = max(len(grid), len(mults))
    n = len(df)
    lines = np.zeros((n, k))
    allowed = np.zeros((n, k), bool)
    review = (df["decision_type"].astype(str) == "review").to_numpy()
    lines[~review, : len(grid)] = grid
    allowed[~review, : len(grid)] = True
    old_fen = df["line_before_fen"].astype("float64").fillna(0.0).to_numpy()[review]
    # the bank's rounding: whole hundreds of yuan (in fen: 10_000), capped
    opt_fen = np.minimum(
        np.round(old_fen[:, None] * mults[None, :] / 10_000) * 10_000, lp.max_line_yuan * 100.0
    )
    lines[review, : len(mults)] = opt_fen / 100.0
    allowed[review, : len(mults)] = True
    # mask duplicated lines (keep the first occurrence)
    for j in range(1, k):
        dup = (lines[:, [j]] == lines[:, :j]).any(axis=1) & allowed[:, j]
        allowed[dup, j] = False
    lines[~allowed] = 0.0
    return lines, allowed


def in_arrears(df: pd.DataFrame) -> np.ndarray:
    """Accounts in arrears at a review: flagged by the bank's review system (the logged decision was forced,
    propensity 1) or days past due on the last statement before the review."""
    review = (df["decision_type"].astype(str) == "review").to_numpy()
    forced = (df["propensity"].astype("float64").fillna(0.0) >= 1.0 - 1e-12).to_numpy()
    dpd = df["acct_dpd_last"].astype("float64").fillna(0.0).to_numpy() > 0 if "acct_dpd_last" in df else False
    return review & (forced | dpd)


def logged_choice(df: pd.DataFrame, lines: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Index of the logged line among the options (raises if a logged line is not on the option grid)."""
    logged = df["line_after_fen"].to_numpy(dtype=np.float64)[:, None] / 100.0
    hit = np.isclose(lines, logged) & allowed
    if not hit.any(axis=1).all():
        bad = df.loc[~hit.any(axis=1), ["customer_id", "snapshot_date", "line_after_fen"]].head(3)
        raise ValueError(
            f"logged lines not on the option grid (check limit.line_grid_yuan/review_multiples):\n{bad}"
        )
    return np.argmax(hit, axis=1).astype(np.int64)


def monotone_in_line(values: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """Per row, the running maximum over the options sorted by line: a response that never falls as the
    line rises. Masked options (line 0) are left as they are and do not feed the running maximum."""
    masked = lines <= 0
    order = np.argsort(lines, axis=1, kind="stable")
    vals = np.where(masked, -np.inf, values)
    run = np.maximum.accumulate(np.take_along_axis(vals, order, axis=1), axis=1)
    out = np.empty_like(values)
    np.put_along_axis(out, order, run, axis=1)
    return np.where(masked, values, out)


def predict_responses(
    models: dict, meta: dict, df: pd.DataFrame, lines: np.ndarray, *, logit_shift: float | None = None
) -> dict[str, np.ndarray]:
    """S-learner predictions of spend, revolving balance and PD (n x K) at every line option: each model's
    log-line offset and the PD recalibration applied (``logit_shift`` replaces the recalibration shift of the
    default model when given, e.g. 0.0 for the policy without recalibration), then made non-decreasing in the
    line per row."""
    n, k = lines.shape
    names = [f for f in meta["features"] if f not in TREAT]
    base = df[names].astype("float32").to_numpy()
    before = df["line_before_fen"].astype("float64").to_numpy() / 100.0
    X = np.repeat(base, k, axis=0)
    treat = treatment_columns(lines.reshape(-1), np.repeat(before, k))
    X = np.column_stack([X, *(treat[t].astype("float32") for t in TREAT)])
    # the models' column order as one float32 matrix: XGBoost reads it without a per-column pandas
    # conversion (the decision service calls this for one application at a time)
    cols = [*names, *TREAT]
    frame = np.ascontiguousarray(X[:, [cols.index(f) for f in meta["features"]]], dtype=np.float32)
    log_line = np.log(np.maximum(lines.reshape(-1), 1.0))
    out = {}
    for m, booster in models.items():
        info = meta["models"].get(m, {})
        coef = float(info.get("line_offset", 0.0))
        offset = coef * log_line + float(info.get("line_offset_intercept", 0.0))
        margin = booster.inplace_predict(
            frame, predict_type="margin", base_margin=offset.astype("float32") if coef else None
        )
        shift = float(info.get("logit_shift", 0.0))
        if m == "default" and logit_shift is not None:
            shift = float(logit_shift)
        margin = np.asarray(margin, dtype=np.float64).reshape(n, k) + shift
        pred = expit(margin) if m == "default" else np.exp(margin)
        out[m] = monotone_in_line(pred, lines)
    out["spend"] = np.clip(out["spend"], 0.0, None)
    out["revolve"] = np.clip(out["revolve"], 0.0, None)
    out["default"] = np.clip(out["default"], 0.0, 1.0)
    return out


def unit_margins(params: Params) -> dict[str, float]:
    eco, lp = params.simulate.economics, params.limit
    return {
        "spend": eco.interchange_rate
        - eco.reward_rate
        - eco.platform_reward_bonus * lp.platform_spend_share
        - lp.funding_rate_annual / 12.0,
        "revolve": eco.apr - lp.funding_rate_annual,
        "loss": lp.lgd * lp.ead_line_share,
    }


def profit_and_loss(
    spend: np.ndarray, revolve: np.ndarray, pd_: np.ndarray, line: np.ndarray, params: Params
) -> tuple[np.ndarray, np.ndarray]:
    """Expected 12-month profit and expected credit loss (yuan) of holding ``line``."""
    u = unit_margins(params)
    loss = pd_ * u["loss"] * line
    return spend * u["spend"] + revolve * u["revolve"] - loss, loss


def realised_profit(df: pd.DataFrame, params: Params) -> np.ndarray:
    """Realised 12-month profit (yuan) of the logged line from the ``y_*`` outcomes (spend and interest
    annualised when fewer than 12 months are observed; loss = LGD * EAD if 90+ DPD was reached)."""
    eco, lp = params.simulate.economics, params.limit
    ann = _annualise(df)
    spend = df["y_spend_fen"].astype("float64").fillna(0.0).to_numpy() / 100.0 * ann
    intfee = (
        df["y_interest_fees_fen"].astype("float64").fillna(0.0).to_numpy() / 100.0 * ann
        if "y_interest_fees_fen" in df
        else 0.0
    )
    rev = df["y_avg_revolving_fen"].astype("float64").fillna(0.0).to_numpy() / 100.0
    line = df["line_after_fen"].to_numpy(dtype=np.float64) / 100.0
    bad = df["y_dpd90"].astype("float64").fillna(0.0).to_numpy()
    margin = eco.interchange_rate - eco.reward_rate - eco.platform_reward_bonus * lp.platform_spend_share
    return (
        spend * margin
        + intfee
        - lp.funding_rate_annual * (rev + spend / 12.0)
        - bad * lp.lgd * lp.ead_line_share * line
    )


# ---------------------------------------------------------------------------------------------------------
# oracle
# ---------------------------------------------------------------------------------------------------------
def read_potential(
    oracle: Path, df: pd.DataFrame, lines: np.ndarray, allowed: np.ndarray
) -> dict[str, np.ndarray]:
    """Oracle potential outcomes (yuan) at every option of every decision (evaluation only)."""
    path = Path(oracle) / "limit_potential"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro simulate`")
    keys = pl.DataFrame(
        {
            "customer_id": df["customer_id"].to_numpy().astype(np.int64),
            "decision_date": pl.Series(pd.to_datetime(df["snapshot_date"]).to_numpy()).cast(pl.Date),
            "kind": np.where(df["decision_type"].astype(str) == "review", "review", "booking"),
        }
    )
    cols = ["exp_profit", "exp_loss", "pd_12m", "exp_spend_12m", "exp_avg_revolving"]
    pot = (
        pl.scan_parquet(path)
        .join(keys.lazy().unique(), on=["customer_id", "decision_date", "kind"], how="semi")
        .select("customer_id", "decision_date", "kind", "option_line", *cols)
        .unique(["customer_id", "decision_date", "kind", "option_line"], keep="first")
        .collect()
    )
    n, k = lines.shape
    rows, opts = np.nonzero(allowed)
    long = keys[rows].with_columns(
        pl.Series("option_line", np.round(lines[rows, opts] * 100).astype(np.int64)),
        pl.Series("_r", rows),
        pl.Series("_k", opts),
    )
    j = long.join(pot, on=["customer_id", "decision_date", "kind", "option_line"], how="left")
    if j["exp_profit"].null_count():
        miss = j.filter(pl.col("exp_profit").is_null()).head(3)
        raise ValueError(
            f"oracle limit_potential lacks some decision options (world and features disagree):\n{miss}"
        )
    out = {}
    names = {
        "exp_profit": "profit",
        "exp_loss": "loss",
        "pd_12m": "pd",
        "exp_spend_12m": "spend",
        "exp_avg_revolving": "revolve",
    }
    for c, name in names.items():
        mat = np.zeros((n, k))
        mat[j["_r"].to_numpy(), j["_k"].to_numpy()] = j[c].to_numpy() / (1.0 if c == "pd_12m" else 100.0)
        out[name] = mat
    return out


# ---------------------------------------------------------------------------------------------------------
# policies
# ---------------------------------------------------------------------------------------------------------
def optimise(
    profit: np.ndarray,
    loss: np.ndarray,
    lines: np.ndarray,
    allowed: np.ndarray,
    exposure_budget: float,
    loss_cap: float,
    *,
    start: np.ndarray | None = None,
    time_limit_s: float = 30.0,
) -> MCKPResult:
    """Profit-maximising line per decision under total-exposure and expected-loss budgets."""
    weights = np.stack([np.where(allowed, lines, 0.0), np.where(allowed, loss, 0.0)])
    return solve_mckp(
        np.where(allowed, profit, 0.0),
        weights,
        np.array([exposure_budget, loss_cap]),
        allowed,
        time_limit_s=time_limit_s,
        start=start,
    )


def decision_prices(
    profit: np.ndarray,
    loss: np.ndarray,
    lines: np.ndarray,
    allowed: np.ndarray,
    exposure_budget: float,
    loss_cap: float,
) -> dict[str, float]:
    """Shadow prices of the portfolio budgets: ``exposure`` (yuan of profit per yuan of line) and
    ``expected_loss`` (yuan of profit per yuan of expected loss), the duals of the knapsack's LP relaxation
    (HiGHS). The LP optimum picks, for every decision but at most two (one per budget), the option with the
    largest ``profit - exposure * line - expected_loss * loss``; so one application at a time, with these
    prices, gets the line the portfolio optimum would give it (the online rule of :mod:`cardlab.serve`)."""
    from scipy import sparse
    from scipy.optimize import linprog

    ii, kk = np.nonzero(allowed)
    n = lines.shape[0]
    caps = np.array([exposure_budget, loss_cap], dtype=np.float64)
    scale = np.where(np.abs(caps) > 0, np.abs(caps), 1.0)
    knap = sparse.csr_matrix(np.stack([lines[ii, kk], loss[ii, kk]]) / scale[:, None])
    assign = sparse.csr_matrix((np.ones(len(ii)), (ii, np.arange(len(ii)))), shape=(n, len(ii)))
    res = linprog(
        -profit[ii, kk],
        A_ub=knap,
        b_ub=caps / scale,
        A_eq=assign,
        b_eq=np.ones(n),
        bounds=(0, 1),
        method="highs",
    )
    if res.status != 0:
        raise InfeasibleError(f"LP relaxation of the limit knapsack failed: {res.message}")
    duals = -np.asarray(res.ineqlin.marginals, dtype=np.float64) / scale
    return {"exposure": float(max(duals[0], 0.0)), "expected_loss": float(max(duals[1], 0.0))}


def _pick(mat: np.ndarray, choice: np.ndarray) -> np.ndarray:
    return mat[np.arange(len(choice)), choice]


def oot_decisions(
    df_all: pd.DataFrame, params: Params, split: str = "oot"
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The decisions of ``split`` (default OOT) and their options: (rows, lines, options on the grid, logged
    option index, in arrears, options allowed — no increase for an account in arrears)."""
    df = df_all[df_all["split"] == split].reset_index(drop=True)
    if df.empty:
        raise ValueError(f"limit: the {split} split has no decisions")
    lines, base_allowed = line_options(df, params)
    legacy = logged_choice(df, lines, base_allowed)
    arrears = in_arrears(df)
    before = df["line_before_fen"].astype("float64").fillna(np.inf).to_numpy()[:, None] / 100.0
    allowed = base_allowed & ~(arrears[:, None] & (lines > before + 1e-9))
    return df, lines, base_allowed, legacy, arrears, allowed


@dataclass
class Plan:
    """The decisions of one split, our response predictions, the oracle's potential outcomes at every option,
    and the policies solved under the same constraints (legacy = logged lines; policy = our responses;
    pd_only = our responses frozen at the logged line; oracle = the oracle's expectations)."""

    params: Params
    df: pd.DataFrame
    lines: np.ndarray
    base_allowed: np.ndarray
    legacy: np.ndarray
    arrears: np.ndarray
    allowed: np.ndarray
    resp: dict[str, np.ndarray]
    truth: dict[str, np.ndarray]
    value: dict[str, np.ndarray]
    losses: dict[str, np.ndarray]
    solved: dict[str, MCKPResult] = field(default_factory=dict)

    @property
    def expo_legacy(self) -> float:
        return float(_pick(self.lines, self.legacy).sum())

    def cap(self, name: str) -> float:
        """Expected-loss cap of a policy: its own loss model's loss of the logged lines (x the cap share)."""
        return self.params.limit.expected_loss_cap_share * float(_pick(self.losses[name], self.legacy).sum())

    def solve(self, name: str, budget_share: float) -> MCKPResult:
        lp = self.params.limit
        return optimise(
            self.value[name],
            self.losses[name],
            self.lines,
            self.allowed,
            budget_share * self.expo_legacy,
            self.cap(name),
            start=self.legacy if budget_share >= 1.0 and lp.expected_loss_cap_share >= 1.0 else None,
            time_limit_s=lp.solver_time_limit_s,
        )

    @property
    def choice(self) -> dict[str, np.ndarray]:
        return {"legacy": self.legacy, **{k: v.choice for k, v in self.solved.items()}}

    def profit_of(self, choice: np.ndarray) -> np.ndarray:
        """The oracle's expected 12-month profit (yuan) of each decision under ``choice``."""
        return _pick(self.truth["profit"], choice)

    def grade(self, c: np.ndarray) -> dict[str, float]:
        return {
            "profit": float(_pick(self.truth["profit"], c).mean()),
            "loss": float(_pick(self.truth["loss"], c).mean()),
            "exposure": float(_pick(self.lines, c).mean()),
        }


def plan_decisions(
    params: Params,
    models: dict,
    meta: dict,
    df_all: pd.DataFrame,
    oracle: Path,
    split: str = "oot",
    *,
    logit_shift: float | None = None,
    policies: tuple[str, ...] = ("policy", "pd_only", "oracle"),
) -> Plan:
    """Predict the responses at every option of ``split``'s decisions, read the oracle's potential outcomes
    and solve ``policies`` at the exposure budget (``logit_shift``: see :func:`predict_responses`)."""
    df, lines, base_allowed, legacy, arrears, allowed = oot_decisions(df_all, params, split)
    resp = predict_responses(models, meta, df, lines, logit_shift=logit_shift)
    profit_hat, loss_hat = profit_and_loss(resp["spend"], resp["revolve"], resp["default"], lines, params)
    # PD-only: behaviour (spend, revolving, PD) stays as at the logged line; only the loss scales with the line
    fixed = {m: np.repeat(_pick(resp[m], legacy)[:, None], lines.shape[1], axis=1) for m in resp}
    profit_pdo, loss_pdo = profit_and_loss(fixed["spend"], fixed["revolve"], fixed["default"], lines, params)
    truth = read_potential(oracle, df, lines, base_allowed)
    plan = Plan(
        params,
        df,
        lines,
        base_allowed,
        legacy,
        arrears,
        allowed,
        resp,
        truth,
        value={"policy": profit_hat, "pd_only": profit_pdo, "oracle": truth["profit"]},
        losses={"policy": loss_hat, "pd_only": loss_pdo, "oracle": truth["loss"]},
    )
    plan.solved = {name: plan.solve(name, params.limit.exposure_budget_share) for name in policies}
    return plan


def evaluate(params: Params, features_root: Path, oracle: Path, out: Path) -> dict:
    """Optimise the OOT decisions, grade every policy with the oracle, OPE from logged data, write outputs.

    Beside the OOT headline: the policy without the PD recalibration (``profit_capture_no_recalibration``), the
    pre-shock decisions of the valid split graded the same way (``valid_*_profit``), the observable ceilings
    (profit capture and the PD model's AUC) and customer-clustered bootstrap bounds (modeling/grading.py)."""
    lp = params.limit
    out = Path(out)
    models, meta = load_models(out)
    df_all, names, _ = _load(features_root)
    plan = plan_decisions(params, models, meta, df_all, oracle, "oot")
    df, lines, legacy, arrears, allowed = plan.df, plan.lines, plan.legacy, plan.arrears, plan.allowed
    resp, truth, solved, choice = plan.resp, plan.truth, plan.solved, plan.choice
    profit_hat, loss_hat = plan.value["policy"], plan.losses["policy"]
    solve, grade = plan.solve, plan.grade

    n = len(df)
    expo_legacy = plan.expo_legacy
    # shadow prices of the two budgets: the online service's rule for one application (cardlab.serve)
    prices = decision_prices(
        plan.value["policy"],
        plan.losses["policy"],
        lines,
        allowed,
        lp.exposure_budget_share * expo_legacy,
        lp.expected_loss_cap_share * plan.cap("policy"),
    )
    graded = {p: grade(c) for p, c in choice.items()}
    gain = graded["oracle"]["profit"] - graded["legacy"]["profit"]
    capture = (graded["policy"]["profit"] - graded["legacy"]["profit"]) / gain if gain > 0 else float("nan")
    budget = lp.exposure_budget_share * expo_legacy / n
    el_cap_oracle = plan.cap("oracle") / n

    metrics: dict[str, float | int | str] = {
        "n_decisions": n,
        "n_reviews": int((df["decision_type"].astype(str) == "review").sum()),
        "n_in_arrears": int(arrears.sum()),
        "policy_profit": graded["policy"]["profit"],
        "legacy_profit": graded["legacy"]["profit"],
        "pd_only_profit": graded["pd_only"]["profit"],
        "oracle_profit": graded["oracle"]["profit"],
        "profit_capture": capture,
        "pd_only_profit_capture": (graded["pd_only"]["profit"] - graded["legacy"]["profit"]) / gain
        if gain > 0
        else float("nan"),
        "exposure_used": graded["policy"]["exposure"],
        "exposure_budget": budget,
        "expected_loss": graded["policy"]["loss"],
        "expected_loss_cap": el_cap_oracle,
        "expected_loss_model": float(_pick(loss_hat, solved["policy"].choice).mean()),
        "expected_loss_cap_model": plan.cap("policy") / n,
        "policy_expected_profit_model": float(solved["policy"].objective / n),
    }
    for p in POLICIES:
        metrics[f"{p}_exposure"] = graded[p]["exposure"]
        metrics[f"{p}_expected_loss"] = graded[p]["loss"]
        metrics[f"{p}_share_increase"] = float((_pick(lines, choice[p]) > _pick(lines, legacy) + 1e-9).mean())
        metrics[f"{p}_agree_oracle"] = float(
            (_pick(lines, choice[p]) == _pick(lines, choice["oracle"])).mean()
        )
    for name, res in solved.items():
        metrics[f"{name}_solver_gap"] = res.gap
        metrics[f"{name}_solver"] = res.method
    # response-model accuracy on the oracle's expectations at the logged line and the profit ranking
    for m, key in (("spend", "spend"), ("revolve", "revolve"), ("default", "pd")):
        est, tru = _pick(resp[m], legacy), _pick(truth[key], legacy)
        metrics[f"{m}_mean_pred"] = float(est.mean())
        metrics[f"{m}_mean_true"] = float(tru.mean())
    # uplift: the change of each response from the logged line to every other option, predicted vs true
    mask = allowed & (lines != _pick(lines, legacy)[:, None])
    for m, est_mat, tru_mat in (
        ("", profit_hat, truth["profit"]),
        ("_spend", resp["spend"], truth["spend"]),
        ("_revolve", resp["revolve"], truth["revolve"]),
        ("_default", resp["default"], truth["pd"]),
    ):
        d_hat = (est_mat - _pick(est_mat, legacy)[:, None])[mask]
        d_true = (tru_mat - _pick(tru_mat, legacy)[:, None])[mask]
        ok = mask.sum() > 2 and d_hat.std() > 0 and d_true.std() > 0
        metrics[f"uplift_corr{m}"] = float(np.corrcoef(d_hat, d_true)[0, 1]) if ok else float("nan")
        metrics[f"uplift_ratio{m}"] = (
            float(d_hat.mean() / d_true.mean()) if ok and d_true.mean() else float("nan")
        )
    info = meta["models"].get("default", {})
    metrics["pd_line_slope"] = float(info.get("line_offset", 0.0))
    if info.get("line_slope_se") is not None:
        metrics["pd_line_slope_se"] = float(info["line_slope_se"])
    metrics["pd_logit_shift"] = float(info.get("logit_shift", 0.0))

    # off-policy estimates from the logged data (all OOT rows; propensities of the logged mixture policy)
    reward = realised_profit(df, params)
    prop = df["propensity"].astype("float64").to_numpy()
    has_p = np.isfinite(prop) & (prop > 0)
    metrics["ope_n_rows"] = int(has_p.sum())
    metrics["ope_n_test_cell"] = int(((df["cell"].astype(str) == "test").to_numpy() & has_p).sum())
    q_logged = _pick(profit_hat, legacy)
    for p in POLICIES:
        c = choice[p]
        if p == "legacy":
            # the logged lines are the logging policy itself: its value is the on-policy mean (IPS/DR reduce
            # to it only for a deterministic logger; the logged cells randomise, so use the plain mean)
            r = reward[has_p]
            se = float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else float("nan")
            for est in ("ips", "snips", "dr"):
                metrics[f"ope_{est}_legacy_profit"] = float(r.mean()) if len(r) else float("nan")
            metrics["ope_ips_legacy_profit_se"] = metrics["ope_dr_legacy_profit_se"] = se
            metrics["ope_legacy_n_match"] = int(len(r))
            continue
        est_ips = ope.ips(reward[has_p], legacy[has_p], c[has_p], prop[has_p])
        est_sn = ope.snips(reward[has_p], legacy[has_p], c[has_p], prop[has_p])
        est_dr = ope.doubly_robust(
            reward[has_p], legacy[has_p], c[has_p], prop[has_p], q_logged[has_p], _pick(profit_hat, c)[has_p]
        )
        tag = "" if p == "policy" else f"_{p}"
        metrics[f"ope_ips{tag}_profit"] = est_ips.value
        metrics[f"ope_ips{tag}_profit_se"] = est_ips.se
        metrics[f"ope_snips{tag}_profit"] = est_sn.value
        metrics[f"ope_dr{tag}_profit"] = est_dr.value
        metrics[f"ope_dr{tag}_profit_se"] = est_dr.se
        metrics[f"ope{tag}_n_match"] = est_ips.n_match

    passed = bool(
        metrics["exposure_used"] <= budget * (1 + 1e-9)
        and metrics["expected_loss"] <= el_cap_oracle * (1 + lp.expected_loss_tolerance)
        and np.isfinite(capture)
        and capture > 0
    )
    metrics["constraints_hold"] = int(
        metrics["exposure_used"] <= budget * (1 + 1e-9)
        and metrics["expected_loss"] <= el_cap_oracle * (1 + lp.expected_loss_tolerance)
    )
    metrics["n_trials"] = int(json.loads((out / "best_params.json").read_text()).get("n_trials", 0))
    policy_grades, ceiling_choice = grade_policies(params, plan, models, meta, df_all, oracle, names)
    metrics.update(policy_grades)

    # frontier and line distribution (plots + DVC plot CSVs)
    frontier = []
    for share in lp.frontier_budget_shares:
        for name in ("policy", "pd_only", "oracle"):
            try:
                res = solved[name] if share == lp.exposure_budget_share else solve(name, share)
            except InfeasibleError:  # reviews cannot cut lines: very small budgets are out of reach
                continue
            g = grade(res.choice)
            frontier.append(
                {
                    "budget_share": share,
                    "exposure_budget_yuan": share * expo_legacy / n,
                    "policy": name,
                    "profit_yuan": g["profit"],
                    "exposure_used_yuan": g["exposure"],
                }
            )
        frontier.append(
            {
                "budget_share": share,
                "exposure_budget_yuan": share * expo_legacy / n,
                "policy": "legacy",
                "profit_yuan": graded["legacy"]["profit"],
                "exposure_used_yuan": graded["legacy"]["exposure"],
            }
        )
    frontier_df = pd.DataFrame(frontier)
    pd_legacy = _pick(resp["default"], legacy)
    grade_idx = _risk_grades(pd_legacy, lp.n_risk_grades)
    dist = []
    for gi in range(1, lp.n_risk_grades + 1):
        sel = grade_idx == gi
        for p in POLICIES:
            dist.append(
                {
                    "risk_grade": gi,
                    "policy": p,
                    "n": int(sel.sum()),
                    "mean_line_yuan": float(_pick(lines, choice[p])[sel].mean()) if sel.any() else 0.0,
                    "mean_pd_true": float(_pick(truth["pd"], choice[p])[sel].mean()) if sel.any() else 0.0,
                }
            )
    dist_df = pd.DataFrame(dist)

    with atomic_dir(out / "plots") as tmp:
        # the registered PD model, validated like the credit model at the line each decision actually got
        metrics.update(
            validation_pack(
                pd_validation_frames(models, meta, df_all, df, _pick(truth["pd"], legacy)),
                score_col="pd",
                month_col="snapshot_date",
                oracle_col="pd_true",
                features=top_gain_features(models["default"], 15),
                out_dir=tmp / "pd_model",
                n_boot=params.credit.bootstrap,
                seed=params.simulate.seed,
                n_grades=params.credit.n_grades,
            )
        )
        pd_grades, pd_ceiling = grade_pd_model(params, plan, df_all, oracle, names)
        metrics.update(pd_grades)
        metrics.update(contract_metrics(params, TASK, features_root, oracle, out))
        metrics["bars"] = bars(metrics, params)
        metrics = G.rounded(dict(sorted(metrics.items())))
        write_json(metrics, out / "metrics.json")
        _round_df(frontier_df).to_csv(tmp / "frontier.csv", index=False, lineterminator="\n")
        _round_df(dist_df).to_csv(tmp / "line_by_grade.csv", index=False, lineterminator="\n")
        _plot_frontier(frontier_df, metrics, tmp / "frontier.png")
        _plot_lines(dist_df, tmp / "line_by_grade.png")
    preds = pd.DataFrame(
        {
            "customer_id": df["customer_id"].to_numpy(),
            "snapshot_date": df["snapshot_date"].to_numpy(),
            "split": df["split"].to_numpy(),
            "decision_type": df["decision_type"].astype(str).to_numpy(),
            "label": df["label"].to_numpy(),
            "chosen_line": _pick(lines, choice["policy"]),
            "expected_profit": np.round(_pick(profit_hat, choice["policy"]), 6),
            "legacy_line": _pick(lines, legacy),
            "legacy_expected_profit": np.round(_pick(profit_hat, legacy), 6),
            "pd_only_line": _pick(lines, choice["pd_only"]),
            "oracle_line": _pick(lines, choice["oracle"]),
            "pd_at_chosen": np.round(_pick(resp["default"], choice["policy"]), 6),
            "pd_logged": np.round(_pick(resp["default"], legacy), 6),
            "pd_ceiling": np.round(pd_ceiling, 6),
            "ceiling_line": _pick(lines, ceiling_choice),
            "in_arrears": arrears,
        }
    )
    with atomic_dir(out / "predictions.parquet") as tmp:
        write_parquet(preds, tmp / "part-0.parquet")
    _log_to_mlflow(params, out, metrics, passed, prices)
    return metrics


def pd_validation_frames(
    models: dict, meta: dict, df_all: pd.DataFrame, oot: pd.DataFrame, pd_true_oot: np.ndarray
) -> dict[str, pd.DataFrame]:
    """Per split, the labelled decisions with the PD model's prediction at the logged line (``pd``) and, on
    OOT, the oracle's true PD at that line (``pd_true``; NaN elsewhere, the oracle grades OOT only)."""
    frames = {}
    for split in SPLITS:
        d = oot if split == "oot" else df_all[df_all["split"] == split].reset_index(drop=True)
        logged = d["line_after_fen"].to_numpy(dtype=np.float64)[:, None] / 100.0
        d = d.assign(
            pd=predict_responses(models, meta, d, logged)["default"][:, 0],
            pd_true=pd_true_oot if split == "oot" else np.nan,
        )
        frames[split] = d[d["label"].notna()].assign(label=lambda x: x["label"].astype(int))
    return frames


def profit_ceiling(
    params: Params,
    df: pd.DataFrame,
    lines: np.ndarray,
    allowed: np.ndarray,
    legacy: np.ndarray,
    truth: dict[str, np.ndarray],
    names: list[str],
) -> tuple[np.ndarray, np.ndarray, dict[float, np.ndarray], int]:
    """The observable ceiling of the line decision: the choice per decision (one per learning-curve fraction)
    that the optimiser makes when it knows the oracle's expected profit and loss of every option as well as
    the features allow, and no better.

    Two XGBoost regressors learn the oracle's ``exp_profit`` and ``exp_loss`` of every allowed option from the
    task's features (all candidates) and the option's treatment columns, cross-fitted over customer folds of
    the decisions given (grading.cross_fit_ceiling), so the targets are noise-free, every option is observed
    and there is no shift in time. Their out-of-fold predictions feed the same optimiser, exposure budget and
    expected-loss cap (on the predicted loss) as the policy. What it misses comes from the latent traits the
    features do not reveal (a revolver's need, its marginal propensity to borrow). Returns the ceiling's
    choice per decision, the learning-curve decisions (one customer fold), the choices there per training
    fraction (1.0 included; each solved on those decisions alone with the same budget shares) and the mean
    training rows per fold."""
    lp, gp = params.limit, params.grading
    rows, opts = np.nonzero(allowed)
    base = df[names].astype("float32").to_numpy()
    before = df["line_before_fen"].astype("float64").to_numpy() / 100.0
    treat = treatment_columns(lines[rows, opts], before[rows])
    X = np.column_stack([base[rows], *(treat[c].astype("float32") for c in TREAT)])
    groups = df["customer_id"].to_numpy()[rows]
    pred: dict[float, dict[str, np.ndarray]] = {}  # fraction -> target -> (n x K), NaN where not predicted
    train_rows = 0
    for key in ("profit", "loss"):
        fit = G.cross_fit_ceiling(
            X,
            truth[key][rows, opts],
            groups,
            np.ones(len(rows), bool),
            gp.ceiling,
            objective="reg:squarederror",
            seed=gp.seed,
            nthread=params.tune.nthread,
        )
        train_rows = fit.train_rows
        for f, v in fit.predictions.items():
            mat = np.zeros(lines.shape)
            mat[rows, opts] = v
            pred.setdefault(f, {})[key] = mat

    def solve(profit: np.ndarray, loss: np.ndarray, sel: np.ndarray) -> np.ndarray:
        loss = np.clip(loss[sel], 0.0, None)
        res = optimise(
            profit[sel],
            loss,
            lines[sel],
            allowed[sel],
            lp.exposure_budget_share * float(_pick(lines[sel], legacy[sel]).sum()),
            lp.expected_loss_cap_share * float(_pick(loss, legacy[sel]).sum()),
            start=legacy[sel]
            if lp.exposure_budget_share >= 1.0 and lp.expected_loss_cap_share >= 1.0
            else None,
            time_limit_s=lp.solver_time_limit_s,
        )
        return res.choice

    choices = {1.0: solve(pred[1.0]["profit"], pred[1.0]["loss"], np.ones(len(df), bool))}
    # learning curve: the decisions of the curve fold (where every fraction predicted), solved on their own
    # with the same budget shares, for every fraction and the full fit
    curve_rows = np.ones(len(df), bool)
    for d in pred.values():
        curve_rows &= np.isfinite(np.where(allowed, d["profit"], 0.0)).all(axis=1)
    curve = {f: solve(d["profit"], d["loss"], curve_rows) for f, d in pred.items()} if len(pred) > 1 else {}
    return choices[1.0], curve_rows, curve, train_rows


def _capture(profits: dict[str, np.ndarray], policy: str, w: np.ndarray | None = None) -> float:
    """(profit of ``policy`` - legacy) / (oracle - legacy), profits summed with weights ``w``."""
    w = np.ones(len(profits["legacy"])) if w is None else w
    base = float(w @ profits["legacy"])
    gain = float(w @ profits["oracle"]) - base
    return (float(w @ profits[policy]) - base) / gain if gain > 0 else float("nan")


def grade_policies(
    params: Params, plan: Plan, models: dict, meta: dict, df_all: pd.DataFrame, oracle: Path, names: list[str]
) -> tuple[dict, np.ndarray]:
    """Profit capture with customer-clustered bootstrap bounds (the policies' choices held fixed, the OOT
    decisions resampled by customer), the policy without the PD recalibration, the observable ceiling of the
    capture and its learning curve, and the pre-shock decisions of the valid split graded by the oracle.
    Returns the metrics and the ceiling's choice per OOT decision."""
    gp, lp = params.grading, params.limit
    out: dict[str, float] = {}
    profits = {p: plan.profit_of(c) for p, c in plan.choice.items()}
    shift = float(meta["models"].get("default", {}).get("logit_shift", 0.0))
    if shift:
        raw = plan_decisions(
            params, models, meta, df_all, oracle, "oot", logit_shift=0.0, policies=("policy",)
        )
        profits["policy_no_recalibration"] = plan.profit_of(raw.solved["policy"].choice)
    else:
        profits["policy_no_recalibration"] = profits["policy"]
    ceiling, curve_rows, curve, train_rows = profit_ceiling(
        params, plan.df, plan.lines, plan.allowed, plan.legacy, plan.truth, names
    )
    profits["ceiling"] = plan.profit_of(ceiling)
    out["ceiling_profit"] = float(profits["ceiling"].mean())
    out["ceiling_expected_loss"] = float(_pick(plan.truth["loss"], ceiling).mean())
    out["ceiling_exposure"] = float(_pick(plan.lines, ceiling).mean())
    out["profit_capture_ceiling_train_rows"] = train_rows
    if curve:
        sub = {p: v[curve_rows] for p, v in profits.items()}
        values = {
            f: _capture({**sub, "c": _pick(plan.truth["profit"][curve_rows], c)}, "c")
            for f, c in curve.items()
        }
        out.update(G.learning_curve(values, "profit_capture_ceiling", "profit_capture_ceiling_convergence"))
        out["profit_capture_ceiling_curve_rows"] = int(curve_rows.sum())

    def stat(w: np.ndarray) -> list[float]:
        pol, ceil = _capture(profits, "policy", w), _capture(profits, "ceiling", w)
        return [
            pol,
            _capture(profits, "policy_no_recalibration", w),
            ceil,
            pol / ceil if ceil else float("nan"),
            ceil - pol,
            1.0 - ceil,
            float(w @ profits["policy"] / w.sum()),
            float(w @ profits["oracle"] / w.sum()),
        ]

    keys = [
        "profit_capture",
        "profit_capture_no_recalibration",
        "profit_capture_ceiling",
        "profit_capture_ceiling_ratio",
        "profit_capture_learning_loss",
        "profit_capture_information_loss",
        "policy_profit",
        "oracle_profit",
    ]
    boot = G.ClusterBootstrap.from_params(plan.df["customer_id"].to_numpy(), gp)
    lo, hi = boot.bounds(boot.replicates(stat))
    point = stat(np.ones(len(plan.df)))
    for i, key in enumerate(keys):
        if key not in ("profit_capture", "policy_profit", "oracle_profit"):  # written by evaluate
            out[key] = point[i]
        out[f"{key}_lo"], out[f"{key}_hi"] = float(lo[i]), float(hi[i])

    # pre-shock (normal-month) decisions: the valid split, graded by the oracle the same way (in time: the
    # models were early-stopped and recalibrated on these rows)
    valid = plan_decisions(params, models, meta, df_all, oracle, "valid", policies=("policy", "oracle"))
    vp = {p: valid.profit_of(c) for p, c in valid.choice.items()}
    vboot = G.ClusterBootstrap.from_params(valid.df["customer_id"].to_numpy(), gp)

    def vstat(w: np.ndarray) -> list[float]:
        return [float(w @ vp[p] / w.sum()) for p in ("policy", "legacy", "oracle")] + [
            _capture(vp, "policy", w)
        ]

    vlo, vhi = vboot.bounds(vboot.replicates(vstat))
    vpoint = vstat(np.ones(len(valid.df)))
    for i, key in enumerate(["valid_policy_profit", "valid_legacy_profit", "valid_oracle_profit"]):
        out[key], out[f"{key}_lo"], out[f"{key}_hi"] = vpoint[i], float(vlo[i]), float(vhi[i])
    out["valid_profit_capture"] = vpoint[3]
    out["valid_profit_capture_lo"], out["valid_profit_capture_hi"] = float(vlo[3]), float(vhi[3])
    out["valid_n_decisions"] = len(valid.df)
    g = valid.grade(valid.choice["policy"])
    out["valid_constraints_hold"] = int(
        g["exposure"] <= lp.exposure_budget_share * valid.expo_legacy / len(valid.df) * (1 + 1e-9)
        and g["loss"] * len(valid.df) <= valid.cap("oracle") * (1 + lp.expected_loss_tolerance)
    )
    return out, ceiling


def grade_pd_model(
    params: Params, plan: Plan, df_all: pd.DataFrame, oracle: Path, names: list[str]
) -> tuple[dict, np.ndarray]:
    """Observable ceiling of the PD response model's OOT AUC at the logged line: XGBoost fitted to the oracle's
    ``pd_12m`` of the logged line (soft labels) on every decision of every split, features plus the treatment
    columns, cross-fitted over customer folds; graded on the labelled OOT decisions with clustered bounds.
    Returns the metrics and the ceiling's PD per OOT decision (NaN where unlabelled)."""
    gp = params.grading
    lines_all, base_all = line_options(df_all, params)
    logged_all = logged_choice(df_all, lines_all, base_all)
    pd_logged = _pick(read_potential(oracle, df_all, lines_all, base_all)["pd"], logged_all)
    oot = (df_all["split"] == "oot").to_numpy()
    graded = oot & df_all["label"].notna().to_numpy()
    fit = G.cross_fit_ceiling(
        df_all[[*names, *TREAT]],
        pd_logged,
        df_all["customer_id"].to_numpy(),
        graded,
        gp.ceiling,
        objective="binary:logistic",
        seed=gp.seed,
        nthread=params.tune.nthread,
    )
    # the plan's OOT rows are df_all's OOT rows in the same order
    labelled = plan.df["label"].notna().to_numpy()
    model_pd = _pick(plan.resp["default"], plan.legacy)[labelled]
    out = G.grade_auc(
        plan.df["label"].to_numpy(dtype=float)[labelled],
        model_pd,
        fit,
        pd_logged[graded],
        plan.df["customer_id"].to_numpy()[labelled],
        gp,
        rows=graded,
    )
    out["oot_auc_ceiling_train_rows"] = fit.train_rows
    return out, fit.full[oot]


def bars(metrics: dict, params: Params) -> list[dict]:
    """The limit bars (params ``grading.bars.limit`` and ``.explain``; docs/grading.md)."""
    b = params.grading.bars.limit
    return [
        G.metric_bar(metrics, "profit_capture", b.profit_capture),
        G.count_bar("constraints_hold", metrics["constraints_hold"], 1.0),
        G.metric_bar(metrics, "valid_policy_profit", b.valid_policy_profit),
        G.metric_bar(metrics, "valid_oracle_profit", b.valid_oracle_profit),
        *G.explain_bars(metrics, params.grading.bars.explain),
    ]


def response_swap(params: Params, features_root: Path, oracle: Path, out: Path) -> dict[str, float]:
    """Diagnostic, not a pipeline stage: which response model costs the policy its profit.

    Replaces one trained response (spend, revolving balance, PD) at a time by the oracle's expectation at
    every option and re-solves the same knapsack; ``true_<m>`` swaps the whole response, ``true_<m>_change``
    keeps our prediction at the logged line and takes only the oracle's change with the line (its uplift).
    Every value is the oracle-graded ``profit_capture``; ``model`` is our policy (as in evaluate), and all
    three swapped together give the oracle policy (1.0).
    """
    lp = params.limit
    models, meta = load_models(Path(out))
    df_all, _, _ = _load(features_root)
    df, lines, base_allowed, legacy, _, allowed = oot_decisions(df_all, params)
    ours = predict_responses(models, meta, df, lines)
    truth = read_potential(oracle, df, lines, base_allowed)
    true = {"spend": truth["spend"], "revolve": truth["revolve"], "default": truth["pd"]}
    budget = lp.exposure_budget_share * float(_pick(lines, legacy).sum())
    start = legacy if lp.exposure_budget_share >= 1.0 and lp.expected_loss_cap_share >= 1.0 else None

    def graded(profit: np.ndarray, loss: np.ndarray) -> float:
        cap = lp.expected_loss_cap_share * float(_pick(loss, legacy).sum())
        res = optimise(
            profit, loss, lines, allowed, budget, cap, start=start, time_limit_s=lp.solver_time_limit_s
        )
        return float(_pick(truth["profit"], res.choice).mean())

    base, best = float(_pick(truth["profit"], legacy).mean()), graded(truth["profit"], truth["loss"])

    def capture(resp: dict[str, np.ndarray]) -> float:
        return (
            graded(*profit_and_loss(resp["spend"], resp["revolve"], resp["default"], lines, params)) - base
        ) / (best - base)

    result = {"model": capture(ours), "all_true": capture(true)}
    for m in ours:
        result[f"true_{m}"] = capture({**ours, m: true[m]})
        change = true[m] - _pick(true[m], legacy)[:, None] + _pick(ours[m], legacy)[:, None]
        result[f"true_{m}_change"] = capture(
            {**ours, m: np.clip(change, 0.0, 1.0 if m == "default" else None)}
        )
    return result


def _risk_grades(pd_: np.ndarray, n_grades: int) -> np.ndarray:
    """Risk grade 1 (safest) .. n_grades by quantiles of the predicted PD at the logged line."""
    edges = np.quantile(pd_, np.linspace(0, 1, n_grades + 1)[1:-1]) if len(pd_) else np.zeros(n_grades - 1)
    return (np.searchsorted(edges, pd_, side="right") + 1).astype(np.int64)


def _round_df(df: pd.DataFrame) -> pd.DataFrame:
    return df.apply(lambda s: s.round(6) if s.dtype.kind == "f" else s)


# ---------------------------------------------------------------------------------------------------------
# plots (deterministic PNG: Agg canvas, no Software metadata)
# ---------------------------------------------------------------------------------------------------------
_COLORS = {"legacy": "#7f7f7f", "pd_only": "#ff7f0e", "policy": "#1f77b4", "oracle": "#2ca02c"}
_LABELS = {
    "legacy": "legacy (logged)",
    "pd_only": "PD-only optimiser",
    "policy": "response-model optimiser",
    "oracle": "oracle optimum",
}


def _figure(w: float = 7.0, h: float = 4.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def _plot_frontier(frontier: pd.DataFrame, metrics: dict, path: Path) -> None:
    fig = _figure()
    ax = fig.add_subplot(111)
    for p in ("oracle", "policy", "pd_only"):
        d = frontier[frontier["policy"] == p]
        ax.plot(d["exposure_budget_yuan"], d["profit_yuan"], marker="o", color=_COLORS[p], label=_LABELS[p])
    leg = frontier[frontier["policy"] == "legacy"].iloc[0]
    ax.scatter(
        [leg["exposure_used_yuan"]],
        [leg["profit_yuan"]],
        color=_COLORS["legacy"],
        marker="*",
        s=140,
        zorder=5,
        label=_LABELS["legacy"],
    )
    ax.set_xlabel("exposure budget (total line, yuan per account)")
    ax.set_ylabel("true expected 12-month profit (yuan per account)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("Limit allocation: profit vs exposure budget (OOT, oracle-graded)", fontsize=11)
    cap = metrics.get("profit_capture", float("nan"))
    ax.set_title(
        f"Takeaway: at the legacy budget the model policy captures {cap:.0%} of the oracle's gain over legacy.",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata=_PNG_META)


def _plot_lines(dist: pd.DataFrame, path: Path) -> None:
    fig = _figure()
    ax = fig.add_subplot(111)
    grades = sorted(dist["risk_grade"].unique())
    width = 0.8 / len(POLICIES)
    for i, p in enumerate(POLICIES):
        d = dist[dist["policy"] == p].set_index("risk_grade").reindex(grades)
        ax.bar(
            np.arange(len(grades)) + (i - (len(POLICIES) - 1) / 2) * width,
            d["mean_line_yuan"],
            width,
            color=_COLORS[p],
            label=_LABELS[p],
        )
    ax.set_xticks(np.arange(len(grades)), [f"G{g}" for g in grades])
    ax.set_xlabel("risk grade (quantiles of predicted PD at the logged line; G1 = safest)")
    ax.set_ylabel("mean assigned line (yuan)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.suptitle("Limit allocation: line by risk grade per policy (OOT)", fontsize=11)
    lo, hi = grades[0], grades[-1]

    def ratio(p: str) -> float:
        d = dist[dist["policy"] == p].set_index("risk_grade")["mean_line_yuan"]
        return float(d[hi] / d[lo]) if d[lo] > 0 else float("nan")

    ax.set_title(
        f"Takeaway: riskiest/safest grade line ratio: model {ratio('policy'):.2f}, oracle {ratio('oracle'):.2f},"
        f" legacy {ratio('legacy'):.2f}.",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata=_PNG_META)


# ---------------------------------------------------------------------------------------------------------
# MLflow
# ---------------------------------------------------------------------------------------------------------
def _log_to_mlflow(
    params: Params, out: Path, metrics: dict, passed: bool, prices: dict[str, float] | None = None
) -> None:
    """Add metrics and plots to the training run and register the model (challenger if the checks pass).
    ``limit_models/`` holds every response model and ``decision_policy.json`` (the budgets' shadow prices,
    the line grid and the economics): all the decision service needs to set a first line."""
    digest = scored_digest(out)  # the handoff of modeling/workflow.py: register what was scored
    logged = verified_run(out, digest)
    run_id = logged.get("run_id")
    with tracking.resume_or_start(
        run_id,
        experiment_name=experiment_name(params, TASK),
        run_name=f"{TASK}-model",
        description=DESCRIPTION,
        stage=f"evaluate@{TASK}",
        params_hash=params_hash(params.limit),
        tags={"task": TASK, "model_digest": digest},
    ) as run:
        if run_id is None or run.info.run_id != run_id:
            models, meta = load_models(out)
            example = pd.DataFrame(
                np.zeros((5, len(meta["features"])), dtype="float32"), columns=meta["features"]
            )
            uris = {m: tracking.log_xgboost_model(b, example) for m, b in models.items()}
            write_run_pointer(out, run.info.run_id, uris, digest)
        else:
            uris = logged.get("model_uris") or {"default": logged["model_uri"]}
        tracking.log_metrics(metrics)
        tracking.log_artifact(out / "metrics.json")
        tracking.log_artifacts(out / "plots", "plots")
        tracking.log_artifacts(out / "model", "limit_models")
        with tempfile.TemporaryDirectory() as tmp:
            policy = {
                "prices": prices,
                "limit": params.limit.model_dump(mode="json"),
                "economics": params.simulate.economics.model_dump(mode="json"),
            }
            write_json(policy, Path(tmp) / "decision_policy.json")
            tracking.log_artifact(Path(tmp) / "decision_policy.json", "limit_models")
        tracking.set_tags(
            {"thresholds_passed": str(passed).lower(), **{f"model_uri_{m}": u for m, u in uris.items()}}
        )
        tracking.register_model(
            TASK,
            uris["default"],
            challenger=passed,
            description=(
                f"90+ DPD response model of the limit policy (spend/revolving models: run artifacts "
                f"limit_models/). OOT profit {metrics['policy_profit']:.1f} vs legacy {metrics['legacy_profit']:.1f}"
                f" and oracle {metrics['oracle_profit']:.1f} yuan/account; capture {metrics['profit_capture']:.3f};"
                f" constraints {'hold' if metrics['constraints_hold'] else 'BROKEN'}; "
                f"{'challenger' if passed else 'not promoted'}."
            ),
            model_digest=digest,
        )
