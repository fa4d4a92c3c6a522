# %% [markdown]
# # 01 · A tour of the synthetic world
#
# **Question:** does the world cardlab simulates look like a real co-branded card portfolio, and what does
# it contain?
#
# A Chinese e-commerce platform invites pre-screened users to apply for a co-branded card issued by partner
# banks. Users shop (with 618 / 11.11 / Double-12 peaks and a Spring-Festival lull), some get a card, spend,
# revolve or pay in full, sometimes miss payments, and some go silent or leave. From `shock_month` a macro
# stress raises default hazards, so the out-of-time period drifts. Every latent trait and true probability is
# kept in the sealed `data/oracle/`; this notebook mostly looks at what a bank could observe in `data/raw/`.
# See `docs/world.md` for the full story and the structural equations.
#
# Made by `dvc repro simulate` (outputs: `data/raw/`, `data/oracle/`, `data/manifest.json`,
# `data/realism.json`).

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
    "data/manifest.json": "simulate",
    "data/realism.json": "simulate",
    "data/raw/customers": "simulate",
    "data/raw/orders": "simulate",
    "data/raw/applications": "simulate",
    "data/raw/cards": "simulate",
    "data/raw/statements": "simulate",
}
require_outputs(ROOT, NEEDS)

plt.rcParams.update({"figure.figsize": (9, 4.2), "axes.grid": True, "grid.alpha": 0.3})
RAW = ROOT / "data" / "raw"


def read(table: str) -> pl.DataFrame:
    return pl.read_parquet(str(RAW / table / "*.parquet"))


manifest = json.loads((ROOT / "data" / "manifest.json").read_text())
sim = manifest.get("params", {})
print(f"root: {ROOT}")
print(
    f"preset {manifest.get('preset', sim.get('preset'))}, seed {manifest.get('seed', sim.get('seed'))}, "
    f"{manifest.get('n_customers', '?'):,} customers x {manifest.get('months', '?')} months, "
    f"shock from month {sim.get('shock_month')} (x{sim.get('shock_size')})"
)

# %% [markdown]
# ## What was generated
#
# Row counts per raw table (observables) and oracle table (ground truth), from `data/manifest.json`.

# %%
tables = manifest.get("tables", {})
rows = pd.DataFrame(
    [
        {"table": k, "rows": v.get("rows") if isinstance(v, dict) else v}
        for k, v in sorted(tables.items())
        if isinstance(v, dict | int)
    ]
)
rows

# %% [markdown]
# ## Realism against public anchors
#
# `data/realism.json` holds one entry per anchor: the world's value, the band that published figures support
# (PBoC payment-system reports, bank annual reports, academic studies — the `source` column), and a pass flag.
# The chart places each value inside its band: 0 is the lower edge, 1 the upper edge.

# %%
realism = json.loads((ROOT / "data" / "realism.json").read_text())
anchors = pd.DataFrame(
    [
        {
            "anchor": k,
            "value": v["value"],
            "low": v["band"][0],
            "high": v["band"][1],
            "pass": v["pass"],
            "source": v.get("source", ""),
        }
        for k, v in sorted(realism.items())
    ]
)
finite = np.isfinite(anchors["high"].astype(float))
width = (anchors["high"] - anchors["low"]).where(finite)
anchors["position_in_band"] = ((anchors["value"] - anchors["low"]) / width).where(finite, 0.5)
fig, ax = plt.subplots(figsize=(9, 0.38 * len(anchors) + 1.2))
colors = np.where(anchors["pass"], "#2a7", "#c33")
ax.axvspan(0, 1, color="#2a7", alpha=0.08)
ax.scatter(anchors["position_in_band"].clip(-0.5, 1.5), anchors["anchor"], c=colors, s=45, zorder=3)
for y, (_, r) in enumerate(anchors.iterrows()):
    ax.annotate(f"{r['value']:.3g}  [{r['low']:g}, {r['high']:g}]", (1.55, y), va="center", fontsize=8)
ax.set_xlim(-0.6, 2.6)
ax.set_xticks([0, 0.5, 1])
ax.set_xlabel("position inside the accepted band (0 = lower edge, 1 = upper edge; unbounded bands at 0.5)")
n_pass = int(anchors["pass"].sum())
ax.set_title(f"Realism anchors: {n_pass}/{len(anchors)} inside their public bands")
plt.tight_layout()
plt.show()
print(f"Takeaway: {n_pass} of {len(anchors)} anchors sit inside the bands public data supports.")
anchors[["anchor", "value", "low", "high", "pass", "source"]]

# %% [markdown]
# ## Festivals: the shopping calendar
#
# Orders per calendar month with the festival months marked (618 in June, Singles' Day in November,
# Double-12 in December, Spring Festival in January/February).

# %%
orders = (
    read("orders")
    .with_columns(pl.col("order_date").dt.truncate("1mo").alias("month"))
    .group_by("month")
    .agg(pl.len().alias("orders"), (pl.col("amount_fen").sum() / 100 / 1e6).alias("gmv_m_yuan"))
    .sort("month")
    .to_pandas()
)
orders["cal_month"] = pd.to_datetime(orders["month"]).dt.month
festival = {6: "618", 11: "11.11", 12: "12.12", 2: "Spring Festival"}
fig, ax = plt.subplots()
ax.bar(
    pd.to_datetime(orders["month"]),
    orders["orders"] / 1e3,
    width=25,
    color=[("#d62" if m in (6, 11, 12) else "#69c" if m == 2 else "#bbb") for m in orders["cal_month"]],
)
ax.set_ylabel("orders per month (thousands)")
ax.set_xlabel("calendar month")
nov = orders[orders["cal_month"] == 11]["orders"].to_numpy()
octo = orders[orders["cal_month"] == 10]["orders"].to_numpy()
k = min(len(nov), len(octo))
ratio = float(np.mean(nov[:k] / octo[:k])) if k else float("nan")
ax.set_title(f"Platform orders by month: November runs {ratio:.2f}x October (red = 618 / 11.11 / 12.12)")
plt.tight_layout()
plt.show()
print(
    f"Takeaway: Singles' Day lifts November orders {ratio:.2f}x over October; February (blue) is the "
    "Spring-Festival trough. Features and churn labels must therefore compare like-for-like windows."
)

# %% [markdown]
# ## The funnel: invitations → applications → cards
#
# Monthly applications and approval rate under the bank's legacy cutoff.

# %%
apps = (
    read("applications")
    .with_columns(pl.col("application_date").dt.truncate("1mo").alias("month"))
    .group_by("month")
    .agg(pl.len().alias("applications"), pl.col("approved").mean().alias("approval_rate"))
    .sort("month")
    .to_pandas()
)
fig, ax = plt.subplots()
ax.plot(pd.to_datetime(apps["month"]), apps["applications"], "o-", label="applications")
ax.set_ylabel("applications per month (count)")
ax2 = ax.twinx()
ax2.plot(pd.to_datetime(apps["month"]), 100 * apps["approval_rate"], "s--", color="#d62", label="approval")
ax2.set_ylabel("approval rate (%)")
ax2.grid(False)
mean_appr = 100 * float(read("applications")["approved"].mean())
ax.set_title(f"Card applications per month and approval rate (overall {mean_appr:.0f} % approved)")
ax.set_xlabel("application month")
plt.tight_layout()
plt.show()
print(
    f"Takeaway: the legacy rule approves about {mean_appr:.0f} % of applicants; the declined rest have no "
    "outcome in the raw data — the reject-inference problem of notebook 02."
)

# %% [markdown]
# ## Vintages: how fast booking cohorts go bad
#
# For each quarterly booking cohort, the cumulative share of cards that have ever reached 90+ days past due,
# by months on book (MOB). Cohorts that run into the macro shock bend upwards.

# %%
cards = read("cards").select(
    "card_id", pl.col("open_date").dt.truncate("3mo").dt.strftime("%Y-%m").alias("cohort")
)
st = read("statements").select("card_id", "statement_month", "dpd")
opened = read("cards").select("card_id", "open_date")
mob = st.join(opened, on="card_id").with_columns(
    (
        (pl.col("statement_month").dt.year() - pl.col("open_date").dt.year()) * 12
        + pl.col("statement_month").dt.month()
        - pl.col("open_date").dt.month()
    ).alias("mob")
)
first90 = mob.filter(pl.col("dpd") >= 90).group_by("card_id").agg(pl.col("mob").min().alias("first_mob"))
last_mob = mob.join(cards, on="card_id").group_by("cohort").agg(pl.col("mob").max().alias("last_mob"))
coh = cards.join(first90, on="card_id", how="left").join(last_mob, on="cohort", how="left").to_pandas()
max_mob = int(mob["mob"].max())
fig, ax = plt.subplots()
cohorts = sorted(coh["cohort"].unique())
cmap = plt.get_cmap("viridis")
for i, (c, sub) in enumerate(coh.groupby("cohort")):
    last = int(sub["last_mob"].fillna(0).iloc[0])
    if len(sub) < 50 or last < 3:
        continue
    firsts = np.sort(sub["first_mob"].dropna().to_numpy())
    mobs = np.arange(1, last + 1)
    share = 100 * np.searchsorted(firsts, mobs, side="right") / len(sub)
    ax.plot(mobs, share, color=cmap(i / max(len(cohorts) - 1, 1)), label=c)
ax.set_xlabel("months on book")
ax.set_ylabel("cumulative ever-90+DPD share of booked cards (%)")
ax.set_xlim(0, max_mob)
ax.legend(title="booking quarter", fontsize=7, ncol=2)
ax.set_title("Vintage curves: ever-90+ DPD by months on book, one line per booking quarter")
plt.tight_layout()
plt.show()
print(
    f"Takeaway: a booking cohort's bad share keeps rising for its first year (anchor "
    f"bad_rate_12m_booked = {realism['bad_rate_12m_booked']['value']:.1%}); late cohorts rise faster, "
    "because their early months fall after the macro shock."
)

# %% [markdown]
# ## The macro shock in calendar time
#
# Share of billed accounts that are 30+ days past due, per statement month; the dashed line is `shock_month`.

# %%
dq = (
    st.group_by("statement_month")
    .agg((pl.col("dpd") >= 30).mean().alias("dpd30"), pl.len().alias("accounts"))
    .sort("statement_month")
    .to_pandas()
)
fig, ax = plt.subplots()
ax.plot(pd.to_datetime(dq["statement_month"]), 100 * dq["dpd30"], "o-")
start = pd.Timestamp(sim.get("start_month", "2023-01-01"))
if sim.get("shock_month") is not None:
    ax.axvline(start + pd.DateOffset(months=int(sim["shock_month"])), ls="--", color="k", label="shock month")
    ax.legend()
ax.set_ylabel("accounts 30+ DPD (% of billed accounts)")
ax.set_xlabel("statement month")
pre = dq[
    pd.to_datetime(dq["statement_month"]) < start + pd.DateOffset(months=int(sim.get("shock_month", 24)))
]
post = dq[
    pd.to_datetime(dq["statement_month"]) >= start + pd.DateOffset(months=int(sim.get("shock_month", 24)))
]
ax.set_title(
    f"30+ DPD rate by month: {100 * pre['dpd30'].tail(6).mean():.1f} % before the shock, "
    f"{100 * post['dpd30'].mean():.1f} % after"
)
plt.tight_layout()
plt.show()
print(
    "Takeaway: the out-of-time period lives after the shock, so every model is graded on a drifted "
    "population — exactly the situation a bank's validator worries about."
)
