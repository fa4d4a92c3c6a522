"""``cardlab explain <task>``: SHAP explanations, reason codes, faithfulness and the model report.

Reads ``experiments/<task>/model/`` (booster + features.json), ``data/features/<task>/`` and the feature
dictionary, and (evaluation only) ``data/oracle/true_drivers.json``. Writes, atomically:

- ``experiments/<task>/explain/``: ``global_importance.json``, ``reason_codes.parquet``,
  ``explain_metrics.json``, ``fairness.csv``, ``performance_by_month.csv``, ``reason_stability.csv`` and PNG
  plots (importance by feature and family, beeswarm, dependence, truth scatter);
- ``experiments/<task>/report.html``: the self-contained model report (docs/explain.md).

Everything is logged to the model's MLflow run (``experiments/<task>/.mlflow_run``). ``metrics.json`` is
owned by the evaluate stage and is not rewritten here: evaluate adds the contract's explanation keys itself
with :func:`contract_metrics` (same seeded OOT sample).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from cardlab import taskspec, tracking
from cardlab.artifacts import (
    atomic_dir,
    atomic_file,
    rounded_significant,
    write_csv,
    write_json,
    write_parquet,
)
from cardlab.config import Params, params_hash
from cardlab.explain import faithfulness as faithfulness_checks
from cardlab.explain import plots as explain_plots
from cardlab.explain import reasons as reason_text
from cardlab.explain import report as bank_report
from cardlab.explain import shap_values
from cardlab.modeling import metrics as model_metrics
from cardlab.modeling.fairness import decision_mask, fairness_table, min_air
from cardlab.modeling.workflow import (
    experiment_name,
    load_model,
    model_digest,
    model_run_name,
    read_snapshots,
)
from cardlab.modeling.xgb import read_dictionary, task_features

METRIC_KEYS = (
    "shap_additivity_max_err",
    "shap_truth_spearman",
    "n_drivers_used",
    "decoys_below_drivers",
)
KEYS = ["customer_id", "snapshot_date"]
CONTROL_MAX_BIN = 64


def _objective(meta_params: dict, booster: xgb.Booster) -> str:
    obj = meta_params.get("objective")
    if obj:
        return str(obj)
    cfg = json.loads(booster.save_config())
    return cfg["learner"]["objective"]["name"]


def _prob(margin: np.ndarray, objective: str) -> np.ndarray:
    if objective.startswith("binary:"):
        return 1.0 / (1.0 + np.exp(-margin))
    return margin


def performance_by_month(snapshots: pd.DataFrame, score: np.ndarray, modelled: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "month": pd.to_datetime(snapshots["snapshot_date"]).dt.strftime("%Y-%m"),
            "split": snapshots["split"].astype(str),
            "label": snapshots["label"],
            "score": score,
        }
    )
    df = df[modelled & df["label"].notna().to_numpy()]
    rows = []
    for (month, split), g in df.groupby(["month", "split"], sort=True):
        y = g["label"].astype(int).to_numpy()
        auc = model_metrics.auc(y, g["score"].to_numpy()) if 0 < y.sum() < len(y) else float("nan")
        rows.append(
            {
                "month": month,
                "split": split,
                "n": len(g),
                "bad_rate": float(y.mean()),
                "mean_score": float(g["score"].mean()),
                "auc": auc,
            }
        )
    return pd.DataFrame(rows, columns=["month", "split", "n", "bad_rate", "mean_score", "auc"])


def _modelled(task: str, snapshots: pd.DataFrame) -> np.ndarray:
    keep = snapshots["label"].notna().to_numpy()
    column = taskspec.get(task).modelled_column
    if column is not None and column in snapshots:
        keep &= snapshots[column].astype(bool).to_numpy()
    return keep


def reason_stability(
    booster_params: dict,
    n_rounds: int,
    snapshots: pd.DataFrame,
    features: list[str],
    modelled: np.ndarray,
    x_eval: np.ndarray,
    base_sets: list[frozenset[str]],
    groups: reason_text.Groups,
    top_k: int,
    refits: int,
    seed: int,
) -> pd.DataFrame:
    """Refit on bootstrap samples of the training split with the tuned params and the final number of rounds;
    compare each refit's top-k reason groups with the model's on the same declined rows."""
    train = snapshots[modelled & (snapshots["split"] == "train").to_numpy()]
    x_tr = shap_values.as_matrix(train, features)
    y_tr = train["label"].to_numpy(dtype=np.float32)
    params = {k: v for k, v in booster_params.items() if k not in ("eval_metric",)}
    rows = []
    for r in range(refits):
        rng = np.random.default_rng([seed, r])
        idx = np.sort(rng.integers(0, len(train), len(train)))
        dtrain = xgb.DMatrix(x_tr[idx], label=y_tr[idx], feature_names=features)
        refit = xgb.train({**params, "seed": seed + r}, dtrain, num_boost_round=n_rounds)
        sv = shap_values.tree_shap(refit, x_eval, features)
        agree = reason_text.set_agreement(
            base_sets, reason_text.top_groups(sv.values, features, groups, top_k), top_k
        )
        rows.append({"refit": r + 1, "n_rows": len(base_sets), **agree})
    return pd.DataFrame(rows, columns=["refit", "n_rows", "jaccard", "overlap"])


@dataclass
class ExplainedModel:
    """The booster a task registers, its features and training params, and any per-row margin term the booster
    does not hold (``offset``: limit's PD model adds ``slope * log(line) + recalibration shift``).

    SHAP stays exact: the offset's variation is credited to the line feature (``offset_feature``) as
    ``slope * (log line - mean over the explained population)`` and its mean goes into the base value, so
    base + sum(SHAP) equals the full margin the task predicts with."""

    booster: xgb.Booster
    features: list[str]
    params: dict
    offset: np.ndarray
    offset_slope: float = 0.0
    offset_x: np.ndarray | None = None  # per-row variable the slope multiplies
    offset_feature: str | None = None
    offset_intercept: float = 0.0  # the constant of the base margin the booster was trained with

    def offset_shap(self, rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), len(self.features)))
        if self.offset_feature is not None and self.offset_x is not None:
            x = self.offset_x
            out[:, self.features.index(self.offset_feature)] = self.offset_slope * (x[rows] - x.mean())
        return out

    def fold_offset(self, sv: shap_values.ShapValues, rows: np.ndarray) -> shap_values.ShapValues:
        if not self.offset.any():
            return sv
        extra = self.offset_shap(rows)
        base = float(sv.base_value + (self.offset[rows] - extra.sum(axis=1)).mean()) if len(rows) else 0.0
        # the offset minus its credited part is the same constant on every row
        return shap_values.ShapValues(
            values=(sv.values + extra).astype(np.float32), base_value=base, features=sv.features
        )


def explained_model(task: str, out: Path, snapshots: pd.DataFrame) -> ExplainedModel:
    """Load the registered model of ``task``: ``model/model.ubj``, or what the task's ``explain_model_hook``
    returns (cardlab.taskspec) as :class:`ExplainedModel` fields. Limit's hook loads its 90+ DPD response
    model (an S-learner with the line as treatment) and adds the logged line's treatment columns to
    ``snapshots`` (in place), so each decision is explained at the line it actually got."""
    spec = taskspec.get(task)
    if spec.explain_model_hook is None:
        booster, features, _directions = load_model(out)
        meta = json.loads((out / "model" / "features.json").read_text())
        return ExplainedModel(booster, features, meta.get("params", {}), np.zeros(len(snapshots)))
    return ExplainedModel(**spec.hook(spec.explain_model_hook)(out, snapshots))


def global_shap(
    model: ExplainedModel, x_all: np.ndarray, rows: np.ndarray, n: int, rng: np.random.Generator, nthread: int
) -> tuple[np.ndarray, shap_values.ShapValues]:
    """Exact SHAP (offset folded in) on a seeded sample of at most ``n`` of the ``rows`` (a boolean mask)."""
    idx = np.flatnonzero(rows)
    sample = np.sort(rng.permutation(idx)[:n]) if len(idx) > n else idx
    return sample, model.fold_offset(
        shap_values.tree_shap(model.booster, x_all[sample], model.features, nthread=nthread), sample
    )


def faithfulness(
    task: str,
    sv: shap_values.ShapValues,
    dictionary: dict[str, dict],
    oracle: Path,
    *,
    candidates: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Source importance and the truth check against ``oracle/true_drivers.json`` (faithfulness.py). With
    ``candidates``, candidate features the model does not use (screened out in tune) take part with
    importance 0."""
    truth_path = Path(oracle) / "true_drivers.json"
    truth = faithfulness_checks.load_truth(truth_path, task) if truth_path.exists() else None
    known = _known_columns(truth)
    unused = (
        [f for f in task_features(list(dictionary.values()), task)[0] if f not in set(sv.features)]
        if candidates
        else []
    )
    src_imp = faithfulness_checks.source_importance(
        np.hstack([sv.values, np.zeros((len(sv.values), len(unused)), np.float32)]),
        [*sv.features, *unused],
        dictionary,
        known,
    )
    if truth is None:
        return src_imp, {
            "shap_truth_spearman": None,
            "decoys_below_drivers": faithfulness_checks.NOT_ASSESSABLE,
            "n_drivers_used": 0,
            "table": [],
            "proxies": {},
            "note": f"{truth_path} not found",
        }
    return src_imp, faithfulness_checks.truth_check(src_imp, truth)


def _known_columns(truth: dict[str, Any] | None) -> set[str]:
    return set(truth["drivers"]) | set(truth["decoys"]) | set(truth["proxies"]) if truth else set()


def _directions(model: ExplainedModel) -> dict[str, int]:
    """Monotone direction of each registered feature, parsed from its ``monotone_constraints`` string."""
    mc = str(model.params.get("monotone_constraints", "") or "").strip("()")
    vals = [int(float(v)) for v in mc.split(",") if v.strip()] if mc else []
    return dict(zip(model.features, vals, strict=False)) if len(vals) == len(model.features) else {}


def control_model(
    task: str, model: ExplainedModel, snapshots: pd.DataFrame, dictionary: list[dict], nthread: int
) -> tuple[xgb.Booster, list[str]]:
    """The faithfulness control: the registered model's tuned parameters and number of trees, refitted on the
    same training rows with **every candidate feature** of the task forced in (decoys and every driver
    included; no shadow screen), plus any treatment column the registered model has (limit). Monotone
    constraints follow the feature dictionary (the registered model's own for its extra columns); limit's
    log-line offset is kept as the base margin. Fitted on the train split only, with
    :data:`CONTROL_MAX_BIN` histogram bins."""
    names, directions = task_features(dictionary, task)
    extra = [f for f in model.features if f not in set(names)]
    features = [*names, *extra]
    registered = _directions(model)
    dirs = {**{f: directions.get(f, 0) for f in names}, **{f: registered.get(f, 0) for f in extra}}
    absent = [f for f in features if f not in snapshots.columns]
    if absent:
        raise ValueError(f"control model: features absent from the {task} snapshots: {absent[:5]}")
    rows = _modelled(task, snapshots) & (snapshots["split"] == "train").to_numpy()
    if rows.sum() < 50:
        raise ValueError(f"control model: only {int(rows.sum())} labelled train rows for {task}")
    train = snapshots[rows]
    dtrain = xgb.DMatrix(
        shap_values.as_matrix(train, features),
        label=train["label"].to_numpy(dtype=np.float32),
        feature_names=features,
        nthread=nthread,
    )
    if model.offset_slope and model.offset_x is not None:
        dtrain.set_base_margin(
            (model.offset_slope * model.offset_x[rows] + model.offset_intercept).astype("float32")
        )
    params = {k: v for k, v in model.params.items() if k not in ("eval_metric", "monotone_constraints")}
    params["monotone_constraints"] = "(" + ",".join(str(int(dirs[f])) for f in features) + ")"
    params["nthread"] = nthread
    # an engineering setting, not a tuned one: 64 histogram bins fit the control a few times faster
    params["max_bin"] = CONTROL_MAX_BIN
    booster = xgb.train(params, dtrain, num_boost_round=max(int(model.booster.num_boosted_rounds()), 1))
    return booster, features


def faithfulness_metrics(
    params: Params,
    task: str,
    snapshots: pd.DataFrame,
    model: ExplainedModel,
    sample: np.ndarray,
    sv: shap_values.ShapValues,
    dictionary: dict[str, dict],
    oracle: Path,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Faithfulness of the registered model (Spearman with its bootstrap bounds, drivers used) and the decoy
    check on the control model (:func:`control_model`), on the same seeded OOT ``sample``. Returns the flat
    metrics and the two truth checks (registered, control)."""
    gp, nthread = params.grading, params.tune.nthread
    truth_path = Path(oracle) / "true_drivers.json"
    truth = faithfulness_checks.load_truth(truth_path, task) if truth_path.exists() else None
    src_imp, check = faithfulness(task, sv, dictionary, oracle)
    out: dict[str, Any] = {
        "shap_truth_spearman": check["shap_truth_spearman"],
        "shap_truth_spearman_lo": None,
        "shap_truth_spearman_hi": None,
        "n_drivers_seen": check.get("n_drivers_seen", 0),
        "n_drivers_used": check.get("n_drivers_used", 0),
    }
    if truth is not None and check["shap_truth_spearman"] is not None and len(sample):
        unused = [f for f in task_features(list(dictionary.values()), task)[0] if f not in set(sv.features)]
        sources, rows, _ = faithfulness_checks.source_matrix(
            np.hstack([sv.values, np.zeros((len(sv.values), len(unused)), np.float32)]),
            [*sv.features, *unused],
            dictionary,
            _known_columns(truth),
        )
        out["shap_truth_spearman_lo"], out["shap_truth_spearman_hi"] = faithfulness_checks.spearman_bounds(
            rows,
            sources,
            truth,
            snapshots["customer_id"].to_numpy()[sample],
            n_boot=gp.bootstrap,
            seed=gp.seed,
            level=gp.ci_level,
        )
    control_check: dict[str, Any] = {"decoys_below_drivers": faithfulness_checks.NOT_ASSESSABLE, "table": []}
    if truth is not None and len(sample):
        booster, features = control_model(task, model, snapshots, list(dictionary.values()), nthread)
        x = shap_values.as_matrix(snapshots.iloc[sample], features)
        csv = shap_values.tree_shap(booster, x, features, nthread=nthread)
        _, control_check = faithfulness(task, csv, dictionary, oracle, candidates=False)
    out.update(
        {
            "decoys_below_drivers": control_check["decoys_below_drivers"],
            "decoy_driver_inversions": len(control_check.get("decoy_driver_inversions", [])),
            "decoy_max_share": control_check.get("max_decoy_share"),
            "control_n_drivers_used": control_check.get("n_drivers_used", 0),
            "control_shap_truth_spearman": control_check.get("shap_truth_spearman"),
        }
    )
    return out, check, control_check


def contract_metrics(params: Params, task: str, features_root: Path, oracle: Path, out: Path) -> dict:
    """The explanation keys of the task's ``metrics.json`` contract, computed by the evaluate stage on the same
    seeded OOT sample ``cardlab explain`` uses: ``shap_additivity_max_err``; for the registered model
    ``shap_truth_spearman`` (+ ``_lo``/``_hi``; None when fewer than 3 drivers are used), ``n_drivers_seen``,
    ``n_drivers_used``; for the control model (every candidate feature forced in) ``decoys_below_drivers``
    (True / False / "not assessable"), ``decoy_driver_inversions``, ``decoy_max_share``,
    ``control_n_drivers_used``, ``control_shap_truth_spearman``."""
    snapshots = read_snapshots(Path(features_root), task).reset_index(drop=True)
    model = explained_model(task, Path(out), snapshots)
    x_all = shap_values.as_matrix(snapshots, model.features)
    margin_all = shap_values.margin(model.booster, x_all, model.features) + model.offset
    rng = np.random.default_rng(params.explain.seed)
    oot = (snapshots["split"] == "oot").to_numpy()
    sample, sv = global_shap(model, x_all, oot, params.explain.global_sample, rng, params.tune.nthread)
    dictionary = {e["name"]: e for e in read_dictionary(Path(features_root))}
    faithful, _, _ = faithfulness_metrics(
        params, task, snapshots, model, sample, sv, dictionary, Path(oracle)
    )
    return rounded_significant(
        {
            "shap_additivity_max_err": float(np.max(np.abs(sv.margin - margin_all[sample])))
            if len(sample)
            else 0.0,
            **faithful,
        }
    )


def explain(params: Params, task: str, features_root: Path, oracle: Path, out: Path) -> dict:
    """Explain the task's model; write ``out/explain/`` and ``out/report.html``; log to the model's MLflow run.

    Returns the explain metrics (also in ``out/explain/explain_metrics.json``), among them
    ``shap_additivity_max_err`` (log-odds), ``shap_truth_spearman`` and ``decoys_below_drivers``.
    """
    ep = params.explain
    features_root, oracle, out = Path(features_root), Path(oracle), Path(out)
    snapshots = read_snapshots(features_root, task).reset_index(drop=True)
    model = explained_model(task, out, snapshots)
    booster, features, booster_params = model.booster, model.features, model.params
    objective = _objective(booster_params, booster)
    dictionary = {e["name"]: e for e in read_dictionary(features_root)}
    spec = taskspec.get(task)
    if spec.extra_texts is not None:
        dictionary |= {name: {"name": name, **text} for name, text in spec.hook(spec.extra_texts).items()}
    missing = [f for f in features if f not in snapshots.columns]
    if missing:
        raise ValueError(
            f"model features absent from {features_root / task}: {missing[:5]} (rebuild features)"
        )
    x_all = shap_values.as_matrix(snapshots, features)
    nthread = params.tune.nthread
    margin_all = shap_values.margin(booster, x_all, features) + model.offset
    score = _prob(margin_all, objective)
    points = None
    if spec.score_points and objective.startswith("binary:"):
        cp = params.credit
        points = model_metrics.pd_to_score(score, cp.base_points, cp.base_odds, cp.pdo)
    oot = (snapshots["split"] == "oot").to_numpy()
    modelled = _modelled(task, snapshots)

    # --- global: exact tree SHAP on a seeded OOT sample
    rng = np.random.default_rng(ep.seed)
    sample, sv = global_shap(model, x_all, oot, ep.global_sample, rng, nthread)
    x_s = x_all[sample]
    add_err = float(np.max(np.abs(sv.margin - margin_all[sample]))) if len(sample) else 0.0
    n_check = min(200, len(sample))
    impl_diff = (
        float(
            np.max(
                np.abs(
                    shap_values.shap_tree_explainer(booster, x_s[:n_check], features)
                    - shap_values.tree_shap(booster, x_s[:n_check], features).values
                )
            )
        )
        if n_check
        else 0.0
    )
    imp = shap_values.mean_abs(sv)
    fam_of = {f: str(dictionary.get(f, {}).get("family", "unknown")) for f in features}
    families = sorted(set(fam_of.values()))
    fam_imp = pd.Series(
        {
            fam: float(
                np.abs(
                    sv.values[:, [i for i, f in enumerate(features) if fam_of[f] == fam]].sum(
                        axis=1, dtype=np.float64
                    )
                ).mean()
            )
            for fam in families
        }
    )
    fam_imp = fam_imp.sort_index().sort_values(ascending=False, kind="mergesort")
    groups = reason_text.group_features(features, dictionary, x_s[:2000], imp, ep.group_corr_threshold)
    gm, gids = groups.matrix(features)
    grp_imp = pd.Series(np.abs(sv.values.astype(np.float64) @ gm).mean(axis=0), index=gids)
    grp_imp = grp_imp.sort_index().sort_values(ascending=False, kind="mergesort")

    # --- local: reason codes for every adverse decision in the OOT period
    adverse, cutoff = decision_mask(task, params, snapshots, score, oot)
    dec_idx = np.flatnonzero(adverse)
    sv_dec = model.fold_offset(
        shap_values.tree_shap(booster, x_all[dec_idx], features, nthread=nthread), dec_idx
    )
    add_err = max(
        add_err, float(np.max(np.abs(sv_dec.margin - margin_all[dec_idx]))) if len(dec_idx) else 0.0
    )
    keys = snapshots.loc[dec_idx, KEYS + ["split"]].reset_index(drop=True)
    reasons = reason_text.reason_table(sv_dec.values, features, keys, groups, dictionary, ep.top_reasons)
    reasons = reasons[
        [*KEYS, "rank", "feature", "contribution", "reason_zh", "reason_en", "reason_group", "split"]
    ]

    # --- stability of reasons across bootstrap refits
    stab_rows = dec_idx[: ep.stability_rows]
    base_sets = reason_text.top_groups(sv_dec.values[: len(stab_rows)], features, groups, ep.top_reasons)
    stability = pd.DataFrame(columns=["refit", "n_rows", "jaccard", "overlap"])
    if ep.bootstrap_refits and len(stab_rows) and booster_params:
        stability = reason_stability(
            booster_params,
            booster.num_boosted_rounds(),
            snapshots,
            features,
            modelled,
            x_all[stab_rows],
            base_sets,
            groups,
            ep.top_reasons,
            ep.bootstrap_refits,
            ep.seed,
        )

    # --- faithfulness against the oracle's true drivers (registered model) and the control model's decoy check
    faithful, check, control_check = faithfulness_metrics(
        params, task, snapshots, model, sample, sv, dictionary, oracle
    )
    src_imp, _ = faithfulness(task, sv, dictionary, oracle)

    # --- optional interventional SHAP against the reference population
    interventional = None
    if ep.interventional_rows:
        ref_idx = np.flatnonzero((snapshots["split"] == ep.reference_split).to_numpy())
        bg = np.sort(rng.permutation(ref_idx)[: ep.background_rows])
        rows = x_s[: ep.interventional_rows]
        isv = shap_values.interventional_shap(booster, rows, x_all[bg], features)
        iimp = shap_values.mean_abs(isv)
        from scipy.stats import spearmanr

        interventional = {
            "reference": f"{len(bg)} seeded rows of split {ep.reference_split!r}",
            "n_rows": len(rows),
            "base_value": isv.base_value,
            "rank_corr_with_path_dependent": float(
                spearmanr(iimp.reindex(features), imp.reindex(features)).statistic
            ),
            "mean_abs_shap": {k: float(v) for k, v in iimp.head(30).items()},
        }

    fair = fairness_table(snapshots, score, adverse, oot, points)
    perf = performance_by_month(snapshots, score, modelled)

    metrics = {
        "shap_additivity_max_err": add_err,
        **faithful,
        "shap_impl_max_diff": impl_diff,
        "shap_explained_rows": int(len(sample)),
        "reason_rows": int(len(dec_idx)),
        "reason_stability_jaccard": float(stability["jaccard"].mean()) if len(stability) else float("nan"),
        "reason_stability_overlap": float(stability["overlap"].mean()) if len(stability) else float("nan"),
        **{f"decision_{k}": v for k, v in cutoff.items()},
    }
    metrics.update(min_air(fair))
    metrics = rounded_significant(metrics)

    glob = rounded_significant(
        {
            "task": task,
            "units": "mean |SHAP| in log-odds (margin) space on the OOT sample",
            "n_rows": int(len(sample)),
            "base_value": sv.base_value,
            "features": [
                {"feature": f, "family": fam_of[f], "group": groups.of[f], "mean_abs_shap": float(v)}
                for f, v in imp.items()
            ],
            "families": [{"family": k, "mean_abs_shap": float(v)} for k, v in fam_imp.items()],
            "reason_groups": [
                {"group": g, "lead": groups.lead[g], "members": groups.members[g], "mean_abs_shap": float(v)}
                for g, v in grp_imp.items()
            ],
            "sources": [
                {k: r[k] for k in ("source", "mean_abs_shap", "n_features", "rank")}
                for r in src_imp.to_dict("records")
            ],
            "truth": {k: v for k, v in check.items()},
            "control_truth": {k: v for k, v in control_check.items()},
            "interventional": interventional,
        }
    )

    explain_dir = out / "explain"
    with atomic_dir(explain_dir) as tmp:
        write_json(glob, tmp / "global_importance.json")
        write_json(metrics, tmp / "explain_metrics.json")
        write_parquet(reasons, tmp / "reason_codes.parquet")
        write_csv(fair, tmp / "fairness.csv")
        write_csv(perf, tmp / "performance_by_month.csv")
        write_csv(stability, tmp / "reason_stability.csv")
        top = imp.index[0] if len(imp) else ""
        explain_plots.importance_bar(
            imp,
            tmp / "importance_features.png",
            title=f"{task}: global importance (top 20 features)",
            takeaway=f"{top} moves the log-odds most on average",
        )
        explain_plots.importance_bar(
            fam_imp,
            tmp / "importance_families.png",
            title=f"{task}: importance by feature family",
            takeaway=f"family {fam_imp.index[0] if len(fam_imp) else ''} carries the most signal",
            xlabel="mean |sum of the family's SHAP| (log-odds)",
        )
        explain_plots.beeswarm(
            sv.values,
            x_s,
            features,
            list(imp.index),
            tmp / "beeswarm.png",
            seed=ep.seed,
            takeaway="each dot is one OOT row; spread = how much the feature moves decisions",
        )
        explain_plots.dependence(
            sv.values, x_s, features, list(imp.index[: ep.n_dependence]), tmp / "dependence.png", seed=ep.seed
        )
        if check["table"]:
            rho = check["shap_truth_spearman"]
            explain_plots.truth_scatter(
                pd.DataFrame(check["table"]),
                tmp / "truth.png",
                takeaway=f"Spearman {'n/a (< 3 drivers used)' if rho is None else f'{rho:.2f}'}; "
                f"control model: decoys below every driver: {faithful['decoys_below_drivers']}",
            )
        context = bank_report.collect_context(
            params,
            task,
            out,
            features_root,
            tmp,
            metrics=metrics,
            glob=glob,
            reasons=reasons,
            fairness=fair,
            perf=perf,
            stability=stability,
            cutoff=cutoff,
            oracle=oracle,
        )
    html = bank_report.render(context)
    with atomic_file(out / "report.html") as tmp_html:
        tmp_html.write_text(html, encoding="utf-8")
    _log_to_mlflow(params, task, out, metrics, context)
    return metrics


def _log_to_mlflow(params: Params, task: str, out: Path, metrics: dict, context: dict) -> None:
    run_file = out / ".mlflow_run"
    pointer = json.loads(run_file.read_text()) if run_file.exists() else {}
    run_id = pointer.get("run_id")
    logged_digest = pointer.get("model_digest") or model_digest(out)
    with tracking.resume_or_start(
        run_id,
        experiment_name=experiment_name(params, task),
        run_name=model_run_name(task, logged_digest),
        description=f"{task} model explanations and report (cardlab explain {task})",
        stage=f"explain@{task}",
        params_hash=params_hash(params.explain),
        tags={"task": task},
    ) as run:
        tracking.log_metrics(metrics)
        tracking.set_tags(
            {
                "decoys_below_drivers": str(metrics["decoys_below_drivers"]).lower(),
                "n_drivers_used": str(metrics["n_drivers_used"]),
                "model_report": "report.html",
            }
        )
        tracking.log_artifacts(out / "explain", "explain")
        # the copy for reviewers carries the concrete git commit and run ids (the DVC-tracked file cannot)
        logged = json.loads(run_file.read_text()) if run_file.exists() else {}
        lineage = {
            **context["lineage"],
            **tracking.git_state(),
            "mlflow_run_id": run.info.run_id,
            "model_uri": logged.get("model_uri", "see the run's Models tab"),
        }
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "report.html"
            copy.write_text(bank_report.render({**context, "lineage": lineage}), encoding="utf-8")
            tracking.log_artifact(copy)
