"""Shared fixtures: the pipeline outputs that slow tests (pipeline, notebooks) read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _root() -> Path:
    env = os.environ.get("CARDLAB_ROOT")
    return Path(env).resolve() if env else REPO


def _stale(root: Path) -> bool:
    """True when dvc.lock is absent, lacks a stage of dvc.yaml, or lists an output that does not exist."""
    import yaml

    lock_file = root / "dvc.lock"
    if not lock_file.exists():
        return True
    locked = (yaml.safe_load(lock_file.read_text()) or {}).get("stages", {}) or {}
    declared = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages", {}) or {}
    names = set()
    for name, stage in declared.items():
        items = stage.get("foreach") if isinstance(stage, dict) else None
        if isinstance(items, list):
            names |= {f"{name}@{item}" for item in items}
        elif isinstance(items, dict):
            names |= {f"{name}@{key}" for key in items}
        else:
            names.add(name)
    if names - set(locked):
        return True
    outs = [root / o["path"] for st in locked.values() for o in (st.get("outs") or []) if "path" in o]
    return any(not p.exists() for p in outs)


@pytest.fixture(scope="session")
def pipeline_root() -> Path:
    """The tree the notebooks read; runs ``dvc repro`` there when dvc.lock outputs are missing."""
    root = _root()
    if (root / "dvc.yaml").exists() and _stale(root):
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        if root == REPO:
            env.pop("CARDLAB_ROOT", None)
        dvc = shutil.which("dvc", path=env["PATH"])
        if dvc is None:
            pytest.fail("dvc is not installed in the venv; run `make venv-dev` first")
        proc = subprocess.run([dvc, "repro"], cwd=root, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"`dvc repro` failed in {root}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return root
