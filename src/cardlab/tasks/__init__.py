"""The research tasks' code: one module (or package) per task with its label handling, objective, metrics and
decision policy.

What a task *is* (frame, registered model, boosters, model card, decision rule) is data in
:mod:`cardlab.taskspec`; its module exposes ``tune(params, features_root, out)``, ``train(...)`` and
``evaluate(params, features_root, oracle, out, *, contract)`` (``contract``: the function computing the
explanation keys of ``metrics.json``, passed in by the CLI so that tasks never import ``explain``).
"""

from __future__ import annotations

from types import ModuleType

from cardlab import taskspec


def get_task(name: str) -> ModuleType:
    """The module implementing the registered task ``name``."""
    return taskspec.get(name).implementation()
