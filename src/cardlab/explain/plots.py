"""Explanation plots (PNG, deterministic bytes: Agg backend, fixed seeds, no Software metadata)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cardlab.artifacts import save_figure  # noqa: E402


def _save(fig, path: Path) -> None:
    save_figure(fig, path)
    plt.close(fig)


def _title(ax, title: str, takeaway: str) -> None:
    ax.set_title(f"{title}\n{takeaway}", fontsize=10, loc="left")


def importance_bar(
    imp: pd.Series,
    path: Path,
    *,
    title: str,
    takeaway: str,
    top: int = 20,
    xlabel: str = "mean |SHAP| (log-odds)",
) -> None:
    s = imp.head(top)[::-1]
    fig, ax = plt.subplots(figsize=(8.0, max(3.0, 0.3 * len(s) + 1.4)))
    ax.barh(range(len(s)), s.to_numpy(), color="#3b6ea5")
    ax.set_yticks(range(len(s)), [str(i) for i in s.index], fontsize=8)
    ax.set_xlabel(xlabel)
    _title(ax, title, takeaway)
    fig.tight_layout()
    _save(fig, path)


def beeswarm(
    shap: np.ndarray,
    x: np.ndarray,
    features: list[str],
    order: list[str],
    path: Path,
    *,
    seed: int,
    takeaway: str,
    top: int = 15,
    max_points: int = 2000,
) -> None:
    """SHAP beeswarm: one row per top feature, points jittered by local density, coloured by feature value
    percentile within the sample (blue low, red high; grey missing)."""
    rng = np.random.default_rng(seed)
    n = shap.shape[0]
    rows = rng.permutation(n)[:max_points] if n > max_points else np.arange(n)
    names = order[:top][::-1]
    fig, ax = plt.subplots(figsize=(8.5, max(3.0, 0.38 * len(names) + 1.6)))
    for yi, name in enumerate(names):
        j = features.index(name)
        v = shap[rows, j].astype(np.float64)
        xv = x[rows, j].astype(np.float64)
        ok = ~np.isnan(xv)
        pct = np.full(len(xv), np.nan)
        if ok.any():
            pct[ok] = pd.Series(xv[ok]).rank(pct=True).to_numpy()
        # density-scaled jitter: points in crowded SHAP bins spread wider
        bins = np.digitize(v, np.linspace(v.min(), v.max() + 1e-12, 50))
        dens = np.bincount(bins, minlength=52)[bins] / max(len(v), 1)
        jit = (rng.random(len(v)) - 0.5) * np.clip(dens * 8.0, 0.05, 0.8)
        colors = plt.cm.coolwarm(np.nan_to_num(pct, nan=0.5))
        colors[~ok] = (0.6, 0.6, 0.6, 1.0)
        ax.scatter(v, yi + jit, s=4, c=colors, linewidths=0, rasterized=True)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("SHAP value (log-odds; > 0 pushes towards the adverse outcome)")
    _title(ax, "SHAP beeswarm (colour: feature value percentile, blue low -> red high)", takeaway)
    fig.tight_layout()
    _save(fig, path)


def dependence(
    shap: np.ndarray,
    x: np.ndarray,
    features: list[str],
    names: list[str],
    path: Path,
    *,
    seed: int,
    max_points: int = 3000,
) -> None:
    rng = np.random.default_rng(seed)
    n = shap.shape[0]
    rows = rng.permutation(n)[:max_points] if n > max_points else np.arange(n)
    k = len(names)
    cols = 3 if k > 4 else 2
    nrows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.3 * nrows + 0.6), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        j = features.index(name)
        xv, v = x[rows, j].astype(np.float64), shap[rows, j].astype(np.float64)
        ok = ~np.isnan(xv)
        ax.scatter(xv[ok], v[ok], s=4, alpha=0.5, color="#3b6ea5", linewidths=0, rasterized=True)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel("SHAP (log-odds)", fontsize=8)
        miss = (~ok).mean()
        if miss > 0:
            ax.set_title(f"missing {miss:.0%}: mean SHAP {v[~ok].mean():+.3f}", fontsize=8)
    for ax in axes.ravel()[k:]:
        ax.set_visible(False)
    fig.suptitle(
        "Dependence of the top features: how each value moves the log-odds of the adverse outcome",
        fontsize=10,
        x=0.01,
        ha="left",
    )
    fig.tight_layout()
    _save(fig, path)


def truth_scatter(table: pd.DataFrame, path: Path, *, takeaway: str) -> None:
    fig, ax = plt.subplots(figsize=(7.0, 5.0))
    style = {"driver": ("#1b7837", "o"), "decoy": ("#b2182b", "x"), "proxy": ("#e08214", "s")}
    for role, (c, m) in style.items():
        t = table[table["role"] == role]
        if t.empty:
            continue
        ax.scatter(t["true_strength"], t["mean_abs_shap"], color=c, marker=m, label=role)
        for _, r in t.iterrows():
            ax.annotate(
                str(r["source"]),
                (r["true_strength"], r["mean_abs_shap"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel("true strength (oracle true_drivers.json)")
    ax.set_ylabel("mean |SHAP| of the source (log-odds)")
    ax.legend(fontsize=8)
    _title(ax, "Explanation vs truth", takeaway)
    fig.tight_layout()
    _save(fig, path)
