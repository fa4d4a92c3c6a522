"""Credit-model validation pack in the form a bank's model-risk reviewer expects.

:func:`validation_pack` takes scored frames per split (train / valid / oot), computes the headline metrics
(out-of-time first, in-time beside it, the oracle's Bayes limit on the same rows when available), writes
PNG plots, DVC plot CSVs and tables into ``out_dir`` and returns a flat, JSON-serialisable metrics dict.

Everything is deterministic: the bootstrap is seeded, CSVs are written with a fixed float format, PNGs are
rendered with the Agg canvas and saved with ``metadata={"Software": None}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cardlab.artifacts import save_figure, write_csv
from cardlab.modeling import metrics as model_metrics

__all__ = ["validation_pack", "roc_points", "capture_points"]

_FLOAT_FMT = "%.8g"
_ROC_GRID = np.linspace(0.0, 1.0, 201)
_SCORE_AXIS = "score (points; higher = lower risk; 600 pts = 50:1 good:bad odds, +20 pts per doubling)"


# ----------------------------------------------------------------------------------------------- helpers


def roc_points(y, p, grid: np.ndarray = _ROC_GRID) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve evaluated exactly (as a step function) on a fixed false-positive-rate grid.

    Returns ``(fpr, tpr)`` with tpr(f) = the largest TPR reachable with FPR ≤ f. Compact and deterministic
    (a fixed number of points per curve) for DVC plot files. Higher ``p`` = riskier; bads are positives.
    """
    y = np.asarray(y).astype(np.int8)
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(ps))[0], ps.size - 1]
    tp = np.cumsum(ys)[distinct]
    fp = (distinct + 1) - tp
    fpr = np.r_[0.0, fp / max(int((y == 0).sum()), 1)]
    tpr = np.r_[0.0, tp / max(int(y.sum()), 1)]
    idx = np.searchsorted(fpr, grid, side="right") - 1
    return grid.copy(), tpr[idx]


def capture_points(y, p, n_points: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative capture (gains) curve: share of population reviewed (riskiest first) vs share of bads caught,
    at ``n_points`` equal-count cut points, starting from (0, 0)."""
    g = model_metrics.gains_table(y, p, n_bins=n_points)
    return np.r_[0.0, g["cum_n_share"].to_numpy()], np.r_[0.0, g["cum_capture"].to_numpy()]


def _month_label(v: Any) -> str:
    if isinstance(v, (pd.Timestamp, np.datetime64)) or hasattr(v, "strftime"):
        return pd.Timestamp(v).strftime("%Y-%m")
    return str(v)


def _to_csv(df: pd.DataFrame, path: Path) -> None:
    write_csv(df, path, float_format=_FLOAT_FMT)


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    save_figure(fig, path)


def _new_fig(title: str, takeaway: str, size=(7.0, 5.0)):
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    fig.suptitle(title, fontsize=12, fontweight="bold")
    ax.set_title(takeaway, fontsize=9)
    return fig, ax


def _psi_verdict(v: float) -> str:
    return "stable" if v < 0.1 else ("monitor" if v < 0.25 else "significant shift")


def _safe(fn, *args, **kwargs):
    """Metric value as a python float, or None when undefined (e.g. a split with a single class)."""
    try:
        v = fn(*args, **kwargs)
    except ValueError:
        return None
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _feature_values(col: pd.Series) -> np.ndarray:
    """Numeric (incl. nullable Int64/boolean) columns as float64 with NaN for missing; others as objects."""
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    return col.to_numpy(dtype=object)


def _feature_frames(features, frames: Mapping[str, pd.DataFrame], ref: str, tgt: str):
    """(reference DataFrame, {split: DataFrame}) of feature columns, or (None, {}) when no features given."""
    if features is None:
        return None, {}
    if isinstance(features, Mapping):
        if ref not in features:
            raise ValueError(f"features mapping lacks the reference split {ref!r}")
        ref_df = features[ref]
        others = {s: df for s, df in features.items() if s != ref}
        cols = [c for c in ref_df.columns if all(c in df.columns for df in others.values())]
        return ref_df[cols], {s: df[cols] for s, df in others.items()}
    names = [features] if isinstance(features, str) else list(features)
    missing = [c for c in names if c not in frames[ref].columns]
    if missing:
        raise ValueError(f"feature columns not found in frames[{ref!r}]: {missing}")
    return frames[ref][names], {s: df[names] for s, df in frames.items() if s != ref}


# ------------------------------------------------------------------------------------------------- pack


def top_gain_features(booster, k: int) -> list[str]:
    """The ``k`` features with the largest total split gain (ties by name): the CSI table's columns."""
    gain = booster.get_score(importance_type="total_gain")
    return sorted(gain, key=lambda f: (-gain[f], f))[:k]


def validation_pack(
    frames: Mapping[str, pd.DataFrame],
    *,
    score_col: str = "pd",
    label_col: str = "label",
    month_col: str = "snapshot_month",
    oracle_col: str | None = None,
    baseline_cols: Mapping[str, str] | None = None,
    features: Mapping[str, pd.DataFrame] | Sequence[str] | None = None,
    out_dir: Path | str,
    n_boot: int = 500,
    seed: int = 0,
    n_grades: int = 10,
    reference_split: str = "train",
    target_split: str = "oot",
    alpha: float = 0.05,
) -> dict[str, float | int | None]:
    """Compute the credit validation pack, write its artefacts into ``out_dir`` and return flat metrics.

    Parameters
    ----------
    frames
        split name → DataFrame with ``label_col`` (1 = bad), ``score_col`` (model PD; higher = riskier),
        ``month_col`` (snapshot month), optionally ``oracle_col`` (true PD from the sealed oracle), the baseline
        PD columns and feature columns. Must contain ``reference_split`` (default ``train``; the PSI/CSI and
        master-scale reference) and ``target_split`` (default ``oot``; the headline sample).
    baseline_cols
        baseline name → column holding that baseline's PD (e.g. ``{"bureau": "pd_bureau"}``).
    features
        Either a list of feature column names present in ``frames`` or a mapping split → feature DataFrame;
        used for the CSI table (reference → every other split).
    n_boot, seed
        Stratified bootstrap replicates and seed for the OOT AUC confidence interval.
    n_grades
        Grades of the geometric master scale (built on the reference split's PDs; grade 1 = lowest PD).

    Files written (all deterministic for fixed inputs):
    ``roc_oot.png``, ``reliability_oot.png``, ``score_distribution.png``, ``gains_oot.png``, ``psi_by_month.png``;
    DVC plot data ``plots/roc_oot.csv`` (fpr, tpr, model), ``plots/calibration.csv``, ``plots/gains.csv``,
    ``plots/psi_by_month.csv``; tables ``gains_table_oot.csv``, ``master_scale.csv``, ``jeffreys_by_grade.csv``,
    ``csi.csv``.

    Returns
    -------
    dict
        Flat mapping of plain python ints/floats (``None`` where a metric is undefined, e.g. a one-class split):
        ``{s}_auc, {s}_ks, {s}_gini, {s}_brier, {s}_bad_rate, {s}_n, {s}_mean_pd`` for each split;
        ``oot_auc_ci_lo/hi``; ``oot_oracle_auc/ks/gini/brier`` and ``oot_auc_gap_to_oracle`` (when
        ``oracle_col``); ``{baseline}_oot_auc`` and ``delong_vs_{baseline}_p``; ``oot_psi``;
        ``oot_hosmer_lemeshow_stat/_p``; ``jeffreys_grades_rejected`` (grades with p < ``alpha``);
        ``oot_recall_at_10pct``, ``oot_lift_at_10pct``; ``oot_csi_max`` (when features). Keys use the literal
        prefix ``oot`` for the target split.
    """
    baseline_cols = dict(baseline_cols or {})
    if reference_split not in frames or target_split not in frames:
        raise ValueError(f"frames must contain {reference_split!r} and {target_split!r}; got {list(frames)}")
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    needed = [label_col, score_col, month_col, *baseline_cols.values()] + ([oracle_col] if oracle_col else [])
    for s, df in frames.items():
        miss = [c for c in needed if c not in df.columns]
        if miss:
            raise ValueError(f"frames[{s!r}] lacks columns {miss}")

    def arr(split: str, col: str) -> np.ndarray:
        return frames[split][col].to_numpy()

    res: dict[str, float | int | None] = {}

    # --- per-split headline metrics (OOT is the headline; in-time beside it)
    for s in frames:
        y, p = arr(s, label_col).astype(np.int8), arr(s, score_col).astype(np.float64)
        res[f"{s}_n"] = int(y.size)
        res[f"{s}_bad_rate"] = float(y.mean()) if y.size else None
        res[f"{s}_mean_pd"] = float(p.mean()) if y.size else None
        res[f"{s}_auc"] = _safe(model_metrics.auc, y, p)
        res[f"{s}_ks"] = _safe(model_metrics.ks, y, p)
        res[f"{s}_gini"] = _safe(model_metrics.gini, y, p)
        res[f"{s}_brier"] = _safe(model_metrics.brier, y, p)

    t = target_split
    y_t = arr(t, label_col).astype(np.int8)
    p_t = arr(t, score_col).astype(np.float64)
    y_r = arr(reference_split, label_col).astype(np.int8)
    p_r = arr(reference_split, score_col).astype(np.float64)

    lo, hi = model_metrics.auc_bootstrap_ci(y_t, p_t, n_boot=n_boot, seed=seed, alpha=alpha)
    res["oot_auc_ci_lo"], res["oot_auc_ci_hi"] = lo, hi
    res["oot_pr_auc"] = _safe(model_metrics.pr_auc, y_t, p_t)
    res["oot_recall_at_10pct"] = _safe(model_metrics.recall_at, y_t, p_t, 0.1)
    res["oot_lift_at_10pct"] = _safe(model_metrics.lift_at, y_t, p_t, 0.1)

    curves: dict[str, np.ndarray] = {"model": p_t}
    if oracle_col:
        o_t = arr(t, oracle_col).astype(np.float64)
        curves["oracle"] = o_t
        res["oot_oracle_auc"] = _safe(model_metrics.auc, y_t, o_t)
        res["oot_oracle_ks"] = _safe(model_metrics.ks, y_t, o_t)
        res["oot_oracle_gini"] = _safe(model_metrics.gini, y_t, o_t)
        res["oot_oracle_brier"] = _safe(model_metrics.brier, y_t, o_t)
        res["oot_oracle_recall_at_10pct"] = _safe(model_metrics.recall_at, y_t, o_t, 0.1)
        oracle_auc, model_auc = res["oot_oracle_auc"], res[f"{t}_auc"]
        if oracle_auc is None or model_auc is None:
            raise ValueError(f"{t}: the AUC of the model or of the oracle column {oracle_col!r} is undefined")
        res["oot_auc_gap_to_oracle"] = float(oracle_auc - model_auc)
    for name, col in baseline_cols.items():
        b_t = arr(t, col).astype(np.float64)
        curves[name] = b_t
        res[f"{name}_oot_auc"] = _safe(model_metrics.auc, y_t, b_t)
        res[f"delong_vs_{name}_p"] = float(model_metrics.delong_test(y_t, p_t, b_t)["p_value"])

    res["oot_psi"] = oot_psi = model_metrics.psi(p_r, p_t, bins=10)
    hl_stat, hl_p = model_metrics.hosmer_lemeshow(y_t, p_t, groups=10)
    res["oot_hosmer_lemeshow_stat"], res["oot_hosmer_lemeshow_p"] = hl_stat, hl_p

    # --- master scale (built on the reference split) and Jeffreys back-test on the target split
    g_r, scale = model_metrics.master_scale(p_r, n_grades)
    g_t = model_metrics.assign_grades(p_t, scale)
    cnt_t = np.bincount(g_t - 1, minlength=n_grades)
    bad_t = np.bincount(g_t - 1, weights=y_t.astype(np.float64), minlength=n_grades).astype(np.int64)
    bad_r = np.bincount(g_r - 1, weights=y_r.astype(np.float64), minlength=n_grades).astype(np.int64)
    scale = scale.rename(
        columns={
            "n": f"n_{reference_split}",
            "share": f"share_{reference_split}",
            "mean_pd": f"mean_pd_{reference_split}",
        }
    )
    scale[f"dr_{reference_split}"] = np.where(
        scale[f"n_{reference_split}"] > 0, bad_r / np.maximum(scale[f"n_{reference_split}"], 1), np.nan
    )
    scale[f"n_{t}"] = cnt_t.astype(np.int64)
    scale[f"dr_{t}"] = np.where(cnt_t > 0, bad_t / np.maximum(cnt_t, 1), np.nan)
    _to_csv(scale, out / "master_scale.csv")

    pd_grade = scale[f"mean_pd_{reference_split}"].fillna(scale["pd_mid"]).to_numpy()
    jt = pd.DataFrame(
        {
            "grade": scale["grade"],
            "pd_grade": pd_grade,
            "n": cnt_t.astype(np.int64),
            "defaults": bad_t,
            "default_rate": scale[f"dr_{t}"],
        }
    )
    pvals = np.full(n_grades, np.nan)
    nz = cnt_t > 0
    if nz.any():
        pvals[nz] = model_metrics.jeffreys_test(bad_t[nz], cnt_t[nz], pd_grade[nz])
    jt["p_value"] = pvals
    jt["rejected"] = (jt["p_value"] < alpha) & nz
    _to_csv(jt, out / "jeffreys_by_grade.csv")
    res["jeffreys_grades_rejected"] = int(jt["rejected"].sum())

    # --- gains
    gt = model_metrics.gains_table(y_t, p_t, n_bins=10)
    _to_csv(gt, out / "gains_table_oot.csv")

    # --- CSI
    ref_feat, other_feat = _feature_frames(features, frames, reference_split, t)
    if ref_feat is not None:
        rows = []
        for c in ref_feat.columns:
            if not np.isfinite(pd.to_numeric(ref_feat[c], errors="coerce").to_numpy(dtype=float)).any():
                continue  # no reference distribution (e.g. all null on train): CSI undefined
            row = {"feature": c}
            for s, df in other_feat.items():
                row[f"csi_{s}"] = model_metrics.csi(_feature_values(ref_feat[c]), _feature_values(df[c]))
            rows.append(row)
        csi_df = pd.DataFrame(rows, columns=["feature", *(f"csi_{s}" for s in other_feat)])
        sort_col = f"csi_{t}" if f"csi_{t}" in csi_df.columns else None
        if sort_col:
            csi_df = csi_df.sort_values([sort_col, "feature"], ascending=[False, True], kind="mergesort")
            res["oot_csi_max"] = float(csi_df[sort_col].max()) if len(csi_df) else 0.0
    else:
        csi_df = pd.DataFrame(columns=["feature"])
    _to_csv(csi_df.reset_index(drop=True), out / "csi.csv")

    # --- PSI by month (score, every split's months against the reference split as a whole)
    splits_ref = model_metrics.bin_edges(p_r, 10)
    psi_rows = []
    for s, df in frames.items():
        months = df[month_col].map(_month_label)
        tab = model_metrics.psi_by_period(
            p_r, df[score_col].to_numpy(dtype=np.float64), months.to_numpy(), bins=splits_ref
        )
        tab.insert(0, "split", s)
        psi_rows.append(tab.rename(columns={"period": "month"}))
    psi_month = pd.concat(psi_rows, ignore_index=True)[["month", "split", "n", "psi"]]
    psi_month = psi_month.sort_values(["month", "split"], kind="mergesort").reset_index(drop=True)
    _to_csv(psi_month, out / "plots" / "psi_by_month.csv")

    # --- DVC plot data
    roc_rows = []
    for name, score in curves.items():
        fpr, tpr = roc_points(y_t, score)
        roc_rows.append(pd.DataFrame({"fpr": fpr, "tpr": tpr, "model": name}))
    roc_df = pd.concat(roc_rows, ignore_index=True)
    _to_csv(roc_df, out / "plots" / "roc_oot.csv")

    cal_rows = []
    for s in frames:
        ys, ps = arr(s, label_col).astype(np.int8), arr(s, score_col).astype(np.float64)
        if ys.size == 0:
            continue
        rc = model_metrics.reliability_curve(ys, ps, n_bins=10)
        rc.insert(0, "split", s)
        cal_rows.append(rc)
    cal_df = pd.concat(cal_rows, ignore_index=True)
    _to_csv(cal_df, out / "plots" / "calibration.csv")

    gains_rows = []
    for name, score in curves.items():
        share, cap = capture_points(y_t, score, 100)
        gains_rows.append(pd.DataFrame({"population_share": share, "capture": cap, "model": name}))
    gains_df = pd.concat(gains_rows, ignore_index=True)
    _to_csv(gains_df, out / "plots" / "gains.csv")

    # --- PNG plots
    _plot_roc(roc_df, res, list(curves), t, out / "roc_oot.png")
    _plot_reliability(cal_df[cal_df["split"] == t], res, t, out / "reliability_oot.png")
    _plot_score_dist(p_r, p_t, oot_psi, reference_split, t, out / "score_distribution.png")
    _plot_gains(gains_df, res, t, out / "gains_oot.png")
    _plot_psi_month(psi_month, reference_split, out / "psi_by_month.png")

    return {k: (v if v is None or isinstance(v, int) else float(v)) for k, v in res.items()}


# ------------------------------------------------------------------------------------------------ plots


def _plot_roc(roc_df: pd.DataFrame, res: dict, names: list[str], t: str, path: Path) -> None:
    a = res[f"{t}_auc"]
    if "oracle" in names and res.get("oot_oracle_auc") is not None:
        o = res["oot_oracle_auc"]
        share = (a - 0.5) / (o - 0.5) if o > 0.5 else float("nan")
        take = f"Model AUC {a:.3f} vs oracle {o:.3f}: {share:.0%} of the achievable gain over random"
    else:
        take = f"Model AUC {a:.3f} (95% CI {res['oot_auc_ci_lo']:.3f}–{res['oot_auc_ci_hi']:.3f})"
    fig, ax = _new_fig(f"ROC curve, {t} sample", take)
    for name in names:
        d = roc_df[roc_df["model"] == name]
        auc_v = (
            res[f"{t}_auc"]
            if name == "model"
            else (res.get("oot_oracle_auc") if name == "oracle" else res.get(f"{name}_oot_auc"))
        )
        style = "--" if name == "oracle" else "-"
        ax.plot(d["fpr"], d["tpr"], style, drawstyle="steps-post", label=f"{name} (AUC {auc_v:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="random")
    ax.set_xlabel("false positive rate (share of goods flagged)")
    ax.set_ylabel("true positive rate (share of bads flagged)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def _plot_reliability(cal: pd.DataFrame, res: dict, t: str, path: Path) -> None:
    hl = res["oot_hosmer_lemeshow_p"]
    verdict = "consistent with calibration" if hl >= 0.05 else "miscalibrated"
    take = (
        f"Mean PD {res[f'{t}_mean_pd']:.2%} vs observed bad rate {res[f'{t}_bad_rate']:.2%}; "
        f"Hosmer-Lemeshow p = {hl:.3g} ({verdict})"
    )
    fig, ax = _new_fig(f"Reliability curve, {t} sample (10 equal-count PD bins)", take)
    hi = float(max(cal["mean_pred"].max(), cal["obs_rate"].max(), 1e-3)) * 1.05
    ax.plot([0, hi], [0, hi], ":", color="grey", label="perfect calibration")
    ax.plot(cal["mean_pred"], cal["obs_rate"], "o-", label="model")
    ax.set_xlabel("mean predicted PD in bin (probability)")
    ax.set_ylabel("observed bad rate in bin (share)")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def _plot_score_dist(p_r: np.ndarray, p_t: np.ndarray, psi_v: float, ref: str, t: str, path: Path) -> None:
    s_r, s_t = model_metrics.pd_to_score(p_r), model_metrics.pd_to_score(p_t)
    lo, hi = np.quantile(np.r_[s_r, s_t], [0.001, 0.999])
    edges = np.linspace(lo, hi, 41)
    take = f"Score PSI {ref} → {t} = {psi_v:.3f} ({_psi_verdict(psi_v)})"
    fig, ax = _new_fig(f"Score distribution, {ref} vs {t}", take)
    ax.hist(np.clip(s_r, lo, hi), bins=edges, density=True, alpha=0.5, label=f"{ref} (n={s_r.size})")
    ax.hist(np.clip(s_t, lo, hi), bins=edges, density=True, alpha=0.5, label=f"{t} (n={s_t.size})")
    ax.set_xlabel(_SCORE_AXIS, fontsize=8)
    ax.set_ylabel("density (share per point)")
    ax.legend(fontsize=8)
    _save(fig, path)


def _plot_gains(gains_df: pd.DataFrame, res: dict, t: str, path: Path) -> None:
    take = f"Riskiest 10% of applicants hold {res['oot_recall_at_10pct']:.0%} of bads"
    if res.get("oot_oracle_recall_at_10pct") is not None:
        take += f" (oracle {res['oot_oracle_recall_at_10pct']:.0%})"
    fig, ax = _new_fig(f"Cumulative capture (gains) curve, {t} sample", take)
    for name, d in gains_df.groupby("model", sort=False):
        ax.plot(d["population_share"], d["capture"], "--" if name == "oracle" else "-", label=name)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="random")
    ax.set_xlabel("share of population reviewed, riskiest first")
    ax.set_ylabel("share of all bads captured")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def _plot_psi_month(psi_month: pd.DataFrame, ref: str, path: Path) -> None:
    i = int(psi_month["psi"].to_numpy().argmax())
    worst = psi_month.iloc[i]
    take = (
        f"Max monthly score PSI {worst['psi']:.3f} in {worst['month']} ({_psi_verdict(float(worst['psi']))})"
    )
    fig, ax = _new_fig(f"Score PSI by snapshot month vs the whole {ref} sample", take, size=(8.0, 5.0))
    x = np.arange(len(psi_month))
    splits = list(dict.fromkeys(psi_month["split"]))
    for s in splits:
        m = (psi_month["split"] == s).to_numpy()
        ax.bar(x[m], psi_month["psi"].to_numpy()[m], label=s)
    ax.axhline(0.1, ls="--", color="orange", lw=1, label="0.10 monitor")
    ax.axhline(0.25, ls="--", color="red", lw=1, label="0.25 shift")
    ax.set_xticks(x)
    ax.set_xticklabels(psi_month["month"], rotation=60, fontsize=7)
    ax.set_xlabel("snapshot month")
    ax.set_ylabel("PSI (unitless)")
    ax.legend(fontsize=8)
    _save(fig, path)
