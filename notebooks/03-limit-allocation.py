# %% [markdown]
# # 03 · Credit-limit allocation: response curves, profit frontier, regret
#
# **Question:** which line should each booking and each periodic review get, to maximise the bank's
# 12-month profit under an exposure budget and an expected-loss cap — and how much of the best possible gain
# over the legacy rule does the model-driven policy capture?
#
# A higher line raises spend and, for borrowers with a high marginal propensity to borrow, revolving balance
# (interest income) **and** default risk and exposure at default. The synthetic world knows every account's
# expected outcome at every line option (`data/oracle/limit_potential`), so each policy is graded on the true
# expected profit of the line it chose. Policies: **legacy** (the logged line), **pd_only** (optimiser with a
# PD model only: behaviour frozen at the logged line), **policy** (optimiser with S-learner response
# models), **oracle** (optimiser fed the true potential outcomes). See `docs/tasks/limit.md`.
#
# Made by `dvc repro evaluate@limit` (outputs: `experiments/limit/metrics.json`,
# `experiments/limit/predictions.parquet/`, `experiments/limit/plots/`).

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import polars as pl

from cardlab.artifacts import require_outputs
from cardlab.config import repo_root

ROOT = repo_root()
NEEDS = {
    "experiments/limit/metrics.json": "evaluate@limit",
    "experiments/limit/predictions.parquet": "evaluate@limit",
    "experiments/limit/plots/frontier.csv": "evaluate@limit",
    "data/oracle/limit_potential": "simulate",
}
require_outputs(ROOT, NEEDS)

plt.rcParams.update({"figure.figsize": (9, 4.2), "axes.grid": True, "grid.alpha": 0.3})
EXP = ROOT / "experiments" / "limit"
metrics = json.loads((EXP / "metrics.json").read_text())
pred = pl.read_parquet(str(EXP / "predictions.parquet" / "*.parquet")).to_pandas()
POLICIES = ["legacy", "pd_only", "policy", "oracle"]
COLORS = {"legacy": "#888", "pd_only": "#69c", "policy": "#d62", "oracle": "#2a7"}
print(f"{len(pred):,} out-of-time limit decisions ({(pred['decision_type'] == 'review').sum():,} reviews)")

# %% [markdown]
# ## Headline: true expected profit per decision under each policy
#
# Yuan of 12-month expected profit per decision, graded with the oracle, on the same OOT decisions and under
# the same constraints. `profit_capture` = (policy − legacy) / (oracle − legacy).

# %%
head = pd.DataFrame(
    {
        p: {
            "profit (yuan/decision)": metrics.get(f"{p}_profit"),
            "exposure (yuan/decision)": metrics.get(f"{p}_exposure"),
            "expected loss (yuan/decision)": metrics.get(f"{p}_expected_loss"),
            "share of lines raised vs logged": metrics.get(f"{p}_share_increase"),
            "agrees with oracle line": metrics.get(f"{p}_agree_oracle"),
        }
        for p in POLICIES
    }
).T
fig, ax = plt.subplots(figsize=(7, 3.6))
ax.bar(head.index, head["profit (yuan/decision)"], color=[COLORS[p] for p in head.index])
ax.set_ylabel("true expected 12-month profit (yuan per decision)")
cap = metrics.get("profit_capture", float("nan"))
ax.set_title(f"Limit policies graded by the oracle (OOT): policy captures {cap:.0%} of the oracle's gain")
plt.tight_layout()
plt.show()
print(
    f"Takeaway: over the legacy line the response-model policy gains {cap:.0%} and the PD-only optimiser "
    f"{metrics.get('pd_only_profit_capture', float('nan')):.0%} of what the oracle gains under the same budgets."
)
head.round(3)

# %% [markdown]
# ## Response curves: what a higher line does (ground truth)
#
# The oracle's expected 12-month outcome of every line option, averaged over OOT **booking** decisions,
# split into thirds by true PD at the smallest line. Money in yuan.

# %%
pot = pl.read_parquet(str(ROOT / "data" / "oracle" / "limit_potential" / "*.parquet"))
oot_start = pd.to_datetime(pred["snapshot_date"]).min()
book = pot.filter((pl.col("kind") == "booking") & (pl.col("decision_date") >= oot_start.date())).to_pandas()
base = book.sort_values("option_line").groupby(["customer_id", "decision_date"])["pd_12m"].first()
risk = pd.qcut(base.rank(method="first"), 3, labels=["low risk", "mid risk", "high risk"]).rename("risk")
book = book.join(risk, on=["customer_id", "decision_date"])
book["line_k"] = book["option_line"] / 100 / 1000
curves = book.groupby(["risk", "line_k"], observed=True).agg(
    spend=("exp_spend_12m", "mean"),
    revolving=("exp_avg_revolving", "mean"),
    pd=("pd_12m", "mean"),
    profit=("exp_profit", "mean"),
)
fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
panels = [
    ("spend", "12-month spend (thousand yuan)", 1e5),
    ("revolving", "avg revolving balance (thousand yuan)", 1e5),
    ("pd", "12-month PD (%)", 0.01),
    ("profit", "expected profit (yuan)", 100),
]
for ax, (col, label, scale) in zip(axes, panels, strict=True):
    for r, sub in curves.groupby(level="risk", observed=True):
        ax.plot(sub.index.get_level_values("line_k"), sub[col] / scale, "o-", label=r)
    ax.set_xlabel("line (thousand yuan)")
    ax.set_ylabel(label)
    ax.set_xscale("log")
    grid_k = sorted(book["line_k"].unique())
    ax.set_xticks(grid_k, [f"{g:g}" for g in grid_k], fontsize=7)
    ax.minorticks_off()
axes[0].legend(fontsize=8)
best = curves["profit"].groupby(level="risk", observed=True).idxmax()
fig.suptitle("True response to the line, OOT bookings: spend and revolving rise, so do PD and loss")
plt.tight_layout()
plt.show()
print(
    "Takeaway: the profit-maximising line is "
    + ", ".join(f"{r}: {v[1]:g}k yuan" for r, v in best.items())
    + " — one grid for everyone leaves money on the table, which is why the line is a per-account decision."
)

# %% [markdown]
# ## Profit frontier: profit vs exposure budget
#
# Each optimiser re-solved with the exposure budget at several shares of the legacy policy's total line
# (`limit.frontier_budget_shares`), graded with the oracle's true expected profit.

# %%
fr = pd.read_csv(EXP / "plots" / "frontier.csv")
fig, ax = plt.subplots(figsize=(7.5, 4.5))
for p, sub in fr.groupby("policy"):
    sub = sub.sort_values("exposure_budget_yuan")
    style = "--" if p == "legacy" else "o-"
    ax.plot(sub["exposure_budget_yuan"] / 1000, sub["profit_yuan"], style, color=COLORS.get(p), label=p)
ax.set_xlabel("exposure budget (thousand yuan of line per decision)")
ax.set_ylabel("true expected profit (yuan per decision)")
ax.set_title("Profit frontier (OOT): the oracle bounds what any policy can earn per unit of exposure")
ax.legend()
plt.tight_layout()
plt.show()
print(
    "Takeaway: at every budget the distance between the red (model) and green (oracle) lines is the value of "
    "better response models; the distance to grey is what optimisation already earns over the legacy grid."
)

# %% [markdown]
# ## Regret: how much each decision leaves on the table
#
# Per OOT decision, **regret** = true expected profit of the account's best available line − true expected
# profit of the line the policy chose (yuan). It ignores the portfolio budgets, so even the constrained
# oracle has some; it shows *where* the policies lose money.

# %%
keys = pl.DataFrame(
    {
        "customer_id": pred["customer_id"].astype("int64").to_numpy(),
        "decision_date": pl.Series(pd.to_datetime(pred["snapshot_date"]).to_numpy()).cast(pl.Date),
        "kind": np.where(pred["decision_type"] == "review", "review", "booking"),
        "row": np.arange(len(pred)),
    }
)
opts = pot.join(keys, on=["customer_id", "decision_date", "kind"], how="inner").select(
    "row", "option_line", "exp_profit"
)
best_profit = opts.group_by("row").agg(pl.col("exp_profit").max().alias("best")).to_pandas().set_index("row")
lookup = (
    opts.to_pandas().drop_duplicates(["row", "option_line"]).set_index(["row", "option_line"])["exp_profit"]
)
reg = pd.DataFrame({"decision_type": pred["decision_type"]})
line_col = {
    "legacy": "legacy_line",
    "pd_only": "pd_only_line",
    "policy": "chosen_line",
    "oracle": "oracle_line",
}
for p, col in line_col.items():
    idx = pd.MultiIndex.from_arrays(
        [np.arange(len(pred)), np.round(pred[col].to_numpy() * 100).astype("int64")]
    )
    got = lookup.reindex(idx).to_numpy()
    reg[p] = (best_profit["best"].reindex(np.arange(len(pred))).to_numpy() - got) / 100
reg = reg.dropna()
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
summary = reg.groupby("decision_type")[POLICIES].mean()
summary.T.plot.bar(ax=axes[0], rot=0)
axes[0].set_ylabel("mean regret (yuan per decision)")
axes[0].set_title("Mean regret by policy and decision type")
for p in POLICIES:
    v = np.sort(reg[p].to_numpy())
    axes[1].plot(v, np.linspace(0, 100, len(v)), color=COLORS[p], label=p)
axes[1].set_xscale("symlog", linthresh=10)
axes[1].set_xlabel("regret per decision (yuan, symlog scale)")
axes[1].set_ylabel("share of decisions with at most this regret (%)")
axes[1].set_title("Regret distribution (ECDF)")
axes[1].legend()
plt.tight_layout()
plt.show()
mean_reg = reg[POLICIES].mean()
print(
    f"Takeaway: mean regret legacy {mean_reg['legacy']:.0f}, pd_only {mean_reg['pd_only']:.0f}, policy "
    f"{mean_reg['policy']:.0f}, oracle {mean_reg['oracle']:.0f} yuan per decision "
    f"({len(reg):,} of {len(pred):,} decisions matched to the oracle's options)."
)

# %% [markdown]
# ## Who gets which line
#
# Mean assigned line by risk grade (grade 1 = safest, by the model's PD at the logged line).

# %%
lg = EXP / "plots" / "line_by_grade.csv"
if lg.exists():
    dist = pd.read_csv(lg)
    fig, ax = plt.subplots()
    for p, sub in dist.groupby("policy"):
        ax.plot(sub["risk_grade"], sub["mean_line_yuan"] / 1000, "o-", color=COLORS.get(p), label=p)
    ax.set_xlabel("risk grade (1 = safest)")
    ax.set_ylabel("mean line (thousand yuan)")
    ax.set_title("Lines by risk grade: the optimisers move exposure from risky to safe accounts")
    ax.legend()
    plt.tight_layout()
    plt.show()
    print("Takeaway: compare the slope of each policy — a steeper fall with risk is how profit is made.")

# %% [markdown]
# ## Off-policy evaluation vs the truth
#
# What a bank without an oracle would estimate from the logged data (randomised test cells make the
# propensities known): IPS, self-normalised IPS and doubly-robust estimates of each policy's realised
# profit, next to the oracle's expected profit. Realised profit covers only the observed (up to 12) months,
# so the levels differ; the ranking is what matters.

# %%
rows = []
for p in POLICIES:
    tag = "" if p == "policy" else f"_{p}"
    rows.append(
        {
            "policy": p,
            "IPS": metrics.get(f"ope_ips{tag}_profit"),
            "IPS se": metrics.get(f"ope_ips{tag}_profit_se"),
            "SNIPS": metrics.get(f"ope_snips{tag}_profit"),
            "DR": metrics.get(f"ope_dr{tag}_profit"),
            "DR se": metrics.get(f"ope_dr{tag}_profit_se"),
            "oracle expected profit": metrics.get(f"{p}_profit"),
            "matched rows": metrics.get(f"ope{tag}_n_match"),
        }
    )
ope = pd.DataFrame(rows).set_index("policy")
fig, ax = plt.subplots(figsize=(8, 4))
x = np.arange(len(ope))
for i, (col, se) in enumerate([("IPS", "IPS se"), ("SNIPS", None), ("DR", "DR se")]):
    vals = ope[col].astype(float)
    err = ope[se].astype(float) * 1.96 if se else None
    ax.bar(x + (i - 1) * 0.25, vals, 0.25, yerr=err, capsize=3, label=col)
ax.scatter(
    x, ope["oracle expected profit"].astype(float), color="k", marker="D", zorder=4, label="oracle truth"
)
ax.set_xticks(x, ope.index)
ax.set_ylabel("profit (yuan per decision)")
ax.set_title("Off-policy estimates from logged data (95 % CI) vs the oracle's expected profit")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
print(
    f"Takeaway: only {metrics.get('ope_n_test_cell', 0):,} randomised OOT rows support the estimates, so the "
    "intervals are wide; DR borrows strength from the response model and is the estimate to report."
)
ope.round(2)
