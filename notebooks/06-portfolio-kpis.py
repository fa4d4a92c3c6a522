# %% [markdown]
# # 06 · Portfolio KPIs: the monthly view of a card portfolio manager
#
# **Question:** how many cards did we book, are they used, do they pay, how many go bad, who leaves, do we
# make money — and did the retention campaigns work?
#
# Everything here comes from the `report` stage, computed from the **observable** raw tables only (the oracle
# grades the campaign estimates and nothing else). Definitions of every KPI (numerator, denominator, source
# table, unit) are in `experiments/portfolio/kpi_dictionary.json` and `docs/portfolio.md`.
#
# Made by `dvc repro report` (outputs: `experiments/portfolio/kpis.json`, `kpis.parquet`, `vintage.parquet`,
# `roll_rate.parquet`, `campaigns.parquet`, `report.html`).

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
    f"experiments/portfolio/{name}": "report"
    for name in ("kpis.json", "kpis.parquet", "vintage.parquet", "roll_rate.parquet", "campaigns.parquet")
}
require_outputs(ROOT, NEEDS)

plt.rcParams.update({"figure.figsize": (9, 4.2), "axes.grid": True, "grid.alpha": 0.3})
OUT = ROOT / "experiments" / "portfolio"
head = json.loads((OUT / "kpis.json").read_text())
kpis = pl.read_parquet(OUT / "kpis.parquet").to_pandas()
kpis["month"] = pd.to_datetime(kpis["month"])
port = kpis[kpis["cut"] == "portfolio"].pivot_table(index="month", columns="kpi", values="value")
manifest_path = ROOT / "data" / "manifest.json"
sim = json.loads(manifest_path.read_text()).get("params", {}) if manifest_path.exists() else {}
shock = pd.Timestamp(sim.get("start_month", "2023-01-01")) + pd.DateOffset(
    months=int(sim.get("shock_month", 24))
)
print(f"as of {head['as_of_month']}: {head.get('closing_accounts', float('nan')):,.0f} open accounts")


def mark_shock(ax):
    ax.axvline(shock, color="k", ls="--", lw=0.8, label="macro shock")


# %% [markdown]
# ## The headline, as of the latest month

# %%
pct = {
    "active_rate",
    "utilisation",
    "revolve_rate",
    "full_pay_rate",
    "delinquency_30p_balance",
    "approval_rate",
}
show = [
    "closing_accounts",
    "active_rate",
    "spend_per_active_yuan",
    "utilisation",
    "revolve_rate",
    "full_pay_rate",
    "delinquency_30p_balance",
    "net_charge_off_rate_annualised",
    "voluntary_attrition_rate",
    "margin_per_account_yuan",
]
pd.Series({k: head[k] for k in show if k in head}, name=str(head["as_of_month"])).to_frame()

# %% [markdown]
# ## Usage and repayment behaviour over time
#
# Share of open accounts that used the card, revolved, or paid in full; utilisation = balances / lines.

# %%
fig, ax = plt.subplots()
for k in ("active_rate", "utilisation", "revolve_rate", "full_pay_rate"):
    if k in port:
        ax.plot(port.index, 100 * port[k], label=k.replace("_", " "))
mark_shock(ax)
ax.set_ylabel("share (%)")
ax.set_xlabel("month")
ax.set_title("Usage and repayment: active, utilisation, revolving and full-pay rates by month")
ax.legend(fontsize=8, ncol=3)
plt.tight_layout()
plt.show()
print(
    f"Takeaway: {100 * head.get('active_rate', np.nan):.0f} % of open accounts are active and "
    f"{100 * head.get('revolve_rate', np.nan):.0f} % revolve in the latest month; revolvers are the interest "
    "income, and the borrowers whose risk rises with the line (notebook 03)."
)

# %% [markdown]
# ## Credit quality: delinquency buckets and the macro shock

# %%
fig, ax = plt.subplots()
buckets = [k for k in ("delinquency_dpd_30_59", "delinquency_dpd_60_89", "delinquency_dpd_90p") if k in port]
ax.stackplot(
    port.index,
    *[100 * port[k].fillna(0) for k in buckets],
    labels=[k.removeprefix("delinquency_").replace("_", "–") for k in buckets],
    alpha=0.8,
)
mark_shock(ax)
ax.set_ylabel("share of billed accounts (%)")
ax.set_xlabel("statement month")
ax.set_title("Delinquency by DPD bucket (stacked): the shock shows up within a few months")
ax.legend(loc="upper left", fontsize=8)
plt.tight_layout()
plt.show()
pre = port.loc[port.index < shock, buckets].sum(axis=1).tail(6).mean()
post = port.loc[port.index >= shock, buckets].sum(axis=1).mean()
print(
    f"Takeaway: 30+ DPD accounts average {100 * pre:.1f} % in the six months before the shock, {100 * post:.1f} % after."
)

# %% [markdown]
# ## Vintages and roll rates
#
# Left: cumulative ever-90+ DPD share by months on book for each quarterly booking cohort. Right: the
# month-to-month roll-rate matrix between DPD states (row = state this month, column = next month).

# %%
vin = pl.read_parquet(OUT / "vintage.parquet").to_pandas()
rr = pl.read_parquet(OUT / "roll_rate.parquet").to_pandas()
fig, axes = plt.subplots(1, 2, figsize=(14, 4.8))
cohorts = sorted(vin["cohort"].unique())
cmap = plt.get_cmap("viridis")
for i, c in enumerate(cohorts):
    sub = vin[vin["cohort"] == c]
    axes[0].plot(sub["mob"], 100 * sub["ever_90p"], color=cmap(i / max(len(cohorts) - 1, 1)), label=c)
axes[0].set_xlabel("months on book")
axes[0].set_ylabel("cumulative ever-90+ DPD (% of cohort)")
axes[0].set_title("Vintage curves by booking quarter")
axes[0].legend(fontsize=7, ncol=2)
mat = rr.pivot_table(index="from_state", columns="to_state", values="share", aggfunc="sum").fillna(0)
order = [
    s
    for s in ("current", "dpd_1_29", "dpd_30_59", "dpd_60_89", "dpd_90p", "closed", "charged_off")
    if s in mat.index or s in mat.columns
]
order += [s for s in sorted(set(mat.index) | set(mat.columns)) if s not in order]
mat = mat.reindex(
    index=[s for s in order if s in mat.index], columns=[s for s in order if s in mat.columns]
).fillna(0)
im = axes[1].imshow(100 * mat.to_numpy(), cmap="Reds", vmin=0, vmax=100)
axes[1].set_xticks(range(mat.shape[1]), mat.columns, rotation=45, ha="right", fontsize=8)
axes[1].set_yticks(range(mat.shape[0]), mat.index, fontsize=8)
for (r, c), v in np.ndenumerate(100 * mat.to_numpy()):
    if v >= 0.5:
        axes[1].text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=7)
axes[1].set_xlabel("state next month")
axes[1].set_ylabel("state this month")
axes[1].set_title("Roll-rate matrix (% of accounts moving, all months)")
axes[1].grid(False)
fig.colorbar(im, ax=axes[1], label="% of the row")
plt.tight_layout()
plt.show()
print(
    f"Takeaway: mature cohorts reach {100 * head.get('bad_def_vintage_ever_90p_mob12', np.nan):.1f} % ever-90+ "
    f"by MOB 12; {100 * head.get('bad_def_roll_rate_60_89_to_90p', np.nan):.0f} % of 60–89 DPD accounts roll "
    "to 90+, which is why 90+ DPD is the bad definition of notebook 02."
)

# %% [markdown]
# ## Does the portfolio make money?
#
# Margin per open account per month (yuan): interchange + interest + fees − funding − rewards, before and
# after charge-off losses.

# %%
fig, ax = plt.subplots()
for k in ("margin_before_loss_per_account_yuan", "margin_per_account_yuan"):
    if k in port:
        ax.plot(port.index, port[k], label=k.removesuffix("_per_account_yuan").replace("_", " "))
ax.axhline(0, color="k", lw=0.6)
mark_shock(ax)
ax.set_ylabel("margin per open account (yuan per month)")
ax.set_xlabel("month")
ax.set_title("Unit economics: margin per account before and after credit losses")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
print(
    f"Takeaway: latest month {head.get('margin_before_loss_per_account_yuan', np.nan):.1f} yuan before losses, "
    f"{head.get('margin_per_account_yuan', np.nan):.1f} after — losses decide whether the card pays."
)

# %% [markdown]
# ## By segment: city tier
#
# The latest-month value of three KPIs by city tier (tier 1 = the largest cities).

# %%
seg = kpis[
    (kpis["cut"] == "city_tier")
    & kpis["kpi"].isin(["active_rate", "revolve_rate", "delinquency_30p_balance"])
]
last = seg[seg["month"] == seg["month"].max()].pivot_table(index="segment", columns="kpi", values="value")
ax = (100 * last).plot.bar(rot=0, figsize=(8, 4))
ax.set_ylabel("share (%)")
ax.set_xlabel("city tier")
ax.set_title(f"Segments, {seg['month'].max():%Y-%m}: usage and delinquency by city tier")
plt.tight_layout()
plt.show()
dq = last["delinquency_30p_balance"] if "delinquency_30p_balance" in last else pd.Series(dtype=float)
if len(dq) >= 2:
    print(
        f"Takeaway: 30+ DPD balance share runs from {100 * dq.iloc[0]:.1f} % in tier {dq.index[0]} to "
        f"{100 * dq.iloc[-1]:.1f} % in tier {dq.index[-1]}; public reports (PBoC regional credit reports) show "
        "more risk in lower-tier cities, but small segments are noisy month to month."
    )

# %% [markdown]
# ## Retention campaigns: estimated vs true effect
#
# Each quarterly campaign randomised a control group. The report estimates the effect on churn (difference
# in retained rates, and CUPED with pre-period spend) with a 95 % CI; the oracle's true mean effect on the
# treated is the black diamond. Positive = the offer retains.

# %%
camp = pl.read_parquet(OUT / "campaigns.parquet").to_pandas().sort_values("campaign_month")
y = np.arange(len(camp))
fig, ax = plt.subplots(figsize=(8, 0.45 * len(camp) + 1.6))
ax.errorbar(
    100 * camp["ate"],
    y + 0.12,
    xerr=100 * (camp["ate_ci_hi"] - camp["ate"]),
    fmt="o",
    capsize=3,
    label="difference in means",
)
if "cuped_ate" in camp:
    ax.errorbar(
        100 * camp["cuped_ate"],
        y - 0.12,
        xerr=100 * (camp["cuped_ci_hi"] - camp["cuped_ate"]),
        fmt="s",
        capsize=3,
        label="CUPED",
    )
if "true_tau_treated" in camp:
    ax.scatter(100 * camp["true_tau_treated"], y, marker="D", color="k", zorder=4, label="oracle truth")
ax.axvline(0, color="k", lw=0.6)
ax.set_yticks(y, pd.to_datetime(camp["campaign_month"]).dt.strftime("%Y-%m"))
ax.set_xlabel("churn reduction from the offer (percentage points; > 0 = offer retains)")
cov = head.get("campaign_ci_coverage", np.nan)
ax.set_title(f"Retention campaigns: estimates with 95 % CI vs the truth (CI coverage {cov:.0%})")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
print(
    f"Takeaway: pooled effect {100 * head.get('campaign_ate_pooled', np.nan):+.1f} pp churn reduction "
    f"(true {100 * head.get('campaign_true_tau_mean', np.nan):+.1f} pp); incremental ROI "
    f"{head.get('campaign_incremental_roi_total', np.nan):.2f} (true {head.get('campaign_true_incremental_roi_total', np.nan):.2f}) — "
    "notebook 04 asks whether better targeting could make it pay."
)
camp.set_index("campaign_month")[
    [
        c
        for c in (
            "n_control",
            "n_random",
            "ate",
            "ate_ci_lo",
            "ate_ci_hi",
            "true_tau_treated",
            "srm_flag",
            "incremental_roi",
        )
        if c in camp
    ]
].round(4)
