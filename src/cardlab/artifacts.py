"""Writing stage outputs safely and reproducibly.

Every stage writes into a temporary sibling path and renames it into place only on success, so a
failed or killed stage leaves the previous outputs intact. Parquet files are written deterministically
(zstd, fixed row-group size, no timestamps), so the same inputs give byte-identical files and DVC sees
nothing to do on a re-run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_OPTS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "row_group_size": 1_000_000,
    "write_statistics": True,
    "store_schema": True,
}


class OutputError(OSError):
    """An output path cannot be written; the message names the path."""


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def check_writable(path: Path) -> None:
    """Fail early, naming the path, when ``path``'s parent cannot be created or written."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create output folder {parent}: {err.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder {parent} is not writable")
    if path.exists() and not path.is_dir() and path.suffix == "":
        raise OutputError(f"output path {path} exists and is a file, expected a folder")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success replace ``path`` with it, on failure remove it.

    The old folder is moved aside first and deleted only after the new one is in place.
    """
    path = Path(path)
    check_writable(path)
    tmp = _tmp_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = _tmp_sibling(path)
        path.rename(old)
    tmp.rename(path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_children(path: str | Path) -> Iterator[Path]:
    """Like :func:`atomic_dir`, but for a folder shared with other stages (e.g. ``data/``).

    Yields a temporary folder; on success each of its top-level entries replaces the entry of the same
    name under ``path`` (other entries of ``path``, such as ``data/features`` or DVC's ``.gitignore``, are
    left alone). On failure nothing under ``path`` changes.
    """
    path = Path(path)
    check_writable(path / "x")
    path.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path / "staging")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for child in sorted(tmp.iterdir()):
        target = path / child.name
        old = None
        if target.exists():
            old = _tmp_sibling(target)
            target.rename(old)
        child.rename(target)
        if old is not None:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
    shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it into place on success."""
    path = Path(path)
    check_writable(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
