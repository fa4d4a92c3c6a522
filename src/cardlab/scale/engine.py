"""The Dask engine a stage runs on (``params.engine``), and the one way work is handed to it.

:func:`cluster` yields a ``distributed.Client``: connected to ``engine.scheduler`` when it is set, else to a
``LocalCluster`` of ``engine.local_workers`` processes started for the stage (and closed with it).
:func:`map_tasks` runs one function over a list of argument tuples as Dask tasks and returns the results in
input order. Dask does the scheduling: a task whose worker dies (killed, out of memory) is re-run on another
worker up to ``engine.retries`` times (``distributed.scheduler.allowed-failures``); an exception *raised* by a
task is not retried (the code is deterministic: it would raise again) and reaches the caller as itself, so a
``cardlab.errors`` type still prints as one line.

Every task must be idempotent — the same inputs write the same files — because a retried task runs again
from the start; the world's shards and the feature partitions are.

The engine of a CLI process is set once by the verb (:func:`configure`) and read where a stage's library code
decides where a step runs (:func:`current`): tune's trial batches and train's booster.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from cardlab.config import EngineParams
from cardlab.errors import EngineError

_CURRENT: EngineParams = EngineParams()

# CARDLAB_FAULT=scale.task.<name>-<i>:<SIGNAL> kills the worker running task i right after the task did its
# work (files written, result not yet returned); the point may be an fnmatch pattern, and
# CARDLAB_FAULT_ONCE=<path> makes it fire only once (the retried task then runs to the end)
FAULT_PREFIX = "scale.task."


def configure(engine: EngineParams) -> None:
    """Make ``engine`` the engine of this process (the CLI verbs call it with ``params.engine``)."""
    global _CURRENT
    _CURRENT = engine


def current() -> EngineParams:
    """The engine of this process (``local`` unless a verb configured another)."""
    return _CURRENT


def is_dask(engine: EngineParams | None) -> bool:
    return engine is not None and engine.kind == "dask"


def _worker_env(engine: EngineParams) -> dict[str, str]:
    """Thread pools of a worker sized to its Dask threads: n workers x all cores would oversubscribe."""
    n = str(engine.threads_per_worker)
    return {"POLARS_MAX_THREADS": n, "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n}


@contextlib.contextmanager
def cluster(engine: EngineParams) -> Iterator[Any]:
    """A ``distributed.Client`` on ``engine.scheduler``, or on a LocalCluster started (and stopped) here."""
    import dask
    from distributed import Client, LocalCluster

    settings = {
        "distributed.scheduler.allowed-failures": engine.retries,
        "distributed.worker.daemon": False,  # a task may start processes of its own (xgboost's tracker)
        "distributed.admin.system-monitor.gil.enabled": False,
    }
    with dask.config.set(settings):
        if engine.scheduler:
            try:
                client = Client(engine.scheduler, timeout="15s")
            except (OSError, TimeoutError) as err:
                raise EngineError(
                    f"engine.scheduler {engine.scheduler}: no Dask scheduler answers ({err}); start one "
                    "(`dask scheduler` and `dask worker ADDRESS` on each machine) or set engine.scheduler: "
                    "null for a LocalCluster on this machine"
                ) from None
            try:
                yield client
            finally:
                client.close()
            return
        with (
            LocalCluster(
                n_workers=engine.local_workers,
                threads_per_worker=engine.threads_per_worker,
                processes=True,
                memory_limit=engine.memory_per_worker,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
                env=_worker_env(engine),
            ) as local,
            Client(local) as client,
        ):
            yield client


def _run(fn: Callable[..., Any], point: str, args: tuple) -> Any:
    result = fn(*args)
    fault(point)
    return result


def fault(name: str) -> None:
    """Send this process the signal of ``CARDLAB_FAULT`` when its point matches ``name`` (see above)."""
    spec = os.environ.get("CARDLAB_FAULT", "")
    if not spec or not fnmatch.fnmatchcase(name, spec.rpartition(":")[0]):
        return
    once = os.environ.get("CARDLAB_FAULT_ONCE")
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.Signals[spec.rpartition(":")[2]])


def map_tasks(
    client: Any,
    fn: Callable[..., Any],
    args: Sequence[tuple],
    *,
    name: str,
    on_done: Callable[[int], None] | None = None,
) -> list[Any]:
    """``[fn(*a) for a in args]`` as Dask tasks named ``<name>-<i>``; results in input order.

    ``on_done(i)`` is called as each task finishes (a progress bar). A task whose worker died more often than
    the engine's retries allow raises :class:`EngineError` naming it; on any exception (SIGTERM included) the
    tasks still pending are cancelled before it propagates."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    futures = [
        client.submit(_run, fn, f"{FAULT_PREFIX}{name}-{i}", a, key=f"{name}-{i}-{os.getpid()}", pure=False)
        for i, a in enumerate(args)
    ]
    index = {f.key: i for i, f in enumerate(futures)}
    try:
        for fut in as_completed(futures):
            if fut.status == "error":
                fut.result()  # raises the task's own exception
            if on_done is not None:
                on_done(index[fut.key])
        return client.gather(futures)
    except KilledWorker as err:
        raise EngineError(
            f"Dask task {err.task}: its worker died more than engine.retries times (out of memory? see "
            f"the worker logs of {client.scheduler.address}); raise engine.memory_per_worker or use "
            "smaller shards"
        ) from None
    finally:
        client.cancel([f for f in futures if not f.done()])


def run_tasks(
    engine: EngineParams,
    fn: Callable[..., Any],
    args: Sequence[tuple],
    *,
    name: str,
    on_done: Callable[[int], None] | None = None,
) -> list[Any]:
    """:func:`map_tasks` on a cluster opened (and closed) for this call."""
    with cluster(engine) as client:
        return map_tasks(client, fn, args, name=name, on_done=on_done)
