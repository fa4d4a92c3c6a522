"""Grading of the limit policies. By the oracle (docs/grading.md): profit capture with customer-clustered
bootstrap bounds, the policy without the PD recalibration, the observable ceilings (the line decision's
profit capture and the PD model's OOT AUC) with their learning curve, the pre-shock valid split, the PD
model's validation frames and the task's bars. From the logged data: the off-policy estimates
(:func:`ope_metrics`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cardlab.config import Params
from cardlab.modeling import ope
from cardlab.modeling.grading import (
    ClusterBootstrap,
    count_bar,
    cross_fit_ceiling,
    explain_bars,
    grade_auc,
    learning_curve,
    metric_bar,
)
from cardlab.modeling.workflow import SPLITS
from cardlab.tasks.limit.data import _pick, line_options, logged_choice, read_potential, treatment_columns
from cardlab.tasks.limit.policy import Plan, optimise, plan_decisions, realised_profit
from cardlab.tasks.limit.responses import predict_responses
from cardlab.tasks.limit.spec import POLICIES, TREAT


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
        fit = cross_fit_ceiling(
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
        out.update(learning_curve(values, "profit_capture_ceiling", "profit_capture_ceiling_convergence"))
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
    boot = ClusterBootstrap.from_params(plan.df["customer_id"].to_numpy(), gp)
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
    vboot = ClusterBootstrap.from_params(valid.df["customer_id"].to_numpy(), gp)

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
    fit = cross_fit_ceiling(
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
    out = grade_auc(
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
        metric_bar(metrics, "profit_capture", b.profit_capture),
        count_bar("constraints_hold", metrics["constraints_hold"], 1.0),
        metric_bar(metrics, "valid_policy_profit", b.valid_policy_profit),
        metric_bar(metrics, "valid_oracle_profit", b.valid_oracle_profit),
        *explain_bars(metrics, params.grading.bars.explain),
    ]


def ope_metrics(plan: Plan) -> dict[str, float | int]:
    """Off-policy estimates (IPS, SNIPS, DR; :mod:`cardlab.modeling.ope`) of each policy's profit from the logged
    data: every decision of the plan with a logged propensity (the logged mixture policy's), the realised
    profit of the logged line as reward and the policy's predicted profit as the DR model."""
    df, legacy, choice = plan.df, plan.legacy, plan.choice
    profit_hat = plan.value["policy"]
    metrics: dict[str, float | int] = {}
    reward = realised_profit(df, plan.params)
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
    return metrics
