"""`cardlab features`: point-in-time snapshot datasets for credit, limit and churn.

Reads only ``raw/`` (and ``raw/../manifest.json`` for the calendar), writes ``out/<task>/part-0.parquet`` and
``out/feature_dictionary.json`` atomically. See docs/features.md for snapshots, labels, splits and families.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from cardlab.artifacts import atomic_dir, write_json, write_parquet
from cardlab.config import EngineParams, FeaturesParams
from cardlab.features.dictionary import DIRECTION_MEANING, Catalog, FeatureSpec, merge_specs, non_feature
from cardlab.features.families import (
    ALL,
    account_catalog,
    applications_family,
    bnpl_plans_family,
    bnpl_repay_family,
    customer_catalog,
    ident,
    invitations_family,
    limit_changes_family,
    orders_family,
    platform_scores_family,
    profile_changes_family,
    sessions_family,
    statements_family,
)
from cardlab.features.guards import leak_canary
from cardlab.features.io import WorldCalendar, load_tables, read_calendar
from cardlab.features.snapshots import churn_snapshots, credit_snapshots, limit_snapshots
from cardlab.features.static import static_catalog, tenure_feature
from cardlab.features.windows import Family, LeakageError, assert_cutoff, window_sums
from cardlab.taskspec import FRAMES

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

KEYS = ("customer_id", "snapshot_date", "split", "label")

# non-feature columns per task: (name, role, definition, en, zh)
NON_FEATURES: dict[str, list[tuple[str, str, str, str, str]]] = {
    "credit": [
        ("application_id", "key", "application identifier", "application key", "申请编号"),
        ("card_id", "key", "card booked from the application (null if none)", "card key", "卡片编号"),
        (
            "approved",
            "decision",
            "bank approved the application",
            "the bank's decision (not a feature)",
            "审批结果（非特征）",
        ),
        (
            "initial_limit_fen",
            "decision",
            "initial line (fen) granted; null when declined",
            "decision output",
            "初始额度（决策结果）",
        ),
        (
            "app_limit_cell",
            "decision",
            "initial-limit policy cell (policy / randomised test)",
            "experiment cell",
            "额度实验分组",
        ),
        (
            "app_limit_propensity",
            "decision",
            "logged probability of the initial-limit action",
            "logging propensity",
            "额度决策倾向分",
        ),
    ],
    "limit": [
        ("card_id", "key", "card the decision applies to", "card key", "卡片编号"),
        (
            "decision_id",
            "key",
            "row number of the decision (sorted by card, date, type)",
            "decision key",
            "决策编号",
        ),
        (
            "decision_type",
            "decision",
            "'initial' (line at booking) or 'review' (periodic line review)",
            "decision kind",
            "决策类型",
        ),
        (
            "line_before_fen",
            "treatment",
            "credit line before the decision (null for initial)",
            "action: line before",
            "调整前额度",
        ),
        ("line_after_fen", "treatment", "credit line after the decision", "action: line after", "调整后额度"),
        (
            "line_increase_fen",
            "treatment",
            "line_after - line_before (initial: line_after)",
            "action: increase",
            "提额幅度",
        ),
        (
            "cell",
            "treatment",
            "policy or randomised test cell of the decision",
            "experiment cell",
            "实验分组",
        ),
        (
            "propensity",
            "treatment",
            "logged probability of the chosen action",
            "logging propensity",
            "决策倾向分",
        ),
        (
            "s",
            "key",
            "first outcome month index (months after world start)",
            "outcome window start",
            "结果窗口起始月",
        ),
        ("y_spend_fen", "outcome", "purchases over the outcome window (fen)", "realised spend", "实际消费"),
        (
            "y_avg_revolving_fen",
            "outcome",
            "mean revolving balance max(opening - payments, 0) while current (0 DPD), over the observable months (fen)",
            "realised revolving balance",
            "实际循环余额",
        ),
        (
            "y_interest_fees_fen",
            "outcome",
            "interest charged while current (0 DPD) + fees over the window (fen)",
            "realised revenue",
            "实际利息和费用",
        ),
        (
            "y_dpd90",
            "outcome",
            "90+ DPD or charge-off within the window",
            "realised default",
            "实际90天以上逾期",
        ),
        (
            "y_statements",
            "outcome",
            "statements observed in the window",
            "observed statements",
            "窗口内账单数",
        ),
        (
            "y_months_observed",
            "outcome",
            "months of the window inside the world",
            "observed months",
            "可观察月数",
        ),
    ],
    "churn": [
        ("card_id", "key", "card key", "card key", "卡片编号"),
        (
            "in_campaign",
            "treatment",
            "card was eligible for the retention campaign in the action month",
            "campaign eligible",
            "是否进入挽留活动",
        ),
        (
            "treatment",
            "treatment",
            "1 = received the retention offer, 0 = control (null when not in campaign)",
            "treatment",
            "是否发放挽留权益",
        ),
        ("propensity", "treatment", "logged probability of treatment", "treatment propensity", "发放倾向分"),
        ("arm", "treatment", "offer arm", "offer arm", "活动组别"),
    ],
}
LABELS = {
    "credit": "90+ DPD (or charge-off) within the first 12 statement months after booking; null = declined, "
    "not booked, or the 12-month window not fully observed",
    "limit": "y_dpd90 (90+ DPD or charge-off) over the outcome window after the decision; null when fewer than "
    "limit_min_outcome_months months are observable",
    "churn": "voluntary closure, or silent_months consecutive months with no purchases/cash advance, within "
    "months [t+gap, t+gap+horizon); charge-offs excluded; null when the window passes the world's end",
}


@dataclass
class TaskFrames:
    frames: dict[str, pl.DataFrame]
    specs: list[FeatureSpec]
    features: dict[str, list[str]]


class _Steps:
    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    @contextlib.contextmanager
    def run(self) -> Iterator[_Steps]:
        if not self.enabled:
            yield self
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("[bold]features[/] {task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            transient=False,
        ) as progress:
            self._progress = progress
            self._task = progress.add_task("reading raw", total=self.total)
            yield self

    def step(self, text: str) -> None:
        if self._progress is not None and self._task is not None:  # set together in run()
            self._progress.update(self._task, advance=1, description=text)


def _apply_split(lf: pl.LazyFrame, params: FeaturesParams, task: str) -> pl.LazyFrame:
    """train / valid / oot by snapshot month; rows in the performance-window gap before OOT (their labels
    close inside the OOT window) and after ``oot_end`` are dropped (config.SplitParams)."""
    sp = params.split_for(task)
    t = pl.col("t")
    kept = (t >= 0) & ((t < sp.valid_end) | ((t >= sp.oot_start) & (t <= sp.oot_end)))
    return lf.filter(kept).with_columns(
        pl.when(t < sp.valid_start)
        .then(pl.lit("train"))
        .when(t < sp.valid_end)
        .then(pl.lit("valid"))
        .otherwise(pl.lit("oot"))
        .alias("split")
    )


def _windowed(fams: list[Family], keys: pl.LazyFrame, key: str, windows: list[int]) -> pl.LazyFrame:
    out = keys.select(key, "t").unique()
    for fam in fams:
        out = out.join(window_sums(fam, keys, windows), on=[key, "t"], how="left")
    return out


def vocabularies(tables: dict[str, pl.LazyFrame]) -> tuple[list[str], list[str]]:
    """Order categories and statement payment types present in the raw tables (sorted; they name columns)."""

    def values(table: str, column: str) -> list[str]:
        if column not in tables[table].collect_schema():
            return []
        vals = tables[table].select(pl.col(column).cast(pl.String).unique()).collect(engine="streaming")
        return sorted(v for v in vals.to_series() if v)

    return values("orders", "category"), values("statements", "payment_type")


@dataclass(frozen=True)
class WorldVocabulary:
    """Facts of the whole world that name or code feature columns: order categories and statement payment
    types (column names), the partner banks (``app_partner_bank_code``), the values of the customers' string
    columns (profile codes and one-hot columns) and the offset of the partition's first limit ``decision_id``.

    The local build reads them from the tables it builds from. A partitioned build
    (:mod:`cardlab.scale.features`) reads them per partition, unions them and hands every partition the
    union, so that every partition codes and names alike and its output equals the local build's rows."""

    categories: tuple[str, ...]
    payment_types: tuple[str, ...]
    partner_banks: tuple[str, ...]
    profile: tuple[tuple[str, tuple[str, ...]], ...]  # (customers string column, its values sorted)
    decision_id_offset: int = 0


def profile_vocabulary(customers: pl.LazyFrame) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The values of each string column of ``customers`` (what :func:`static_catalog` codes)."""
    schema = customers.collect_schema()
    strings = [c for c, dt in schema.items() if dt in (pl.String, pl.Categorical)]
    if not strings:
        return ()
    vals = customers.select([pl.col(c).cast(pl.String).unique().implode() for c in strings]).collect()
    return tuple((c, tuple(sorted(v for v in vals[c][0].to_list() if v is not None))) for c in strings)


def profile_stand_in(customers: pl.LazyFrame, vocab: WorldVocabulary) -> pl.LazyFrame:
    """A frame with the customers' schema whose string columns hold the world's values: the static catalog
    built from it codes a partition exactly as the whole world's customers table would."""
    schema = customers.collect_schema()
    values = dict(vocab.profile)
    height = max((len(v) for v in values.values()), default=0)
    cols = {
        c: pl.Series(c, [*values.get(c, ()), *[None] * (height - len(values.get(c, ())))], dtype=dt)
        if c in values
        else pl.Series(c, [None] * height, dtype=dt)
        for c, dt in schema.items()
    }
    return pl.DataFrame(cols).lazy()


@dataclass
class CustomerFeatures:
    """Customer-level features for (customer_id, t) keys: the windowed families and the profile.

    One code path for the batch snapshots (:func:`compute_task_frames`) and the online feature store
    (``cardlab materialize``, :mod:`cardlab.serve.store`): :meth:`rows` are what the store keeps per
    customer and month, :meth:`as_of` adds what depends on the exact snapshot date."""

    windowed: pl.DataFrame  # customer_id, t, last-event dates, customer_catalog features
    profile: pl.DataFrame  # customer_id, signup_date (when present), static_catalog features
    catalog: Catalog
    static: Catalog
    has_signup: bool

    def rows(self) -> pl.DataFrame:
        """Per (customer_id, t): windowed and profile columns, ``signup_date`` kept for :meth:`as_of`."""
        return self.windowed.join(self.profile, on="customer_id", how="left")

    def as_of(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` (snapshot_date + the :meth:`rows` columns) with the snapshot-date features, helpers dropped."""
        if not self.has_signup:
            return frame
        return frame.with_columns(as_of_exprs(self.has_signup)).drop("signup_date")

    def join(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Snapshot rows (customer_id, t, snapshot_date, ...) with every customer-level feature."""
        out = frame.with_columns(pl.col("t").cast(pl.Int32)).join(
            self.windowed, on=["customer_id", "t"], how="left"
        )
        return self.as_of(out.join(self.profile, on="customer_id", how="left"))


def as_of_exprs(has_signup: bool) -> list[pl.Expr]:
    """Features that depend on the exact snapshot date, not only its month: evaluated on a frame holding
    ``snapshot_date`` and the profile's ``signup_date`` (the online service evaluates them per request)."""
    if not has_signup:
        return []
    cat = Catalog(ALL)
    tenure_feature(cat)
    return cat.exprs


def customer_features(
    tables: dict[str, pl.LazyFrame],
    cal: WorldCalendar,
    params: FeaturesParams,
    keys: pl.DataFrame,
    categories: list[str],
    steps: _Steps | None = None,
    profile_source: pl.LazyFrame | None = None,
) -> CustomerFeatures:
    """Windowed customer families and the profile for the (customer_id, t) ``keys``. The profile's codes come
    from the string values of ``profile_source`` (default: the customers table; :func:`profile_stand_in`)."""
    steps = steps or _Steps(False, 0)
    w = sorted(params.windows)
    # only customers that appear in some snapshot matter: filter their events before any aggregation
    who = keys.select("customer_id").unique().lazy()

    def events(name: str) -> pl.LazyFrame:
        return tables[name].join(who, on="customer_id", how="semi")

    cfams = [
        orders_family(events("orders"), cal, categories),
        sessions_family(events("sessions_monthly"), cal),
        bnpl_plans_family(events("bnpl_plans"), cal),
        bnpl_repay_family(events("bnpl_monthly"), cal),
        applications_family(events("applications"), cal),
    ]
    if "invitations" in tables:
        cfams.append(invitations_family(events("invitations"), cal))
    cfams.append(profile_changes_family(events("profile_changes"), cal))
    cfams.append(platform_scores_family(events("platform_scores"), cal))
    ccat = customer_catalog(w, categories, invitations="invitations" in tables)
    last_cols = [f"{f.name}__last_event_date" for f in cfams]
    cust = (
        _windowed(cfams, keys.select("customer_id", pl.col("t").cast(pl.Int32)).lazy(), "customer_id", w)
        .select("customer_id", "t", *last_cols, *ccat.exprs)
        .collect()
    )
    steps.step("customer windows")

    scat = static_catalog(tables["customers"] if profile_source is None else profile_source)
    cschema = tables["customers"].collect_schema()
    has_signup = "signup_date" in cschema and cschema["signup_date"] == pl.Date
    prof_cols = ["customer_id", *(["signup_date"] if has_signup else [])]
    profile = tables["customers"].select(*prof_cols, *scat.exprs).collect()
    if has_signup:
        tenure_feature(scat)
    steps.step("profile")
    return CustomerFeatures(cust, profile, ccat, scat, has_signup)


def card_info(tables: dict[str, pl.LazyFrame], cal: WorldCalendar) -> pl.LazyFrame:
    """Per card: its open month index and the initial line (fen) of its application."""
    return (
        tables["cards"]
        .select("card_id", "application_id", cal.index_expr("open_date").cast(pl.Int32).alias("open_m"))
        .join(
            tables["applications"].select(
                "application_id", pl.col("initial_limit").cast(pl.Float64).alias("initial_limit_fen")
            ),
            on="application_id",
            how="left",
        )
        .drop("application_id")
    )


def account_features(
    tables: dict[str, pl.LazyFrame],
    cal: WorldCalendar,
    params: FeaturesParams,
    keys: pl.DataFrame,
    payment_types: list[str],
    cards: pl.LazyFrame | None = None,
) -> tuple[pl.DataFrame, Catalog]:
    """Account-level windowed features for the (card_id, t) ``keys`` (``cards``: :func:`card_info`)."""
    w = sorted(params.windows)
    afams = [
        statements_family(tables["statements"], cal, payment_types),
        limit_changes_family(tables["limit_changes"], cal),
    ]
    acat = account_catalog(w, payment_types)
    alast = [f"{f.name}__last_event_date" for f in afams]
    acct = (
        _windowed(afams, keys.lazy(), "card_id", w)
        .join(card_info(tables, cal) if cards is None else cards, on="card_id", how="left")
        .select(
            "card_id",
            "t",
            *alast,
            pl.col("acc__lastpos__txn").alias("_last_txn_m"),
            pl.col("open_m").alias("_open_m"),
            *acat.exprs,
        )
        .collect()
    )
    return acct, acat


def partner_banks(credit: pl.DataFrame) -> list[str]:
    """Partner banks of the credit snapshot rows, sorted: their order is the ``app_partner_bank_code``."""
    if "app_partner_bank" not in credit.columns:
        return []
    return sorted(v for v in credit["app_partner_bank"].unique().to_list() if v is not None)


def application_catalog(columns: list[str], banks: list[str]) -> Catalog:
    """Application-level features (credit) from the application's own fields: the bank's legacy score and
    the partner bank (coded by its position in ``banks``)."""
    app_cat = Catalog(("credit",))
    if "app_legacy_score" in columns:
        app_cat.add(
            "app_legacy_score",
            pl.col("app_legacy_score"),
            family="application",
            window=None,
            definition="the bank's legacy application score at the application date",
            en="incumbent scorecard's view of the applicant",
            zh="银行原有申请评分",
            direction={"credit": 0},
        )
    if "app_partner_bank" in columns:
        app_cat.add(
            "app_partner_bank_code",
            pl.col("app_partner_bank").replace_strict({b: i for i, b in enumerate(banks)}, default=None),
            family="application",
            window=None,
            definition=f"partner bank of the application as code {dict(enumerate(banks))}",
            en="which partner bank decides",
            zh="合作银行",
        )
    return app_cat


def credit_applications(
    tables: dict[str, pl.LazyFrame], cal: WorldCalendar, params: FeaturesParams
) -> pl.LazyFrame:
    """The credit snapshot rows (one per application, split assigned) before any feature is joined."""
    return _apply_split(
        credit_snapshots(tables["applications"], tables["cards"], tables["statements"], cal, params),
        params,
        "credit",
    )


def compute_task_frames(
    tables: dict[str, pl.LazyFrame],
    cal: WorldCalendar,
    params: FeaturesParams,
    steps: _Steps | None = None,
    canary: bool = True,
    vocabulary: WorldVocabulary | None = None,
) -> TaskFrames:
    """All three task frames in memory (no I/O): the testable core of :func:`build_features`.

    ``vocabulary``: the world's facts when ``tables`` hold one partition of it (default: read from
    ``tables``)."""
    steps = steps or _Steps(False, 0)
    if vocabulary is None:
        categories, ptypes = vocabularies(tables)
    else:
        categories, ptypes = list(vocabulary.categories), list(vocabulary.payment_types)

    # ---- snapshots and labels --------------------------------------------------------------------------
    credit_lf = credit_applications(tables, cal, params)
    limit_lf = _apply_split(
        limit_snapshots(
            tables["applications"],
            tables["cards"],
            tables["limit_changes"],
            tables["statements"],
            cal,
            params,
        ),
        params,
        "limit",
    )
    if vocabulary is not None and vocabulary.decision_id_offset:
        ids = limit_lf.collect_schema()["decision_id"]
        limit_lf = limit_lf.with_columns((pl.col("decision_id") + vocabulary.decision_id_offset).cast(ids))
    churn_lf = _apply_split(
        churn_snapshots(tables["cards"], tables["statements"], tables["retention_offers"], cal, params),
        params,
        "churn",
    ).with_columns(pl.col("t").cast(pl.Int32))
    credit, limit, churn = pl.collect_all([credit_lf, limit_lf, churn_lf])
    steps.step("snapshots and labels")

    # ---- account-level windowed features (once per distinct card-month) ----------------------------------
    card_keys = pl.concat([f.select("card_id", pl.col("t").cast(pl.Int32)) for f in (limit, churn)]).unique()
    acct, acat = account_features(tables, cal, params, card_keys, ptypes)
    steps.step("account windows")

    # churn population: not already silent at the snapshot (some transaction in the last silent_months months,
    # counting a never-used card from its open month); decided from look-back features only
    churn = (
        churn.join(acct.select("card_id", "t", "_last_txn_m", "_open_m"), on=["card_id", "t"], how="left")
        .filter(
            (pl.col("t") - pl.coalesce(pl.col("_last_txn_m"), pl.col("_open_m") - 1)) <= params.silent_months
        )
        .drop("_last_txn_m", "_open_m")
    )
    acct = acct.drop("_last_txn_m", "_open_m")

    # ---- customer-level windowed features (once per distinct customer-month) ---------------------------
    cust_keys = pl.concat(
        [f.select("customer_id", pl.col("t").cast(pl.Int32)) for f in (credit, limit, churn)]
    ).unique()
    cf = customer_features(
        tables,
        cal,
        params,
        cust_keys,
        categories,
        steps,
        None if vocabulary is None else profile_stand_in(tables["customers"], vocabulary),
    )

    # ---- assemble ---------------------------------------------------------------------------------------------
    credit_f = cf.join(credit)
    limit_f = cf.join(limit).join(acct, on=["card_id", "t"], how="left")
    churn_f = cf.join(churn).join(acct, on=["card_id", "t"], how="left")
    steps.step("assemble")

    frames = {"credit": credit_f, "limit": limit_f, "churn": churn_f}
    ccat, scat = cf.catalog, cf.static

    def customer_feature_names(task: str) -> list[str]:
        return [s.name for s in (*ccat.specs, *scat.specs) if task in s.tasks]

    feats = {
        "credit": [*customer_feature_names("credit"), "app_legacy_score", "app_partner_bank_code"],
        "limit": [*customer_feature_names("limit"), *(s.name for s in acat.specs)],
        "churn": [*customer_feature_names("churn"), *(s.name for s in acat.specs)],
    }
    specs: list[FeatureSpec] = [*ccat.specs, *scat.specs]
    for task in ("limit", "churn"):
        specs += [
            FeatureSpec(**{**s.__dict__, "tasks": (task,), "direction": {task: s.direction.get(task, 0)}})
            for s in acat.specs
        ]
    # application-level features (credit): the bank's legacy score and the partner bank of the application
    banks = partner_banks(credit_f) if vocabulary is None else list(vocabulary.partner_banks)
    app_cat = application_catalog(credit_f.columns, banks)
    frames["credit"] = credit_f.with_columns(app_cat.exprs)
    feats["credit"] = [f for f in feats["credit"] if f in frames["credit"].columns]
    specs += app_cat.specs

    # ---- guards and final column order ---------------------------------------------------------------------
    out: dict[str, pl.DataFrame] = {}
    for task in FRAMES:
        frame = frames[task]
        assert_cutoff(frame, task)
        nonf = [n for n, *_ in NON_FEATURES[task] if n in frame.columns]
        cols = [*KEYS, *nonf, *feats[task]]
        frame = frame.select(*(pl.col(c) for c in cols)).with_columns(pl.col("label").cast(pl.Int8))
        sort_keys = (
            ["snapshot_date", "customer_id"]
            + (["card_id"] if "card_id" in frame.columns else [])
            + (["decision_id"] if "decision_id" in frame.columns else [])
            + (["application_id"] if "application_id" in frame.columns else [])
        )
        out[task] = frame.sort(sort_keys)
        if canary:
            labelled = out[task].filter(pl.col("label").is_not_null())
            leaks = leak_canary(labelled, "label", feats[task])
            if leaks:
                raise LeakageError(
                    f"{task}: feature(s) {leaks} predict the label alone with AUC > 0.95 - a leak?"
                )
    steps.step("guards")
    feature_specs = merge_specs(specs)
    return TaskFrames(out, feature_specs, feats)


def dictionary_json(
    tf: TaskFrames, params: FeaturesParams, cal: WorldCalendar, rows: dict[str, int] | None = None
) -> dict:
    """The feature dictionary; ``rows`` per task when ``tf.frames`` are not the whole output (a partition)."""
    nonf = merge_specs(
        [
            non_feature(n, role, d, en, zh, (task,))
            for task in FRAMES
            for n, role, d, en, zh in NON_FEATURES[task]
            if n in tf.frames[task].columns
        ]
    )
    keys = [
        non_feature("customer_id", "key", "customer identifier", "customer key", "客户编号", FRAMES),
        non_feature(
            "snapshot_date",
            "key",
            "as-of date: features use only complete months before its month",
            "as-of date",
            "快照日期",
            FRAMES,
        ),
        non_feature(
            "split",
            "split",
            "train / valid / oot by snapshot month index (see splits)",
            "time split",
            "样本划分",
            FRAMES,
        ),
        non_feature(
            "label",
            "label",
            "; ".join(f"{t}: {LABELS[t]}" for t in FRAMES),
            "the task's label",
            "标签",
            FRAMES,
        ),
    ]
    return {
        "schema_version": 1,
        "direction_meaning": DIRECTION_MEANING,
        "world": {"start_month": cal.start_month.isoformat(), "months": cal.months},
        "tasks": {
            t: {
                "label": LABELS[t],
                "rows": tf.frames[t].height if rows is None else rows[t],
                "split": params.split_for(t).model_dump(),
                "feature_columns": tf.features[t],
                "non_feature_columns": [c for c in tf.frames[t].columns if c not in set(tf.features[t])],
            }
            for t in FRAMES
        },
        "features": [s.as_json() for s in tf.specs],
        "non_features": [s.as_json() for s in keys + nonf],
    }


def build_features(
    params: FeaturesParams,
    raw: Path,
    out: Path,
    *,
    progress: bool = True,
    engine: EngineParams | None = None,
) -> dict:
    """Build out/credit, out/limit, out/churn and out/feature_dictionary.json from raw/ (atomically).

    Under the dask ``engine`` each customer shard is built on a worker and the partitions are merged into
    the same bytes (:mod:`cardlab.scale.features`)."""
    if engine is not None and engine.kind == "dask":
        from cardlab.scale.features import build_partitioned

        return build_partitioned(params, raw, out, engine, progress=progress)
    steps = _Steps(progress, 8)
    with steps.run():
        tables = load_tables(Path(raw))
        cal = read_calendar(Path(raw), tables)
        steps.step("calendar")
        tf = compute_task_frames(tables, cal, params, steps)
        with atomic_dir(Path(out)) as tmp:
            for task, frame in tf.frames.items():
                write_parquet(frame, tmp / task / "part-0.parquet")
            write_json(dictionary_json(tf, params, cal), tmp / "feature_dictionary.json")
        steps.step("written")
    return {
        "rows": {t: f.height for t, f in tf.frames.items()},
        "features": {t: len(v) for t, v in tf.features.items()},
    }


__all__ = [
    "CustomerFeatures",
    "WorldVocabulary",
    "account_features",
    "application_catalog",
    "as_of_exprs",
    "build_features",
    "compute_task_frames",
    "credit_applications",
    "customer_features",
    "ident",
    "leak_canary",
    "partner_banks",
    "profile_stand_in",
    "profile_vocabulary",
    "vocabularies",
]
