"""The failures cardlab anticipates, one type each.

``cardlab <verb>`` turns a :class:`CardlabError` into one red line naming the path or key that is wrong and
what to do, with exit code 2; every other exception keeps its traceback (an unanticipated error is a bug to
read, not a message to hide). The types also subclass the builtin a caller would expect (a missing input is
a ``FileNotFoundError``, a malformed one a ``ValueError``), so ``except FileNotFoundError`` keeps working.
"""

from __future__ import annotations


class CardlabError(Exception):
    """An anticipated failure; the message names the thing that is wrong and what would be right."""


class MissingInputError(CardlabError, FileNotFoundError):
    """An input file or folder a stage needs does not exist (the message says which stage writes it)."""


class InputDataError(CardlabError, ValueError):
    """An input exists but is unreadable, truncated or violates its contract (the message names the path)."""


class RawDataError(InputDataError):
    """The raw world is missing or malformed; the message names the table/column and what was expected."""


class ModelFileError(InputDataError):
    """A trained model file cannot be loaded or differs from what the train stage wrote."""


class StudyBusyError(CardlabError):
    """Another process holds the lock of the Optuna study this process would tune."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived. A ``KeyboardInterrupt`` so that every ``with`` block unwinds exactly as on Ctrl-C:
    temporary outputs are removed, MLflow runs end as KILLED, worker processes are stopped."""


class RegistryError(CardlabError, LookupError):
    """The MLflow model registry lacks what was asked for (e.g. no challenger to promote)."""


class EngineError(CardlabError, RuntimeError):
    """The distributed engine cannot run the work: its scheduler is unreachable, or a task kept failing
    (every retry included); the message names the scheduler or the task."""


class TrackingServerError(CardlabError, ConnectionError):
    """The MLflow tracking server (``MLFLOW_TRACKING_URI``) does not answer; the stage stops before it
    replaces any output it would log."""
