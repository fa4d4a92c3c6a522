"""Column specs of every world table, their Arrow types, and pandera (polars) schemas of the raw tables.

Nullable columns arrive from the simulator with sentinels: -1 for dates and integer money, NaN for floats,
"" for strings; :func:`to_arrow` turns them into real nulls. Money is int64 fen, dates are ``date32``.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import pandera.polars as pa
import polars as pl
import pyarrow

I8, I16, I32, I64 = pyarrow.int8(), pyarrow.int16(), pyarrow.int32(), pyarrow.int64()
F64, BOOL, STR, DATE = pyarrow.float64(), pyarrow.bool_(), pyarrow.string(), pyarrow.date32()
N = True  # nullable marker

# table -> [(column, arrow type, nullable)]
RAW: dict[str, list[tuple]] = {
    "customers": [
        ("customer_id", I64, False),
        ("signup_date", DATE, False),
        ("age", I16, False),
        ("gender", STR, False),
        ("province", STR, False),
        ("city_tier", I8, False),
        ("income_band", I8, False),
        ("occupation", STR, False),
        ("education", STR, False),
        ("membership_level", I8, False),
        ("paid_member", BOOL, False),
        ("purchase_power", I16, False),
        ("thin_file", BOOL, False),
        ("bureau_score", F64, N),
        ("acquisition_channel", STR, False),
        ("partner_bank", STR, False),
        ("device_price_band", I8, False),
        ("bureau_revolving_fen", I64, N),
        ("bureau_card_utilisation", F64, N),
    ],
    "orders": [
        ("order_id", I64, False),
        ("customer_id", I64, False),
        ("order_date", DATE, False),
        ("category", STR, False),
        ("amount_fen", I64, False),
        ("discount_fen", I64, False),
        ("returned", BOOL, False),
        ("cancelled", BOOL, False),
        ("paid_with", STR, False),
        ("late_night", BOOL, False),
    ],
    "sessions_monthly": [
        ("customer_id", I64, False),
        ("month", DATE, False),
        ("app_sessions", I32, False),
        ("web_sessions", I32, False),
        ("mini_program_sessions", I32, False),
        ("clicks", I32, False),
        ("credit_page_visits", I32, False),
        ("price_compare_sessions", I32, False),
        ("card_page_visits", I32, False),
    ],
    "bnpl_plans": [
        ("plan_id", I64, False),
        ("customer_id", I64, False),
        ("order_id", I64, False),
        ("start_date", DATE, False),
        ("instalments", I8, False),
        ("principal_fen", I64, False),
    ],
    "bnpl_monthly": [
        ("customer_id", I64, False),
        ("month", DATE, False),
        ("due_fen", I64, False),
        ("paid_fen", I64, False),
        ("days_late", I32, False),
        ("overdue_days", I32, False),
    ],
    "profile_changes": [
        ("customer_id", I64, False),
        ("change_date", DATE, False),
        ("kind", STR, False),
    ],
    "platform_scores": [
        ("customer_id", I64, False),
        ("month", DATE, False),
        ("platform_credit_score", I16, False),
    ],
    "invitations": [
        ("customer_id", I64, False),
        ("campaign_id", STR, False),
        ("invite_date", DATE, False),
        ("channel", STR, False),
    ],
    "applications": [
        ("application_id", I64, False),
        ("customer_id", I64, False),
        ("application_date", DATE, False),
        ("approved", BOOL, False),
        ("initial_limit", I64, N),
        ("legacy_score", I32, False),
        ("limit_cell", STR, False),
        ("limit_propensity", F64, N),
        ("partner_bank", STR, False),
    ],
    "cards": [
        ("card_id", I64, False),
        ("customer_id", I64, False),
        ("application_id", I64, False),
        ("open_date", DATE, False),
        ("activation_date", DATE, N),
        ("close_date", DATE, N),
        ("close_reason", STR, N),
    ],
    "statements": [
        ("customer_id", I64, False),
        ("card_id", I64, False),
        ("statement_month", DATE, False),
        ("credit_limit", I64, False),
        ("opening_balance", I64, False),
        ("purchases_platform", I64, False),
        ("purchases_online", I64, False),
        ("purchases_offline", I64, False),
        ("purchases", I64, False),
        ("cash_advance", I64, False),
        ("instalment_fen", I64, False),
        ("interest", I64, False),
        ("fees", I64, False),
        ("rewards_earned", I64, False),
        ("rewards_redeemed", I64, False),
        ("min_due", I64, False),
        ("due_date", DATE, N),
        ("payments", I64, False),
        ("payment_date", DATE, N),
        ("closing_balance", I64, False),
        ("dpd", I32, False),
        ("payment_type", STR, False),
        ("reaged", BOOL, False),
    ],
    "limit_changes": [
        ("customer_id", I64, False),
        ("card_id", I64, False),
        ("review_date", DATE, False),
        ("old_limit", I64, False),
        ("new_limit", I64, False),
        ("cell", STR, False),
        ("propensity", F64, False),
    ],
    "retention_offers": [
        ("customer_id", I64, False),
        ("card_id", I64, False),
        ("campaign_month", DATE, False),
        ("arm", STR, False),
        ("treated", BOOL, False),
        ("propensity", F64, False),
    ],
}

ORACLE: dict[str, list[tuple]] = {
    "traits": [
        ("customer_id", I64, False),
        ("risk", F64, False),
        ("default_logit", F64, False),
        ("income_volatility", F64, False),
        ("spend_capacity_fen", I64, False),
        ("engagement", F64, False),
        ("reward_sensitivity", F64, False),
        ("borrow", F64, False),
        ("mpb", F64, False),
        ("revolver", BOOL, False),
        ("debt_need_fen", F64, False),
        ("bnpl_user", BOOL, False),
        ("churn_propensity", F64, False),
        ("retention_response", F64, False),
        ("p_miss", F64, False),
        ("p_late", F64, False),
        ("p_active", F64, False),
        ("p_activate", F64, False),
        ("shock_entry", F64, False),
        ("visit_propensity", F64, False),
    ],
    "shock_path": [
        ("customer_id", I64, False),
        ("month", DATE, False),
        ("shocked", BOOL, False),
    ],
    "pd_true": [
        ("customer_id", I64, False),
        ("snapshot_date", DATE, False),
        ("kind", STR, False),
        ("pd_12m", F64, False),
        ("line", I64, False),
    ],
    "limit_potential": [
        ("customer_id", I64, False),
        ("decision_date", DATE, False),
        ("kind", STR, False),
        ("option_line", I64, False),
        ("multiple", F64, N),
        ("chosen", BOOL, False),
        ("exp_spend_12m", F64, False),
        ("exp_avg_revolving", F64, False),
        ("exp_interchange", F64, False),
        ("exp_interest", F64, False),
        ("exp_fees", F64, False),
        ("exp_funding_cost", F64, False),
        ("exp_rewards", F64, False),
        ("pd_12m", F64, False),
        ("default_12m", BOOL, N),
        ("exp_ead", F64, False),
        ("exp_loss", F64, False),
        ("exp_profit", F64, False),
    ],
    "retention_truth": [
        ("customer_id", I64, False),
        ("card_id", I64, False),
        ("campaign_month", DATE, False),
        ("treated", BOOL, False),
        ("p_churn_y0", F64, False),
        ("p_churn_y1", F64, False),
        ("tau", F64, False),
        ("p_label_y0", F64, False),
        ("p_label_y1", F64, False),
        ("tau_label", F64, False),
        ("y0", BOOL, False),
        ("y1", BOOL, False),
    ],
    "churn_true": [
        ("customer_id", I64, False),
        ("card_id", I64, False),
        ("month", DATE, False),
        ("state", STR, False),
        ("p_churn_3m", F64, N),
        ("p_label_3m", F64, N),
    ],
}


def spec(table: str, n_decoys: int = 0) -> list[tuple]:
    """Column spec of a raw or oracle table (customers gets its decoy columns appended)."""
    if table in RAW:
        cols = list(RAW[table])
        if table == "customers":
            cols += [(f"decoy_{k}", F64, False) for k in range(1, n_decoys + 1)]
        return cols
    return ORACLE[table]


def arrow_schema(table: str, n_decoys: int = 0) -> pyarrow.Schema:
    return pyarrow.schema([pyarrow.field(c, t, nullable=nl) for c, t, nl in spec(table, n_decoys)])


def _array(values: np.ndarray, typ: pyarrow.DataType, nullable: bool) -> pyarrow.Array:
    values = np.asarray(values)
    mask = None
    if nullable:
        if typ == STR:
            mask = values == ""
        elif values.dtype.kind == "f":
            mask = np.isnan(values)
        else:
            mask = values < 0
        if typ == I64 and values.dtype.kind == "f":
            values = np.nan_to_num(values, nan=-1).astype(np.int64)
        if typ == BOOL and values.dtype.kind == "f":
            values = values > 0
    if typ == DATE:
        return pyarrow.array(values.astype(np.int32), type=pyarrow.int32(), mask=mask).cast(DATE)
    if typ == STR:
        return pyarrow.array(values.astype(str), type=STR, mask=mask)
    return pyarrow.array(values, type=typ, mask=mask, from_pandas=False)


def to_arrow(table: str, cols: dict[str, np.ndarray] | None, n_decoys: int = 0) -> pyarrow.Table:
    """Build the Arrow table of ``table`` from simulator columns (extra helper columns are dropped)."""
    sp = spec(table, n_decoys)
    schema = arrow_schema(table, n_decoys)
    if cols is None:
        return schema.empty_table()
    arrays = [_array(cols[c], t, nl) for c, t, nl in sp]
    return pyarrow.Table.from_arrays(arrays, schema=schema)


# ---------------------------------------------------------------------------------------------------------
# pandera schemas of the raw tables
# ---------------------------------------------------------------------------------------------------------
_PL = {
    I8: pl.Int8,
    I16: pl.Int16,
    I32: pl.Int32,
    I64: pl.Int64,
    F64: pl.Float64,
    BOOL: pl.Boolean,
    STR: pl.Utf8,
    DATE: pl.Date,
}
_NONNEG = {
    "amount_fen",
    "discount_fen",
    "principal_fen",
    "due_fen",
    "paid_fen",
    "days_late",
    "overdue_days",
    "credit_limit",
    "opening_balance",
    "purchases_platform",
    "purchases_online",
    "purchases_offline",
    "purchases",
    "cash_advance",
    "instalment_fen",
    "interest",
    "fees",
    "rewards_earned",
    "rewards_redeemed",
    "min_due",
    "payments",
    "closing_balance",
    "dpd",
    "old_limit",
    "new_limit",
    "initial_limit",
    "app_sessions",
    "web_sessions",
    "mini_program_sessions",
    "clicks",
    "card_page_visits",
    "credit_page_visits",
    "price_compare_sessions",
    "platform_credit_score",
    "bureau_revolving_fen",
}
_ISIN = {
    ("customers", "city_tier"): [1, 2, 3, 4, 5],
    ("customers", "income_band"): [1, 2, 3, 4, 5],
    ("orders", "paid_with"): ["wallet", "bnpl", "card"],
    ("bnpl_plans", "instalments"): [1, 3, 6, 12],
    ("applications", "limit_cell"): ["grid", "test"],
    ("cards", "close_reason"): ["voluntary", "charge_off"],
    ("statements", "payment_type"): ["none_due", "full", "minimum", "partial", "below_minimum", "missed"],
    ("profile_changes", "kind"): ["delivery_address", "phone_number"],
    ("limit_changes", "cell"): ["legacy", "test"],
    ("retention_offers", "arm"): ["control", "random", "targeted"],
    ("churn_true", "state"): ["active", "silent", "distressed"],
}
_PROB = {"limit_propensity", "propensity", "p_churn_3m", "p_label_3m", "bureau_card_utilisation"}


def raw_schema(table: str, n_decoys: int = 0) -> pa.DataFrameSchema:
    """pandera schema of a raw or oracle table (types, nullability, ranges, categories, row checks)."""
    columns = {}
    for c, t, nl in spec(table, n_decoys):
        checks = []
        if c in _NONNEG:
            checks.append(pa.Check.ge(0))
        if c in _PROB:
            checks.append(pa.Check.in_range(0.0, 1.0))
        if (table, c) in _ISIN:
            checks.append(pa.Check.isin(_ISIN[(table, c)]))
        if c == "bureau_score":
            checks.append(pa.Check.in_range(300, 900))
        columns[c] = pa.Column(_PL[t], checks=checks, nullable=nl)
    frame_checks = []
    if table == "statements":
        frame_checks = [
            pa.Check(
                lambda d: d.lazyframe.select(
                    pl.col("closing_balance")
                    == pl.col("opening_balance")
                    + pl.col("purchases")
                    + pl.col("cash_advance")
                    + pl.col("interest")
                    + pl.col("fees")
                    - pl.col("payments")
                ),
                name="balance_recursion",
            ),
            pa.Check(
                lambda d: d.lazyframe.select(
                    pl.col("purchases")
                    == pl.col("purchases_platform") + pl.col("purchases_online") + pl.col("purchases_offline")
                ),
                name="purchases_sum",
            ),
            # day resolution: a delinquent account is at least 8 days past due (a month's days after DUE_DAY)
            pa.Check(
                lambda d: d.lazyframe.select((pl.col("dpd") == 0) | (pl.col("dpd") >= 8)), name="dpd_days"
            ),
            pa.Check(
                lambda d: d.lazyframe.select(pl.col("payment_date").is_null() == (pl.col("payments") == 0)),
                name="payment_date_iff_payment",
            ),
        ]
    if table == "applications":
        frame_checks = [
            pa.Check(
                lambda d: d.lazyframe.select(pl.col("approved") == pl.col("initial_limit").is_not_null()),
                name="limit_iff_approved",
            )
        ]
    return pa.DataFrameSchema(columns, checks=frame_checks, strict=True, name=table)


def validate(table: str, data: pyarrow.Table, n_decoys: int = 0) -> None:
    """Raise pandera's SchemaError when ``data`` violates the schema of raw ``table``."""
    # pl.from_arrow is typed DataFrame | Series; a pyarrow.Table always gives a DataFrame
    raw_schema(table, n_decoys).validate(cast(pl.DataFrame, pl.from_arrow(data)))
