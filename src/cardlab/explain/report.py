"""The bank-facing model report: one self-contained HTML file per model (``experiments/<task>/report.html``).

Self-contained means every image is an inline base64 PNG and there is no external reference at all (no
http(s) URL, no CDN, no web font, no script): the file opens offline, in a mail client or an MLflow artifact
view, and its bytes are a function of its inputs (no timestamps).

Sections follow what a bank's model-risk reviewer asks for: purpose and intended use, owner, data lineage,
bad definition, performance in-time / OOT / by month, calibration, stability, fairness, explanations
(global and example reason codes), faithfulness against the world's truth, comparison with baselines and the
oracle, limitations and a monitoring plan with thresholds.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from cardlab import taskspec
from cardlab.config import Params, repo_root
from cardlab.modeling import monitoring
from cardlab.modeling.workflow import model_digest

PERF_KEYS = ("auc", "ks", "gini", "brier", "bad_rate", "mean_pd", "n")
SPLITS = ("train", "valid", "oot")

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,'Noto Sans CJK SC','Microsoft YaHei',sans-serif;
max-width:1100px;margin:24px auto;padding:0 16px;color:#222;line-height:1.45}
h1{border-bottom:2px solid #3b6ea5;padding-bottom:6px}h2{margin-top:32px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#eef3f8}td.l,th.l{text-align:left}img{max-width:100%;border:1px solid #eee}
.ok{color:#1b7837;font-weight:600}.bad{color:#b2182b;font-weight:600}.note{color:#555;font-size:13px}
nav a{margin-right:10px}
"""


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "–"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return str(v)


def _img(path: Path, alt: str) -> str:
    if not path.exists():
        return f'<p class="note">({_esc(path.name)} not available)</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _table(df: pd.DataFrame, left: tuple[str, ...] = ()) -> str:
    if df is None or df.empty:
        return '<p class="note">(no rows)</p>'
    head = "".join(f'<th class="{"l" if c in left else ""}">{_esc(c)}</th>' for c in df.columns)
    body = []
    for r in df.itertuples(index=False):
        body.append(
            "<tr>"
            + "".join(
                f'<td class="{"l" if c in left else ""}">{_esc(_fmt(v))}</td>'
                for c, v in zip(df.columns, r, strict=True)
            )
            + "</tr>"
        )
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _lineage(params: Params, task: str, out: Path, features_root: Path, oracle: Path) -> dict[str, Any]:
    root = repo_root()
    digest = model_digest(out) if (out / "model").exists() else "(no model/ folder)"
    manifest = {}
    for cand in (
        features_root.parent / "manifest.json",
        oracle.parent / "manifest.json",
        root / "data" / "manifest.json",
    ):
        if cand.exists():
            manifest = _read_json(cand)
            manifest["_path"] = str(cand.relative_to(root)) if cand.is_relative_to(root) else cand.name
            break
    dvc = []
    lock = root / "dvc.lock"
    if lock.exists():
        try:
            stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        except yaml.YAMLError:
            stages = {}
        for name, st in sorted(stages.items()):
            # never this stage's own previous outputs: the report would then hash itself run after run
            if name.startswith("explain") or not (
                name in ("simulate", "features") or name.endswith(task) or task in name
            ):
                continue
            for o in st.get("outs", []) or []:
                dvc.append({"stage": name, "path": o.get("path", ""), "md5": o.get("md5", "")})
    return {
        "seed": params.simulate.seed,
        "preset": params.simulate.preset,
        "manifest": manifest,
        "dvc": dvc,
        # git commit and MLflow ids change with every commit/run; the DVC-tracked report.html must stay
        # byte-identical for the same inputs, so it names the run and the registered version by the model's
        # digest (deterministic; the tag on both), and the copy logged to MLflow (run._log_to_mlflow) carries
        # the concrete ids
        "git_commit": "recorded as MLflow run tag git_commit",
        "git_dirty": "see tag git_dirty",
        "mlflow_run_id": f"run '{task}-model' of experiment '{params.tracking.experiment_prefix}-{task}' "
        f"whose tag model_digest is {digest}",
        "model_uri": f"models:/{taskspec.get(task).registered}/<version> — the version tagged model_digest = "
        f"{digest} (MLflow UI: Models, search tags.model_digest)",
    }


def collect_context(
    params: Params,
    task: str,
    out: Path,
    features_root: Path,
    explain_dir: Path,
    *,
    metrics: dict,
    glob: dict,
    reasons: pd.DataFrame,
    fairness: pd.DataFrame,
    perf: pd.DataFrame,
    stability: pd.DataFrame,
    cutoff: dict,
    oracle: Path,
) -> dict[str, Any]:
    """Everything the report shows, with images already read (so the report can be rendered anywhere)."""
    # the validation pack: credit's evaluate writes it to validation/, limit's (its PD model) to plots/pd_model/,
    # churn's to plots/validation/
    val = next(
        (
            d
            for d in (out / "validation", out / "plots" / "pd_model", out / "plots" / "validation")
            if d.exists()
        ),
        out / "validation",
    )
    imgs = {
        name: _img(explain_dir / f"{name}.png", name)
        for name in ("importance_features", "importance_families", "beeswarm", "dependence", "truth")
    }
    imgs.update(
        {
            name: _img(val / f"{name}.png", name)
            for name in ("roc_oot", "reliability_oot", "score_distribution", "gains_oot", "psi_by_month")
        }
    )
    csi = pd.read_csv(val / "csi.csv") if (val / "csi.csv").exists() else pd.DataFrame()
    return {
        "task": task,
        "card": dataclasses.asdict(taskspec.get(task).card),
        "params": params,
        "lineage": _lineage(params, task, out, features_root, oracle),
        "task_metrics": _read_json(out / "metrics.json"),
        "explain_metrics": metrics,
        "glob": glob,
        "reasons": reasons,
        "fairness": fairness,
        "perf": perf,
        "stability": stability,
        "cutoff": cutoff,
        "imgs": imgs,
        "csi": csi.head(10),
        # the task's own figures (limit: the policy frontier and lines by grade; churn: qini, targeting, value)
        "task_imgs": [_img(path, path.stem) for path in sorted((out / "plots").glob("*.png"))],
    }


def _perf_table(m: dict) -> pd.DataFrame:
    rows = []
    for s in SPLITS:
        if f"{s}_n" in m:
            rows.append(
                {
                    "split": {"train": "train (in-time)", "valid": "valid (in-time)", "oot": "OOT"}[s],
                    **{k: m.get(f"{s}_{k}") for k in PERF_KEYS},
                }
            )
    return pd.DataFrame(rows)


def _monitoring(params: Params, task_metrics: dict[str, Any]) -> pd.DataFrame:
    """The monitoring plan (modeling/monitoring.py, the one the challenger gate applies) with this model's
    OOT grade per gated indicator and any waiver from params.yaml."""
    cp = params.credit
    graded = {g["indicator"]: g for g in (task_metrics.get("gate") or {}).get("grades", [])}
    rows = []
    for ind in monitoring.plan(cp.max_oot_psi, cp.min_oot_auc):
        g = graded.get(ind.key)
        now = "not gated at evaluate" if g is None else f"{_fmt(g['value'])}: {g['grade']}"
        if g is not None and g.get("waiver"):
            now += f" (waived: {g['waiver']})"
        rows.append((ind.name, ind.green, ind.amber, ind.red, now))
    return pd.DataFrame(rows, columns=["indicator", "green", "amber", "red / action", "this model (OOT)"])


def render(ctx: dict[str, Any]) -> str:
    task, card, m, e = ctx["task"], ctx["card"], ctx["task_metrics"], ctx["explain_metrics"]
    lin, glob, imgs = ctx["lineage"], ctx["glob"], ctx["imgs"]
    truth = glob.get("truth", {})
    parts: list[str] = []
    add = parts.append
    add(
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>cardlab {task} model report</title>'
        f"<style>{CSS}</style></head><body>"
    )
    add(f"<h1>cardlab — {_esc(card['title'])}</h1>")
    add(
        "<nav>"
        + "".join(
            f'<a href="#{a}">{t}</a>'
            for a, t in (
                ("purpose", "Purpose"),
                ("lineage", "Lineage"),
                ("bad", "Bad definition"),
                ("performance", "Performance"),
                ("calibration", "Calibration"),
                ("stability", "Stability"),
                ("fairness", "Fairness"),
                ("explanations", "Explanations"),
                ("truth", "Faithfulness"),
                ("comparison", "Baselines & oracle"),
                ("grades", "Grades"),
                ("limitations", "Limitations"),
                ("monitoring", "Monitoring"),
            )
        )
        + "</nav>"
    )
    # the validation pack's stratified-bootstrap CI, else the customer-clustered bounds of the grading
    lo = m.get("oot_auc_ci_lo", m.get("oot_auc_lo"))
    hi = m.get("oot_auc_ci_hi", m.get("oot_auc_hi"))
    headline = (
        f"OOT AUC {_fmt(m.get('oot_auc'))} (95% CI {_fmt(lo)} – {_fmt(hi)}); oracle "
        f"{_fmt(m.get('oot_oracle_auc'))}; PSI {_fmt(m.get('oot_psi'))}"
        if m
        else "Task metrics (experiments/<task>/metrics.json) not available."
    )
    add(f"<p><b>Headline:</b> {_esc(headline)}</p>")

    add('<h2 id="purpose">1. Purpose, intended use and ownership</h2>')
    add(
        f"<p><b>Purpose.</b> {_esc(card['purpose'])}</p><p><b>Intended use.</b> {_esc(card['intended_use'])}</p>"
    )
    add(f"<p><b>Owner.</b> {_esc(card['owner'])}</p>")
    add(
        '<p class="note">All data are synthetic (cardlab\'s simulated world); the model is a research artefact '
        "demonstrating the validation a bank would require.</p>"
    )

    add('<h2 id="lineage">2. Data lineage</h2>')
    man = lin["manifest"]
    lt = [
        ("world seed", lin["seed"]),
        ("world preset", lin["preset"]),
        ("git commit", f"{lin['git_commit']} (dirty: {lin['git_dirty']})"),
        ("MLflow run", lin["mlflow_run_id"]),
        ("model URI", lin["model_uri"]),
        ("world manifest", man.get("_path", "not found")),
    ]
    for k in ("seed", "preset", "n_customers", "months", "content_hash", "hash"):
        if k in man and not isinstance(man[k], dict | list):
            lt.append((f"manifest {k}", man[k]))
    add(_table(pd.DataFrame(lt, columns=["item", "value"]), left=("item", "value")))
    tables = man.get("tables") or {}
    if isinstance(tables, dict) and tables:
        rows = [
            {
                "table": k,
                **(
                    {kk: vv for kk, vv in v.items() if not isinstance(vv, dict | list)}
                    if isinstance(v, dict)
                    else {"value": v}
                ),
            }
            for k, v in sorted(tables.items())
        ]
        add(
            "<p>World tables (from the manifest):</p>"
            + _table(pd.DataFrame(rows), left=tuple(pd.DataFrame(rows).columns))
        )
    if lin["dvc"]:
        add(
            "<p>DVC outputs (dvc.lock):</p>" + _table(pd.DataFrame(lin["dvc"]), left=("stage", "path", "md5"))
        )
    else:
        add(
            '<p class="note">dvc.lock not found: run through <code>dvc repro</code> to pin output hashes.</p>'
        )

    add('<h2 id="bad">3. Bad definition</h2>')
    add(f"<p>{_esc(card['bad'])}</p>")

    add('<h2 id="performance">4. Performance: in-time, out-of-time and by month</h2>')
    add(_table(_perf_table(m), left=("split",)))
    if m:
        add(
            f"<p>OOT KS {_fmt(m.get('oot_ks'))}, recall in the riskiest 10 % {_fmt(m.get('oot_recall_at_10pct'))}, "
            f"lift {_fmt(m.get('oot_lift_at_10pct'))}.</p>"
        )
    add(imgs["roc_oot"] + imgs["gains_oot"])
    add("<p>By snapshot month (modelled rows; score = model probability):</p>")
    add(_table(ctx["perf"], left=("month", "split")))

    add('<h2 id="calibration">5. Calibration</h2>')
    add(
        f"<p>Hosmer–Lemeshow on OOT: statistic {_fmt(m.get('oot_hosmer_lemeshow_stat'))}, p = "
        f"{_fmt(m.get('oot_hosmer_lemeshow_p'))}; Jeffreys back-test: {_fmt(m.get('jeffreys_grades_rejected'))} grade(s) "
        f"rejected; OOT Brier {_fmt(m.get('oot_brier'))} (oracle {_fmt(m.get('oot_oracle_brier'))}).</p>"
    )
    add(imgs["reliability_oot"])

    add('<h2 id="stability">6. Stability (PSI / CSI)</h2>')
    add(
        f"<p>Score PSI train → OOT: <b>{_fmt(m.get('oot_psi'))}</b>; max feature CSI {_fmt(m.get('oot_csi_max'))}.</p>"
    )
    add(imgs["psi_by_month"] + imgs["score_distribution"])
    add("<p>Top-10 features by CSI:</p>" + _table(ctx["csi"], left=("feature",)))

    add('<h2 id="fairness">7. Fairness: city tier, age band, gender</h2>')
    cut = ctx["cutoff"]
    cut_txt = ", ".join(f"{k} = {_fmt(v)}" for k, v in cut.items())
    add(
        f"<p>OOT decisions at the cutoff ({_esc(cut_txt)}). <i>favourable_rate</i> = approval rate (credit) or "
        "not-flagged rate; <i>air</i> = ratio to the best group (four-fifths rule flags &lt; 0.8); <i>score_diff</i> "
        "= group mean score minus overall (score points, higher = safer, for credit). Differences can reflect "
        "genuine risk differences (see observed bad rates); gender is not used as a decision driver by policy "
        "and should be excluded from production features if the dictionary lists it.</p>"
    )
    add(_table(ctx["fairness"], left=("attribute", "group")))

    add('<h2 id="explanations">8. Explanations (SHAP, log-odds)</h2>')
    add(
        f"<p>Exact tree SHAP (XGBoost <code>pred_contribs</code>) on {_fmt(glob.get('n_rows'))} OOT rows; values add up "
        f"to the model margin within {_fmt(e.get('shap_additivity_max_err'))} log-odds and agree with shap's independent "
        f"TreeExplainer within {_fmt(e.get('shap_impl_max_diff'))}.</p>"
    )
    add(imgs["importance_features"] + imgs["importance_families"] + imgs["beeswarm"] + imgs["dependence"])
    rs = ctx["reasons"]
    add(f"<h3>Example reason codes ({_esc(card['decision'])} decisions)</h3>")
    add(
        f"<p>{_fmt(e.get('reason_rows'))} OOT decisions carry up to {ctx['params'].explain.top_reasons} reasons each "
        "(factors pushing towards the adverse outcome; correlated features grouped under one reason).</p>"
    )
    if len(rs):
        first = rs[["customer_id", "snapshot_date"]].drop_duplicates().head(5)
        ex = rs.merge(first, on=["customer_id", "snapshot_date"])
        ex = ex.assign(snapshot_date=ex["snapshot_date"].astype(str))
        add(
            _table(
                ex[
                    [
                        "customer_id",
                        "snapshot_date",
                        "rank",
                        "feature",
                        "contribution",
                        "reason_zh",
                        "reason_en",
                    ]
                ],
                left=("snapshot_date", "feature", "reason_zh", "reason_en"),
            )
        )
    add(
        f"<p>Stability across {len(ctx['stability'])} bootstrap refits (same tuned params): mean Jaccard of the "
        f"top-{ctx['params'].explain.top_reasons} reason sets {_fmt(e.get('reason_stability_jaccard'))}, mean overlap "
        f"{_fmt(e.get('reason_stability_overlap'))}.</p>"
    )
    add(_table(ctx["stability"]))

    add('<h2 id="truth">9. Faithfulness against the world\'s truth</h2>')
    if truth.get("table"):
        decoys = e.get("decoys_below_drivers")
        verdict = "ok" if decoys is True else "bad"
        control = glob.get("control_truth", {}) if isinstance(glob, dict) else {}
        add(
            f"<p>Spearman rank correlation between source importance and true driver strength: "
            f"<b>{_fmt(e.get('shap_truth_spearman'))}</b> (95 % interval {_fmt(e.get('shap_truth_spearman_lo'))}–"
            f"{_fmt(e.get('shap_truth_spearman_hi'))}) over {_fmt(truth.get('n_drivers_seen'))} observable drivers, "
            f"{_fmt(e.get('n_drivers_used'))} of them used (not assessable with fewer than 3 used). "
            f"Decoy check on the <b>control model</b> (the tuned parameters refitted with every candidate feature, "
            f"decoys included, no shadow screen; {_fmt(e.get('control_n_drivers_used'))} drivers used): every decoy "
            f'below every driver: <span class="{verdict}">{_esc(str(decoys))}</span>.</p>'
        )
        if control.get("decoy_driver_inversions"):
            pairs = ", ".join(
                f"{i['decoy']} above {i['driver']}" for i in control["decoy_driver_inversions"][:8]
            )
            add(f'<p class="note">Control-model inversions: {_esc(pairs)}.</p>')
        inv = truth.get("decoy_driver_inversions") or []
        if inv:
            pairs = ", ".join(f"{i['decoy']} above {i['driver']}" for i in inv[:8])
            add(
                f'<p class="note">Inversions (a pure-noise column with at least the importance of a true driver): '
                f"{_esc(pairs)}{' …' if len(inv) > 8 else ''}. The worst decoy takes "
                f"{100 * float(truth.get('max_decoy_share') or 0):.1f} % of the model's total attribution. A driver "
                "can rank low when another column carries the same information (its signal is then conditional on "
                "the stronger one), so an inversion says the model spends a little capacity on noise, not that the "
                "driver is ignored by the world.</p>"
            )
        if truth.get("drivers_unused"):
            add(
                f"<p>Drivers the model does not use at all (importance 0; ties with unused decoys are not "
                f"inversions): {_esc(', '.join(truth['drivers_unused']))}.</p>"
            )
        add(_table(pd.DataFrame(truth["table"]), left=("source", "role")))
        for name, p in (truth.get("proxies") or {}).items():
            add(
                f"<p>Proxy <b>{_esc(name)}</b>: rank {p['rank']}, above {p['drivers_below']} true driver(s). A proxy "
                "has no causal path but is correlated with one; the model may use it for prediction, which is why "
                "proxies need a business justification before production use.</p>"
            )
        if truth.get("drivers_unseen"):
            add(
                f'<p class="note">Drivers not observable by this model: {_esc(", ".join(truth["drivers_unseen"]))}.</p>'
            )
        add(imgs["truth"])
    else:
        add(f'<p class="note">{_esc(truth.get("note", "oracle true drivers not available"))}</p>')

    add('<h2 id="comparison">10. Comparison with the scorecard baseline and the oracle</h2>')
    comp = [("model (XGBoost)", m.get("oot_auc"), m.get("oot_ks"), m.get("oot_brier"), None)]
    for b in ("scorecard", "legacy"):
        if f"{b}_oot_auc" in m:
            comp.append((b, m.get(f"{b}_oot_auc"), None, None, m.get(f"delong_vs_{b}_p")))
    if "oot_oracle_auc" in m:
        comp.append(
            (
                card["oracle_score"],
                m.get("oot_oracle_auc"),
                m.get("oot_oracle_ks"),
                m.get("oot_oracle_brier"),
                None,
            )
        )
    add(
        _table(
            pd.DataFrame(comp, columns=["model", "oot_auc", "oot_ks", "oot_brier", "delong_p_vs_model"]),
            left=("model",),
        )
    )
    add(f"<p>Gap to the Bayes-optimal oracle: {_fmt(m.get('oot_auc_gap_to_oracle'))} AUC.</p>")

    add('<h2 id="grades">10b. The task graded against the oracle</h2>')
    headline_keys = taskspec.get(task).headline
    add(
        "<p>"
        + "; ".join(f"{_esc(k)} {_esc(_fmt(m.get(k)))}" for k in headline_keys if k in m)
        + ". A bar is met only when its lower confidence bound clears it (docs/grading.md).</p>"
    )
    bars = pd.DataFrame(
        m.get("bars") or [], columns=["name", "value", "lower", "upper", "threshold", "verdict"]
    )
    add(_table(bars, left=("name", "verdict")))
    for img in ctx.get("task_imgs", []):
        add(img)

    add('<h2 id="limitations">11. Limitations</h2><ul>')
    selected = taskspec.get(task).modelled_column is not None  # rows modelled only where, e.g., approved
    for item in (
        "Synthetic world: relationships are those the simulator encodes; real portfolios have richer drift.",
        *(
            [
                "Reject inference: the model is fitted on booked accounts only; declined applicants' true PDs are "
                "known here only because the world is synthetic (see declined_mean_pd_* in metrics.json)."
            ]
            if selected
            else []
        ),
        "SHAP explains the model, not the world: path-dependent SHAP attributes along training-data tree paths; "
        "correlated features share credit, hence grouped reasons.",
        "Reason codes rank contributions in log-odds; they are not counterfactual recourse advice.",
        "OOT covers a limited number of months, including a macro shock; estimates for later vintages need "
        "monitoring.",
        "Fairness figures are descriptive disparities at one cutoff, not a causal fairness analysis.",
    ):
        add(f"<li>{_esc(item)}</li>")
    add("</ul>")
    add('<h2 id="monitoring">12. Monitoring plan</h2>')
    gate = m.get("gate") or {}
    if gate:
        verdict = "passed" if gate.get("passed") else "NOT passed: not registered as challenger"
        add(f"<p>Challenger gate (this plan on the OOT window): <b>{_esc(verdict)}</b>.</p>")
    add(
        _table(
            _monitoring(ctx["params"], m),
            left=("indicator", "green", "amber", "red / action", "this model (OOT)"),
        )
    )
    add('<p class="note">Generated by <code>cardlab explain</code>; deterministic for the same inputs.</p>')
    add("</body></html>\n")
    return "".join(parts)
