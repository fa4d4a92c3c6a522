"""Which cardlab source files a piece of code can run: the static, transitive closure of its imports.

Read from the source with :mod:`ast` (every ``import``, including the lazy ones inside functions), never by
importing. Two consumers must agree on this set, so it has one home:

- ``tests/test_dvc_deps.py`` fails when a ``dvc.yaml`` stage omits a file its verb can import, so
  ``dvc status`` cannot call a stage current after its code changed;
- :mod:`cardlab.modeling.tuning` hashes the files an Optuna objective can run into the study's name, so a
  study is resumed only by the same code that started it.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "cardlab"
SRC = Path(__file__).resolve().parents[1]  # the folder holding the cardlab package


def module_file(module: str, src: Path = SRC) -> Path | None:
    """The source file of ``module`` (a package's ``__init__.py``), or None outside the package."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = src.joinpath(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _module_name(path: Path, src: Path) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path, src: Path) -> set[str]:
    """Modules named by the import statements of ``path`` (absolute names; ``from a import b`` gives both
    ``a`` and ``a.b``, since ``b`` may be a submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    this = _module_name(path, src)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def _with_parents(module: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a submodule runs every parent package's __init__."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def closure(roots: Iterable[str], src: Path = SRC) -> set[Path]:
    """Source files of the cardlab modules ``roots`` and of everything they import, transitively."""
    seen: set[Path] = set()
    todo = [m for r in roots for m in _with_parents(r)]
    while todo:
        path = module_file(todo.pop(), src)
        if path is None or path in seen:
            continue
        seen.add(path)
        for name in _imports(path, src):
            todo.extend(_with_parents(name))
    return seen


def code_digest(roots: Iterable[str], src: Path = SRC) -> str:
    """sha256 over the relative names and bytes of :func:`closure` (``roots``)."""
    h = hashlib.sha256()
    for path in sorted(closure(roots, src)):
        h.update(str(path.relative_to(src)).encode())
        h.update(hashlib.sha256(path.read_bytes()).hexdigest().encode())
    return h.hexdigest()
