# %% [markdown]
# # 04 · Churn and retention: whom should the campaign contact?
#
# **Question:** with a retention budget for a fixed share of accounts, should the bank contact those most
# likely to leave, the most valuable at risk, or those whom the offer actually changes — and how close does
# each rule come to the best possible one?
#
# Three models feed the answer (see `docs/tasks/churn.md`): a churn early-warning model, a customer-value
# model and retention-uplift learners (T-, X-, DR-learner) fitted on the randomised campaign rows. In the real
# world a campaign's effect on one customer is never observed; the synthetic world's oracle knows each
# account's true effect τ (`data/oracle/retention_truth`), so the Qini curves and the targeting rules are
# graded against the truth, not only against noisy observed outcomes.
#
# Made by `dvc repro evaluate@churn` (outputs: `experiments/churn/metrics.json`,
# `experiments/churn/predictions.parquet/`, `experiments/churn/plots/`).

# %%
import json

import matplotlib.pyplot as plt
import pandas as pd

from cardlab.artifacts import require_outputs
from cardlab.config import repo_root

ROOT = repo_root()
NEEDS = {
    "experiments/churn/metrics.json": "evaluate@churn",
    "experiments/churn/predictions.parquet": "evaluate@churn",
    "experiments/churn/plots/qini_curves.csv": "evaluate@churn",
    "experiments/churn/plots/targeting.csv": "evaluate@churn",
    "experiments/churn/plots/churn_calibration.csv": "evaluate@churn",
    "experiments/churn/plots/value_deciles.csv": "evaluate@churn",
}
require_outputs(ROOT, NEEDS)

plt.rcParams.update({"figure.figsize": (9, 4.2), "axes.grid": True, "grid.alpha": 0.3})
EXP = ROOT / "experiments" / "churn"
PLOTS = EXP / "plots"
metrics = json.loads((EXP / "metrics.json").read_text())
learners = sorted(
    k.removeprefix("pehe_") for k in metrics if k.startswith("pehe_") and k != "pehe_constant_ate"
)
selected = "?"
for selection_file in (EXP / "model" / "uplift" / "selection.json", EXP / "uplift_model" / "selection.json"):
    if selection_file.exists():
        selected = json.loads(selection_file.read_text()).get("selected", "?")
        break
selected = next((n for n in learners if metrics.get(f"uplift_selected_{n}") == 1), selected)
print(f"uplift learners: {learners}; selected on the valid split (oracle-free): {selected}")

# %% [markdown]
# ## 1 · Early warning: who is about to leave?
#
# Churn = voluntary closure or three silent months within the next three months. OOT AUC of the model next to
# the oracle's true churn probability on the same rows, and calibration by decile.

# %%
cal = pd.read_csv(PLOTS / "churn_calibration.csv")
fig, ax = plt.subplots(figsize=(5.6, 5))
top = 100 * float(max(cal["mean_pred"].max(), cal["obs_rate"].max())) * 1.05
ax.plot([0, top], [0, top], "k:", lw=0.8)
ax.plot(100 * cal["mean_pred"], 100 * cal["obs_rate"], "o-")
ax.set_xlabel("mean predicted 3-month churn probability (%)")
ax.set_ylabel("observed churn rate (%)")
ax.set_title(
    f"Churn model, OOT: AUC {metrics.get('oot_auc', float('nan')):.3f} "
    f"(oracle {metrics.get('oot_oracle_auc', float('nan')):.3f})\ncalibration by decile"
)
plt.tight_layout()
plt.show()
print(
    "Takeaway: at the campaign's capacity, contacting the riskiest accounts finds "
    f"{metrics.get('lift_at_capacity', float('nan')):.2f}x the base churn rate (the oracle's ranking, on the rows "
    f"it covers: {metrics.get('lift_at_capacity_oracle', float('nan')):.2f}x); weighted calibration error "
    f"{metrics.get('oot_calibration_error', float('nan')):.3f}."
)

# %% [markdown]
# ## 2 · Customer value: what is each account worth?
#
# 12-month account margin (yuan), predicted by the hurdle model, vs realised, by decile of predicted value.

# %%
v = pd.read_csv(PLOTS / "value_deciles.csv")
fig, ax = plt.subplots()
ax.plot(v["decile"], v["mean_pred_yuan"], "o-", label="predicted")
ax.plot(v["decile"], v["mean_realised_yuan"], "s-", label="realised")
ax.axhline(0, color="k", lw=0.6)
ax.set_xlabel("decile of predicted value (10 = highest)")
ax.set_ylabel("12-month account margin (yuan)")
ax.set_title(
    f"Customer value, OOT: Spearman {metrics.get('value_spearman', float('nan')):.2f}; top decile holds "
    f"{metrics.get('value_top_decile_capture', float('nan')):.0%} of value "
    f"(perfect ranking {metrics.get('value_top_decile_capture_oracle', float('nan')):.0%})"
)
ax.legend()
plt.tight_layout()
plt.show()
print(
    f"Takeaway: the top predicted decile holds {metrics.get('value_top_decile_capture', float('nan')):.0%} of "
    f"realised value and {metrics.get('value_zero_share', float('nan')):.0%} of accounts earn nothing, so "
    "'value at risk' orders the contact list differently from risk alone."
)

# %% [markdown]
# ## 3 · Uplift: Qini curves, observed vs true
#
# Left: the **observed** Qini curve (what a bank can compute from a randomised campaign: incremental retained
# accounts estimated from treated vs control outcomes). Right: the **true** gain curve (sum of the oracle's
# τ over the accounts contacted first). The oracle curve ranks by true τ; random targeting is the diagonal.

# %%
q = pd.read_csv(PLOTS / "qini_curves.csv")
fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
for n in learners:
    if f"qini_observed_{n}" in q:
        axes[0].plot(100 * q["share"], q[f"qini_observed_{n}"], label=n)
axes[0].plot(
    100 * q["share"],
    q["share"] * (q[[c for c in q if c.startswith("qini_observed_")]].iloc[-1].mean()),
    "k--",
    label="random",
)
axes[0].set_title("Observed Qini curves (from the campaign's randomisation)")
axes[0].set_ylabel("estimated incremental retained accounts")
for col in [c for c in q if c.startswith("gain_true_")]:
    name = col.removeprefix("gain_true_")
    axes[1].plot(
        100 * q["share"],
        q[col],
        label=name,
        lw=2.2 if name in ("oracle", selected) else 1.2,
        ls="--" if name == "random" else "-",
    )
axes[1].set_title("True gain curves (oracle τ)")
axes[1].set_ylabel("true incremental retained accounts (sum of τ)")
for ax in axes:
    ax.set_xlabel("campaign population contacted, ranked by the score (%)")
    ax.legend(fontsize=8)
fig.suptitle(
    f"Retention uplift, OOT campaign rows: selected learner '{selected}' reaches "
    f"qini_capture {metrics.get('qini_capture', float('nan')):.2f} (1 = oracle, 0 = random)"
)
plt.tight_layout()
plt.show()
up = pd.DataFrame(
    {
        n: {
            "observed Qini (normalised)": metrics.get(f"qini_{n}"),
            "true qini_capture": metrics.get(f"qini_capture_{n}"),
            "PEHE (lower is better)": metrics.get(f"pehe_{n}"),
            "ATE estimate": metrics.get(f"ate_est_{n}"),
        }
        for n in learners
    }
).T
up.loc["churn risk as uplift score", "true qini_capture"] = metrics.get("qini_capture_churn_risk")
print(
    f"Takeaway: true ATE {metrics.get('ate_true', float('nan')):.4f}, IPW estimate "
    f"{metrics.get('ate_ipw', float('nan')):.4f}; ranking by churn risk captures "
    f"{metrics.get('qini_capture_churn_risk', float('nan')):.2f} of the oracle's uplift — high risk is not the "
    f"same as persuadable (PEHE floor of a constant-ATE model: {metrics.get('pehe_constant_ate', float('nan')):.4f})."
)
up.round(4)

# %% [markdown]
# ### Which oracle-free selection score picks the truly best learner?
#
# On the valid split each selection score ranks the learners; the oracle's PEHE says which one really is
# best. `selection_correct_*` = 1 when the score picked it.

# %%
sel = {
    k.removeprefix("selection_correct_"): {
        "picked the best learner": metrics[k],
        "PEHE regret of its pick": metrics.get(
            f"selection_pehe_regret_{k.removeprefix('selection_correct_')}"
        ),
    }
    for k in metrics
    if k.startswith("selection_correct_")
}
pd.DataFrame(sel).T

# %% [markdown]
# ## 4 · Targeting rules at the campaign's capacity
#
# Each rule contacts the same number k of OOT campaign accounts; its value is graded with the **true** effect
# τ × realised customer value, net of the offer cost (yuan). Rules: `risk` (churn probability), `value_at_risk`
# (churn probability × predicted value), `uplift` (predicted τ), `uplift_value` (predicted τ × predicted
# value), `random`; `oracle` ranks by true τ × value.

# %%
t = pd.read_csv(PLOTS / "targeting.csv")
t = t.sort_values("incremental_value")
fig, ax = plt.subplots(figsize=(8, 4.2))
ax.barh(
    t["rule"],
    t["incremental_value"],
    color=["#2a7" if r == "oracle" else "#d62" if r.startswith("uplift") else "#888" for r in t["rule"]],
)
ax.axvline(0, color="k", lw=0.8)
ax.set_xlabel("true incremental retained value, net of offer cost (yuan, whole campaign)")
bestrule = t[t["rule"] != "oracle"].iloc[-1]
ax.set_title(
    f"Whom to contact (k = {metrics.get('targeting_k', '?')}): best rule '{bestrule['rule']}' reaches "
    f"{bestrule['share_of_oracle']:.0%} of the oracle"
)
plt.tight_layout()
plt.show()
print(
    f"Takeaway: targeting by risk earns {metrics.get('share_of_oracle_risk', float('nan')):.0%} of the oracle's "
    f"value, by uplift × value {metrics.get('share_of_oracle_uplift_value', float('nan')):.0%}; contacting "
    "'sleeping dogs' (negative τ) costs money, which risk-based rules cannot see."
)
t.set_index("rule").round(2)
