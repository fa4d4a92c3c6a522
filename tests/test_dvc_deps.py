"""DVC stage deps cannot drift from the code: each stage lists every cardlab source file its verb can import.

For each stage of dvc.yaml (foreach expanded) the verb its ``cmd`` runs is looked up in ``cli.py``; the
imports of that verb function, of ``cli.py``'s module level and of its helpers, plus the task module that
``get_task(<task>)`` loads, are closed transitively over the package's source
(:func:`cardlab.codedeps.closure`, the same closure the Optuna study identity hashes). Every file of that
closure must be covered by a ``deps`` entry (the file itself or a folder above it), or ``dvc status`` could
call a stage current after code it runs has changed (issue 20: ``tune@*`` omitted ``modeling/screen.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from cardlab import taskspec
from cardlab.codedeps import SRC, closure

REPO = Path(__file__).resolve().parents[1]
CLI = SRC / "cardlab" / "cli.py"


def _stages() -> dict[str, dict]:
    """Stage name -> {cmd, deps} with foreach expanded (``${item}`` / ``${key}`` substituted)."""
    out = {}
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        if "foreach" not in stage:
            out[name] = {"cmd": stage["cmd"], "deps": list(stage.get("deps", []))}
            continue
        for item in stage["foreach"]:
            # a dict foreach gives each key fields, read as ${item.<field>} (e.g. the task's code path)
            fields = stage["foreach"][item] if isinstance(stage["foreach"], dict) else {}

            def sub(text: str, item: str = item, fields: dict = fields) -> str:
                for name, value in fields.items():
                    text = text.replace(f"${{item.{name}}}", str(value))
                return text.replace("${item}", item).replace("${key}", item)

            body = stage["do"]
            out[f"{name}@{item}"] = {"cmd": sub(body["cmd"]), "deps": [sub(d) for d in body.get("deps", [])]}
    return out


def _imports_of(nodes: list[ast.AST]) -> set[str]:
    found = set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import):
                found.update(a.name for a in sub.names)
            elif isinstance(sub, ast.ImportFrom) and sub.module:
                found.add(sub.module)
                found.update(f"{sub.module}.{a.name}" for a in sub.names)
    return found


def _is_command(fn: ast.FunctionDef) -> bool:
    return any(
        isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command"
        for d in fn.decorator_list
    )


def _names_used(fn: ast.FunctionDef) -> set[str]:
    """Plain names the function calls or decorates itself with (its helpers in cli.py)."""
    names = {n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    names |= {d.id for d in fn.decorator_list if isinstance(d, ast.Name)}
    return names


def verb_roots(cmd: str) -> set[str]:
    """The modules ``cardlab <verb> ...`` can import: cli.py's module-level imports, the verb's own, and
    those of the cli.py helpers it calls (transitively)."""
    argv = cmd.split()
    assert argv[0] == "cardlab", f"stage command {cmd!r} does not run the cardlab CLI"
    verb = argv[1].replace("-", "_")
    tree = ast.parse(CLI.read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert verb in functions, f"cli.py has no function for verb {argv[1]!r}"
    module_level = [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.ClassDef)]
    used, todo = set(), [verb]
    while todo:
        name = todo.pop()
        if name in used:
            continue
        used.add(name)
        todo.extend(
            n for n in _names_used(functions[name]) if n in functions and not _is_command(functions[n])
        )
    roots = _imports_of(module_level) | _imports_of([functions[n] for n in used])
    if len(argv) > 2 and argv[2] in taskspec.names():
        # importlib dispatch through the registry: the task's module and every hook module it names
        spec = taskspec.get(argv[2])
        hooks = (spec.explain_model_hook, spec.extra_texts)
        roots |= {h.partition(":")[0] for h in hooks if h}
        if "get_task" in {n for fn in used for n in _names_used(functions[fn])}:
            roots.add(spec.module)
    return roots


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


STAGES = _stages()


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_the_code_its_verb_imports(stage):
    spec = STAGES[stage]
    files = closure(verb_roots(spec["cmd"])) | {CLI}  # cli.py itself, not every verb it imports
    missing = sorted(str(p.relative_to(REPO)) for p in files if not _covered(p, spec["deps"]))
    assert not missing, f"dvc.yaml stage {stage} runs code it does not list in deps; add: {missing}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_exist(stage):
    absent = [d for d in STAGES[stage]["deps"] if d.startswith("src/") and not (REPO / d).exists()]
    assert not absent, f"dvc.yaml stage {stage} lists source paths that do not exist: {absent}"


def test_the_closure_sees_what_issue_20_found():
    """The check is not vacuous: the tune verb reaches the screen and the artifact writer."""
    files = {str(p.relative_to(SRC)) for p in closure(verb_roots("cardlab tune credit"))}
    assert {"cardlab/modeling/screen.py", "cardlab/artifacts.py", "cardlab/tasks/credit.py"} <= files
    assert "cardlab/tasks/churn.py" not in files


def test_dvc_yaml_runs_every_registered_task():
    """The task stages' ``foreach`` lists are the registry's built-in tasks, in its order."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name in ("tune", "train", "evaluate", "explain"):
        items = stages[name]["foreach"]
        assert list(items) == list(taskspec.BUILT_IN_NAMES), f"dvc.yaml {name}: foreach {list(items)}"
