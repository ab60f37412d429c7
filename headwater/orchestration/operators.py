"""The standard operators: Python, Bash, Empty, branching and short-circuiting.

They behave as Airflow 2's: a Python callable receives the context entries it
names in its signature (or all of them through ``**kwargs``); a bash command runs
in ``bash -c`` with its output streamed line by line into the task log and its
last line returned; a branch skips the direct downstream tasks it did not choose;
a short-circuit skips what follows when its callable returns a falsy value.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from headwater.errors import DagDefinitionError, TaskFailedError, TaskSkipError
from headwater.orchestration.baseoperator import BaseOperator
from headwater.orchestration.context import Context


@functools.lru_cache(maxsize=1024)
def _parameters(func: Callable[..., Any]) -> Mapping[str, inspect.Parameter]:
    """``inspect.signature`` is slow (~20 us) and a callable's signature never changes."""
    return inspect.signature(func).parameters


def determine_kwargs(func: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``func`` accepts from ``kwargs`` (all of them with ``**kwargs``).

    Parameters already filled by position from ``args`` are left out, as are
    positional-only ones.
    """
    try:
        try:
            params = _parameters(func)
        except TypeError:  # an unhashable callable: ask without the cache
            params = inspect.signature(func).parameters
    except (TypeError, ValueError):  # builtins without a signature: pass nothing extra
        return {}
    positional = [p.name for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    filled = set(positional[: len(args)])
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return {k: v for k, v in kwargs.items() if k not in filled}
    usable = {name for name, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - filled
    return {k: v for k, v in kwargs.items() if k in usable}


class EmptyOperator(BaseOperator):
    """Does nothing; used to group or join branches."""

    is_empty_operator = True

    def execute(self, context: Context) -> None:
        return None


class PythonOperator(BaseOperator):
    """Calls ``python_callable(*op_args, **op_kwargs)`` plus the context entries it names."""

    template_fields: Sequence[str] = ("templates_dict", "op_args", "op_kwargs")

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        templates_dict: dict[str, Any] | None = None,
        show_return_value_in_logs: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not callable(python_callable):
            raise DagDefinitionError(
                f"python_callable of task {self.task_id!r} must be callable, got {python_callable!r}"
            )
        self.python_callable = python_callable
        self.op_args: list[Any] = list(op_args or [])
        self.op_kwargs: dict[str, Any] = dict(op_kwargs or {})
        self.templates_dict = templates_dict
        self.show_return_value_in_logs = show_return_value_in_logs

    def execute(self, context: Context) -> Any:
        context["templates_dict"] = self.templates_dict
        kwargs = determine_kwargs(self.python_callable, self.op_args, {**context, **self.op_kwargs})
        result = self.python_callable(*self.op_args, **kwargs)
        if self.show_return_value_in_logs:
            self.log.info("Done. Returned value was: %.1000r", result)
        else:
            self.log.info("Done. Returned value not shown")
        return result


def _downstream_to_skip(task: BaseOperator, chosen: Iterable[str]) -> list[str]:
    """Direct downstream tasks not chosen and not reachable from a chosen task (Airflow's rule).

    A join task right after the branch that is also downstream of a chosen task is
    kept: it should run after the chosen branch, not be skipped.
    """
    dag = task.dag
    chosen = set(chosen)
    invalid = sorted(c for c in chosen if not dag.has_task(c))
    if invalid:
        raise TaskFailedError(
            f"branch task {task.task_id!r} chose task ids that are not in DAG {dag.dag_id!r}: {', '.join(invalid)}"
        )
    reachable: set[str] = set()
    for tid in chosen:
        reachable |= dag.get_task(tid).get_flat_relative_ids(upstream=False)
    return [t.task_id for t in task.downstream_list if t.task_id not in chosen | reachable]


def _branch_ids(value: Any, task_id: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TaskFailedError(f"branch task {task_id!r} must return a task id, a list of task ids or None, got {value!r}")


class BranchPythonOperator(PythonOperator):
    """Runs a callable that returns the task id(s) to follow; other direct downstream tasks are skipped."""

    def execute(self, context: Context) -> Any:
        result = super().execute(context)
        chosen = _branch_ids(result, self.task_id)
        skip = _downstream_to_skip(self, chosen)
        self.log.info("Following branch %s; skipping %s", chosen, skip)
        self.skip_tasks(context, skip)
        return result


class ShortCircuitOperator(PythonOperator):
    """Continues when the callable returns a truthy value, otherwise skips downstream tasks.

    With ``ignore_downstream_trigger_rules=True`` (the default) every task
    downstream is skipped; with ``False`` only the direct downstream tasks are, and
    tasks further down follow their own trigger rules.
    """

    def __init__(
        self, *, python_callable: Callable[..., Any], ignore_downstream_trigger_rules: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(python_callable=python_callable, **kwargs)
        self.ignore_downstream_trigger_rules = ignore_downstream_trigger_rules

    def execute(self, context: Context) -> Any:
        condition = super().execute(context)
        if condition:
            self.log.info("Condition is truthy: downstream tasks proceed")
            return condition
        if self.ignore_downstream_trigger_rules:
            wanted = self.get_flat_relative_ids(upstream=False)
        else:
            wanted = self.downstream_task_ids
        skip = [tid for tid in self.dag.task_dict if tid in wanted]
        self.log.info("Condition is falsy (%r): skipping %s", condition, skip)
        self.skip_tasks(context, skip)
        return condition


class BashOperator(BaseOperator):
    """Runs ``bash -c bash_command``; the last line of output is the task's result.

    Output (stdout and stderr) goes to the task log line by line. A non-zero exit
    fails the task, except ``skip_on_exit_code`` (99 by default) which skips it.
    ``env`` replaces the environment unless ``append_env`` is true. A command
    ending in ``.sh`` or ``.bash`` names a script template next to the DAG file.
    """

    template_fields: Sequence[str] = ("bash_command", "env", "cwd")
    template_ext: Sequence[str] = (".sh", ".bash")

    def __init__(
        self,
        *,
        bash_command: str,
        env: dict[str, str] | None = None,
        append_env: bool = False,
        output_encoding: str = "utf-8",
        skip_on_exit_code: int | Collection[int] | None = 99,
        cwd: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bash_command = bash_command
        self.env = env
        self.append_env = append_env
        self.output_encoding = output_encoding
        if skip_on_exit_code is None:
            self.skip_on_exit_code: frozenset[int] = frozenset()
        elif isinstance(skip_on_exit_code, int):
            self.skip_on_exit_code = frozenset({skip_on_exit_code})
        else:
            self.skip_on_exit_code = frozenset(skip_on_exit_code)
        self.cwd = cwd

    def _environment(self, context: Context) -> dict[str, str]:
        if self.env is None:
            env = dict(os.environ)
        elif self.append_env:
            env = {**os.environ, **self.env}
        else:
            env = dict(self.env)
        ti = context.get("ti")
        env.update(
            {
                "HEADWATER_CTX_DAG_ID": self.dag_id,
                "HEADWATER_CTX_TASK_ID": self.task_id,
                "HEADWATER_CTX_RUN_ID": str(context.get("run_id", "")),
                "HEADWATER_CTX_LOGICAL_DATE": str(context.get("ts", "")),
                "HEADWATER_CTX_TRY_NUMBER": str(getattr(ti, "try_number", "")),
            }
        )
        return env

    def execute(self, context: Context) -> str:
        if not isinstance(self.bash_command, str) or not self.bash_command.strip():
            raise TaskFailedError(f"bash_command of task {self.task_id!r} is empty")
        if self.cwd is not None and not os.path.isdir(self.cwd):
            raise TaskFailedError(f"cwd {self.cwd!r} of task {self.task_id!r} is not a folder")
        bash = shutil.which("bash") or "/bin/bash"
        self.log.info("Running command: %s", self.bash_command)
        proc = subprocess.Popen(
            [bash, "-c", self.bash_command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            env=self._environment(context),
            start_new_session=True,  # its own process group, so a timeout kills its children too
        )
        last = ""
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode(self.output_encoding, errors="replace").rstrip("\r\n")
                self.log.info("%s", line)
                last = line
            code = proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
        self.log.info("Command exited with return code %d", code)
        if code in self.skip_on_exit_code:
            raise TaskSkipError(f"bash exited with code {code}")
        if code != 0:
            raise TaskFailedError(f"bash exited with code {code}")
        return last
