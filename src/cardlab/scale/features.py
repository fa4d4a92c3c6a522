"""The features stage partitioned by customer shard, byte-identical to the local build.

The simulator writes every raw table as one part file per customer shard (``raw/<table>/part-<s>.parquet``),
and every feature of a snapshot row reads only its own customer's (or card's) events, so a shard is a
partition: no customer spans two. Three passes:

1. **facts** (one Dask task per shard): what a partition cannot know alone — the order categories and
   payment types (they name columns), the partner banks (coded by sorted position), the customers' string
   values (profile codes and one-hot columns) and the number of limit decisions (``decision_id`` is a row
   number over the whole world, sorted by card). The client unions them into one
   :class:`~cardlab.features.build.WorldVocabulary` per partition (the same one, with that partition's
   ``decision_id`` offset).
2. **build** (one Dask task per shard): the *same* :func:`~cardlab.features.build.compute_task_frames` on the
   shard's tables, with the world's vocabulary; each task frame is written to a staging file, one Parquet row
   group per snapshot month. A worker's memory is bounded by its shard, not by the world.
3. **merge** (the client): for each task, month by month, the shards' row groups of that month are
   concatenated and sorted by the build's sort keys (every key starts with ``snapshot_date``, so months never
   interleave), and appended to ``<task>/part-0.parquet`` in the row groups the local writer makes
   (:data:`cardlab.artifacts.PARQUET_OPTS`). The client holds one month of one task plus one row group, never
   the whole output. The leak canary then reads the evenly spaced labelled rows it would have sampled from
   the local frame, and the feature dictionary is written with the merged row counts.

Byte-identity with the local build is a tested guarantee (``tests/test_scale.py``), for any number of workers
and after a worker is killed mid-stage (its partition is rebuilt by Dask and rewrites the same staging file).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from cardlab.artifacts import PARQUET_OPTS, atomic_dir, write_json
from cardlab.config import EngineParams, FeaturesParams
from cardlab.errors import InputDataError
from cardlab.features.build import (
    TaskFrames,
    WorldVocabulary,
    compute_task_frames,
    credit_applications,
    dictionary_json,
    partner_banks,
    profile_vocabulary,
    vocabularies,
)
from cardlab.features.dictionary import FeatureSpec
from cardlab.features.guards import leak_canary
from cardlab.features.io import REQUIRED_COLUMNS, WorldCalendar, load_tables, read_calendar
from cardlab.features.snapshots import limit_snapshots
from cardlab.features.windows import LeakageError
from cardlab.scale.engine import cluster, map_tasks
from cardlab.taskspec import FRAMES

CANARY_ROWS = 20_000  # leak_canary's default sample (evenly spaced labelled rows)


@dataclass(frozen=True)
class PartitionFacts:
    """What one shard contributes to the world's vocabulary (pass 1)."""

    shard: int
    vocabulary: WorldVocabulary
    n_decisions: int
    card_range: tuple[int, int] | None  # (min, max) card_id of its limit decisions


@dataclass(frozen=True)
class PartitionOutput:
    """One shard's built task frames (pass 2): staging file, rows and row groups per task and month."""

    shard: int
    files: dict[str, str]
    months: dict[str, list[tuple[int, int]]]  # task -> [(month index, row group)]
    rows: dict[str, int]
    specs: list[FeatureSpec]
    features: dict[str, list[str]]


def shard_ids(raw: Path) -> list[int]:
    """The shards of the world: the part files of ``customers`` (every table has one per shard)."""
    files = sorted((Path(raw) / "customers").glob("part-*.parquet"))
    if not files:
        raise InputDataError(f"{raw}/customers has no part files: run `cardlab simulate`")
    return [int(f.stem.split("-")[1]) for f in files]


def partition_tables(raw: Path, shard: int) -> dict[str, pl.LazyFrame]:
    """The raw tables of one shard (the same lazy scans :func:`load_tables` makes of every shard)."""
    part = f"part-{shard:05d}.parquet"
    tables = {}
    for table in (*REQUIRED_COLUMNS, "invitations"):
        path = Path(raw) / table / part
        if path.exists():
            tables[table] = pl.scan_parquet([str(path)])
        elif table in REQUIRED_COLUMNS:
            raise InputDataError(f"{path} is missing: every raw table has one part file per shard")
    return tables


def partition_facts(raw: str, shard: int, cal: WorldCalendar, params: FeaturesParams) -> PartitionFacts:
    """Pass 1 on a worker: the shard's vocabulary and its number of limit decisions."""
    tables = partition_tables(Path(raw), shard)
    categories, ptypes = vocabularies(tables)
    credit = credit_applications(tables, cal, params)
    banks = (
        partner_banks(credit.select("app_partner_bank").collect())
        if "app_partner_bank" in credit.collect_schema()
        else []
    )
    decisions = (
        limit_snapshots(
            tables["applications"],
            tables["cards"],
            tables["limit_changes"],
            tables["statements"],
            cal,
            params,
        )
        .select(pl.len().alias("n"), pl.col("card_id").min().alias("lo"), pl.col("card_id").max().alias("hi"))
        .collect()
    )
    n = int(decisions["n"][0])
    return PartitionFacts(
        shard,
        WorldVocabulary(
            tuple(categories), tuple(ptypes), tuple(banks), profile_vocabulary(tables["customers"])
        ),
        n,
        (int(decisions["lo"][0]), int(decisions["hi"][0])) if n else None,
    )


def world_vocabularies(facts: list[PartitionFacts]) -> dict[int, WorldVocabulary]:
    """The union of the shards' vocabularies, with each shard's ``decision_id`` offset.

    ``decision_id`` numbers the decisions sorted by card; the offsets are right only if no shard's cards sort
    between another shard's, which is checked (cards belong to customers, customers to one shard)."""

    def union(values) -> tuple[str, ...]:
        return tuple(sorted(set().union(*values)))

    vocabs = [f.vocabulary for f in facts]
    columns = sorted({c for v in vocabs for c, _ in v.profile})
    world = WorldVocabulary(
        categories=union(v.categories for v in vocabs),
        payment_types=union(v.payment_types for v in vocabs),
        partner_banks=union(v.partner_banks for v in vocabs),
        profile=tuple((c, union(dict(v.profile).get(c, ()) for v in vocabs)) for c in columns),
    )
    ranges = sorted((f.card_range, f.shard) for f in facts if f.card_range is not None)
    for (a, sa), (b, sb) in zip(ranges, ranges[1:], strict=False):
        if a[1] >= b[0]:
            raise InputDataError(
                f"shards {sa} and {sb} hold interleaving card ids ({a} and {b}): decision ids are numbered "
                "over cards sorted world-wide, so a partitioned build needs each shard's cards to form one "
                "range; build with engine.kind: local"
            )
    order = [s for _, s in ranges]
    counts = {f.shard: f.n_decisions for f in facts}
    offsets, running = {}, 0
    for s in order:
        offsets[s] = running
        running += counts[s]
    return {f.shard: replace(world, decision_id_offset=offsets.get(f.shard, 0)) for f in facts}


def build_partition(
    raw: str,
    shard: int,
    cal: WorldCalendar,
    params: FeaturesParams,
    vocabulary: WorldVocabulary,
    staging: str,
) -> PartitionOutput:
    """Pass 2 on a worker: the shard's task frames, one staging file per task, a row group per month."""
    tables = partition_tables(Path(raw), shard)
    tf = compute_task_frames(tables, cal, params, canary=False, vocabulary=vocabulary)
    files, months, rows = {}, {}, {}
    for task in FRAMES:
        frame = tf.frames[task]
        path = Path(staging) / task / f"part-{shard:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        # one row group per snapshot month (the frame is sorted by snapshot_date): the merge reads by month
        runs = frame.select(cal.index_expr("snapshot_date").alias("m"))["m"].rle()
        table = frame.to_arrow().replace_schema_metadata(None)
        # a retried task rewrites the same file: write beside it, then rename over it
        tmp = path.with_suffix(".tmp")
        groups, start = [], 0
        with pq.ParquetWriter(tmp, table.schema, compression="zstd", compression_level=3) as writer:
            for i, (n, m) in enumerate(
                zip(runs.struct.field("len"), runs.struct.field("value"), strict=True)
            ):
                writer.write_table(table.slice(start, n), row_group_size=n)
                groups.append((int(m), i))
                start += n
        tmp.replace(path)
        files[task], months[task], rows[task] = str(path), groups, frame.height
    return PartitionOutput(shard, files, months, rows, tf.specs, tf.features)


def _sort_keys(columns: list[str]) -> list[str]:
    """The local build's sort keys (build.compute_task_frames) for a frame with ``columns``."""
    return (
        ["snapshot_date", "customer_id"]
        + (["card_id"] if "card_id" in columns else [])
        + (["decision_id"] if "decision_id" in columns else [])
        + (["application_id"] if "application_id" in columns else [])
    )


class _RowGroupWriter:
    """Appends frames to one Parquet file in row groups of ``PARQUET_OPTS['row_group_size']`` rows, making
    the bytes ``artifacts.write_parquet`` makes of the concatenated frame."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = PARQUET_OPTS["row_group_size"]
        self.opts = {k: v for k, v in PARQUET_OPTS.items() if k != "row_group_size"}
        self.buffer: list[pl.DataFrame] = []
        self.buffered = 0
        self.writer: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None

    def append(self, frame: pl.DataFrame) -> None:
        self.buffer.append(frame)
        self.buffered += frame.height
        while self.buffered >= self.size:
            self._flush(self.size)

    def _flush(self, n: int) -> None:
        whole = pl.concat(self.buffer, rechunk=True) if len(self.buffer) > 1 else self.buffer[0].rechunk()
        head, rest = whole.slice(0, n), whole.slice(n)
        self._write(head)
        self.buffer = [rest] if rest.height else []
        self.buffered = rest.height

    def _write(self, frame: pl.DataFrame) -> None:
        table = frame.rechunk().to_arrow().replace_schema_metadata(None)
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.path, table.schema, **self.opts)
        self.writer.write_table(table, row_group_size=self.size)

    def close(self, empty: pl.DataFrame) -> None:
        if self.buffered:
            self._flush(self.buffered)
        if self.writer is None:  # no row at all: the local writer's empty file
            self._write(empty)
        if self.writer is None:  # _write always opens it
            raise RuntimeError(f"{self.path}: the parquet writer was not opened")
        self.writer.close()


def merge_task(task: str, parts: list[PartitionOutput], path: Path) -> int:
    """Merge the shards' staging files of ``task`` into ``path`` in the local build's order and bytes."""
    writer = _RowGroupWriter(path)
    files = {p.shard: pq.ParquetFile(p.files[task]) for p in sorted(parts, key=lambda p: p.shard)}
    by_month: dict[int, list[tuple[int, int]]] = {}
    for p in parts:
        for m, group in p.months[task]:
            by_month.setdefault(m, []).append((p.shard, group))
    empty = _frame(files[parts[0].shard].schema_arrow.empty_table())
    rows = 0
    for m in sorted(by_month):
        month = pl.concat([_frame(files[s].read_row_group(g)) for s, g in sorted(by_month[m])], rechunk=True)
        month = month.sort(_sort_keys(month.columns))
        rows += month.height
        writer.append(month)
    writer.close(empty)
    for f in files.values():
        f.close()
    return rows


def canary(task: str, path: Path, features: list[str]) -> None:
    """The local build's leak canary on the merged file: the same evenly spaced labelled rows."""
    labels = pl.read_parquet(path, columns=["label"])["label"]
    labelled = labels.is_not_null().arg_true()
    step = max(1, math.ceil(len(labelled) / CANARY_ROWS))
    rows = labelled.gather_every(step) if len(labelled) > CANARY_ROWS else labelled
    sample = (
        pl.scan_parquet(path)
        .select("label", *features)
        .with_row_index("_row")
        .filter(pl.col("_row").is_in(rows.implode()))
        .drop("_row")
        .collect(engine="streaming")
    )
    leaks = leak_canary(sample, "label", features)
    if leaks:
        raise LeakageError(f"{task}: feature(s) {leaks} predict the label alone with AUC > 0.95 - a leak?")


def build_partitioned(
    params: FeaturesParams, raw: Path, out: Path, engine: EngineParams, *, progress: bool = True
) -> dict:
    """``build_features`` on the engine's workers, one task per customer shard; same output bytes."""
    from rich.progress import Progress

    raw = Path(raw).resolve()
    tables = load_tables(raw)  # the same checks as the local build, on the client
    cal = read_calendar(raw, tables)
    shards = shard_ids(raw)
    # the cluster closes (its workers stop) before a failed build's temporary folder is removed
    with atomic_dir(Path(out)) as tmp, cluster(engine) as client, Progress(disable=not progress) as bar:
        staging = tmp / ".partitions"
        t1 = bar.add_task("features: world vocabulary", total=len(shards))
        facts = map_tasks(
            client,
            partition_facts,
            [(str(raw), s, cal, params) for s in shards],
            name="features-facts",
            on_done=lambda _: bar.advance(t1),
        )
        vocab = world_vocabularies(facts)
        t2 = bar.add_task("features: partitions", total=len(shards))
        parts = map_tasks(
            client,
            build_partition,
            [(str(raw), s, cal, params, vocab[s], str(staging)) for s in shards],
            name="features-partition",
            on_done=lambda _: bar.advance(t2),
        )
        first = parts[0]
        for p in parts[1:]:
            if p.specs != first.specs or p.features != first.features:
                raise InputDataError(
                    f"shard {p.shard} built other feature columns than shard {first.shard}: a global fact "
                    "is missing from WorldVocabulary (build with engine.kind: local and report it)"
                )
        t3 = bar.add_task("features: merge", total=len(FRAMES))
        rows = {}
        for task in FRAMES:
            rows[task] = merge_task(task, parts, tmp / task / "part-0.parquet")
            bar.advance(t3)
        shutil.rmtree(staging)
        for task in FRAMES:
            canary(task, tmp / task / "part-0.parquet", first.features[task])
        # zero-row frames: the dictionary reads only the specs, the feature lists and the frames' columns
        columns = {t: _columns(tmp / t / "part-0.parquet") for t in FRAMES}
        tf = TaskFrames(frames=columns, specs=first.specs, features=first.features)
        write_json(dictionary_json(tf, params, cal, rows), tmp / "feature_dictionary.json")
    return {"rows": rows, "features": {t: len(v) for t, v in first.features.items()}}


def _columns(path: Path) -> pl.DataFrame:
    """A zero-row frame with the columns of ``path`` (what dictionary_json reads besides the row count)."""
    return _frame(pq.read_schema(path).empty_table())


def _frame(table: pa.Table) -> pl.DataFrame:
    """``pl.from_arrow`` of a table, which is always a DataFrame (polars types it DataFrame | Series)."""
    return cast(pl.DataFrame, pl.from_arrow(table))
