"""Task instances: one with its tries and rendered fields, a try's log, clear and mark success/failed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from headwater.errors import TaskNotFoundError, UserError
from headwater.orchestration.states import RunState, TaskState
from headwater.web.services.masking import mask_urls
from headwater.web.services.runs import RunInfo, TaskInstanceInfo, get_run_record, run_info, ti_info

if TYPE_CHECKING:
    from headwater.store.base import TaskInstanceRecord, TryRecord
    from headwater.web.services.context import WebContext

LOG_CHUNK = 256 * 1024  # the most a log request returns at once; the client asks again from next_offset


@dataclass
class TryInfo:
    """One try of a task instance."""

    try_number: int
    state: TaskState
    start_date: dt.datetime | None
    end_date: dt.datetime | None
    duration: float | None
    reason: str
    hostname: str | None
    operator: str
    has_log: bool


@dataclass
class TaskInstanceDetail(TaskInstanceInfo):
    """A task instance with its run, tries and rendered template fields (secrets masked)."""

    dag_id: str = ""
    run_id: str = ""
    run_state: RunState = RunState.QUEUED
    rendered: dict[str, str] = field(default_factory=dict)
    tries: list[TryInfo] = field(default_factory=list)
    downstream: list[str] = field(default_factory=list)


@dataclass
class LogChunk:
    """Part of a try's log: ``text`` from byte ``offset`` to ``next_offset``; ``complete`` once the try has
    finished and everything was read (a client polls with ``offset=next_offset`` until then)."""

    dag_id: str
    run_id: str
    task_id: str
    try_number: int
    state: TaskState
    offset: int
    next_offset: int
    text: str
    complete: bool


@dataclass
class ClearResult:
    """What a clear reset."""

    cleared: list[str]
    run: RunInfo


@dataclass
class MarkResult:
    """What a mark changed."""

    marked: list[str]
    state: TaskState
    run: RunInfo


def get_task_instance(ctx: WebContext, dag_id: str, run_id: str, task_id: str) -> TaskInstanceDetail:
    """One task instance with its tries (oldest first) and rendered fields."""
    from headwater.web.services.dags import dag_masker, get_record

    spec = get_record(ctx, dag_id).spec
    run = get_run_record(ctx, dag_id, run_id)
    ti = _ti(ctx, dag_id, run_id, task_id)
    mask = dag_masker(spec, run.conf)
    tries = [_try_info(ctx, t) for t in ctx.store.list_tries(dag_id, run_id, task_id)]
    base = ti_info(ti, spec)
    return TaskInstanceDetail(
        **vars(base), dag_id=dag_id, run_id=run_id, run_state=run.state,
        rendered={k: mask(v) for k, v in ti.rendered.items()}, tries=tries,
        downstream=spec.downstream().get(task_id, []),
    )


def read_log(
    ctx: WebContext, dag_id: str, run_id: str, task_id: str, try_number: int | None = None, *, offset: int = 0,
    limit: int = LOG_CHUNK,
) -> LogChunk:
    """The log of one try (default: the latest) from byte ``offset``, secrets masked.

    Only files inside the logs folder are read, whatever path the store holds: the path is
    resolved (symbolic links followed) and must lie under ``$HEADWATER_HOME/logs``.
    """
    from headwater.web.services.dags import dag_masker, get_record

    if offset < 0:
        raise UserError(f"log offset {offset} is negative", hint="offsets start at 0")
    spec = get_record(ctx, dag_id).spec
    run = get_run_record(ctx, dag_id, run_id)
    ti = _ti(ctx, dag_id, run_id, task_id)
    tries = ctx.store.list_tries(dag_id, run_id, task_id)
    if not tries:
        raise UserError(f"{dag_id}.{task_id} has not run in {run_id}", hint=f"its state is {ti.state.value}")
    chosen = tries[-1] if try_number is None else next((t for t in tries if t.try_number == try_number), None)
    if chosen is None:
        raise UserError(f"{task_id} has no try {try_number} in {run_id}",
                        hint=f"its tries: {', '.join(str(t.try_number) for t in tries)}")
    path = confined_log_path(ctx.settings.logs_folder, chosen.log_path)
    finished = chosen.state.finished or chosen.try_number < ti.try_number
    if not path.is_file():
        if finished:
            raise UserError(f"the log of try {chosen.try_number} of {task_id} is gone",
                            hint="logs may have been cleaned up; clear the task to run it again")
        return LogChunk(dag_id, run_id, task_id, chosen.try_number, chosen.state, offset, offset, "", False)
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read(limit)
        at_end = not fh.read(1)
    # Never cut a UTF-8 character in two: hold back an incomplete tail for the next read (unless the
    # file is finished: then a broken tail is shown as the replacement character).
    cut = len(data) if at_end and finished else _utf8_boundary(data)
    text = dag_masker(spec, run.conf)(data[:cut].decode("utf-8", errors="replace"))
    return LogChunk(dag_id, run_id, task_id, chosen.try_number, chosen.state, offset, offset + cut, text,
                    finished and at_end and cut == len(data))


def confined_log_path(logs_folder: Path, log_path: str | None) -> Path:
    """``log_path`` resolved (symbolic links followed), if it lies inside ``logs_folder``; a UserError
    otherwise, and nothing is read. The web and ``headwater tasks logs`` read logs only through this."""
    root = logs_folder.resolve()
    if not log_path or "\x00" in log_path:
        raise UserError("this try has no log file recorded", hint="logs are kept only for tries that started")
    path = Path(log_path)
    resolved = (root / path).resolve() if not path.is_absolute() else path.resolve()
    if not resolved.is_relative_to(root):
        raise UserError("the log of this try is recorded outside the logs folder; it is not shown",
                        hint=f"logs are read only from {root}")
    return resolved


def clear(
    ctx: WebContext, dag_id: str, run_id: str, task_ids: list[str], *, downstream: bool = False,
    only_failed: bool = False,
) -> ClearResult:
    """Reset these task instances (and, with ``downstream``, every task after them) so they run again."""
    import re

    from headwater.orchestration.runs import clear_task_instances
    from headwater.web.services.dags import get_record

    spec = get_record(ctx, dag_id).spec
    run = get_run_record(ctx, dag_id, run_id)
    _check_tasks(spec.tasks, task_ids, dag_id)
    pattern = "^(" + "|".join(re.escape(t) for t in task_ids) + ")$"
    cleared = clear_task_instances(ctx.store, spec, [run], task_regex=pattern, downstream=downstream,
                                   only_failed=only_failed, now=ctx.clock.now())
    return ClearResult(sorted(ti.task_id for ti in cleared), run_info(get_run_record(ctx, dag_id, run_id)))


def mark(
    ctx: WebContext, dag_id: str, run_id: str, task_ids: list[str], state: TaskState, *, downstream: bool = False,
) -> MarkResult:
    """Set task instances to ``success`` or ``failed`` by hand, then settle the run.

    Refused while any task of the run is queued or running (the scheduler owns the run then). When every
    task instance has finished, the run takes its final state at once (the scheduler's rule:
    failed if a leaf failed); otherwise it is queued so a scheduler goes on with the rest.
    """
    from headwater.orchestration.kernel import RunKernel
    from headwater.store.base import UnitOfWork
    from headwater.web.services.dags import get_record

    if state not in (TaskState.SUCCESS, TaskState.FAILED):
        raise UserError(f"task instances can be marked success or failed, not {state.value}",
                        hint="to run a task again, clear it")
    spec = get_record(ctx, dag_id).spec
    run = get_run_record(ctx, dag_id, run_id)
    _check_tasks(spec.tasks, task_ids, dag_id)
    selected = spec.with_downstream(task_ids) if downstream else set(task_ids)
    now = ctx.clock.now()
    tis = ctx.store.list_task_instances(dag_id, run_id)
    # While tasks of the run are queued or running, the scheduler holds the run in memory and would
    # overwrite a mark made here; refuse rather than lose it.
    busy = sorted(ti.task_id for ti in tis if ti.state.active)
    if busy:
        raise UserError(f"run {run_id} of {dag_id} has tasks running now ({', '.join(busy[:5])}); nothing marked",
                        hint="mark once they have finished")
    marked: list[TaskInstanceRecord] = []
    for ti in tis:
        if ti.task_id in selected and ti.state is not state:
            ti.state = state
            ti.reason = f"marked {state.value} by hand"
            ti.end_date = ti.end_date or now
            ti.next_attempt_at = None
            ti.updated_at = now
            marked.append(ti)
    work = UnitOfWork(task_instances=marked)
    if marked:
        # Settle with the scheduler's own kernel: finished runs get their final state now.
        run.state, run.end_date = RunState.QUEUED, None
        kernel = RunKernel(spec, run, tis)
        kernel.settle(now)
        work.runs.append(kernel.run)
        ctx.store.commit(work)
    return MarkResult(sorted(ti.task_id for ti in marked), state, run_info(get_run_record(ctx, dag_id, run_id)))


def _ti(ctx: WebContext, dag_id: str, run_id: str, task_id: str) -> TaskInstanceRecord:
    ti = ctx.store.get_task_instance(dag_id, run_id, task_id)
    if ti is None:
        raise TaskNotFoundError(f"run {run_id!r} of DAG {dag_id!r} has no task {task_id!r}",
                                hint=f"GET /api/v1/dags/{dag_id}/runs/{run_id} lists its task instances")
    return ti


def _check_tasks(tasks: object, task_ids: list[str], dag_id: str) -> None:
    if not task_ids:
        raise UserError("no task named", hint="name at least one task id")
    unknown = [t for t in task_ids if t not in tasks]  # type: ignore[operator]
    if unknown:
        raise TaskNotFoundError(f"DAG {dag_id!r} has no task {unknown[0]!r}",
                                hint=f"GET /api/v1/dags/{dag_id} lists its tasks")


def _try_info(ctx: WebContext, t: TryRecord) -> TryInfo:
    try:
        has_log = confined_log_path(ctx.settings.logs_folder, t.log_path).is_file()
    except UserError:
        has_log = False
    return TryInfo(t.try_number, t.state, t.start_date, t.end_date, t.duration, mask_urls(t.reason), t.hostname,
                   t.operator, has_log)


def _utf8_boundary(data: bytes) -> int:
    """The length of the longest prefix of ``data`` that does not end inside a UTF-8 character."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:  # a continuation byte: keep looking for the lead byte
            continue
        if byte & 0x80 == 0:  # ASCII
            return len(data)
        need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4
        return len(data) if back >= need else len(data) - back
    return len(data)
