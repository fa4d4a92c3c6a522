"""The S-learner response models (spend, revolving balance, 90+ DPD) and how they see the line.

Their training matrices (test-cell weights; the log-line offset as XGBoost base margin: the utilisation
model's ``log(line)``, the PD model's estimated slope and intercept), the PD model's pooled line slope and its
recalibration shift, loading the trained boosters, and :func:`predict_responses`: every model at every line
option, made non-decreasing in the line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.special import expit

from cardlab.artifacts import read_json
from cardlab.config import Params
from cardlab.modeling.workflow import SPLITS, model_digest, remember_scored
from cardlab.modeling.xgb import TaskData, load_booster
from cardlab.tasks.limit.data import treatment_columns
from cardlab.tasks.limit.spec import MODELS, TASK, TREAT


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


def load_models(out: Path) -> tuple[dict[str, xgb.Booster], dict]:
    """The three response boosters and their metadata; remembers their digest for registration."""
    digest = model_digest(Path(out))
    remedy = f"re-run `cardlab train {TASK}` (or `dvc repro train@{TASK}`)"
    meta = read_json(Path(out) / "model" / "features.json", what="the models' metadata", remedy=remedy)
    models = {m: load_booster(Path(out) / "model" / f"{m}.ubj", remedy=remedy) for m in MODELS}
    remember_scored(Path(out), digest)
    return models, meta


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
    names = [f for f in meta["features"] if f not in TREAT]
    base = df[names].astype("float32").to_numpy()
    before = df["line_before_fen"].astype("float64").to_numpy() / 100.0
    return predict_response_matrix(models, meta, base, before, lines, logit_shift=logit_shift)


def predict_response_matrix(
    models: dict,
    meta: dict,
    base: np.ndarray,
    before: np.ndarray,
    lines: np.ndarray,
    *,
    logit_shift: float | None = None,
) -> dict[str, np.ndarray]:
    """:func:`predict_responses` on arrays: ``base`` (n x p float32, the models' non-treatment features in
    their order), ``before`` (n, the line before the decision in yuan; NaN at booking). The decision service
    calls this for one application, without building a DataFrame."""
    n, k = lines.shape
    names = [f for f in meta["features"] if f not in TREAT]
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


def explained_model_parts(out: Path, snapshots: pd.DataFrame) -> dict:
    """The registered model as the explain stage sees it (cardlab.taskspec ``explain_model_hook``): the 90+
    DPD response booster, its features and params, and the margin term the booster does not hold (``slope *
    log(line) + intercept + recalibration shift``), whose line part explain credits to ``treat_log_line``.
    Adds the logged line's treatment columns to ``snapshots`` (in place), so each decision is explained at the
    line it actually got. Returns the fields of :class:`cardlab.explain.run.ExplainedModel`."""
    models, meta = load_models(out)
    info = meta["models"]["default"]
    line = snapshots["line_after_fen"].to_numpy(dtype=np.float64) / 100.0
    before = snapshots["line_before_fen"].astype("float64").to_numpy() / 100.0
    for name, values in treatment_columns(line, before).items():
        snapshots[name] = values
    slope = float(info.get("line_offset", 0.0))
    log_line = snapshots["treat_log_line"].to_numpy(dtype=np.float64)
    intercept = float(info.get("line_offset_intercept", 0.0))
    return {
        "booster": models["default"],
        "features": list(meta["features"]),
        "params": info.get("params", {}),
        "offset": slope * log_line + intercept + float(info.get("logit_shift", 0.0)),
        "offset_slope": slope,
        "offset_x": log_line,
        "offset_intercept": intercept,
        "offset_feature": "treat_log_line" if slope else None,
    }
