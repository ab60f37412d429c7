"""The task runner every executor calls: one :class:`Workload` in, one :class:`TaskEvent` out.

Steps of :func:`execute_workload` (each try, in this order):

1. Route the try's logging, ``print`` output and tracebacks to ``workload.log_path``.
2. Load the DAG (import the DAG file once per file version, or build a classic
   task's DAG) and find the task.
3. Build the context; render the template fields and the output targets on a
   copy of the task, so a cached DAG is never changed by a try.
4. If the task has outputs and all of them exist (and ``force`` is off), report
   success without running: the work is already done.
5. Run ``execute`` (with ``execution_timeout`` when the runner is on the main thread).
6. Turn the result into XCom values (inline JSON, or a file under
   ``artifact_dir`` when big or not JSON) and the branch decisions into ``skip``.
7. Map exceptions to states: skip, reschedule, fail without retry, fail.

DAG-file loading for the parse subprocess is :func:`load_dag_file` /
:func:`import_dag_file`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from headwater.errors import (
    DagNotFoundError,
    HeadwaterError,
    SensorTimeoutError,
    TaskFailedError,
    TaskFailNoRetryError,
    TaskReschedule,
    TaskSkipError,
    TaskTimeoutError,
    TemplateError,
)
from headwater.executor.base import TaskEvent, Workload
from headwater.orchestration.baseoperator import TASK_LOGGER, BaseOperator
from headwater.orchestration.context import RETURN_KEY, RuntimeTaskInstance, build_context
from headwater.orchestration.dag import DAG, suggest
from headwater.orchestration.dagfile import DagImportResult, cached_dags, import_dag_file, load_dag_file
from headwater.orchestration.params import mask_secrets, secret_values
from headwater.orchestration.tasklog import mask_in_log, task_log
from headwater.orchestration.templating import render_template_fields
from headwater.orchestration.xcom_codec import encode_xcom

__all__ = ["DagImportResult", "execute_workload", "import_dag_file", "load_dag_file"]

MAX_REASON_CHARS = 300
ALREADY_COMPLETE = "already complete (outputs exist)"


def execute_workload(workload: Workload) -> TaskEvent:
    """Run one try of one task and report what happened. Never raises for task errors."""
    start = time.time()
    # Step 1: everything the try logs or prints goes to its log file.
    with task_log(workload.log_path) as log:
        key = workload.key
        log.info(
            "Starting %s.%s run=%s, try %d of %d",
            key.dag_id,
            key.task_id,
            key.run_id,
            key.try_number,
            workload.max_tries,
        )
        fields = _run(workload, log)
        log.info("Finished: %s%s", fields["state"], f" ({fields['reason']})" if fields.get("reason") else "")
    return TaskEvent(
        key=workload.key,
        start=start,
        end=time.time(),
        pid=os.getpid(),
        hostname=socket.gethostname(),
        **fields,
    )


def _load_dag(workload: Workload) -> DAG:
    if workload.kind == "classic":
        # Imported here: classic (Luigi-style) tasks are optional and live in their own module.
        from headwater.orchestration.classic import load_dag

        dag: DAG = load_dag(workload.fileloc, workload.classic_params)
        return dag
    dags = cached_dags(workload.fileloc)
    for found in dags:
        if found.dag_id == workload.key.dag_id:
            return found
    ids = [d.dag_id for d in dags]
    raise DagNotFoundError(
        f"DAG {workload.key.dag_id!r} is not defined in {workload.fileloc}.{suggest(workload.key.dag_id, ids)}",
        hint=f"the file defines: {', '.join(ids) or '(no DAGs)'}",
    )


def _run(workload: Workload, log: logging.Logger) -> dict[str, Any]:
    """Steps 2 to 7; returns the event fields (state, reason, xcom, skip, ...)."""
    rendered: dict[str, str] = {}
    task: BaseOperator | None = None
    context: dict[str, Any] = {}
    ti: RuntimeTaskInstance | None = None
    try:
        # Step 2: the DAG and the task.
        dag = _load_dag(workload)
        task = copy.copy(dag.get_task(workload.key.task_id))
        # Step 3: context, templates, output targets.
        ti = RuntimeTaskInstance(task, workload)
        context = build_context(task, dag, workload, ti)
        secrets = secret_values(dag.param_specs, context["params"])
        mask_in_log(secrets)
        rendered = _masked(render_template_fields(task, context), secrets)
        outputs = [t.render(context) if callable(getattr(t, "render", None)) else t for t in task.outputs]
        task.outputs = outputs
        context["outputs"] = outputs
        if outputs:
            rendered["outputs"] = ", ".join(repr(t) for t in outputs)
        # Step 4: outputs already there.
        if outputs and not workload.force and all(t.exists() for t in outputs):
            log.info("All outputs exist; not running the task: %s", rendered["outputs"])
            return {"state": "success", "reason": ALREADY_COMPLETE, "rendered": rendered}
        # Step 5: run.
        _callbacks(task.on_execute_callback, context, log)
        with _execution_timeout(task.execution_timeout.total_seconds() if task.execution_timeout else None):
            result = task.execute(context)
        # Step 6: results and branch decisions.
        if task.do_xcom_push and result is not None:
            if task.multiple_outputs:
                _push_multiple(task, ti, result)
            ti.xcom_push(RETURN_KEY, result)
        xcom = {
            key: encode_xcom(
                value,
                task_id=task.task_id,
                key=key,
                artifact_dir=workload.artifact_dir,
                inline_limit=workload.xcom_inline_limit,
            )
            for key, value in ti.pushed.items()
        }
        _callbacks(task.on_success_callback, context, log)
        return {"state": "success", "xcom": xcom, "skip": tuple(ti.skipped), "rendered": rendered}
    # Step 7: exceptions to states.
    except TaskSkipError as exc:
        log.info("Task skipped: %s", exc.message)
        return {"state": "skipped", "reason": exc.message or "skipped", "rendered": rendered}
    except TaskReschedule as exc:
        log.info("Rescheduled: next poke at %s", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exc.reschedule_at)))
        return {"state": "up_for_reschedule", "reschedule_at": exc.reschedule_at, "rendered": rendered}
    except SensorTimeoutError as exc:
        if task is not None and getattr(task, "soft_fail", False):
            log.info("Sensor timed out; soft_fail is set, so the task is skipped: %s", exc.message)
            return {"state": "skipped", "reason": exc.message, "rendered": rendered}
        return _failed(exc, exc.message, False, task, context, workload, log, rendered)
    except TaskFailNoRetryError as exc:
        return _failed(exc, exc.message, False, task, context, workload, log, rendered)
    except TemplateError as exc:
        # The same template fails the same way on every try.
        return _failed(exc, _one_line(exc), False, task, context, workload, log, rendered)
    except TaskFailedError as exc:
        return _failed(exc, exc.message, True, task, context, workload, log, rendered)
    except (Exception, SystemExit) as exc:
        return _failed(exc, _one_line(exc), True, task, context, workload, log, rendered)
    finally:
        if ti is not None:
            ti.close()


def _masked(rendered: dict[str, str], secrets: set[str]) -> dict[str, str]:
    """Rendered fields as recorded (DB, UI): values of secret params replaced by ``***``."""
    return {k: mask_secrets(v, secrets) for k, v in rendered.items()} if secrets else rendered


def _push_multiple(task: BaseOperator, ti: RuntimeTaskInstance, result: Any) -> None:
    if not isinstance(result, dict) or not all(isinstance(k, str) for k in result):
        raise TaskFailNoRetryError(
            f"task {task.task_id!r} has multiple_outputs but returned {type(result).__name__}; "
            "it must return a dict with string keys"
        )
    for key, value in result.items():
        ti.xcom_push(key, value)


def _one_line(exc: BaseException) -> str:
    """``"ExcType: message"`` on one line, shortened, for the event's reason."""
    message = exc.message if isinstance(exc, HeadwaterError) else str(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def _failed(
    exc: BaseException,
    reason: str,
    retryable: bool,
    task: BaseOperator | None,
    context: dict[str, Any],
    workload: Workload,
    log: logging.Logger,
    rendered: dict[str, str],
) -> dict[str, Any]:
    reason = " ".join(reason.split())[:MAX_REASON_CHARS] or type(exc).__name__
    log.error("Task failed: %s\n%s", reason, "".join(traceback.format_exception(exc)).rstrip())
    if task is not None and context:
        context["exception"] = exc
        will_retry = retryable and workload.key.try_number < workload.max_tries
        _callbacks(task.on_retry_callback if will_retry else task.on_failure_callback, context, log)
    return {"state": "failed", "reason": reason, "retryable": retryable, "rendered": rendered}


def _callbacks(callbacks: Any, context: dict[str, Any], log: logging.Logger) -> None:
    """Call a task's callback(s) with the context; a failing callback is logged, not fatal."""
    if callbacks is None:
        return
    for callback in callbacks if isinstance(callbacks, list | tuple) else [callbacks]:
        try:
            callback(context)
        except Exception:
            log.exception("Callback %r failed", callback)


@contextlib.contextmanager
def _execution_timeout(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TaskTimeoutError` in the block after ``seconds`` (SIGALRM, main thread only).

    Elsewhere the executor's own timeout (``workload.timeout``) stops the try. A
    timer the caller armed (an executor's, pytest-timeout's) is left alone when it
    fires first, and otherwise re-armed afterwards with the time it has left.
    """
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return
    outer_left, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    if outer_left and outer_left <= seconds:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise TaskTimeoutError(f"timed out after {seconds:g}s (execution_timeout)")

    previous: Callable[..., Any] | int | None = signal.signal(signal.SIGALRM, on_alarm)
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if outer_left:
            left = outer_left - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), outer_interval)


def task_logger() -> logging.Logger:
    """The logger whose records go to the running try's log file."""
    return logging.getLogger(TASK_LOGGER)
