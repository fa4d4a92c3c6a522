"""Is the process that left something behind still running?

A *process token* ``host:pid:start`` names one process for good: the start time (psutil's create time, in
centiseconds) tells a live owner from a later process that reused its pid. cardlab stamps it on what a killed
process can leave behind — temporary output folders (:mod:`cardlab.artifacts`), MLflow runs
(:mod:`cardlab.tracking`), the Optuna study lock — so the next start can tell stale leftovers from the work
of a process that is still running, and only ever removes the former.
"""

from __future__ import annotations

import functools
import os
import socket

import psutil


@functools.cache
def host() -> str:
    return socket.gethostname()


def process_start(pid: int) -> int | None:
    """Start time of ``pid`` in centiseconds since the epoch, or None when no such (non-zombie) process."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return round(proc.create_time() * 100)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


_OWN: dict[int, int | None] = {}


def own_pid_start() -> tuple[int, int | None]:
    """This process's pid and start time (cached per pid, so a forked child gets its own)."""
    pid = os.getpid()
    if pid not in _OWN:
        _OWN[pid] = process_start(pid)
    return pid, _OWN[pid]


def token(pid: int | None = None) -> str:
    """The token of process ``pid`` (default: this process)."""
    if pid is None:
        pid, start = own_pid_start()
        return f"{host()}:{pid}:{start}"
    return f"{host()}:{pid}:{process_start(pid)}"


def alive(tok: str) -> bool:
    """True when the process named by ``tok`` is still running. A token from another host is presumed alive
    (it cannot be checked from here), a malformed one is not."""
    parts = tok.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    owner_host, pid, start = parts
    if owner_host != host():
        return True
    return str(process_start(int(pid))) == start


def pid_alive(pid: int, start: int | None = None) -> bool:
    """True when ``pid`` runs (and, if ``start`` is given, is the process that started then)."""
    now = process_start(pid)
    return now is not None and (start is None or now == start)
