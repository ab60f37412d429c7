"""DAGs: the list with their schedule, state and last runs, one DAG's tasks, its source, pause and trigger."""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater.errors import DagNotFoundError, UserError
from headwater.orchestration.states import RunState, RunType
from headwater.web.services.masking import Masker, mask_mapping, secret_values

if TYPE_CHECKING:
    from headwater.orchestration.spec import DagSpec
    from headwater.store.base import DagRecord, DagRunRecord
    from headwater.web.services.context import WebContext
    from headwater.web.services.runs import RunInfo


@dataclass
class RunBrief:
    """A run as a dot in a DAG's row: its id, date and state."""

    run_id: str
    logical_date: dt.datetime
    state: RunState


@dataclass
class DagInfo:
    """A DAG as the DAG list shows it."""

    dag_id: str
    description: str | None
    schedule: str | None  # normalised: None, "@once", a cron expression or "every:<seconds>"
    schedule_text: str  # for people: "every 1d", "0 6 * * *", "None"
    is_paused: bool
    owner: str
    tags: list[str]
    file: str  # relative to the DAG folder
    tasks: int
    last_runs: list[RunBrief] = field(default_factory=list)  # newest first
    next_run: dt.datetime | None = None  # logical date of the next scheduled run
    next_run_after: dt.datetime | None = None  # when that run becomes due (its interval's end)
    params: dict[str, Any] = field(default_factory=dict)  # secrets masked


@dataclass
class ImportErrorInfo:
    """A DAG file that failed to load, with the line to look at."""

    file: str
    lineno: int | None
    kind: str
    message: str


@dataclass
class DagList:
    """Every DAG (filtered), and the files that failed to load."""

    dags: list[DagInfo]
    import_errors: list[ImportErrorInfo]
    #: How many DAGs match the filters; ``dags`` is the page of them asked for.
    total: int = 0


@dataclass
class TaskInfo:
    """One task of a DAG: what it is and how it is wired."""

    task_id: str
    operator: str
    upstream: list[str]
    downstream: list[str]
    trigger_rule: str
    retries: int
    pool: str
    is_sensor: bool
    owner: str
    doc: str | None = None


@dataclass
class DagDetail(DagInfo):
    """One DAG with its tasks in dependency order."""

    start_date: dt.datetime | None = None
    end_date: dt.datetime | None = None
    catchup: bool = False
    max_active_runs: int = 16
    version: int = 1
    task_list: list[TaskInfo] = field(default_factory=list)
    # Per param: {"schema": JSON Schema keywords, "description", "secret", "required"} (trigger forms).
    params_schema: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class DagSource:
    """The source code of a DAG's file (secrets masked)."""

    dag_id: str
    file: str
    source: str


def schedule_text(schedule: str | None) -> str:
    """A normalised schedule for people: ``every:86400`` is ``every 1d``."""
    if schedule is None:
        return "None"
    if not schedule.startswith("every:"):
        return schedule
    secs = float(schedule.split(":", 1)[1])
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size and secs % size == 0:
            return f"every {int(secs // size)}{unit}"
    return f"every {secs:g}s"


def get_record(ctx: WebContext, dag_id: str) -> DagRecord:
    """The active DAG ``dag_id``; DagNotFoundError with a "did you mean" hint otherwise."""
    record = ctx.store.get_dag(dag_id)
    if record is not None and record.is_active:
        return record
    known = [d.dag_id for d in ctx.store.list_dags()]
    close = difflib.get_close_matches(dag_id, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "GET /api/v1/dags lists the DAGs"
    raise DagNotFoundError(f"no DAG {dag_id!r}", hint=hint)


def list_dags(
    ctx: WebContext,
    *,
    tag: str | None = None,
    paused: bool | None = None,
    search: str | None = None,
    last_runs: int = 5,
    limit: int | None = None,
    offset: int = 0,
) -> DagList:
    """The active DAGs by id (filtered by tag, paused state, a substring of the id), ``limit`` of them
    from ``offset``, each with its last runs.

    Three queries whatever the number of DAGs: the DAGs, their newest runs, their newest scheduled
    runs (for the next run); a page of 50 DAGs costs what a page of one does.
    """
    store = ctx.store
    now = ctx.clock.now()
    matching = [
        rec for rec in sorted(store.list_dags(), key=lambda r: r.dag_id)
        if (tag is None or tag in rec.spec.tags) and (paused is None or rec.is_paused == paused)
        and (not search or search.lower() in rec.dag_id.lower())
    ]
    shown = matching[offset:None if limit is None else offset + limit]
    runs = store.latest_runs([r.dag_id for r in shown], last_runs) if last_runs else {}
    scheduled = store.latest_runs([r.dag_id for r in shown if r.spec.schedule is not None and not r.is_paused], 1,
                                  run_types=[RunType.SCHEDULED])
    out = [_info(ctx, rec, runs.get(rec.dag_id, []), now, scheduled=scheduled.get(rec.dag_id, []))
           for rec in shown]
    return DagList(out, list_import_errors(ctx), total=len(matching))


def list_import_errors(ctx: WebContext) -> list[ImportErrorInfo]:
    """The DAG files that failed to load, by file."""
    return [ImportErrorInfo(_relative(ctx, e.path), e.lineno, e.kind, Masker()(e.message))
            for e in sorted(ctx.store.list_import_errors(), key=lambda e: e.path)]


def get_dag(ctx: WebContext, dag_id: str, *, last_runs: int = 25) -> DagDetail:
    """One DAG with its settings and tasks (in dependency order)."""
    rec = get_record(ctx, dag_id)
    spec = rec.spec
    info = _info(ctx, rec, ctx.store.list_runs(dag_id, limit=last_runs), ctx.clock.now())
    down = spec.downstream()
    tasks = [
        TaskInfo(t.task_id, t.operator, list(t.upstream), down[tid], str(t.trigger_rule), t.retries, t.pool,
                 t.is_sensor, t.owner, t.doc)
        for tid in spec.topological_order()
        for t in (spec.tasks[tid],)
    ]
    return DagDetail(**vars(info), start_date=spec.start_date, end_date=spec.end_date, catchup=spec.catchup,
                     max_active_runs=spec.max_active_runs, version=rec.version, task_list=tasks,
                     params_schema=spec.params_schema)  # holds no values: defaults are in params


def get_source(ctx: WebContext, dag_id: str) -> DagSource:
    """The DAG's file, read only when it lies inside the DAG folder (secrets masked)."""
    rec = get_record(ctx, dag_id)
    folder = ctx.settings.dags_folder.resolve()
    path = Path(rec.fileloc).resolve()
    if not path.is_relative_to(folder):
        raise UserError(f"the file of DAG {dag_id!r} is outside the DAG folder; its source is not shown",
                        hint=f"DAG sources are shown only from {folder}")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UserError(f"cannot read the file of DAG {dag_id!r}: {exc.strerror}",
                        hint="the file may have been moved or deleted since it was parsed") from exc
    mask = Masker(secret_values(rec.spec.params) | _secret_literals(text))
    return DagSource(dag_id, _relative(ctx, rec.fileloc), mask(text))


def set_paused(ctx: WebContext, dag_id: str, paused: bool) -> DagInfo:
    """Pause (no new scheduled runs) or unpause a DAG."""
    get_record(ctx, dag_id)
    ctx.store.set_paused(dag_id, paused)
    rec = get_record(ctx, dag_id)
    return _info(ctx, rec, ctx.store.list_runs(dag_id, limit=5), ctx.clock.now())


def check_conf(spec: DagSpec, conf: dict[str, Any]) -> dict[str, Any]:
    """``conf`` checked against the DAG's params (their JSON Schema rules, required ones, unknown names:
    :func:`headwater.orchestration.params.validate_conf`, as ``dags trigger`` does); returns what the
    run stores: the conf as given, less secret params sent back as ``***`` (they keep their default)."""
    from headwater.orchestration.params import validate_conf

    checked = validate_conf(spec, conf)
    return {k: v for k, v in conf.items() if k in checked}


def trigger(
    ctx: WebContext,
    dag_id: str,
    *,
    conf: dict[str, Any] | None = None,
    logical_date: dt.datetime | None = None,
    run_id: str | None = None,
) -> RunInfo:
    """Queue a manual run with ``conf`` (checked against the DAG's params); a scheduler runs it."""
    from headwater.orchestration.runs import trigger as create
    from headwater.web.services.runs import run_info

    rec = get_record(ctx, dag_id)
    checked = check_conf(rec.spec, conf or {})
    when = logical_date if logical_date is None or logical_date.tzinfo else logical_date.replace(tzinfo=dt.UTC)
    if when is not None and ctx.store.find_run(dag_id, when) is not None:
        raise UserError(f"DAG {dag_id!r} already has a run at {when.isoformat()}",
                        hint="pick another logical date, or clear the existing run to run it again")
    if run_id is not None and ctx.store.get_run(dag_id, run_id) is not None:
        raise UserError(f"DAG {dag_id!r} already has a run {run_id!r}", hint="pick another run id")
    run = create(ctx.store, rec, ctx.clock.now(), logical_date=when, conf=checked, run_id=run_id)
    return run_info(run, rec.spec)


def dag_masker(spec: DagSpec, *confs: dict[str, Any] | None) -> Masker:
    """A masker for the DAG's secret params (and those of run confs)."""
    return Masker(secret_values(spec.params, *confs))


def _secret_literals(source: str) -> set[str]:
    """String defaults of ``Param(..., secret=True)`` written in a DAG file, found by parsing it (never
    running it): the stored spec holds only ``***`` for them, so the source is the one place they show."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        secret = any(k.arg == "secret" and isinstance(k.value, ast.Constant) and k.value.value is True
                     for k in node.keywords)
        if name != "Param" or not secret:
            continue
        candidates = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "default")]
        found.update(c.value for c in candidates if isinstance(c, ast.Constant) and isinstance(c.value, str))
    return found


def _relative(ctx: WebContext, path: str) -> str:
    folder = ctx.settings.dags_folder.resolve()
    p = Path(path)
    return str(p.relative_to(folder)) if p.is_relative_to(folder) else p.name


def _next_run(ctx: WebContext, rec: DagRecord, now: dt.datetime,
              scheduled: list[DagRunRecord] | None = None) -> tuple[dt.datetime, dt.datetime] | None:
    """The next interval the scheduler would run (the same rule as the scheduler's), after the
    newest scheduled run (``scheduled``: that run in a list, read here when not given)."""
    from headwater.orchestration.schedules import DataInterval, timetable_for

    spec = rec.spec
    if spec.schedule is None or rec.is_paused:
        return None
    if scheduled is None:
        scheduled = ctx.store.list_runs(rec.dag_id, run_types=[RunType.SCHEDULED], limit=1)
    last = scheduled[0] if scheduled else None
    interval = timetable_for(spec.schedule, spec.start_date).next_interval(
        DataInterval(last.data_interval_start, last.data_interval_end) if last else None,
        start_date=spec.start_date, end_date=spec.end_date, catchup=spec.catchup, now=now,
    )
    return None if interval is None else (interval.start, interval.end)


def _info(ctx: WebContext, rec: DagRecord, runs: list[DagRunRecord], now: dt.datetime,
          scheduled: list[DagRunRecord] | None = None) -> DagInfo:
    spec = rec.spec
    nxt = _next_run(ctx, rec, now, scheduled)
    return DagInfo(
        dag_id=rec.dag_id, description=spec.description, schedule=spec.schedule,
        schedule_text=schedule_text(spec.schedule), is_paused=rec.is_paused, owner=spec.owner,
        tags=list(spec.tags), file=_relative(ctx, rec.fileloc), tasks=len(spec.tasks),
        last_runs=[RunBrief(r.run_id, r.logical_date, r.state) for r in runs],
        next_run=nxt[0] if nxt else None, next_run_after=nxt[1] if nxt else None,
        params=mask_mapping(spec.params),
    )
