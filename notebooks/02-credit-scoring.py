# %% [markdown]
# # 02 · Credit scoring: model vs scorecard vs oracle
#
# **Question:** how close does the tuned, monotone XGBoost application PD model come to the best possible
# model (the oracle's true PD), how much better is it than a WOE logistic scorecard and the bank's legacy
# score, is it calibrated out of time — and how wrong is it about the applicants the bank declined?
#
# Label: 90+ DPD within 12 months of booking. The model is trained on **booked** applicants only (only they
# have outcomes), so its view of declined applicants is an extrapolation: the reject-inference problem. In
# the synthetic world the oracle knows every applicant's true PD, declined ones included, so we can measure
# that bias instead of guessing it. See `docs/tasks/credit.md`.
#
# Made by `dvc repro evaluate@credit` (outputs: `experiments/credit/metrics.json`,
# `experiments/credit/predictions.parquet/`, `experiments/credit/validation/`).

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import polars as pl
from sklearn.metrics import roc_auc_score, roc_curve

from cardlab.artifacts import require_outputs
from cardlab.config import repo_root
from cardlab.tasks.credit import read_pd_true

ROOT = repo_root()
NEEDS = {
    "experiments/credit/metrics.json": "evaluate@credit",
    "experiments/credit/predictions.parquet": "evaluate@credit",
    "experiments/credit/validation": "evaluate@credit",
    "data/oracle/pd_true": "simulate",
}
require_outputs(ROOT, NEEDS)

plt.rcParams.update({"figure.figsize": (9, 4.2), "axes.grid": True, "grid.alpha": 0.3})
EXP = ROOT / "experiments" / "credit"
metrics = json.loads((EXP / "metrics.json").read_text())
pred = pl.read_parquet(str(EXP / "predictions.parquet" / "*.parquet")).to_pandas()
# evaluation reads the sealed oracle: the true 12-month PD of every applicant, declined ones included (the
# same join the evaluate stage makes)
df = pred.merge(read_pd_true(ROOT / "data" / "oracle"), on=["customer_id", "snapshot_date"], how="left")
df["approved"] = df["approved"].astype(bool) if "approved" in df else True
booked = df[df["approved"] & df["label"].notna()].assign(label=lambda d: d["label"].astype(int))
print(f"{len(df):,} applications scored, {len(booked):,} booked with a full outcome window")
SCORES = {
    "XGBoost model": "pd",
    "WOE scorecard": "pd_scorecard",
    "legacy score": "pd_legacy",
    "oracle (true PD)": "pd_true",
}
SCORES = {k: v for k, v in SCORES.items() if v in df.columns}

# %% [markdown]
# ## Discrimination: every score on the same rows
#
# AUC on the in-time validation split and the out-of-time (OOT) split, booked applicants only. The oracle's
# AUC is the Bayes limit: no model can beat it on these rows, so the gap to it is what is left to learn.

# %%
rows = []
for split in ("valid", "oot"):
    d = booked[booked["split"] == split]
    rows.append(
        {"split": split, "n": len(d), "bad_rate": d["label"].mean()}
        | {name: roc_auc_score(d["label"], d[col]) for name, col in SCORES.items()}
    )
auc = pd.DataFrame(rows).set_index("split")
auc.round(4)

# %%
d = booked[booked["split"] == "oot"]
fig, ax = plt.subplots(figsize=(5.8, 5.2))
for name, col in SCORES.items():
    fpr, tpr, _ = roc_curve(d["label"], d[col])
    ax.plot(
        100 * fpr,
        100 * tpr,
        lw=2.2 if col in ("pd", "pd_true") else 1.3,
        label=f"{name}  AUC {auc.loc['oot', name]:.3f}",
    )
ax.plot([0, 100], [0, 100], "k:", lw=0.8)
ax.set_xlabel("goods wrongly flagged (false-positive rate, %)")
ax.set_ylabel("bads caught (true-positive rate, %)")
gap = auc.loc["oot", "oracle (true PD)"] - auc.loc["oot", "XGBoost model"]
ax.set_title(f"ROC, out-of-time booked applicants\nmodel is {gap:.3f} AUC below the oracle")
ax.legend(fontsize=8, loc="lower right")
plt.tight_layout()
plt.show()
lift = auc.loc["oot", "XGBoost model"] - auc.loc["oot", "WOE scorecard"]
print(
    f"Takeaway: out of time the model is {lift:+.3f} AUC against the scorecard and {gap:.3f} below the "
    f"Bayes limit (pipeline: oot_auc {metrics.get('oot_auc', float('nan')):.3f}, 95 % CI "
    f"[{metrics.get('oot_auc_ci_lo', float('nan')):.3f}, {metrics.get('oot_auc_ci_hi', float('nan')):.3f}])."
)

# %% [markdown]
# ## Calibration: predicted PD vs observed bad rate vs true PD
#
# OOT booked applicants in ten bins of predicted PD. A calibrated model lies on the diagonal against the
# observed rate; the oracle's mean true PD in each bin shows what the observed rate would be without sampling
# noise.

# %%
d = booked[booked["split"] == "oot"].copy()
d["bin"] = pd.qcut(d["pd"].rank(method="first"), 10, labels=False) + 1
cal = d.groupby("bin").agg(
    mean_pd=("pd", "mean"), observed=("label", "mean"), true_pd=("pd_true", "mean"), n=("label", "size")
)
fig, ax = plt.subplots(figsize=(5.8, 5.2))
top = 100 * float(cal[["mean_pd", "observed", "true_pd"]].to_numpy().max()) * 1.08
ax.plot([0, top], [0, top], "k:", lw=0.8)
ax.plot(100 * cal["mean_pd"], 100 * cal["observed"], "o-", label="observed bad rate")
ax.plot(100 * cal["mean_pd"], 100 * cal["true_pd"], "s--", label="oracle mean true PD")
ax.set_xlabel("mean predicted PD in the bin (%)")
ax.set_ylabel("bad rate / true PD (%)")
ratio = d["label"].mean() / d["pd"].mean()
ax.set_title(f"Calibration, OOT deciles: observed bads are {ratio:.2f}x predicted")
ax.legend()
plt.tight_layout()
plt.show()
print(
    f"Takeaway: mean predicted PD {d['pd'].mean():.2%} vs observed {d['label'].mean():.2%} vs true "
    f"{d['pd_true'].mean():.2%}: the model {'under' if ratio > 1 else 'over'}-predicts by {abs(ratio - 1):.0%} "
    "out of time — the OOT period sits after the macro shock, so a model trained before it needs recalibration."
)

# %% [markdown]
# ## Drift month by month
#
# Mean predicted PD, true PD and realised bad rate per application month (booked applicants). The OOT split
# begins where the split column changes to `oot`.

# %%
m = (
    booked.assign(month=pd.to_datetime(booked["snapshot_date"]).dt.to_period("M").dt.to_timestamp())
    .groupby("month")
    .agg(pred=("pd", "mean"), true=("pd_true", "mean"), observed=("label", "mean"), split=("split", "last"))
)
fig, ax = plt.subplots()
ax.plot(m.index, 100 * m["pred"], "o-", label="predicted PD")
ax.plot(m.index, 100 * m["true"], "s--", label="true PD (oracle)")
ax.plot(m.index, 100 * m["observed"], "^:", label="observed bad rate")
oot_start = m.index[m["split"] == "oot"].min()
if pd.notna(oot_start):
    ax.axvspan(oot_start, m.index.max(), color="#fc8", alpha=0.25, label="OOT")
ax.set_ylabel("12-month bad rate (%)")
ax.set_xlabel("application month")
ax.set_title("Predicted vs true vs observed PD by application month (booked applicants)")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
print(
    f"Takeaway: PSI of the score OOT vs train is {metrics.get('oot_psi', float('nan')):.3f} "
    "(< 0.10 stable, 0.10–0.25 watch, > 0.25 shift); the gap between the true and the predicted line is "
    "the drift a monitoring team must catch."
)

# %% [markdown]
# ## Reject bias: what the model believes about declined applicants
#
# The model never saw a declined applicant's outcome. The oracle knows their true PD, so we can compare the
# model's predicted PD with the truth for the declined population, binned by predicted PD.

# %%
dec = df[~df["approved"]].copy()
fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
bins = np.linspace(0, float(np.quantile(df["pd_true"], 0.995)), 40)
axes[0].hist(
    100 * df.loc[df["approved"], "pd_true"], bins=100 * bins, alpha=0.6, density=True, label="booked"
)
axes[0].hist(100 * dec["pd_true"], bins=100 * bins, alpha=0.6, density=True, label="declined")
axes[0].set_xlabel("true 12-month PD (%)")
axes[0].set_ylabel("density")
axes[0].set_title("True PD of booked vs declined applicants")
axes[0].legend()
if len(dec) >= 20:
    dec["bin"] = pd.qcut(dec["pd"].rank(method="first"), 10, labels=False) + 1
    rb = dec.groupby("bin").agg(pred=("pd", "mean"), true=("pd_true", "mean"))
    axes[1].plot(rb.index, 100 * rb["pred"], "o-", label="model predicted PD")
    axes[1].plot(rb.index, 100 * rb["true"], "s--", label="oracle true PD")
    axes[1].set_xlabel("decile of predicted PD among declined (10 = riskiest)")
    axes[1].set_ylabel("mean PD (%)")
    axes[1].set_title("Declined applicants: predicted vs true PD")
    axes[1].legend()
plt.tight_layout()
plt.show()
bias = pd.DataFrame(
    {
        "population": ["booked", "declined"],
        "n": [int(df["approved"].sum()), len(dec)],
        "mean_pred_pd": [df.loc[df["approved"], "pd"].mean(), dec["pd"].mean()],
        "mean_true_pd": [df.loc[df["approved"], "pd_true"].mean(), dec["pd_true"].mean()],
    }
)
bias["pred_over_true"] = bias["mean_pred_pd"] / bias["mean_true_pd"]
print(
    f"Takeaway: declined applicants are truly {bias.loc[1, 'mean_true_pd'] / bias.loc[0, 'mean_true_pd']:.1f}x "
    f"as risky as booked ones; the model puts them at {bias.loc[1, 'pred_over_true']:.2f}x their true PD — the "
    "bias a 'swap-in' decision (approving today's declines) would inherit."
)
bias.round(4)

# %% [markdown]
# ## Headline metrics as the pipeline wrote them
#
# `experiments/credit/metrics.json` is the canonical record (also logged to MLflow); the numbers above were
# recomputed here from the predictions for the plots and should agree with it.

# %%
keys = [
    k
    for k in metrics
    if k.startswith(("oot_", "valid_", "declined_", "booked_", "delong", "scorecard", "legacy"))
]
pd.Series({k: metrics[k] for k in keys}, name="value").to_frame()

# %% [markdown]
# ## In MLflow
#
# The model run and the registered model `cardlab-credit` (aliases `challenger`, `champion`). `make ui` opens
# the same store in the browser.

# %%
try:
    from mlflow.tracking import MlflowClient

    from cardlab.tracking import configure

    configure()
    client = MlflowClient()
    versions = client.search_model_versions("name = 'cardlab-credit'")
    # search results carry no aliases: the registered model holds them (alias -> version)
    aliases = client.get_registered_model("cardlab-credit").aliases if versions else {}
    print(
        pd.DataFrame(
            [
                {
                    "version": v.version,
                    "aliases": ",".join(
                        sorted(a for a, ver in aliases.items() if str(ver) == str(v.version))
                    ),
                    "gate": v.tags.get("gate_red", ""),
                    "description": v.description,
                }
                for v in versions
            ]
        ).to_string(index=False)
        if versions
        else "no registered versions of cardlab-credit in this store"
    )
except Exception as err:  # the store is optional for this notebook
    print(f"MLflow store not readable here ({type(err).__name__}: {err}); metrics.json above is canonical")
