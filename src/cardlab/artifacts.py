"""Writing stage outputs safely and reproducibly.

Every stage writes into a temporary sibling path and renames it into place only on success, so a
failed or killed stage leaves the previous outputs intact. A temporary path carries its owner's pid and start
time (``.<name>.tmp-<pid>-<start>-<random>``): a process killed by SIGKILL cannot remove it, so the next
writer into the same folder sweeps every temporary entry whose owner is gone (never one whose owner still
runs). Parquet files are written deterministically (zstd, fixed row-group size, no timestamps), so the same
inputs give byte-identical files and DVC sees nothing to do on a re-run.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cardlab import liveness
from cardlab.errors import CardlabError, InputDataError, MissingInputError

PARQUET_OPTS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "row_group_size": 1_000_000,
    "write_statistics": True,
    "store_schema": True,
}
# .<name>.tmp-<pid>-<start centiseconds>-<8 hex>; the older form .<name>.tmp-<8 hex> had no owner
_TMP = re.compile(r"^\..+\.tmp-(?:(?P<pid>\d+)-(?P<start>\d+)-)?[0-9a-f]{8}$")
# OS errors that are about the place being written, not about cardlab: reported as one line naming the path
SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
ACCESS_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}


class OutputError(CardlabError, OSError):
    """An output path cannot be written; the message names the path."""


def _tmp_sibling(path: Path) -> Path:
    pid, start = liveness.own_pid_start()
    return path.with_name(f".{path.name}.tmp-{pid}-{start}-{uuid.uuid4().hex[:8]}")


def is_stale_tmp(entry: Path) -> bool:
    """True for a temporary output entry whose owner process is gone (or that has no recorded owner)."""
    m = _TMP.match(entry.name)
    if m is None:
        return False
    if m["pid"] is None:
        return True
    return not liveness.pid_alive(int(m["pid"]), int(m["start"]))


def sweep_stale(folder: Path) -> list[Path]:
    """Remove the temporary entries in ``folder`` left by killed writers; return what was removed."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if is_stale_tmp(entry):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _out_of_space(err: BaseException, path: Path) -> OutputError | None:
    """An OutputError naming ``path`` when ``err`` is a full disk or quota (libraries often omit the file)."""
    if isinstance(err, OSError) and not isinstance(err, OutputError) and err.errno in SPACE_ERRNOS:
        return OutputError(
            f"no space left on the device while writing {path}: free space there (or choose another --out) "
            "and re-run; earlier outputs are intact, the partial ones were removed"
        )
    return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def check_writable(path: Path, kind: Literal["dir", "file"] = "dir") -> None:
    """Fail early, naming the path, when ``path`` (a folder or a file, per ``kind``) cannot be written:
    its parent cannot be created or written, or something of the other kind is in the way.

    Call it before expensive work so an unwritable ``--out`` is reported in a second, not after minutes."""
    path = Path(path)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(
            f"cannot create output folder {parent}: a file of that name is in the way"
        ) from None
    except NotADirectoryError:
        raise OutputError(f"cannot create output folder {parent}: a parent of it is a file") from None
    except OSError as err:
        raise OutputError(f"cannot create output folder {parent}: {err.strerror}") from None
    probe = _tmp_sibling(path)
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as err:
        raise OutputError(
            f"output folder {parent} is not writable ({err.strerror}); choose another --out or fix its permissions"
        ) from None
    if kind == "dir" and path.exists() and not path.is_dir():
        raise OutputError(
            f"output path {path} exists and is a file, expected a folder (remove it or pick another)"
        )
    if kind == "file" and path.is_dir():
        raise OutputError(
            f"output path {path} exists and is a folder, expected a file (remove it or pick another)"
        )


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success replace ``path`` with it, on failure remove it.

    The old folder is moved aside first and deleted only after the new one is in place. Temporary entries
    that killed writers left beside ``path`` are swept first.
    """
    path = Path(path)
    check_writable(path, "dir")
    sweep_stale(path.parent)
    tmp = _tmp_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        full = _out_of_space(err, path)
        if full is not None:
            raise full from None
        raise
    fault_point(f"atomic_dir.{path.name}")  # the new folder is complete, not yet in place
    old = None
    if path.exists():
        old = _tmp_sibling(path)
        path.rename(old)
    tmp.rename(path)
    if old is not None:
        _remove(old)


@contextlib.contextmanager
def atomic_children(path: str | Path) -> Iterator[Path]:
    """Like :func:`atomic_dir`, but for a folder shared with other stages (e.g. ``data/``).

    Yields a temporary folder; on success each of its top-level entries replaces the entry of the same
    name under ``path`` (other entries of ``path``, such as ``data/features`` or DVC's ``.gitignore``, are
    left alone). On failure nothing under ``path`` changes. Temporary entries that killed writers left in
    ``path`` (e.g. a ``.staging.tmp-*`` folder) are swept first.
    """
    path = Path(path)
    check_writable(path / "staging", "dir")
    sweep_stale(path)
    tmp = _tmp_sibling(path / "staging")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        full = _out_of_space(err, path)
        if full is not None:
            raise full from None
        raise
    for child in sorted(tmp.iterdir()):
        target = path / child.name
        old = None
        if target.exists():
            old = _tmp_sibling(target)
            target.rename(old)
        child.rename(target)
        if old is not None:
            _remove(old)
    shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it into place on success."""
    path = Path(path)
    check_writable(path, "file")
    sweep_stale(path.parent)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        full = _out_of_space(err, path)
        if full is not None:
            raise full from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def require_outputs(root: str | Path, needs: dict[str, str]) -> None:
    """Raise FileNotFoundError naming every missing pipeline output (``{path: stage}``, paths relative to
    ``root``) and the ``dvc repro`` stage that makes it: a notebook's first cell, before it reads anything."""
    root = Path(root)
    missing = [f"  {p}  <- run `dvc repro {s}`" for p, s in needs.items() if not (root / p).exists()]
    if missing:
        raise FileNotFoundError(f"pipeline outputs missing under {root}:\n" + "\n".join(missing))


def read_json(path: str | Path, *, what: str, remedy: str) -> Any:
    """Parse the JSON file ``path`` (``what`` it is, e.g. "the model's feature list"); a missing or malformed
    file raises an error that names the path and the ``remedy`` (e.g. "re-run `cardlab train credit`")."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingInputError(f"{path} ({what}) is missing: {remedy}") from None
    except UnicodeDecodeError as err:
        raise InputDataError(f"{path} ({what}) is not UTF-8 text ({err.reason}): {remedy}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputDataError(
            f"{path} ({what}) is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}): {remedy}"
        ) from None


def install_sigterm_handler() -> None:
    """Turn SIGTERM into :class:`cardlab.errors.Terminated` so every ``with`` block unwinds (temporary
    outputs removed, MLflow runs marked KILLED, worker processes stopped)."""
    from cardlab.errors import Terminated

    def _raise(signum: int, frame: Any) -> None:
        raise Terminated(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, _raise)


def fault_point(name: str) -> None:
    """Fault injection for tests/test_faults.py: when ``CARDLAB_FAULT`` is ``<name>:<SIGNAL>`` (e.g.
    ``train.model_written:SIGKILL``, ``tune.trial.0:SIGSTOP``), this process sends itself that signal here,
    exactly as a machine or an operator might at this moment. A no-op otherwise (one environment lookup)."""
    spec = os.environ.get("CARDLAB_FAULT")
    if spec and spec.rpartition(":")[0] == name:
        os.kill(os.getpid(), signal.Signals[spec.rpartition(":")[2]])


def write_parquet(table: pa.Table | Any, path: str | Path) -> Path:
    """Write a pyarrow Table, pandas or polars DataFrame to Parquet deterministically (not atomic by itself;
    call it inside :func:`atomic_dir`)."""
    if not isinstance(table, pa.Table):
        if hasattr(table, "to_arrow"):  # polars
            table = table.to_arrow()
        else:  # pandas
            table = pa.Table.from_pandas(table, preserve_index=False)
    table = table.replace_schema_metadata(None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, **PARQUET_OPTS)
    return path


def write_json(obj: Any, path: str | Path) -> Path:
    """Write JSON with sorted keys and a trailing newline, atomically."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


# PNG metadata without the matplotlib version or a timestamp: the same figure gives the same bytes
PNG_META: dict[str, Any] = {"Software": None}


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save a matplotlib figure as a deterministic PNG (100 dpi, :data:`PNG_META`)."""
    fig.savefig(path, dpi=100, metadata=PNG_META)
    return Path(path)


def write_csv(df: Any, path: str | Path, *, float_format: str | None = "%.6g") -> Path:
    """Write a pandas DataFrame as CSV with a fixed float format and ``\\n`` line ends (no index); a polars
    DataFrame with 6 decimals and ISO dates. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(df, "write_csv"):  # polars
        df.write_csv(path, float_precision=6, date_format="%Y-%m-%d")
    else:
        df.to_csv(path, index=False, float_format=float_format, lineterminator="\n")
    return path


def rounded(obj: Any) -> Any:
    """metrics.json's number format: floats rounded to 6 decimals (NaN/inf -> None), through dicts and lists;
    numpy integers become ints."""
    if isinstance(obj, bool | str) or obj is None:
        return obj
    if isinstance(obj, dict):
        return {k: rounded(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v) for v in obj]
    if isinstance(obj, np.integer | int):
        return int(obj)
    if isinstance(obj, np.floating | float):
        return round(float(obj), 6) if math.isfinite(float(obj)) else None
    return obj


def rounded_significant(obj: Any) -> Any:
    """The explain stage's number format: floats to 6 significant digits (NaN/inf -> None), through dicts and
    lists; numpy scalars become Python numbers. (Explanations span magnitudes from 1e-6 to 1e2, so they keep
    significant digits where metrics keep decimals.)"""
    if isinstance(obj, float):
        return None if not np.isfinite(obj) else float(f"{obj:.6g}")
    if isinstance(obj, dict):
        return {k: rounded_significant(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded_significant(v) for v in obj]
    if isinstance(obj, np.generic):
        return rounded_significant(obj.item())
    return obj


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dir_digest(path: str | Path) -> str:
    """Content hash of a file or folder (relative names + bytes), independent of mtimes."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(file_digest(f).encode())
    return h.hexdigest()
