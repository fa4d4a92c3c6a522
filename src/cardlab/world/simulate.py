"""Orchestration: generate the world shard by shard, write raw/oracle Parquet, manifest and realism report.

Each shard (``shard_size`` customers) is generated from its own random streams (streams.py), so the bytes
written do not depend on ``workers``. Everything is written into a temporary folder that replaces ``out``
only on success.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pyarrow
from rich.progress import Progress

from cardlab import liveness
from cardlab.artifacts import atomic_children, dir_digest, write_json, write_parquet
from cardlab.config import PRESETS, EngineParams, SimulateParams
from cardlab.world import schemas
from cardlab.world.calendar import month_starts
from cardlab.world.card import shock_path, simulate_cards
from cardlab.world.drivers import true_drivers
from cardlab.world.ecommerce import finish_platform, simulate_platform
from cardlab.world.population import draw_population
from cardlab.world.realism import realism_report
from cardlab.world.streams import Stream, rng_for

RAW_TABLES = tuple(schemas.RAW)
ORACLE_TABLES = tuple(schemas.ORACLE)


def _shard_bounds(n_customers: int, shard_size: int) -> list[tuple[int, int]]:
    n_shards = math.ceil(n_customers / shard_size)
    return [(s, min(shard_size, n_customers - s * shard_size)) for s in range(n_shards)]


def simulate_shard(params: SimulateParams, shard: int, n: int, tmp: Path) -> dict[str, int]:
    """Generate shard ``shard`` (``n`` customers) and write its part files under ``tmp``; return row counts."""
    size = params.size
    first_id = shard * size.shard_size + 1
    pop = draw_population(
        rng_for(params.seed, Stream.POPULATION, shard),
        rng_for(params.seed, Stream.TRAITS, shard),
        first_id,
        n,
        params.start_month,
        size.months,
        params.signal_to_noise,
        params.n_decoys,
    )
    # the income-shock path first: platform behaviour, the card lifecycle and the oracle all depend on it
    shocked = shock_path(pop, params, shard)
    platform = simulate_platform(pop, params, shard, shocked)
    cards = simulate_cards(pop, params, shard, shocked, platform.score)
    if cards.platform_spend is None or cards.activation_day is None or cards.card_state is None:
        raise RuntimeError("simulate_cards returned a CardWorld without its per-customer arrays")
    shop = finish_platform(
        platform, pop, params, shard, shocked, cards.platform_spend, cards.activation_day, cards.card_state
    )
    raw = {"customers": pop.columns, **shop, **cards.raw}
    oracle = dict(cards.oracle)
    oracle["traits"] = {"customer_id": pop.columns["customer_id"], **pop.traits.columns()}
    oracle["shock_path"] = _shock_rows(pop, params, shocked)
    counts: dict[str, int] = {}
    part = f"part-{shard:05d}.parquet"
    for name in RAW_TABLES:
        table = schemas.to_arrow(name, raw[name], params.n_decoys)
        if params.validate_schemas:
            schemas.validate(name, table, params.n_decoys)
        write_parquet(table, tmp / "raw" / name / part)
        counts[f"raw/{name}"] = table.num_rows
    for name in ORACLE_TABLES:
        table = schemas.to_arrow(name, oracle[name])
        write_parquet(table, tmp / "oracle" / name / part)
        counts[f"oracle/{name}"] = table.num_rows
    return counts


def _shock_rows(pop, params: SimulateParams, shocked: np.ndarray) -> dict[str, np.ndarray]:
    """Oracle rows of the income-shock path: one per customer-month from sign-up, with the state."""
    M = params.size.months
    live = np.arange(M)[None, :] >= pop.signup_month[:, None]
    rows = np.flatnonzero(live.ravel())
    return {
        "customer_id": np.repeat(pop.columns["customer_id"], M)[rows],
        "month": np.tile(month_starts(params.start_month, M)[:M], pop.n)[rows],
        "shocked": shocked.ravel()[rows],
    }


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
        return "unknown"


def simulate(
    params: SimulateParams,
    out: Path,
    *,
    workers: int,
    progress: bool = True,
    engine: EngineParams | None = None,
) -> dict:
    """Generate the world ``params.preset`` with ``params.seed`` into ``out`` and return the manifest.

    Writes ``out/raw/<table>/part-<shard>.parquet``, ``out/oracle/<table>/part-<shard>.parquet``,
    ``out/oracle/true_drivers.json``, ``out/manifest.json`` and ``out/realism.json``. The output is
    byte-identical for any ``workers`` and under either ``engine`` (``dask``: the shards are Dask tasks, see
    :mod:`cardlab.scale.engine`; ``workers`` is then the cluster's business). Raises ValueError for bad sizes/presets, OutputError for unwritable
    paths; on any failure the previous ``out`` is left untouched.
    """
    if params.preset not in params.presets:
        raise ValueError(
            f"unknown preset {params.preset!r}; known presets: {sorted(params.presets)} "
            f"(defaults: {list(PRESETS)})"
        )
    size = params.size
    if size.n_customers <= 0 or size.shard_size <= 0 or size.months <= 0:
        raise ValueError(f"preset {params.preset!r}: sizes must be positive, got {size}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    shards = _shard_bounds(size.n_customers, size.shard_size)
    with atomic_children(out) as tmp:
        counts = _run_shards(params, shards, tmp, workers, progress, engine)
        write_json(true_drivers(tmp, params), tmp / "oracle" / "true_drivers.json")
        tables = {key: {"rows": counts[key], "sha256": dir_digest(tmp / key)} for key in sorted(counts)}
        manifest = {
            "preset": params.preset,
            "seed": params.seed,
            "n_customers": size.n_customers,
            "months": size.months,
            "shard_size": size.shard_size,
            "n_shards": len(shards),
            "start_month": params.start_month.isoformat(),
            "params": json.loads(params.model_dump_json(exclude={"workers", "presets"})),
            "versions": {
                "numpy": np.__version__,
                "pyarrow": pyarrow.__version__,
                "cardlab": _version("cardlab"),
            },
            "tables": tables,
        }
        write_json(manifest, tmp / "manifest.json")
        write_json(realism_report(tmp, params), tmp / "realism.json")
    return manifest


def _run_shards(
    params: SimulateParams,
    shards: list[tuple[int, int]],
    tmp: Path,
    workers: int,
    progress: bool,
    engine: EngineParams | None = None,
) -> dict[str, int]:
    """Generate all shards (in-process for workers=1, else in a forkserver process pool, or as Dask tasks
    under the dask engine); sum the row counts.

    Workers die with this process: each watches its parent and exits when it is gone (a SIGKILL leaves no
    orphan writing into the staging folder), and on any exception here — SIGTERM and Ctrl-C included — the
    workers are killed before the staging folder is removed."""
    with Progress(disable=not progress) as bar:
        task = bar.add_task(f"simulate {params.preset}: shards", total=len(shards))
        if engine is not None and engine.kind == "dask":
            from cardlab.scale.engine import run_tasks

            results = run_tasks(
                engine,
                simulate_shard,
                [(params, s, n, tmp) for s, n in shards],
                name="simulate-shard",
                on_done=lambda _: bar.advance(task),
            )
        elif workers == 1:
            results = []
            for s, n in shards:
                results.append(simulate_shard(params, s, n, tmp))
                bar.advance(task)
        else:
            # forkserver, not fork: forking a process whose polars/arrow thread pools are running can
            # deadlock; the server preloads the simulator once so workers start fast
            mp = multiprocessing.get_context("forkserver")
            mp.set_forkserver_preload(["cardlab.world.simulate"])
            pool = ProcessPoolExecutor(
                max_workers=min(workers, len(shards)),
                mp_context=mp,
                initializer=_die_with_parent,
                initargs=(os.getpid(), liveness.process_start(os.getpid())),
            )
            try:
                futures = [pool.submit(simulate_shard, params, s, n, tmp) for s, n in shards]
                results = []
                for f in futures:
                    results.append(f.result())
                    bar.advance(task)
            except BaseException:
                _kill_workers(pool)
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    counts: dict[str, int] = {}
    for r in results:
        for k, v in r.items():
            counts[k] = counts.get(k, 0) + v
    return counts


def _die_with_parent(parent_pid: int, parent_start: int | None) -> None:
    """Worker initializer: exit as soon as the simulating process is gone (the forkserver, not it, is the
    worker's parent, so the kernel's parent-death signal alone would not see it die)."""
    _set_parent_death_signal()

    def watch() -> None:
        while liveness.pid_alive(parent_pid, parent_start):
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="cardlab-parent-watch", daemon=True).start()


def _set_parent_death_signal() -> None:
    """Linux: SIGKILL this process when its parent (the forkserver) exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the watch thread alone stops the worker
        pass


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """Stop the pool's workers now (a running shard is not waited for). Python 3.14 has
    ``terminate_workers``; before it, the executor's own process table is the only handle."""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(ProcessLookupError, ValueError):
            proc.kill()
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(ValueError, AssertionError):
            proc.join(timeout=5)
