"""Contracts of the repository itself: environment.yml mirrors pyproject, MLproject mirrors dvc.yaml,
every stage has a CLI verb, generated files stay out of git."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req.split("#")[0]).lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_norm(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {_norm(r) for r in pip if not r.startswith("-e")}
    assert listed == wanted, (
        f"only in environment.yml: {listed - wanted}; only in pyproject: {wanted - listed}"
    )
    pythons = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert pythons == ["python=3.11"]


def _dvc_commands() -> dict[str, str]:
    """Stage name -> command, with foreach stages expanded (name@item)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        if "foreach" in stage:
            for item in stage["foreach"]:  # a list of tasks, or a mapping task -> per-task settings
                out[f"{name}@{item}"] = stage["do"]["cmd"].replace("${item}", item).replace("${key}", item)
        else:
            out[name] = stage["cmd"]
    return out


def test_mlproject_and_dvc_commands_agree():
    mlproject = yaml.safe_load((REPO / "MLproject").read_text())["entry_points"]
    for stage, cmd in _dvc_commands().items():
        name, _, item = stage.partition("@")
        assert name in mlproject, f"dvc stage {name!r} has no MLproject entry point"
        ep = mlproject[name]
        command = ep["command"].format(task=item) if item else ep["command"]
        assert command == cmd, f"{stage}: MLproject runs {command!r}, dvc.yaml runs {cmd!r}"
    assert mlproject["pipeline"]["command"] == "dvc repro"


def test_every_stage_has_a_cli_verb():
    from typer.main import get_command

    from cardlab.cli import app

    verbs = set(get_command(app).commands)
    for stage in _dvc_commands():
        assert stage.split("@")[0] in verbs


def test_stage_params_are_real_sections():
    """Every params entry a DVC stage depends on exists in params.yaml (or is a task section)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        items = stage.get("foreach", [None])
        for item in items:
            for key in body.get("params", []):
                if isinstance(key, dict):  # `- params.yaml:` tracks the whole file (the check-params stage)
                    assert list(key) == ["params.yaml"], f"stage {name}: unexpected params entry {key}"
                    continue
                key = key.replace("${item}", item).replace("${key}", item) if item else key
                node = params
                for part in key.split("."):
                    assert part in node, f"stage {name}: params key {key!r} is not in params.yaml"
                    node = node[part]


def test_no_generated_files_tracked():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    bad = [
        f
        for f in files
        if f.endswith((".parquet", ".pkl", ".ubj", ".ipynb", ".db", ".journal"))
        or f.startswith(("mlartifacts/", "mlruns/", ".venv/"))
    ]
    assert not bad, f"generated files tracked by git: {bad}"
