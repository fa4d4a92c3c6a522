"""The decision log: every decision durably written before its response, keyed by an idempotency key.

Backends: SQLite in WAL mode (default: ``sqlite:///path/decisions.db``) and PostgreSQL through psycopg
(``postgresql://...``). One writer thread commits decisions in groups: each request's decision waits for the
commit of the transaction that holds it (``synchronous=FULL`` for SQLite - the WAL is fsynced at every commit;
``synchronous_commit=on`` for PostgreSQL), so a client never sees a decision the log lacks; under concurrent
load one fsync covers every decision queued meanwhile (group commit).

Idempotency: the first decision stored under a key wins. A retry - or a concurrent duplicate - with the same
key and the same request gets the stored decision back; the same key with a different request is refused
(:class:`IdempotencyConflict`). Personal fields of the request are never stored.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

MAX_GROUP = 256


class IdempotencyConflict(Exception):
    """The idempotency key was used before for a different request."""


@dataclass
class Record:
    idempotency_key: str
    decision_id: str
    request_sha256: str
    customer_id: int
    decision: str
    response: dict


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class DecisionLog(ABC):
    """Reads on the caller's thread; writes through one committer thread in groups."""

    def __init__(self, observe: Callable[[int, float], None] | None = None) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._observe = observe or (lambda n, seconds: None)
        self._thread = threading.Thread(target=self._run, name="decision-log-writer", daemon=True)
        self._closed = False

    def start(self) -> None:
        self._thread.start()

    # -- backend ---------------------------------------------------------------------------------------
    @abstractmethod
    def get(self, key: str) -> tuple[str, dict] | None:
        """(request_sha256, stored response) of ``key``, or None."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def decision_ids(self) -> dict[str, str]:
        """idempotency key -> decision id of every logged decision (reconciliation)."""

    @abstractmethod
    def _open_writer(self) -> None: ...

    @abstractmethod
    def _write(self, records: list[Record]) -> list[tuple[str, dict]]:
        """Insert ``records`` in one transaction and commit; per record the stored (sha, response)."""

    @abstractmethod
    def _close_writer(self) -> None: ...

    # -- committer -------------------------------------------------------------------------------------
    def _run(self) -> None:
        self._open_writer()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                batch = [item]
                while len(batch) < MAX_GROUP:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._queue.put(None)
                        break
                    batch.append(nxt)
                tick = time.perf_counter()
                try:
                    stored = self._write([rec for rec, _, _ in batch])
                except Exception as err:  # the transaction rolled back: every waiter gets the error
                    for _, fut, loop in batch:
                        loop.call_soon_threadsafe(_set, fut, None, err)
                    continue
                self._observe(len(batch), time.perf_counter() - tick)
                for (rec, fut, loop), (sha, response) in zip(batch, stored, strict=True):
                    conflict = None
                    if sha != rec.request_sha256:
                        conflict = IdempotencyConflict(rec.idempotency_key)
                    loop.call_soon_threadsafe(_set, fut, response, conflict)
        finally:
            self._close_writer()

    async def commit(self, record: Record) -> dict:
        """Store ``record`` durably; returns the response stored under its key (the first one written)."""
        if self._closed:
            raise RuntimeError("the decision log is closed")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((record, fut, loop))
        return await fut

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            if self._thread.is_alive():
                self._thread.join(timeout=10)


def _set(fut: asyncio.Future, value: dict | None, err: Exception | None) -> None:
    if fut.done():
        return
    if err is not None:
        fut.set_exception(err)
    else:
        fut.set_result(value)


# ---------------------------------------------------------------------------------------------------------
# SQLite (WAL)
# ---------------------------------------------------------------------------------------------------------
SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS decisions (
    idempotency_key TEXT PRIMARY KEY,
    decision_id     TEXT NOT NULL UNIQUE,
    request_sha256  TEXT NOT NULL,
    customer_id     INTEGER NOT NULL,
    decision        TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    response        TEXT NOT NULL
)
"""


class SQLiteLog(DecisionLog):
    def __init__(self, path: Path, *, synchronous: str = "FULL", observe=None) -> None:
        super().__init__(observe)
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"SQLite synchronous must be FULL, EXTRA or NORMAL, got {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous.upper()
        con = self._connect()
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(SQLITE_DDL)
        con.close()
        self._reader = self._connect()
        self._reader_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        con.execute(f"PRAGMA synchronous={self.synchronous}")
        return con

    def get(self, key: str) -> tuple[str, dict] | None:
        with self._reader_lock:
            row = self._reader.execute(
                "SELECT request_sha256, response FROM decisions WHERE idempotency_key = ?", (key,)
            ).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def count(self) -> int:
        with self._reader_lock:
            return int(self._reader.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    def decision_ids(self) -> dict[str, str]:
        with self._reader_lock:
            return dict(self._reader.execute("SELECT idempotency_key, decision_id FROM decisions").fetchall())

    def _open_writer(self) -> None:
        self._writer = self._connect()

    def _write(self, records: list[Record]) -> list[tuple[str, dict]]:
        con = self._writer
        if con is None:
            raise RuntimeError("the decision log's writer connection is not open")
        out: list[tuple[str, dict]] = []
        con.execute("BEGIN IMMEDIATE")
        try:
            for r in records:
                cur = con.execute(
                    "INSERT OR IGNORE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.idempotency_key,
                        r.decision_id,
                        r.request_sha256,
                        r.customer_id,
                        r.decision,
                        _now(),
                        json.dumps(r.response, ensure_ascii=False),
                    ),
                )
                if cur.rowcount == 1:
                    out.append((r.request_sha256, r.response))
                else:
                    sha, resp = con.execute(
                        "SELECT request_sha256, response FROM decisions WHERE idempotency_key = ?",
                        (r.idempotency_key,),
                    ).fetchone()
                    out.append((sha, json.loads(resp)))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return out

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def close(self) -> None:
        super().close()
        self._reader.close()


# ---------------------------------------------------------------------------------------------------------
# PostgreSQL (psycopg 3)
# ---------------------------------------------------------------------------------------------------------
PG_DDL = """
CREATE TABLE IF NOT EXISTS cardlab_decisions (
    idempotency_key TEXT PRIMARY KEY,
    decision_id     TEXT NOT NULL UNIQUE,
    request_sha256  TEXT NOT NULL,
    customer_id     BIGINT NOT NULL,
    decision        TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    response        JSONB NOT NULL
)
"""


class PostgresLog(DecisionLog):
    def __init__(self, url: str, *, observe=None) -> None:
        super().__init__(observe)
        import psycopg

        self._psycopg = psycopg
        self.url = url
        with psycopg.connect(url, autocommit=True) as con:
            con.execute(PG_DDL)
        self._reader = psycopg.connect(url, autocommit=True)
        self._reader_lock = threading.Lock()
        self._writer: psycopg.Connection | None = None

    def get(self, key: str) -> tuple[str, dict] | None:
        with self._reader_lock:
            row = self._reader.execute(
                "SELECT request_sha256, response FROM cardlab_decisions WHERE idempotency_key = %s", (key,)
            ).fetchone()
        return (row[0], row[1]) if row else None

    def count(self) -> int:
        with self._reader_lock:
            row = self._reader.execute("SELECT COUNT(*) FROM cardlab_decisions").fetchone()
        if row is None:  # COUNT(*) always returns one row
            raise RuntimeError("SELECT COUNT(*) returned no row")
        return int(row[0])

    def decision_ids(self) -> dict[str, str]:
        with self._reader_lock:
            rows = self._reader.execute(
                "SELECT idempotency_key, decision_id FROM cardlab_decisions"
            ).fetchall()
        return dict(rows)

    def _open_writer(self) -> None:
        self._writer = self._psycopg.connect(self.url)
        self._writer.execute("SET synchronous_commit = on")
        self._writer.commit()

    def _write(self, records: list[Record]) -> list[tuple[str, dict]]:
        from psycopg.types.json import Jsonb

        con = self._writer
        if con is None:
            raise RuntimeError("the decision log's writer connection is not open")
        out: list[tuple[str, dict]] = []
        try:
            with con.cursor() as cur:
                for r in records:
                    cur.execute(
                        "INSERT INTO cardlab_decisions (idempotency_key, decision_id, request_sha256, "
                        "customer_id, decision, response) VALUES (%s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key",
                        (
                            r.idempotency_key,
                            r.decision_id,
                            r.request_sha256,
                            r.customer_id,
                            r.decision,
                            Jsonb(r.response),
                        ),
                    )
                    if cur.fetchone() is not None:
                        out.append((r.request_sha256, r.response))
                    else:
                        cur.execute(
                            "SELECT request_sha256, response FROM cardlab_decisions WHERE idempotency_key = %s",
                            (r.idempotency_key,),
                        )
                        row = cur.fetchone()
                        if row is None:  # the insert conflicted, so the key is stored
                            raise RuntimeError(
                                f"idempotency key {r.idempotency_key!r} conflicted but is not stored"
                            )
                        sha, resp = row
                        out.append((sha, resp))
            con.commit()
        except BaseException:
            con.rollback()
            raise
        return out

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def close(self) -> None:
        super().close()
        self._reader.close()


def open_log(url: str, *, sqlite_synchronous: str = "FULL", observe=None) -> DecisionLog:
    """``sqlite:///abs/path.db`` (or a plain path) -> :class:`SQLiteLog`; ``postgresql://...`` ->
    :class:`PostgresLog`. The writer thread is started."""
    if url.startswith(("postgresql://", "postgres://")):
        log: DecisionLog = PostgresLog(url, observe=observe)
    else:
        path = url.removeprefix("sqlite:///")  # sqlite:////abs/path.db -> /abs/path.db
        log = SQLiteLog(Path(path), synchronous=sqlite_synchronous, observe=observe)
    log.start()
    return log
