"""The exceptions headwater raises.

Every error derives from :class:`HeadwaterError`. User-fixable errors (a bad DAG,
a bad argument) derive from :class:`UserError`; failures of the machinery around
the user's code (database, workers) derive from :class:`InfrastructureError`.
Messages say what happened, with the values, and what to do.
"""

from __future__ import annotations


class HeadwaterError(Exception):
    """Root of every error headwater raises.

    ``hint`` is a short sentence telling the user what to do next; the CLI prints
    it under the message.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class UserError(HeadwaterError):
    """Something the user wrote or asked for is wrong and can be fixed by them."""


class InfrastructureError(HeadwaterError):
    """Something around the user's code failed: the database, a worker, the disk."""


class DagDefinitionError(UserError):
    """A DAG or task is defined wrongly (duplicate id, bad argument, bad schedule)."""


class CycleError(DagDefinitionError):
    """Task dependencies form a cycle; the message names it."""


class DagNotFoundError(UserError):
    """No DAG with the asked id is known."""


class TaskNotFoundError(UserError):
    """No task with the asked id exists in the DAG."""


class DagImportError(UserError):
    """A DAG file could not be imported (syntax error, import error, timeout)."""


class TemplateError(UserError):
    """A templated field could not be rendered."""


class StoreError(InfrastructureError):
    """The metadata database failed or is not initialised."""


class ExecutorError(InfrastructureError):
    """The executor or one of its workers failed."""


class TaskFailedError(HeadwaterError):
    """Raised by user code (or by headwater on its behalf) to fail a task try."""


class TaskFailNoRetryError(TaskFailedError):
    """Fail the task without using its remaining retries."""


class TaskSkipError(HeadwaterError):
    """Raised inside a task to mark it ``skipped`` instead of failed."""


class SensorTimeoutError(TaskFailedError):
    """A sensor did not succeed before its timeout."""


class TaskTimeoutError(TaskFailedError):
    """A task ran past its ``execution_timeout``."""


class TaskReschedule(HeadwaterError):
    """Raised by a sensor in ``reschedule`` mode: free the worker slot, poke again at ``reschedule_at``.

    ``reschedule_at`` is a UNIX timestamp.
    """

    def __init__(self, reschedule_at: float) -> None:
        super().__init__(f"reschedule at {reschedule_at}")
        self.reschedule_at = reschedule_at
