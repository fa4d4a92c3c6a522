"""The limit decisions and their options: the snapshot rows with the treatment features and annualised
targets (:func:`_load`), the line options of each decision (the booking grid; the current line times the
review multiples), accounts in arrears, the logged option, the decisions of a split, and the oracle's
potential outcomes at every option (:func:`read_potential`, evaluation only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from cardlab.config import Params
from cardlab.modeling.workflow import read_snapshots
from cardlab.modeling.xgb import read_dictionary, task_features
from cardlab.tasks.limit.spec import ACTION_COLS, TASK, TREAT


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
