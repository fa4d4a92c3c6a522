"""The decision log on its own: group commit, idempotency (first write wins, conflicts refused) and what a
reopened log holds - for SQLite (WAL) and for PostgreSQL (a throwaway cluster from Debian's package)."""

from __future__ import annotations

import asyncio

import pytest

from cardlab.serve.harness import PostgresCluster
from cardlab.serve.log import IdempotencyConflict, Record, open_log


@pytest.fixture(scope="module")
def postgres_url():
    try:
        cluster = PostgresCluster().start()
    except FileNotFoundError as err:  # .ci/run installs it; a developer machine may lack it
        pytest.skip(str(err))
    yield cluster.url
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'decisions.db'}"
    url = request.getfixturevalue("postgres_url")
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:  # a fresh table per test
        con.execute("DROP TABLE IF EXISTS cardlab_decisions")
    return url


def _record(key: str, sha: str = "s1", decision: str = "approve") -> Record:
    return Record(
        key, f"id-{key}-{sha}", sha, 1, decision, {"decision_id": f"id-{key}-{sha}", "decision": decision}
    )


def test_group_commit_stores_every_decision_once(log_url):
    groups = []
    log = open_log(log_url, observe=lambda n, s: groups.append(n))

    async def main():
        return await asyncio.gather(*(log.commit(_record(f"key-{i:04d}")) for i in range(200)))

    stored = asyncio.run(main())
    assert [s["decision_id"] for s in stored] == [f"id-key-{i:04d}-s1" for i in range(200)]
    assert log.count() == 200 and sum(groups) == 200
    assert max(groups) > 1, "200 concurrent commits were never grouped"
    log.close()
    reopened = open_log(log_url)
    assert reopened.count() == 200
    assert reopened.get("key-0123")[1]["decision_id"] == "id-key-0123-s1"
    reopened.close()


def test_first_write_wins_and_a_different_request_conflicts(log_url):
    log = open_log(log_url)

    async def main():
        same = await asyncio.gather(
            log.commit(_record("dup-key-1")), log.commit(_record("dup-key-1", decision="x"))
        )
        with pytest.raises(IdempotencyConflict):
            await log.commit(_record("dup-key-1", sha="s2"))
        return same

    first, second = asyncio.run(main())
    assert first == second == {"decision_id": "id-dup-key-1-s1", "decision": "approve"}
    assert log.count() == 1
    assert log.decision_ids() == {"dup-key-1": "id-dup-key-1-s1"}
    log.close()
