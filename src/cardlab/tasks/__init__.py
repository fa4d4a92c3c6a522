"""One module per research task: its label, data, objective, metrics and decision policy.

Each task module exposes ``tune(params, features_root, out)``, ``train(...)`` and
``evaluate(params, features_root, oracle, out)``; the CLI dispatches to them by name.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from cardlab.config import TASKS


def get_task(name: str) -> ModuleType:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    try:
        return importlib.import_module(f"cardlab.tasks.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"cardlab.tasks.{name}":
            raise LookupError(f"task {name!r} is not implemented yet (see the open issues)") from None
        raise
