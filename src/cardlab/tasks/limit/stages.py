"""The pipeline stages of the limit task, called by the CLI through :mod:`cardlab.tasks`:
:func:`tune` (one Optuna study per response model), :func:`train` (fit, PD line slope and recalibration,
``model/``), :func:`evaluate` (policies graded by the oracle, OPE, plots, ``metrics.json``) and the MLflow
logging and registration of evaluate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from cardlab.artifacts import atomic_dir, dir_digest, rounded, write_json, write_parquet
from cardlab.config import Params
from cardlab.modeling import monitoring
from cardlab.modeling.screen import shadow_screen
from cardlab.modeling.validation import top_gain_features, validation_pack
from cardlab.modeling.workflow import (
    ContractMetrics,
    fit_tuned,
    log_evaluation,
    read_best_params,
    save_models,
    tune_booster,
)
from cardlab.tasks.limit.data import _load, _pick
from cardlab.tasks.limit.grading import (
    bars,
    grade_pd_model,
    grade_policies,
    ope_metrics,
    pd_validation_frames,
)
from cardlab.tasks.limit.plots import (
    _plot_frontier,
    _plot_lines,
    _round_df,
    frontier_table,
    line_by_grade_table,
)
from cardlab.tasks.limit.policy import decision_prices, plan_decisions
from cardlab.tasks.limit.responses import (
    _line_offset,
    _matrix,
    _offset_intercept,
    _offset_params,
    _task_data,
    load_models,
    pd_line_slope,
    recalibration_shift,
)
from cardlab.tasks.limit.spec import DESCRIPTION, MODELS, POLICIES, TASK, TREAT


def tune(params: Params, features_root: Path, out: Path) -> dict:
    """One Optuna study per response model (shared journal ``optuna.journal``; each a
    :func:`~cardlab.modeling.workflow.tune_booster` on the model's own matrices); writes best_params.json."""
    df, names, directions = _load(features_root)
    digest = dir_digest(Path(features_root) / TASK)[:16]
    # feature screen (modeling/screen.py) per response on its own target; the three models share the union
    candidates, kept, pass_rate = len(names), set(), {}
    for model, spec in MODELS.items():
        data = _task_data(df, names, directions, model, params)
        k, rate = shadow_screen(
            data, params.tune, params.tune.seed, objective=spec["objective"], keep_always=TREAT
        )
        kept |= set(k)
        pass_rate[model] = rate
    names = [n for n in names if n in kept]
    result: dict[str, dict] = {}
    for model, spec in MODELS.items():
        data = _task_data(df, names, directions, model, params)
        w = params.limit.test_cell_weight
        coef = _line_offset(model, params)
        result[model] = tune_booster(
            params,
            TASK,
            data,
            out,
            data_digest=digest,
            study=f"{TASK}-{model}",
            objective=spec["objective"],
            metric=spec["metric"],
            fixed=_offset_params(coef, spec["objective"]),
            dtrain=_matrix(data, "train", w, coef),
            dvalid=_matrix(data, "valid", w, coef),
        )
    out_json = {
        "models": result,
        "n_trials": sum(r["n_trials"] for r in result.values()),
        "features": names,
        "screen": {"candidates": candidates, "kept": len(names), "pass_rate": pass_rate},
    }
    write_json(out_json, Path(out) / "best_params.json")
    return out_json


def train(params: Params, features_root: Path, out: Path) -> Path:
    """Fit the three response models with the tuned params (the PD model: its line slope, a refit with it as an
    offset, the recalibration shift); write ``model/`` and log them to MLflow
    (:func:`~cardlab.modeling.workflow.save_models`)."""
    out = Path(out)
    tuned = read_best_params(out, TASK)
    best = tuned["models"]
    df, names, directions = _load(features_root)
    names = [n for n in names if n in set(tuned.get("features", names))]  # the screened features
    boosters: dict[str, xgb.Booster] = {}
    meta: dict[str, Any] = {"features": [*names, *TREAT], "treatment": list(TREAT), "models": {}}
    lp = params.limit
    for model, spec in MODELS.items():
        data = _task_data(df, names, directions, model, params)
        coef = _line_offset(model, params)

        def fit(
            coef: float, intercept: float = 0.0, data=data, spec=spec, model=model
        ) -> tuple[xgb.Booster, dict]:
            return fit_tuned(
                params.tune,
                data,
                best[model]["best_params"],
                objective=spec["objective"],
                metric=spec["metric"],
                fixed=_offset_params(coef, spec["objective"]),
                dtrain=_matrix(data, "train", lp.test_cell_weight, coef, intercept),
                dvalid=_matrix(data, "valid", lp.test_cell_weight, coef, intercept),
            )

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
    # model/ as <model>.ubj + features.json, the training run, the run pointer (train -> evaluate handoff)
    return save_models(
        params,
        TASK,
        features_root,
        out,
        boosters,
        meta,
        description=DESCRIPTION,
        logged_params={f"{m}_{k}": v for m, d in meta["models"].items() for k, v in d["params"].items()},
        logged_metrics={
            **{f"{m}_best_iteration": b.num_boosted_rounds() for m, b in boosters.items()},
            "pd_line_offset": meta["models"]["default"]["line_offset"],
            "pd_logit_shift": meta["models"]["default"]["logit_shift"],
        },
        example=df[df["split"] == "train"][meta["features"]].astype("float32").head(20),
    )


def evaluate(
    params: Params, features_root: Path, oracle: Path, out: Path, *, contract: ContractMetrics
) -> dict:
    """Optimise the OOT decisions, grade every policy with the oracle, OPE from logged data, write outputs.

    Beside the OOT headline: the policy without the PD recalibration (``profit_capture_no_recalibration``), the
    pre-shock decisions of the valid split graded the same way (``valid_*_profit``), the observable ceilings
    (profit capture and the PD model's AUC) and customer-clustered bootstrap bounds (modeling/grading.py)."""
    lp = params.limit
    monitoring.check_waivers(lp.gate_waivers)  # a typo stops evaluate before it replaces any output
    out = Path(out)
    models, meta = load_models(out)
    df_all, names, _ = _load(features_root)
    plan = plan_decisions(params, models, meta, df_all, oracle, "oot")
    df, lines, legacy, arrears, allowed = plan.df, plan.lines, plan.legacy, plan.arrears, plan.allowed
    resp, truth, solved, choice = plan.resp, plan.truth, plan.solved, plan.choice
    profit_hat, loss_hat = plan.value["policy"], plan.losses["policy"]
    grade = plan.grade

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

    metrics: dict[str, Any] = {
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

    # off-policy estimates from the logged data
    metrics.update(ope_metrics(plan))

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
    frontier_df, dist_df = frontier_table(plan), line_by_grade_table(plan)

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
                seed=params.tune.seed,
                n_grades=params.credit.n_grades,
            )
        )
        pd_grades, pd_ceiling = grade_pd_model(params, plan, df_all, oracle, names)
        metrics.update(pd_grades)
        metrics.update(contract(params, TASK, features_root, oracle, out))
        metrics["bars"] = bars(metrics, params)
        # the registered PD model against the monitoring plan (credit's PSI / AUC limits; no approvals here)
        metrics["gate"] = monitoring.gate(
            monitoring.plan(params.credit.max_oot_psi, params.credit.min_oot_auc, approvals=False),
            {**metrics, **monitoring.derived(metrics)},
            lp.gate_waivers,
        )
        passed = passed and bool(metrics["gate"]["passed"])
        metrics = rounded(dict(sorted(metrics.items())))
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


def _log_to_mlflow(
    params: Params, out: Path, metrics: dict, passed: bool, prices: dict[str, float] | None = None
) -> None:
    """Add metrics and plots to the training run and register the model (challenger if the checks pass).
    ``limit_models/`` holds every response model and ``decision_policy.json`` (the budgets' shadow prices,
    the line grid and the economics): all the decision service needs to set a first line."""
    log_evaluation(
        params,
        TASK,
        out,
        metrics,
        passed=passed,
        description=DESCRIPTION,
        params_slice=params.limit,
        artifacts={"plots": out / "plots", "limit_models": out / "model"},
        json_artifacts={
            "limit_models/decision_policy.json": {
                "prices": prices,
                "limit": params.limit.model_dump(mode="json"),
                "economics": params.simulate.economics.model_dump(mode="json"),
            }
        },
        registry_description=(
            f"90+ DPD response model of the limit policy (spend/revolving models: run artifacts "
            f"limit_models/). OOT profit {metrics['policy_profit']:.1f} vs legacy {metrics['legacy_profit']:.1f}"
            f" and oracle {metrics['oracle_profit']:.1f} yuan/account; capture {metrics['profit_capture']:.3f};"
            f" constraints {'hold' if metrics['constraints_hold'] else 'BROKEN'}; "
            f"{'challenger' if passed else 'not promoted'}."
        ),
        scored_models=_scored_models,
        gate=metrics["gate"],
    )


def _scored_models(out: Path) -> tuple[dict[str, Any], list[str]]:
    """The response boosters evaluate scored and their features, for logging them anew."""
    models, meta = load_models(out)
    return models, meta["features"]
