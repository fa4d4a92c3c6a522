"""The developer tooling agrees with itself: pre-commit runs the ruff that uv.lock pins for `make lint`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RUFF_HOOKS = "https://github.com/astral-sh/ruff-pre-commit"


def _locked_version(name: str) -> str:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    versions = {p["version"] for p in lock["package"] if p["name"] == name and "version" in p}
    assert len(versions) == 1, f"uv.lock: expected one locked version of {name}, found {sorted(versions)}"
    return versions.pop()


def test_precommit_ruff_matches_uv_lock():
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    revs = [r["rev"] for r in config["repos"] if r["repo"].rstrip("/") == RUFF_HOOKS]
    assert len(revs) == 1, f".pre-commit-config.yaml: expected one {RUFF_HOOKS} entry, found {len(revs)}"
    locked = _locked_version("ruff")
    assert revs[0].removeprefix("v") == locked, (
        f".pre-commit-config.yaml pins ruff-pre-commit {revs[0]}, uv.lock has ruff {locked}: "
        f"set its rev to v{locked}"
    )
