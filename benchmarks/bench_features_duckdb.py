"""The DuckDB peer of the features stage: the pandas peer's feature subset (bench_features_pandas.py) as one
DuckDB SQL query with window aggregates over the same raw Parquet.

Same snapshot grid (every card at the first day of each month after its open month), same names and
definitions: monthly order/session aggregates on a dense customer x month panel summed by
``SUM(...) OVER (PARTITION BY customer_id ORDER BY m ROWS BETWEEN w-1 PRECEDING AND CURRENT ROW)``, statement
windows over a card's last w statements, recency by a running ``MAX``. Features for snapshot month t are the
window ending at month t - 1. Run as a script it writes the frame to Parquet:
``python bench_features_duckdb.py RAW OUT``; :func:`build` returns a pandas frame in the pandas peer's order.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb
import pandas as pd

WINDOWS = (1, 3, 6, 12)


def _calendar(raw: Path) -> tuple[int, int, int]:
    meta = json.loads((raw.parent / "manifest.json").read_text())
    start = str(meta.get("start_month") or meta["params"]["start_month"])[:10]
    return int(start[:4]), int(start[5:7]), int(meta.get("months") or meta["params"]["months"])


def query(raw: Path, windows=WINDOWS) -> str:
    y, mo, months = _calendar(raw)

    def mi(col: str) -> str:
        return f"((year({col}) - {y}) * 12 + month({col}) - {mo})"

    def win(expr: str, key: str, w: int) -> str:
        return (
            f"SUM({expr}) OVER (PARTITION BY {key} ORDER BY m ROWS BETWEEN {w - 1} PRECEDING AND CURRENT ROW)"
        )

    t = "'" + str(raw) + "/{}/*.parquet'"
    cust_cols, acct_cols = [], []
    for w in windows:
        n = f"LEAST({w}, m + 1)"
        cust_cols += [
            f"{win('orders', 'customer_id', w)} AS ord_n_{w}m",
            f"{win('gmv', 'customer_id', w)} / {n} AS ord_gmv_avg_month_{w}m",
            f"CASE WHEN {win('orders', 'customer_id', w)} > 0 THEN {win('gmv', 'customer_id', w)} / "
            f"{win('orders', 'customer_id', w)} END AS ord_ticket_{w}m",
            f"CASE WHEN {win('orders', 'customer_id', w)} > 0 THEN {win('n_returned', 'customer_id', w)} / "
            f"{win('orders', 'customer_id', w)} END AS ord_return_rate_{w}m",
            f"CASE WHEN {win('orders', 'customer_id', w)} > 0 THEN {win('n_bnpl', 'customer_id', w)} / "
            f"{win('orders', 'customer_id', w)} END AS ord_bnpl_share_{w}m",
            f"{win('total', 'customer_id', w)} / {n} AS ses_per_month_{w}m",
        ]
        acct_cols += [
            f"{win('util', 'card_id', w)} / {win('1.0', 'card_id', w)} AS acct_util_mean_{w}m",
            f"{win('purchases', 'card_id', w)} / {win('1.0', 'card_id', w)} AS acct_spend_{w}m",
            f"{win('dpd_pos', 'card_id', w)} AS acct_dpd_months_{w}m",
            f"CASE WHEN {win('opening_balance', 'card_id', w)} > 0 THEN {win('payments', 'card_id', w)} / "
            f"{win('opening_balance', 'card_id', w)} END AS acct_pay_ratio_{w}m",
        ]
    dpd_fill = ", ".join(f"COALESCE(a.acct_dpd_months_{w}m, 0.0) AS acct_dpd_months_{w}m" for w in windows)
    return f"""
WITH cards AS (
  SELECT card_id, customer_id, {mi("open_date")} AS open_m,
         LEAST(COALESCE({mi("close_date")}, {months - 1}), {months - 1}) AS last_t
  FROM read_parquet({t.format("cards")})
), grid AS (
  SELECT card_id, customer_id, unnest(range(open_m + 1, last_t + 1)) AS t FROM cards WHERE last_t >= open_m + 1
), om AS (
  SELECT customer_id, {mi("order_date")} AS m, count(*)::DOUBLE AS orders, sum(amount_fen)::DOUBLE AS gmv,
         sum(returned::INT)::DOUBLE AS n_returned, sum((paid_with = 'bnpl')::INT)::DOUBLE AS n_bnpl
  FROM read_parquet({t.format("orders")})
  WHERE {mi("order_date")} BETWEEN 0 AND {months - 1} GROUP BY ALL
), sm AS (
  SELECT customer_id, {mi("month")} AS m,
         sum(app_sessions + web_sessions + mini_program_sessions)::DOUBLE AS total
  FROM read_parquet({t.format("sessions_monthly")})
  WHERE {mi("month")} BETWEEN 0 AND {months - 1} GROUP BY ALL
), panel AS (
  SELECT c.customer_id, r.m, COALESCE(om.orders, 0) AS orders, COALESCE(om.gmv, 0) AS gmv,
         COALESCE(om.n_returned, 0) AS n_returned, COALESCE(om.n_bnpl, 0) AS n_bnpl,
         COALESCE(sm.total, 0) AS total
  FROM (SELECT DISTINCT customer_id FROM grid) c CROSS JOIN range(0, {months}) r(m)
  LEFT JOIN om ON om.customer_id = c.customer_id AND om.m = r.m
  LEFT JOIN sm ON sm.customer_id = c.customer_id AND sm.m = r.m
), cust AS (
  SELECT customer_id, m + 1 AS t, {", ".join(cust_cols)},
         m + 1 - MAX(CASE WHEN orders > 0 THEN m END) OVER (
           PARTITION BY customer_id ORDER BY m ROWS UNBOUNDED PRECEDING) AS ord_months_since_last
  FROM panel
), st AS (
  SELECT card_id, {mi("statement_month")} AS m,
         CASE WHEN credit_limit > 0 THEN LEAST(GREATEST(closing_balance / credit_limit::DOUBLE, 0), 5)
              ELSE 0.0 END AS util,
         purchases::DOUBLE AS purchases, payments::DOUBLE AS payments,
         opening_balance::DOUBLE AS opening_balance, (dpd > 0)::INT::DOUBLE AS dpd_pos
  FROM read_parquet({t.format("statements")})
  WHERE {mi("statement_month")} BETWEEN 0 AND {months - 1}
), acct AS (
  SELECT card_id, m + 1 AS t, {", ".join(acct_cols)},
         m + 1 - MAX(CASE WHEN dpd_pos > 0 THEN m END) OVER (
           PARTITION BY card_id ORDER BY m ROWS UNBOUNDED PRECEDING) AS acct_months_since_dpd
  FROM st
)
SELECT g.card_id, g.customer_id, g.t, c.* EXCLUDE (customer_id, t),
       a.* EXCLUDE (card_id, t{"".join(f", acct_dpd_months_{w}m" for w in windows)}), {dpd_fill},
       make_date({y} + ({mo} - 1 + g.t) // 12, ({mo} - 1 + g.t) % 12 + 1, 1) AS snapshot_date
FROM grid g
LEFT JOIN cust c ON c.customer_id = g.customer_id AND c.t = g.t
LEFT JOIN acct a ON a.card_id = g.card_id AND a.t = g.t
ORDER BY g.card_id, g.t
"""


def build(raw: Path, windows=WINDOWS, threads: int | None = None) -> pd.DataFrame:
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {threads}")
    return con.execute(query(Path(raw).resolve(), windows)).df()


if __name__ == "__main__":
    raw_dir, out_file = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    con = duckdb.connect()
    con.execute(f"COPY ({query(raw_dir)}) TO '{out_file}' (FORMAT parquet)")
    print(json.dumps({"rows": con.execute(f"SELECT count(*) FROM '{out_file}'").fetchone()[0]}))
