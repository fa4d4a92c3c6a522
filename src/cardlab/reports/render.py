"""Charts (matplotlib, Agg) and the self-contained HTML report.

Every chart has a title, axis units and a one-line takeaway (printed under the chart; the HTML alt text repeats it).
PNGs are written without the ``Software`` metadata chunk and with fixed rcParams, so the same numbers give the
same bytes; the HTML inlines them as base64 and references no external resource.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

RC = {
    "svg.hashsalt": "cardlab",
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


@dataclass
class Chart:
    key: str
    title: str
    takeaway: str
    png: bytes


def _png(
    fig: plt.Figure, takeaway: str, *, bottom: float = 0.2, left: float = 0.08, hspace: float = 0.3
) -> bytes:
    # fixed margins instead of tight_layout: a third of the drawing time, same look for these layouts
    for ax in fig.axes:
        if isinstance(ax.xaxis.get_major_formatter(), mdates.AutoDateFormatter | mdates.ConciseDateFormatter):
            ax.xaxis.set_major_locator(mdates.MonthLocator(bymonth=(1, 7)))
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m"))
    fig.text(0.01, 0.015, takeaway, fontsize=8.5, style="italic", ha="left", va="bottom")
    fig.subplots_adjust(left=left, right=0.97, top=0.84, bottom=bottom, wspace=0.3, hspace=hspace)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _pct(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.1f}%"


def _series(wide: pl.DataFrame, name: str) -> tuple[list, np.ndarray] | None:
    if name not in wide.columns:
        return None
    d = wide.select("month", name).drop_nulls()
    if d.height == 0:
        return None
    return d["month"].to_list(), d[name].to_numpy()


def _last(wide: pl.DataFrame, name: str) -> float | None:
    s = _series(wide, name)
    return None if s is None else float(s[1][-1])


def chart_accounts(wide: pl.DataFrame) -> Chart:
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in ("opening_accounts", "closing_accounts"):
        s = _series(wide, name)
        if s:
            ax[0].plot(s[0], s[1], label=name.replace("_", " "))
    ax[0].set(title="Open accounts", ylabel="accounts (count)", xlabel="month")
    ax[0].legend()
    for name in ("booked_accounts", "closed_accounts"):
        s = _series(wide, name)
        if s:
            ax[1].plot(s[0], s[1], label=name.replace("_", " "))
    ax[1].set(title="Flows: booked and closed", ylabel="accounts per month (count)", xlabel="month")
    ax[1].legend()
    fig.suptitle("Account stock and flows (portfolio)")
    take = f"Book ends the period with {int(_last(wide, 'closing_accounts') or 0):,} open cards."
    return Chart("accounts", "Account stock and flows", take, _png(fig, take))


def chart_acquisition(wide: pl.DataFrame) -> Chart:
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in ("invitations", "applications", "bookings"):
        s = _series(wide, name)
        if s:
            ax[0].plot(s[0], s[1], label=name)
    ax[0].set(title="Funnel volumes", ylabel="per month (count)", xlabel="month")
    ax[0].legend()
    rates = [
        n
        for n in wide.columns
        if n in ("invite_to_application_30d", "approval_rate") or n.startswith("activation_")
    ]
    for name in rates:
        s = _series(wide, name)
        if s:
            ax[1].plot(s[0], 100 * s[1], label=name.replace("_", " "))
    ax[1].set(title="Funnel conversion", ylabel="share (%)", xlabel="month", ylim=(0, 100))
    ax[1].legend(fontsize=7)
    fig.suptitle("Acquisition and activation funnel (portfolio)")
    act = [n for n in rates if n.startswith("activation_")]
    take = f"Latest approval rate {_pct(_last(wide, 'approval_rate'))}" + (
        f", {act[-1].replace('_', ' ')} {_pct(_last(wide, act[-1]))} (latest fully observed cohort)."
        if act
        else "."
    )
    return Chart("acquisition", "Acquisition and activation funnel", take, _png(fig, take))


def chart_usage(wide: pl.DataFrame) -> Chart:
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in ("active_rate", "revolve_rate", "full_pay_rate", "payment_rate", "utilisation"):
        s = _series(wide, name)
        if s:
            ax[0].plot(s[0], 100 * s[1], label=name.replace("_", " "))
    ax[0].set(title="Usage and repayment", ylabel="share or ratio (%)", xlabel="month", ylim=(0, 120))
    ax[0].legend(fontsize=7, ncol=3, loc="upper center")
    s = _series(wide, "spend_per_active_yuan")
    if s:
        ax[1].plot(s[0], s[1], color="tab:purple")
    ax[1].set(title="Spend per active account", ylabel="yuan per active account per month", xlabel="month")
    fig.suptitle("Usage, revolve and repayment (portfolio)")
    take = (
        f"Latest month: active {_pct(_last(wide, 'active_rate'))}, revolve {_pct(_last(wide, 'revolve_rate'))}, "
        f"utilisation {_pct(_last(wide, 'utilisation'))}, spend per active "
        f"{(_last(wide, 'spend_per_active_yuan') or 0):,.0f} yuan."
    )
    return Chart("usage", "Usage and repayment", take, _png(fig, take))


def chart_delinquency(wide: pl.DataFrame) -> Chart:
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    names = ["delinquency_dpd_1_29", "delinquency_dpd_30_59", "delinquency_dpd_60_89", "delinquency_dpd_90p"]
    present = [n for n in names if n in wide.columns]
    d = wide.select("month", *present).fill_null(0)
    ax[0].stackplot(d["month"].to_list(), *[100 * d[n].to_numpy() for n in present],
                    labels=[n.replace("delinquency_", "") for n in present])  # fmt: skip
    ax[0].set(title="Delinquency by bucket (accounts)", ylabel="share of billed accounts (%)", xlabel="month")
    ax[0].legend(fontsize=7, loc="upper left")
    for name in ("net_charge_off_rate_annualised", "delinquency_30p_balance"):
        s = _series(wide, name)
        if s:
            ax[1].plot(s[0], 100 * s[1], label=name.replace("_", " "))
    ax[1].set(title="Balance-weighted risk", ylabel="% of receivables (NCO annualised)", xlabel="month")
    ax[1].legend(fontsize=7)
    fig.suptitle("Delinquency and net charge-off (portfolio)")
    dq = sum((_last(wide, n) or 0.0) for n in present)
    take = (
        f"Latest month: {_pct(dq)} of billed accounts past due, "
        f"{_pct(_last(wide, 'delinquency_dpd_90p'))} at 90+; annualised NCO "
        f"{_pct(_last(wide, 'net_charge_off_rate_annualised'))} of receivables."
    )
    return Chart("delinquency", "Delinquency and net charge-off", take, _png(fig, take))


def chart_attrition(wide: pl.DataFrame, silent_name: str) -> Chart:
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in ("voluntary_attrition_rate", "charge_off_rate"):
        s = _series(wide, name)
        if s:
            ax[0].plot(s[0], 100 * s[1], label=name.replace("_", " "))
    ax[0].set(title="Monthly closures", ylabel="% of opening accounts per month", xlabel="month")
    ax[0].legend(fontsize=7)
    for name in ("dormant_rate", silent_name):
        s = _series(wide, name)
        if s:
            ax[1].plot(s[0], 100 * s[1], label=name.replace("_", " "))
    ax[1].set(title="Dormancy", ylabel="% of billed accounts", xlabel="month")
    ax[1].legend(fontsize=7)
    fig.suptitle("Attrition and dormancy (portfolio)")
    take = (
        f"Latest month: voluntary attrition {_pct(_last(wide, 'voluntary_attrition_rate'))} per month, "
        f"dormant {_pct(_last(wide, 'dormant_rate'))}, {silent_name.replace('_', ' ')} {_pct(_last(wide, silent_name))}."
    )
    return Chart("attrition", "Attrition and dormancy", take, _png(fig, take))


def chart_margin(wide: pl.DataFrame) -> Chart:
    fig, ax = plt.subplots(figsize=(10, 3.4))
    for name, label, color in (
        ("margin_before_loss_per_account_yuan", "before charge-off loss", "tab:blue"),
        ("margin_per_account_yuan", "after charge-off loss", "tab:green"),
    ):
        s = _series(wide, name)
        if s:
            ax.plot(s[0], s[1], color=color, label=label)
    ax.axhline(0, color="grey", lw=0.8)
    ax.legend(fontsize=7)
    ax.set(title="Margin per billed account", ylabel="yuan per account per month", xlabel="month")
    take = (
        f"Latest month: {(_last(wide, 'margin_before_loss_per_account_yuan') or 0):.1f} yuan per billed account "
        f"before and {(_last(wide, 'margin_per_account_yuan') or 0):.1f} yuan after charge-off losses."
    )
    return Chart("margin", "Margin per account", take, _png(fig, take))


def chart_segments(kpis: pl.DataFrame, month: object) -> Chart:
    cuts = ["acquisition_channel", "city_tier", "partner_bank", "vintage"]
    dq_names = ["delinquency_dpd_30_59", "delinquency_dpd_60_89", "delinquency_dpd_90p"]
    fig, ax = plt.subplots(2, len(cuts), figsize=(12, 6))
    worst = ("", "", -1.0)
    for j, cut in enumerate(cuts):
        d = kpis.filter((pl.col("cut") == cut) & (pl.col("month") == month))
        act = d.filter(pl.col("kpi") == "active_rate").select("segment", "value").sort("segment")
        dq = (
            d.filter(pl.col("kpi").is_in(dq_names))
            .group_by("segment")
            .agg(pl.col("value").fill_null(0).sum().alias("dq"))
            .sort("segment")
        )
        if act.height:
            ax[0, j].bar(
                act["segment"].to_list(), 100 * act["value"].fill_null(0).to_numpy(), color="tab:blue"
            )
        if dq.height:
            v = dq["dq"].to_numpy()
            ax[1, j].bar(dq["segment"].to_list(), 100 * v, color="tab:red")
            i = int(np.argmax(v))
            if v[i] > worst[2]:
                worst = (cut, dq["segment"][i], float(v[i]))
        ax[0, j].set(title=cut.replace("_", " "), ylabel="active rate (% of billed)" if j == 0 else None)
        ax[1, j].set(ylabel="30+ DPD (% of billed)" if j == 0 else None)
        ax[0, j].tick_params(axis="x", labelbottom=False)
        ax[1, j].tick_params(axis="x", labelrotation=60, labelsize=7)
    fig.suptitle(f"Segments in {str(month)[:7]}: active rate (top) and 30+ DPD share (bottom)")
    take = f"Highest 30+ DPD share: {worst[0].replace('_', ' ')} = {worst[1]} ({_pct(worst[2])} of billed accounts)."
    return Chart("segments", "Segment cuts", take, _png(fig, take, bottom=0.2, hspace=0.12))


def chart_vintage(curves: pl.DataFrame, horizon: int) -> Chart:
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    cohorts = sorted(curves["cohort"].unique().to_list())
    cmap = plt.get_cmap("viridis")
    for i, c in enumerate(cohorts):
        d = curves.filter(pl.col("cohort") == c)
        col = cmap(i / max(1, len(cohorts) - 1))
        ax[0].plot(d["mob"].to_numpy(), 100 * d["ever_30p"].to_numpy(), color=col, lw=1, label=c)
        ax[1].plot(d["mob"].to_numpy(), 100 * d["ever_90p"].to_numpy(), color=col, lw=1, label=c)
    ax[0].set(title="Cumulative ever 30+ DPD", xlabel="months on book", ylabel="% of booked cards")
    ax[1].set(title="Cumulative ever 90+ DPD", xlabel="months on book", ylabel="% of booked cards")
    ax[1].axvline(horizon, color="grey", ls="--", lw=0.8)
    ax[1].legend(fontsize=6, ncol=2, title="booking cohort", title_fontsize=7)
    fig.suptitle("Vintage curves by booking cohort")
    at = curves.filter(pl.col("mob") == horizon)
    take = (
        f"At {horizon} months on book, ever-90+ ranges {_pct(cast(float, at['ever_90p'].min()))}-{_pct(cast(float, at['ever_90p'].max()))} "
        "across cohorts observed that long."
        if at.height
        else "No cohort is observed long enough for the bad horizon."
    )
    return Chart("vintage", "Vintage curves", take, _png(fig, take))


def chart_roll_rate(matrix: pl.DataFrame) -> Chart:
    piv = matrix.pivot(on="to_state", index="from_state", values="share")
    cols = [c for c in piv.columns if c != "from_state"]
    z = piv.select(cols).to_numpy().astype(float)  # NaN: no card-month started in that bucket
    fig, ax = plt.subplots(figsize=(8, 3.8))
    im = ax.imshow(100 * np.nan_to_num(z), cmap="Blues", vmin=0, vmax=100, aspect="auto")
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            txt = "n/a" if np.isnan(z[i, j]) else f"{100 * z[i, j]:.1f}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                    color="white" if z[i, j] > 0.6 else "black")  # fmt: skip
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(piv.height), piv["from_state"].to_list())
    ax.set(title="Roll-rate matrix: bucket at month t (rows) to month t+1 (% of row)", xlabel="state at t+1",
           ylabel="bucket at t")  # fmt: skip
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="% of row")
    sh = {(r["from_state"], r["to_state"]): r["share"] for r in matrix.iter_rows(named=True)}
    take = (
        f"60-89 DPD rolls to 90+ {_pct(sh.get(('dpd_60_89', 'dpd_90p')))}; 90+ cures to current only "
        f"{_pct(sh.get(('dpd_90p', 'current')))} per month, against {_pct(sh.get(('dpd_30_59', 'current')))} for 30-59."
    )
    return Chart("roll_rate", "Roll-rate matrix", take, _png(fig, take, left=0.14, bottom=0.24))


def chart_campaigns(campaigns: pl.DataFrame) -> Chart | None:
    if campaigns.height == 0 or "ate" not in campaigns.columns:
        return None
    c = campaigns.filter(pl.col("ate").is_not_null())
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.9))
    x = np.arange(c.height)
    lab = [str(m)[:7] for m in c["campaign_month"].to_list()]
    ate = 100 * c["ate"].to_numpy()
    ax[0].errorbar(x - 0.15, ate, yerr=[ate - 100 * c["ate_ci_lo"].to_numpy(), 100 * c["ate_ci_hi"].to_numpy() - ate],
                   fmt="o", ms=3, capsize=2, label="difference in means")  # fmt: skip
    cu = 100 * c["cuped_ate"].to_numpy()
    ax[0].errorbar(x + 0.15, cu, yerr=[cu - 100 * c["cuped_ci_lo"].to_numpy(), 100 * c["cuped_ci_hi"].to_numpy() - cu],
                   fmt="s", ms=3, capsize=2, label="CUPED")  # fmt: skip
    if "true_tau_treated" in c.columns:
        ax[0].scatter(
            x,
            100 * c["true_tau_treated"].to_numpy(),
            marker="x",
            color="red",
            zorder=3,
            label="oracle mean tau",
        )
    ax[0].axhline(0, color="grey", lw=0.8)
    ax[0].set_xticks(x, lab, rotation=60, ha="right", fontsize=7)
    ax[0].set(title="Retention effect of the offer (random vs control)",
              ylabel="retained-rate difference = churn reduction (pp)", xlabel="campaign month")  # fmt: skip
    ax[0].legend(fontsize=7)
    if "incremental_roi" in c.columns:
        roi = c["incremental_roi"].to_numpy()
        err = [roi - c["incremental_roi_ci_lo"].to_numpy(), c["incremental_roi_ci_hi"].to_numpy() - roi]
        ax[1].bar(x, roi, yerr=err, capsize=2, color="tab:olive", ecolor="grey", label="estimated (95% CI)")
        if "true_incremental_roi" in c.columns:
            ax[1].scatter(
                x, c["true_incremental_roi"].to_numpy(), marker="x", color="red", zorder=3, label="oracle"
            )
        ax[1].axhline(0, color="grey", lw=0.8)
        ax[1].set_xticks(x, lab, rotation=60, ha="right", fontsize=7)
        ax[1].set(
            title="Incremental ROI",
            ylabel="(incremental margin - cost) / cost (ratio)",
            xlabel="campaign month",
        )
        ax[1].legend(fontsize=7)
    fig.suptitle("Retention campaigns with a random holdout")
    cov = (
        f"; {100 * float(cast(float, c['covered'].mean())):.0f}% of CIs cover the oracle effect"
        if "covered" in c.columns
        else ""
    )
    take = f"{c.height} campaigns, mean estimated retention effect {float(ate.mean()):+.2f} pp{cov}."
    return Chart("campaigns", "Campaign evaluation", take, _png(fig, take, bottom=0.27))


# ---------------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------------
CSS = """
body{font-family:Helvetica,Arial,sans-serif;max-width:1150px;margin:24px auto;color:#222;font-size:14px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:8px 0;display:block;max-width:100%;overflow-x:auto}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}figure{margin:12px 0}figcaption{font-style:italic;color:#444}
img{max-width:100%}
"""


def _fmt(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if np.isnan(v):
            return ""
        if v.is_integer():  # counts stored as floats print as counts
            return f"{int(v):,}"
        return f"{v:,.4f}" if abs(v) < 10 else f"{v:,.1f}"
    return html.escape(str(v))


def table_html(rows: list[dict[str, object]], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>(none)</p>"
    columns = columns or list(rows[0].keys())
    head = "".join(f"<th class='l'>{html.escape(c)}</th>" if i == 0 else f"<th>{html.escape(c)}</th>"
                   for i, c in enumerate(columns))  # fmt: skip
    body = []
    for r in rows:
        cells = "".join(
            f"<td class='l'>{_fmt(r.get(c))}</td>" if i == 0 else f"<td>{_fmt(r.get(c))}</td>"
            for i, c in enumerate(columns)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def figure_html(chart: Chart) -> str:
    b64 = base64.b64encode(chart.png).decode("ascii")
    return (
        # the takeaway is printed under the chart in the PNG itself: no second copy as a caption
        f"<figure><img alt='{html.escape(chart.title)}: {html.escape(chart.takeaway)}' "
        f"src='data:image/png;base64,{b64}'></figure>"
    )


def render_html(sections: list[tuple[str, str]], title: str) -> str:
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{content}\n" for h, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}</body></html>\n"
    )


def with_rc():
    return matplotlib.rc_context(RC)
