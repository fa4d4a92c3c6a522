"""The pandas peer of the features stage: a straightforward pandas implementation of a subset of the features.

Subset (same names and definitions as :mod:`cardlab.features`), computed for the churn snapshot grid (every
open card at the first day of each month after its open month):

* platform orders, windows 1/3/6/12: ``ord_n_{w}m``, ``ord_gmv_avg_month_{w}m``, ``ord_ticket_{w}m``,
  ``ord_return_rate_{w}m``, ``ord_bnpl_share_{w}m``; and ``ord_months_since_last``;
* platform sessions: ``ses_per_month_{w}m``;
* account statements: ``acct_util_mean_{w}m``, ``acct_spend_{w}m``, ``acct_dpd_months_{w}m``,
  ``acct_pay_ratio_{w}m``; and ``acct_months_since_dpd``.

The idiom is the usual pandas one: monthly ``groupby`` aggregates, a dense customer x month panel via
``reindex``, ``groupby().rolling(w).sum()`` shifted by one month so only complete months before the snapshot
count. Run as a script it writes the frame to Parquet: ``python bench_features_pandas.py RAW OUT [WINDOWS]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

WINDOWS = (1, 3, 6, 12)


def _read(raw: Path, table: str, columns: list[str]) -> pd.DataFrame:
    return pd.read_parquet(raw / table, columns=columns)


def _calendar(raw: Path, statements: pd.DataFrame) -> tuple[pd.Timestamp, int]:
    manifest = raw.parent / "manifest.json"
    start, months = None, None
    if manifest.is_file():
        meta = json.loads(manifest.read_text())
        for c in (
            meta,
            meta.get("params", {}) or {},
            meta.get("world", {}) or {},
            meta.get("simulate", {}) or {},
        ):
            if isinstance(c, dict):
                start = start or c.get("start_month")
                months = months or c.get("months")
    sm = pd.to_datetime(statements["statement_month"])
    start = pd.Timestamp(str(start)[:10]) if start else sm.min()
    months = (
        int(months) if months else int((sm.max().year - start.year) * 12 + sm.max().month - start.month + 1)
    )
    return pd.Timestamp(start.year, start.month, 1), months


def _mi(dates: pd.Series, start: pd.Timestamp) -> pd.Series:
    d = pd.to_datetime(dates)
    return ((d.dt.year - start.year) * 12 + d.dt.month - start.month).astype("int64")


def _rolled(panel: pd.DataFrame, key: str, cols: list[str], w: int) -> pd.DataFrame:
    """Sum of each column over the ``w`` rows ending at each row, per ``key`` (panel sorted by key, m)."""
    r = panel.groupby(key, sort=False)[cols].rolling(w, min_periods=1).sum()
    r.index = panel.index
    return r


def churn_grid(raw: Path, start: pd.Timestamp, months: int) -> pd.DataFrame:
    cards = _read(raw, "cards", ["card_id", "customer_id", "open_date", "close_date"])
    cards["open_m"] = _mi(cards["open_date"], start)
    close = pd.to_datetime(cards["close_date"])
    cards["last_t"] = np.where(close.isna(), months - 1, _mi(close.fillna(pd.Timestamp(start)), start))
    cards["last_t"] = cards["last_t"].clip(upper=months - 1)
    rows = []
    for cid, cust, o, lt in cards[["card_id", "customer_id", "open_m", "last_t"]].itertuples(index=False):
        if lt >= o + 1:
            t = np.arange(o + 1, lt + 1)
            rows.append(pd.DataFrame({"card_id": cid, "customer_id": cust, "t": t}))
    grid = (
        pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["card_id", "customer_id", "t"])
    )
    return grid


def customer_features(
    raw: Path, start: pd.Timestamp, months: int, keys: pd.DataFrame, windows=WINDOWS
) -> pd.DataFrame:
    orders = _read(raw, "orders", ["customer_id", "order_date", "amount_fen", "returned", "paid_with"])
    orders["m"] = _mi(orders["order_date"], start)
    orders = orders[(orders["m"] >= 0) & (orders["m"] < months)]
    orders["bnpl"] = (orders["paid_with"] == "bnpl").astype(float)
    orders["ret"] = orders["returned"].astype(float)
    om = orders.groupby(["customer_id", "m"]).agg(
        orders=("amount_fen", "size"),
        gmv=("amount_fen", "sum"),
        n_returned=("ret", "sum"),
        n_bnpl=("bnpl", "sum"),
    )
    sessions = _read(
        raw,
        "sessions_monthly",
        ["customer_id", "month", "app_sessions", "web_sessions", "mini_program_sessions"],
    )
    sessions["m"] = _mi(sessions["month"], start)
    sessions = sessions[(sessions["m"] >= 0) & (sessions["m"] < months)]
    sessions["total"] = (
        sessions[["app_sessions", "web_sessions", "mini_program_sessions"]].sum(axis=1).astype(float)
    )
    sm = sessions.groupby(["customer_id", "m"])[["total"]].sum()

    custs = np.sort(keys["customer_id"].unique())
    idx = pd.MultiIndex.from_product([custs, np.arange(months)], names=["customer_id", "m"])
    panel = om.reindex(idx, fill_value=0).join(sm.reindex(idx, fill_value=0)).astype(float).reset_index()
    panel["active_m"] = np.where(panel["orders"] > 0, panel["m"], np.nan)
    panel["last_active"] = panel.groupby("customer_id")["active_m"].ffill()
    cols = ["orders", "gmv", "n_returned", "n_bnpl", "total"]
    out = panel[["customer_id", "m", "last_active"]].copy()
    for w in windows:
        r = _rolled(panel, "customer_id", cols, w)
        n = np.minimum(w, panel["m"] + 1).astype(
            float
        )  # months of the window inside the world, as of month m
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"ord_n_{w}m"] = r["orders"]
            out[f"ord_gmv_avg_month_{w}m"] = r["gmv"] / n
            out[f"ord_ticket_{w}m"] = np.where(r["orders"] > 0, r["gmv"] / r["orders"], np.nan)
            out[f"ord_return_rate_{w}m"] = np.where(r["orders"] > 0, r["n_returned"] / r["orders"], np.nan)
            out[f"ord_bnpl_share_{w}m"] = np.where(r["orders"] > 0, r["n_bnpl"] / r["orders"], np.nan)
            out[f"ses_per_month_{w}m"] = np.where(n > 0, r["total"] / n, np.nan)
    # features for snapshot month t are the panel values as of month t - 1
    out["t"] = out["m"] + 1
    out["ord_months_since_last"] = out["t"] - out["last_active"]
    return out.drop(columns=["m", "last_active"])


def account_features(raw: Path, start: pd.Timestamp, months: int, windows=WINDOWS) -> pd.DataFrame:
    st = _read(
        raw,
        "statements",
        [
            "card_id",
            "statement_month",
            "credit_limit",
            "closing_balance",
            "purchases",
            "payments",
            "opening_balance",
            "dpd",
        ],
    )
    st["m"] = _mi(st["statement_month"], start)
    st = st[(st["m"] >= 0) & (st["m"] < months)].sort_values(["card_id", "m"]).reset_index(drop=True)
    lim = st["credit_limit"].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        st["util"] = np.where(lim > 0, (st["closing_balance"] / lim).clip(0, 5), 0.0)
    st["dpd_pos"] = (st["dpd"] > 0).astype(float)
    st["one"] = 1.0
    for c in ("purchases", "payments", "opening_balance"):
        st[c] = st[c].astype(float)
    st["dpd_m"] = np.where(st["dpd_pos"] > 0, st["m"], np.nan)
    st["last_dpd"] = st.groupby("card_id")["dpd_m"].ffill()
    cols = ["util", "purchases", "dpd_pos", "payments", "opening_balance", "one"]
    out = st[["card_id", "m", "last_dpd"]].copy()
    for w in windows:
        # only statements of months m-w+1..m count (a card's statements are consecutive while it is open)
        r = _rolled(st, "card_id", cols, w)
        n = r["one"]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"acct_util_mean_{w}m"] = np.where(n > 0, r["util"] / n, np.nan)
            out[f"acct_spend_{w}m"] = np.where(n > 0, r["purchases"] / n, np.nan)
            out[f"acct_dpd_months_{w}m"] = r["dpd_pos"]
            out[f"acct_pay_ratio_{w}m"] = np.where(
                r["opening_balance"] > 0, r["payments"] / r["opening_balance"], np.nan
            )
    out["t"] = out["m"] + 1
    out["acct_months_since_dpd"] = out["t"] - out["last_dpd"]
    return out.drop(columns=["m", "last_dpd"])


def build(raw: Path, windows=WINDOWS) -> pd.DataFrame:
    raw = Path(raw)
    st = _read(raw, "statements", ["statement_month"])
    start, months = _calendar(raw, st)
    grid = churn_grid(raw, start, months)
    cust = customer_features(raw, start, months, grid, windows)
    acct = account_features(raw, start, months, windows)
    out = grid.merge(cust, on=["customer_id", "t"], how="left").merge(acct, on=["card_id", "t"], how="left")
    for w in windows:  # a count over no statements is 0, not missing
        out[f"acct_dpd_months_{w}m"] = out[f"acct_dpd_months_{w}m"].fillna(0.0)
    dates = {
        t: pd.Timestamp(start.year + (start.month - 1 + t) // 12, (start.month - 1 + t) % 12 + 1, 1)
        for t in range(months + 1)
    }
    out["snapshot_date"] = out["t"].map(dates)
    return out.sort_values(["card_id", "t"]).reset_index(drop=True)


if __name__ == "__main__":
    raw_dir, out_file = Path(sys.argv[1]), Path(sys.argv[2])
    frame = build(raw_dir)
    frame.to_parquet(out_file, index=False)
    print(json.dumps({"rows": len(frame)}))
